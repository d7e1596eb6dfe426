"""controller.switch.Switch bookkeeping without a switch: what a commit leaves held."""
from controller.switch import Switch
from flows.entry import COOKIE_MARK as M, FlowEntry

F = FlowEntry.make


def _sw():
    return Switch(1, request=None, flush=None)


def test_full_then_delta_commit_and_forget():
    a = F(0, 10, {"in_port": 1}, [("output", 2)], M | 1)
    b = F(0, 20, {"in_port": 2}, [("output", 1)], M | 1)
    sw = _sw()
    assert sw.commit_pending() is False and sw.held is None
    want = ({a.key: a}, {})
    sw.pending = want
    assert sw.commit_pending() is True and sw.pending is None
    assert sw.held == want and sw.held[0] is not want[0]      # a copy: deltas must not move the memo
    sw.pending = ("delta", {a.key: None, b.key: b}, {})
    sw.meter_ok = True
    assert sw.commit_pending()
    assert sw.held[0] == {b.key: b} and want[0] == {a.key: a}
    sw.forget()
    assert sw.held is None and sw.meter_ok is False


def test_errors_collected_only_while_collecting():
    class Err:
        xid = 7
    sw = _sw()
    sw.error(Err)                       # nobody waiting: dropped
    with sw.collecting() as errors:
        sw.error(Err)
        assert errors == {7: Err}
    assert sw.errors is None

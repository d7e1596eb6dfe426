"""controller.switch.Switch bookkeeping without a switch: what a commit leaves held,
and its scheduling (request, worker, retry timer, close) with real eventlet green threads."""
import eventlet

from controller.switch import Switch
from flows.entry import COOKIE_MARK as M, FlowEntry

F = FlowEntry.make


def _sw():
    return Switch(1, talk=None, flush=None)


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


def test_requests_coalesce_until_the_worker_takes_them():
    sw = _sw()
    assert not sw.dirty and sw.take_request() is None
    assert sw.request(10.0) is True          # no worker: the caller starts one
    sw.worker = "running"
    assert sw.request(11.0) is False and sw.request(12.0) is False   # the worker will take them
    assert sw.dirty
    assert sw.take_request() == 10.0         # one reconcile, stamped with the oldest request
    assert not sw.dirty and sw.take_request() is None
    assert sw.request(13.0) is False and sw.take_request() == 13.0


def test_one_retry_timer_at_a_time():
    sw = _sw()
    fired = []
    assert sw.arm_retry(lambda: eventlet.spawn_after(0, fired.append, 1)) is True
    first = sw.retry
    assert sw.arm_retry(lambda: eventlet.spawn_after(0, fired.append, 2)) is False
    assert sw.retry is first
    first.wait()
    assert fired == [1]


def test_close_kills_worker_and_retry_timer_and_refuses_more():
    sw = _sw()
    gate, fired, ended = eventlet.event.Event(), [], []

    def worker():                             # a reconcile waiting on the switch
        try:
            gate.wait()
        finally:
            ended.append(True)
    sw.request(1.0)
    sw.worker = eventlet.spawn(worker)
    sw.arm_retry(lambda: eventlet.spawn_after(0.05, fired.append, "retry"))
    timer, worker_gt = sw.retry, sw.worker
    eventlet.sleep(0)                         # the worker is now blocked in gate.wait()
    sw.held, sw.meter_ok = ({}, {}), True
    sw.close()
    assert worker_gt.dead and ended == [True]
    assert timer.dead
    assert (sw.worker, sw.retry, sw.dirty, sw.held, sw.meter_ok) == (None, None, False, None, False)
    eventlet.sleep(0.1)                       # past the timer's delay: it never fires
    assert fired == []
    # a closed switch takes no more work: no worker is started, none would run
    assert sw.request(2.0) is False and sw.take_request() is None
    assert sw.arm_retry(lambda: eventlet.spawn_after(0, fired.append, "late")) is False
    sw.close()                                # idempotent

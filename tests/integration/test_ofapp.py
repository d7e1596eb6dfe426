"""controller.ofmsg round trips (offline) and controller.ofapp against a real,
private Open vSwitch (ovs-vswitchd + ovsdb-server with their own files).

Run:  .venv/bin/python -m pytest tests/integration/test_ofapp.py -v
"""
import os

os.environ.setdefault("OSKEN_HUB_TYPE", "eventlet")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import logging  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402
from os_ken.app.ofctl import exception as ofctl_exc  # noqa: E402
from os_ken.ofproto import ofproto_parser, ofproto_protocol  # noqa: E402
from os_ken.ofproto import ofproto_v1_3 as ofp  # noqa: E402
from os_ken.ofproto import ofproto_v1_3_parser as parser  # noqa: E402

from controller import ofapp, ofmsg, ofserver  # noqa: E402
from flows.entry import COOKIE_MARK as M, FlowEntry, GroupEntry  # noqa: E402
from tests.procs import linked_ovs  # noqa: E402
from tests.unit.flow_catalogue import ALL_FLOWS, ALL_GROUPS, DPID  # noqa: E402
from topologies.common import free_port, wait_until  # noqa: E402

F = FlowEntry.make
DP = ofproto_protocol.ProtocolDesc(ofp.OFP_VERSION)


def _wire(msg):
    """Serialize with os-ken and parse the bytes back, as a switch would read them."""
    msg.xid = 7
    msg.serialize()
    return ofproto_parser.msg(DP, ofp.OFP_VERSION, msg.msg_type, len(msg.buf), 7, bytes(msg.buf))


# ---------------------------------------------------------------- offline

@pytest.mark.parametrize("entry", ALL_FLOWS, ids=lambda e: e.to_ofctl()[:60])
def test_flow_roundtrip_offline(entry):
    back = ofmsg.entry_from_stats(_wire(ofmsg.flow_mod(DP, entry)))
    assert back == entry


def test_delete_is_strict_and_any():
    m = _wire(ofmsg.flow_mod(DP, ALL_FLOWS[1], ofp.OFPFC_DELETE_STRICT))
    assert m.command == ofp.OFPFC_DELETE_STRICT
    assert (m.out_port, m.out_group) == (ofp.OFPP_ANY, ofp.OFPG_ANY)
    assert (m.table_id, m.priority) == (0, 190) and m.instructions == []
    assert ofmsg.from_ofpmatch(m.match) == ALL_FLOWS[1].match


@pytest.mark.parametrize("group", ALL_GROUPS, ids=lambda g: g.to_ofctl())
def test_group_roundtrip_offline(group):
    gm = ofmsg.group_mod(DP, group)
    gm.serialize()
    off = ofp.OFP_GROUP_MOD_SIZE
    buckets = []
    while off < len(gm.buf):                  # the desc reply carries the same buckets
        b = parser.OFPBucket.parser(bytes(gm.buf), off)
        buckets.append(b)
        off += b.len

    class Desc:
        type, group_id = gm.type, gm.group_id
    Desc.buckets = buckets
    assert ofmsg.group_from_desc(Desc) == group


def test_canonical_entry_reads_back_equal():
    """A flow written loosely is canonical as made, and the wire gives back the same entry."""
    e = F(0, 1, {"ct_state": "+new+trk", "eth_dst": ("02:00:00:00:00:05", "ff:ff:ff:ff:ff:ff"),
                 "reg0": (0x1234, 0xFF00), "ip_src": ("10.1.2.3", "255.255.0.0"),
                 "tun_id": (5, 0xFFFFFFFFFFFFFFFF)},
          [("goto", 3), ("ct", (("zone", 0), ("commit", False), ("table", 4))), ("output", 1)], M)
    assert e.match_dict() == {"ct_state": "+trk+new", "eth_dst": "02:00:00:00:00:05",
                              "reg0": (0x1200, 0xFF00), "ip_src": ("10.1.0.0", "255.255.0.0"),
                              "tun_id": 5, "eth_type": 0x800}
    assert e.actions == (("ct", (("table", 4),)), ("output", 1), ("goto", 3))
    assert ofmsg.entry_from_stats(_wire(ofmsg.flow_mod(DP, e))) == e


@pytest.mark.parametrize("text,value,mask", [
    ("+trk", 0x20, 0x20), ("+trk+new", 0x21, 0x21), ("+trk+est", 0x22, 0x22),
    ("+trk-new+est", 0x22, 0x23), ("-trk", 0, 0x20), ("+trk+inv+dnat", 0xB0, 0xB0)])
def test_ct_state_both_ways(text, value, mask):
    assert ofmsg.ct_state_to_int(text) == (value, mask)
    assert ofmsg.ct_state_to_str(value, mask) == text


def test_ct_state_rejects_garbage():
    for bad in ("", "trk", "+trk+bogus", "+trk,+new"):
        with pytest.raises(ofmsg.ConversionError):
            ofmsg.ct_state_to_int(bad)


def test_flow_diff_by_key():
    """ofapp.flow_diff: held flows nobody wants go, wanted ones that differ (actions,
    cookie) or are missing come, equal ones stay; equal tables give nothing."""
    import pickle
    want = {e.key: e for e in ALL_FLOWS}
    held = pickle.loads(pickle.dumps(want))           # equal, other objects (as decoded)
    assert ofapp.flow_diff(want, held) == ([], [])
    a, b, c = ALL_FLOWS[0], ALL_FLOWS[1], ALL_FLOWS[2]
    extra = F(60, 7, {"reg0": 9}, [("output", 3)], M | 5)
    held[extra.key] = extra
    held[a.key] = FlowEntry(a.table, a.priority, a.match, (("output", 4242),), a.cookie)
    held[b.key] = FlowEntry(b.table, b.priority, b.match, b.actions, b.cookie ^ 1)
    del held[c.key]
    gone, differ = ofapp.flow_diff(want, held)
    assert gone == [extra]
    assert sorted(differ, key=repr) == sorted([(a, held[a.key]), (b, held[b.key]), (c, None)], key=repr)


# ---------------------------------------------------------------- real switch

class FakeFreeFabric:
    """The netmaster side, hand-written: a desired set and a record of events."""

    def __init__(self, dpid):
        self.dpid = dpid
        self.flows = set()
        self.groups = set()
        self.events = []
        self.desired_calls = 0

    def desired(self, dpid):
        self.desired_calls += 1
        return (set(self.flows), set(self.groups)) if dpid == self.dpid else None

    def switch_up(self, dpid, ports):
        self.events.append(("up", dpid, dict(ports)))

    def port_changed(self, dpid, name, ofport):
        self.events.append(("port", dpid, name, ofport))

    def switch_down(self, dpid):
        self.events.append(("down", dpid))


class Env:
    def __init__(self, ovs, fabric, port):
        self.ovs, self.fabric, self.port = ovs, fabric, port
        self.handle = None

    @property
    def app(self):
        return self.handle.app

    def start_controller(self):
        self.handle = ofserver.start(self.fabric, self.ovs.root_ip, self.port)

    def stop_controller(self):
        if self.handle is not None:
            self.handle.stop()
            self.handle = None

    def reconcile(self):
        """Ask for a reconcile and wait for it; returns its ReconcileResult."""
        self.app.switch(DPID).last_result = None
        self.app.request_reconcile(DPID)
        wait_until(lambda: self.app.idle() and self.app.result(DPID) is not None, 30, what="reconcile")
        return self.app.result(DPID)

    def ours(self):
        """The switch's marked flows as {(table, priority, match text): flow dict}."""
        return {(f["table"], f["priority"], f["match"]): f for f in self.ovs.dump_flows()
                if f["cookie"] >> 56 == M >> 56}


needs_ovs = pytest.mark.skipif(shutil.which("ovs-vswitchd") is None or os.geteuid() != 0,
                               reason="needs Open vSwitch and root")


@pytest.fixture
def env(caplog):
    caplog.set_level(logging.INFO, logger="controller.ofapp")
    caplog.set_level(logging.INFO, logger="controller.switch")      # its bundles and meter
    ovs = linked_ovs("of", bridge=f"nwof{os.getpid() % 100000}")
    e = Env(ovs, FakeFreeFabric(DPID), free_port())
    try:
        e.start_controller()
        ovs.add_bridge(DPID, f"tcp:{ovs.root_ip}:{e.port}")
        ovs.add_internal_port(ovs.bridge[:13] + "p5", 5)
        wait_until(lambda: DPID in e.app.datapaths, 30, what="switch connect")
        yield e
    finally:
        try:
            e.stop_controller()
        finally:
            ovs.stop()


def _install(env, flows, groups=()):
    env.fabric.flows = set(flows)
    env.fabric.groups = set(groups)
    return env.reconcile()


@needs_ovs
def test_connect_installs_exactly_desired(env):
    r = _install(env, ALL_FLOWS, ALL_GROUPS)
    assert r.outcome == "committed" and r.rejected == []
    assert (r.added, r.deleted, r.groups_added) == (len(ALL_FLOWS), 0, len(ALL_GROUPS))
    assert len(env.ours()) == len(ALL_FLOWS)
    assert len(env.ovs.dump_groups()) == len(ALL_GROUPS)
    # read back through flow stats: every entry equal to what was sent, so nothing to do
    r = env.reconcile()
    assert (r.outcome, r.changes, r.unchanged) == ("noop", 0, len(ALL_FLOWS))
    # the switch's ports reached the fabric
    ups = [ev for ev in env.fabric.events if ev[0] == "up"]
    assert ups and ups[0][2].get(env.ovs.bridge) == ofp.OFPP_LOCAL


@needs_ovs
def test_full_read_goes_out_while_desired_waits(env):
    """At netmaster's start desired() waits for the first recompute: the reconcile has
    the switch's flows read meanwhile (the read starts before desired() is asked) and
    diffs against that read once desired() answers."""
    _install(env, ALL_FLOWS, ALL_GROUPS)
    env.app.switches[DPID].forget()                  # the next reconcile reads the switch
    released = eventlet.event.Event()
    reads = []
    read_switch, desired = env.app._read_switch, env.fabric.desired

    def read(dp):
        got = read_switch(dp)
        reads.append((released.ready(), len(got[0])))  # desired() still waiting when it ended?
        return got

    def waiting_desired(dpid):
        released.wait()
        return desired(dpid)
    env.app._read_switch, env.fabric.desired = read, waiting_desired
    try:
        env.app.switch(DPID).last_result = None
        env.app.request_reconcile(DPID)
        wait_until(lambda: reads, 30, what="the switch read while desired() waits")
        assert reads == [(False, len(ALL_FLOWS))]
        released.send()
        wait_until(lambda: env.app.idle() and env.app.result(DPID) is not None, 30, what="reconcile")
    finally:
        if not released.ready():
            released.send()
        env.app._read_switch, env.fabric.desired = read_switch, desired
    r = env.app.result(DPID)
    assert (r.outcome, r.read, r.unchanged, r.changes) == ("noop", "switch", len(ALL_FLOWS), 0)
    assert len(reads) == 1 and "read" in r.phases


@needs_ovs
def test_port_status_reaches_fabric(env):
    name = env.ovs.bridge[:13] + "p9"
    env.ovs.add_internal_port(name, 9)
    wait_until(lambda: ("port", DPID, name, 9) in env.fabric.events, what="port add")
    env.ovs.vsctl("del-port", env.ovs.bridge, name)
    wait_until(lambda: ("port", DPID, name, None) in env.fabric.events, what="port delete")


@needs_ovs
def test_change_touches_only_the_difference(env):
    base = [F(0, 100, {"in_port": 5}, [("output", 6)], M | 1),
            F(0, 90, {"in_port": 6}, [("output", 5)], M | 1),
            F(0, 80, {"in_port": 7}, [("output", 5)], M | 1)]
    _install(env, base)
    key = lambda e: (e.table, e.priority, f"in_port={e.match_dict()['in_port']}")
    untouched = key(base[0])
    d0 = wait_until(lambda: env.ours()[untouched]["duration"] >= 1.0 and env.ours(),
                    what="flows to age")
    new = F(1, 10, {"reg0": 1}, [("output", 8)], M | 2)
    modified = F(0, 90, {"in_port": 6}, [("output", 7)], M | 1)
    r = _install(env, [base[0], modified, new])          # base[2] removed
    assert (r.outcome, r.added, r.modified, r.deleted, r.unchanged) == ("committed", 1, 1, 1, 1)
    now = env.ours()
    assert set(now) == {untouched, key(modified), (1, 10, "reg0=0x1")}
    assert now[untouched]["duration"] >= d0[untouched]["duration"]   # not re-added
    assert now[key(modified)]["actions"] == "output:7"
    # MODIFY_STRICT kept the modified flow's own counters and age too
    assert now[key(modified)]["duration"] >= d0[key(modified)]["duration"]
    # a new cookie on the same key is an ADD (OF1.3 MODIFY cannot change a cookie)
    recookied = F(1, 10, {"reg0": 1}, [("output", 8)], M | 3)
    r = _install(env, [base[0], modified, recookied])
    assert (r.added, r.modified, r.deleted, r.unchanged) == (1, 0, 0, 2)
    assert env.ours()[(1, 10, "reg0=0x1")]["cookie"] == M | 3


@needs_ovs
def test_foreign_flows_left_alone(env):
    _install(env, ALL_FLOWS[:3])
    env.ovs.ofctl("add-flow", "cookie=0x1234,table=0,priority=5,in_port=5,actions=drop")
    env.ovs.ofctl("add-flow", "table=3,priority=7,actions=drop")        # cookie 0
    r = _install(env, ALL_FLOWS[:1])
    assert (r.outcome, r.deleted) == ("committed", 2)
    foreign = [f for f in env.ovs.dump_flows() if f["cookie"] >> 56 != M >> 56]
    assert sorted((f["cookie"], f["table"]) for f in foreign) == [(0, 3), (0x1234, 0)]
    assert len(env.ours()) == 1


@needs_ovs
def test_invalid_entry_discards_whole_bundle(env, caplog):
    _install(env, ALL_FLOWS[:2])
    before = env.ours()
    bad = F(5, 10, {"reg1": 1}, [("goto", 2)], M | 3)           # goto to a lower table
    good = F(5, 20, {"reg1": 2}, [("output", 5)], M | 3)
    r = _install(env, ALL_FLOWS[:1] + [good, bad])              # also drops ALL_FLOWS[1]
    assert r.outcome == "discarded"
    assert [x[0] for x in r.rejected] == [bad.to_ofctl()]
    assert set(env.ours()) == set(before)                        # nothing applied
    assert "event=bundle_rejected" in caplog.text and "goto_table:2" in caplog.text


@needs_ovs
def test_switch_bundle_context(env):
    """Switch.bundle() on its own: a message the switch refuses, or an exception
    inside, discards the whole bundle (nothing applied); otherwise it commits."""
    _install(env, ALL_FLOWS[:1])
    before = env.ours()
    sw, dp = env.app.switch(DPID), env.app.datapaths[DPID]
    good = F(5, 20, {"reg1": 2}, [("output", 5)], M | 3)
    bad = F(5, 10, {"reg1": 1}, [("goto", 2)], M | 3)           # goto to a lower table
    bids = []

    def run(entries, boom=False):
        res = ofapp.ReconcileResult(DPID)
        with sw.bundle(dp, res) as b:
            bids.append(b.bid)
            for e in entries:
                b.add(*ofapp._flow_msg(dp, e, ofp.OFPFC_ADD))
            if boom:
                raise RuntimeError("boom")
        return res

    r = eventlet.spawn(run, [good, bad]).wait()
    assert r.outcome == "discarded" and [x[0] for x in r.rejected] == [bad.to_ofctl()]
    assert set(env.ours()) == set(before) and sw.errors is None
    with pytest.raises(RuntimeError):
        eventlet.spawn(run, [good], True).wait()
    assert set(env.ours()) == set(before) and sw.errors is None
    # it was discarded, not left open: the switch no longer knows that bundle
    commit = parser.ONFBundleCtrlMsg(dp, bids[-1], ofp.ONF_BCT_COMMIT_REQUEST, ofapp.BUNDLE_FLAGS, [])
    with pytest.raises(ofctl_exc.OFError):
        eventlet.spawn(env.app._request, commit, parser.ONFBundleCtrlMsg).wait()
    r = eventlet.spawn(run, [good]).wait()
    assert (r.outcome, r.rejected) == ("committed", [])
    assert set(env.ours()) == set(before) | {(5, 20, "reg1=0x2")}


@needs_ovs
def test_unknown_switch_untouched(env):
    _install(env, ALL_FLOWS[:2])
    env.fabric.dpid = DPID + 1                # netmaster no longer knows this switch
    r = env.reconcile()
    assert r.outcome == "skipped"
    assert len(env.ours()) == 2


@needs_ovs
def test_burst_of_requests_coalesces(env):
    _install(env, ALL_FLOWS[:2])
    calls = env.fabric.desired_calls
    for _ in range(50):
        env.app.request_reconcile(DPID)
        env.app.request_reconcile()
    wait_until(env.app.idle, what="idle")
    assert 1 <= env.fabric.desired_calls - calls <= 2


@needs_ovs
def test_groups_round_trip_and_change(env):
    """Groups are owned like flows: netweave's (flows/pipeline.py's ids) are added, changed
    and deleted; a group someone else made on the switch is left alone."""
    from flows.pipeline import GROUP_FLOOD_ALL, flood_group_id, service_group_id
    a, b = flood_group_id(GROUP_FLOOD_ALL, 7), service_group_id(5, 0)
    env.ovs.ofctl("add-group", "group_id=1,type=all,bucket=output:5")          # not ours
    ours = [GroupEntry(a, ALL_GROUPS[0].buckets), GroupEntry(b, ALL_GROUPS[1].buckets, "indirect")]
    flow = F(0, 10, {"in_port": 5}, [("group", a)], M | 1)
    r = _install(env, [flow], ours)
    assert (r.outcome, r.groups_added, r.groups_deleted) == ("committed", 2, 0)
    assert env.reconcile().changes == 0
    g1 = GroupEntry(a, ((("output", 6),), (("output", 7),), (("pop_vlan",), ("output", 8))))
    r = _install(env, [flow], [g1, ours[1]])
    assert (r.groups_added, r.groups_modified, r.groups_deleted, r.added, r.modified) == \
        (0, 1, 0, 0, 0)
    assert any("output:8" in g for g in env.ovs.dump_groups())
    env.app.switch(DPID).held = None          # read the switch (it holds the stranger's group too)
    r = _install(env, [], [])
    assert (r.outcome, r.read, r.deleted, r.groups_deleted) == ("committed", "switch", 1, 2)
    assert [g for g in env.ovs.dump_groups() if "group_id=1," in g] != [] and env.ours() == {}
    assert len(env.ovs.dump_groups()) == 1                  # only the stranger's is left


@needs_ovs
def test_controller_restart_sends_nothing(env):
    _install(env, ALL_FLOWS, ALL_GROUPS)
    d0 = wait_until(lambda: min(f["duration"] for f in env.ours().values()) >= 1.0
                    and env.ours(), what="flows to age")
    with pytest.raises(RuntimeError):                  # one controller per process
        ofserver.start(env.fabric, "127.0.0.1", free_port())
    handle = env.handle
    env.stop_controller()
    handle.stop()                                      # idempotent
    env.start_controller()
    wait_until(lambda: env.app.idle() and env.app.result(DPID) is not None, 60, what="reconnect")
    r = env.app.result(DPID)
    assert (r.outcome, r.changes, r.unchanged) == ("noop", 0, len(ALL_FLOWS))
    now = env.ours()
    assert set(now) == set(d0)
    assert all(now[k]["duration"] >= d0[k]["duration"] for k in d0)


@needs_ovs
def test_switch_restart_gets_flows_back(env):
    _install(env, ALL_FLOWS, ALL_GROUPS)
    env.ovs.kill_switch()
    wait_until(lambda: ("down", DPID) in env.fabric.events, 30, what="switch down")
    assert env.app.switch(DPID) is None and env.app.result(DPID) is None    # gone with its connection
    env.ovs.start_switch()
    wait_until(lambda: env.app.idle() and env.app.result(DPID) is not None, 60, what="resync")
    r = env.app.result(DPID)
    assert (r.outcome, r.added, r.groups_added) == ("committed", len(ALL_FLOWS), len(ALL_GROUPS))
    assert len(env.ours()) == len(ALL_FLOWS)
    assert sum(1 for ev in env.fabric.events if ev[0] == "up") == 2


def _frozen_switch_pid(env) -> int:
    return int(open(os.path.join(env.ovs.dir, "ovs-vswitchd.pid")).read())


def _reconnected(env, old):
    """Restart the killed switch; the new connection's first reconcile (a fresh Switch)."""
    env.ovs.start_switch()
    wait_until(lambda: env.app.switch(DPID) not in (None, old) and env.app.idle()
               and env.app.result(DPID) is not None, 60, what="reconnect")
    return env.app.switch(DPID)


@needs_ovs
def test_disconnect_mid_reconcile_leaves_no_worker_or_timer(env, monkeypatch):
    """A switch that dies while a retry timer is armed, or while its worker waits on it
    in the middle of a reconcile, takes its worker and timer with it (controller/switch.py
    Switch.close); the reconnect gets a fresh Switch that puts every flow back; stop()
    kills a worker still waiting on a frozen switch."""
    _install(env, ALL_FLOWS, ALL_GROUPS)
    monkeypatch.setattr(ofapp, "RETRY_DELAY", 600.0)        # armed for the whole test
    # 1. a reconcile against a frozen switch times out and arms the retry timer
    monkeypatch.setattr(ofapp, "REQUEST_TIMEOUT", 1.0)
    sw = env.app.switch(DPID)
    pid = _frozen_switch_pid(env)
    os.kill(pid, signal.SIGSTOP)
    try:
        env.app.audit(DPID)
        wait_until(lambda: sw.retry is not None and sw.worker is None, 30, what="the retry timer")
        assert env.app.result(DPID).outcome == "failed"
        timer = sw.retry
    finally:
        env.ovs.kill_switch()                               # SIGKILL works on a stopped process
    wait_until(lambda: ("down", DPID) in env.fabric.events, 30, what="switch down")
    assert sw.closed and sw.retry is None and timer.dead and env.app.switch(DPID) is None
    sw = _reconnected(env, sw)
    r = env.app.result(DPID)
    assert (r.outcome, r.added, r.groups_added) == ("committed", len(ALL_FLOWS), len(ALL_GROUPS))
    # 2. the worker waits on the frozen switch (it took the request, the switch cannot answer)
    monkeypatch.setattr(ofapp, "REQUEST_TIMEOUT", 600.0)
    os.kill(_frozen_switch_pid(env), signal.SIGSTOP)
    try:
        env.app.audit(DPID)
        wait_until(lambda: sw.worker is not None and not sw.dirty, 30, what="the worker waiting")
        worker = sw.worker
    finally:
        env.ovs.kill_switch()
    wait_until(lambda: env.fabric.events.count(("down", DPID)) == 2, 30, what="switch down")
    assert sw.closed and worker.dead and sw.worker is None and sw.retry is None
    assert env.app.switch(DPID) is None and env.app.idle()
    sw = _reconnected(env, sw)
    assert env.app.result(DPID).outcome == "committed" and len(env.ours()) == len(ALL_FLOWS)
    # 3. stop() while the worker waits on a frozen switch
    pid = _frozen_switch_pid(env)
    os.kill(pid, signal.SIGSTOP)
    try:
        env.app.audit(DPID)
        wait_until(lambda: sw.worker is not None and not sw.dirty, 30, what="the worker waiting")
        worker = sw.worker
        env.stop_controller()
        assert worker.dead and sw.closed and sw.retry is None
    finally:
        os.kill(pid, signal.SIGCONT)


@needs_ovs
def test_flow_to_missing_group_discards(env):
    _install(env, ALL_FLOWS[:1])
    before = env.ours()
    bad = F(0, 3, {"in_port": 9}, [("group", 99)], M | 4)
    r = _install(env, ALL_FLOWS[:1] + [bad, F(0, 4, {"in_port": 8}, [("output", 5)], M | 4)])
    assert r.outcome == "discarded"          # OVS checks groups only at COMMIT, then rolls back
    assert [x[:3] for x in r.rejected] == [(bad.to_ofctl(), ofp.OFPET_BAD_ACTION,
                                            ofp.OFPBAC_BAD_OUT_GROUP)]
    assert set(env.ours()) == set(before)


@needs_ovs
def test_bad_desired_set_changes_nothing(env):
    _install(env, ALL_FLOWS[:2])
    before = env.ours()
    twin = F(0, 3, {"in_port": 9}, [("output", 6)], M)
    for bad in (F(0, 3, {"in_port": 9}, [("output", 5)], 0x1),                 # unmarked cookie
                F(0, 3, {"in_port": 9}, [("output", 5)], M)):                  # two with one key
        extra = [twin] if bad.cookie == M else []
        r = _install(env, ALL_FLOWS[:1] + [bad] + extra)
        assert r.outcome == "discarded" and len(r.rejected) == 1
        assert r.rejected[0][0] in (bad.to_ofctl(), twin.to_ofctl())
        assert set(env.ours()) == set(before)
    # an unknown action or field cannot even be made (flows/fields.py), so never reaches a switch
    with pytest.raises(ofmsg.ConversionError, match="teleport"):
        F(0, 3, {"in_port": 9}, [("teleport", 5)], M)
    with pytest.raises(ofmsg.ConversionError, match="no_such_field"):
        F(0, 3, {"no_such_field": 9}, [("output", 5)], M)


@needs_ovs
def test_ofctl_text_and_openflow_encoding_agree(env, tmp_path):
    """Flows added by ovs-ofctl from FlowEntry.to_ofctl() read back equal to the
    entries: entry.py's text form and ofmsg's OpenFlow form mean the same."""
    env.fabric.dpid = DPID + 1                          # keep the controller's hands off
    flows = tmp_path / "flows.txt"
    # ovs-ofctl takes no hex port numbers; to_ofctl() prints every int in hex
    text = lambda e: re.sub(r"in_port=0x([0-9a-f]+)", lambda m: f"in_port={int(m[1], 16)}",
                            e.to_ofctl())
    flows.write_text("".join(text(e) + "\n" for e in ALL_FLOWS))
    for g in ALL_GROUPS:
        env.ovs.ofctl("add-group", g.to_ofctl())
    env.ovs.ofctl("add-flows", str(flows))
    assert len(env.ours()) == len(ALL_FLOWS)
    env.fabric.dpid = DPID
    env.fabric.flows, env.fabric.groups = set(ALL_FLOWS), set(ALL_GROUPS)
    env.app.audit(DPID)                                 # the flows came behind its back: read them
    r = env.reconcile()
    assert (r.outcome, r.changes, r.unchanged, r.read) == ("noop", 0, len(ALL_FLOWS), "switch")


def test_changes_are_diffed_against_what_was_committed_and_audits_repair(env):
    """After a commit the switch is not read again for the next change; an
    audit reads it and repairs a flow deleted behind the controller's back."""
    env.fabric.flows, env.fabric.groups = set(ALL_FLOWS), set(ALL_GROUPS)
    r = env.reconcile()
    assert r.outcome == "committed"
    r = env.reconcile()
    assert (r.outcome, r.read) == ("noop", "cache")
    env.ovs.ofctl("del-flows", "--strict", "table=20,priority=0")   # behind its back
    r = env.reconcile()
    assert (r.outcome, r.read) == ("noop", "cache")     # not seen until audited
    env.app.audit(DPID)
    r = env.reconcile()
    assert (r.outcome, r.read, r.added) == ("committed", "switch", 1)



@needs_ovs
def test_periodic_audit_reads_each_switch_and_repairs(env):
    """Nobody calls audit(): the audit loop reads the switch again by itself (one switch
    at a time, spread over the interval) and puts back a flow deleted behind its back."""
    env.fabric.flows, env.fabric.groups = set(ALL_FLOWS), set(ALL_GROUPS)
    assert env.reconcile().outcome == "committed"
    ofapp.hub.kill(env.app._auditor)
    env.app.audit_interval = 0.3
    env.app._auditor = ofapp.hub.spawn(env.app._audit_loop)
    env.ovs.ofctl("del-flows", "--strict", "table=20,priority=0")   # behind its back
    wait_until(lambda: len(env.ours()) == len(ALL_FLOWS), 30, what="the audit's repair")
    r = env.app.result(DPID)
    assert (r.read, r.added) == ("switch", 1)


@needs_ovs
def test_listener_bound_by_the_caller_serves_switches(env):
    """netmaster binds the OpenFlow port before its slow start (controller/main.py) and
    hands it to start(): a switch that connected meanwhile waits in the backlog and is
    served once the app runs; stop() closes it, so the port can be bound again."""
    env.fabric.flows, env.fabric.groups = set(ALL_FLOWS), set(ALL_GROUPS)
    env.stop_controller()
    sock = ofserver.listen(env.ovs.root_ip, env.port)
    # the kernel completes the switch's tcp connection; nobody accepts it yet
    wait_until(lambda: subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{env.port} )"],
                                      capture_output=True, text=True).stdout.strip(),
               30, what="the switch's connection in the backlog")
    env.handle = ofserver.start(env.fabric, env.ovs.root_ip, env.port, sock=sock)
    wait_until(lambda: DPID in env.app.datapaths and env.app.idle() and env.app.result(DPID) is not None,
               30, what="the switch served")
    assert env.app.result(DPID).outcome == "committed"
    assert len(env.ours()) == len(ALL_FLOWS)
    env.stop_controller()
    ofserver.listen(env.ovs.root_ip, env.port).close()     # closed by stop(): free again
    env.start_controller()


def _meters(env) -> str:
    return " ".join(env.ovs.ofctl("dump-meters").split())


@needs_ovs
def test_deny_log_meter_set_on_connect_modified_and_restored(env, caplog):
    """The meter a logged deny's flow names exists before that flow is sent; a
    controller with another rate modifies it; an audit brings back a meter
    deleted behind its back (which took the flows naming it along)."""
    r = _install(env, ALL_FLOWS, ALL_GROUPS)            # ALL_FLOWS has a meter:1 flow
    assert r.outcome == "committed" and r.rejected == []
    assert "meter=1 pktps burst bands= type=drop rate=100 burst_size=100" in _meters(env)
    assert any("event=meter_set" in r.getMessage() and "command=add" in r.getMessage()
               for r in caplog.get_records("setup") + caplog.records)     # on connect
    caplog.clear()
    env.app.audit(DPID)                                 # the meter is read, found right, left alone
    assert env.reconcile().outcome == "noop"
    assert "event=meter_set" not in caplog.text and "event=of_error" not in caplog.text
    env.stop_controller()
    env.handle = ofserver.start(env.fabric, env.ovs.root_ip, env.port, deny_log_rate=7, deny_log_burst=3)
    wait_until(lambda: env.app.idle() and env.app.result(DPID) is not None, 60, what="reconnect")
    assert env.app.result(DPID).outcome == "noop"
    assert "meter=1 pktps burst bands= type=drop rate=7 burst_size=3" in _meters(env)
    assert "event=meter_set" in caplog.text and "command=modify" in caplog.text
    assert "event=of_error" not in caplog.text
    env.ovs.ofctl("del-meter", "meter=1")
    assert len(env.ours()) == len(ALL_FLOWS) - 1           # OVS removed the flow that named it
    env.app.audit(DPID)
    r = env.reconcile()
    assert (r.outcome, r.added, r.rejected) == ("committed", 1, [])
    assert "rate=7 burst_size=3" in _meters(env) and len(env.ours()) == len(ALL_FLOWS)

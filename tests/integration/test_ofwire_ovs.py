"""controller.ofwire against a real, private Open vSwitch: flows installed by
ovs-ofctl (OVS's own encoding, not ours), read back by the controller with the
fast decoder and with os-ken's full parse; both must agree flow for flow, and a
reconcile of the same desired set must be a noop that used the fast path.

Run:    .venv/bin/python -m pytest tests/integration/test_ofwire_ovs.py -v
Bench:  .venv/bin/python -m tests.integration.test_ofwire_ovs --flows 50000
"""
import os

os.environ.setdefault("OSKEN_HUB_TYPE", "eventlet")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

from controller import ofmsg, ofserver, ofwire  # noqa: E402
from flows.engine import compile_snapshot  # noqa: E402
from flows.entry import COOKIE_MARK as M, FlowEntry  # noqa: E402
from tests.procs import linked_ovs  # noqa: E402
from tests.unit import scale, topo  # noqa: E402
from tests.unit.flow_catalogue import ALL_FLOWS, ALL_GROUPS, DPID  # noqa: E402
from topologies.common import free_port, wait_until  # noqa: E402

LOG = logging.getLogger(__name__)

needs_ovs = pytest.mark.skipif(shutil.which("ovs-vswitchd") is None or os.geteuid() != 0,
                               reason="needs Open vSwitch and root")


class Fabric:
    """Desired set for one switch; None (touch nothing) until `want` is called,
    so the flows ovs-ofctl installs are not removed by the connect reconcile."""

    def __init__(self):
        self.dpid, self.flows, self.groups = None, set(), set()

    def want(self, flows, groups=()):
        self.flows, self.groups, self.dpid = set(flows), set(groups), DPID

    def desired(self, dpid):
        return (set(self.flows), set(self.groups)) if dpid == self.dpid else None

    def switch_up(self, dpid, ports):
        pass

    def port_changed(self, dpid, name, ofport):
        pass

    def switch_down(self, dpid):
        pass


class Lab:
    """A private OVS (own netns, tests/procs.linked_ovs) with the controller connected."""

    def __init__(self):
        self.ovs = None
        self.fabric = Fabric()
        self.handle = None

    def start(self):
        self.ovs = linked_ovs("fr", bridge=f"nwfr{os.getpid() % 100000}")
        port = free_port()
        self.handle = ofserver.start(self.fabric, self.ovs.root_ip, port)
        self.ovs.add_bridge(DPID, f"tcp:{self.ovs.root_ip}:{port}")
        wait_until(lambda: DPID in self.app.datapaths, 30, what="switch connect")
        wait_until(self.app.idle, 30, what="connect reconcile")
        return self

    def stop(self):
        try:
            if self.handle is not None:
                self.handle.stop()
        finally:
            if self.ovs is not None:
                self.ovs.stop()

    @property
    def app(self):
        return self.handle.app

    def ofctl_install(self, flows, groups=()) -> float:
        """add-groups then add-flows, each one bundle; returns seconds for the flows."""
        seconds = 0.0
        meters = sorted({a[1] for f in flows for a in f.actions if a[0] == "meter"})
        for m in meters:          # a flow may name only a meter that exists (the app may have made it)
            self.ovs.ofctl("add-meter", f"meter={m},pktps,burst,band=type=drop,rate=100,burst_size=100",
                           check=False)
        for kind, items in (("add-groups", groups), ("add-flows", flows)):
            if not items:
                continue
            path = os.path.join(self.ovs.dir, kind)
            with open(path, "w") as f:
                f.writelines(x.to_ofctl() + "\n" for x in items)
            t = time.perf_counter()
            self.ovs.ofctl(kind, path, "--bundle")
            seconds = time.perf_counter() - t
        return seconds

    def read(self, fast: bool):
        """_read_switch with the raw body installed (fast) or os-ken's full parse (slow)."""
        if not fast:
            ofwire.uninstall()
        try:
            return self.app._read_switch(self.app.datapaths[DPID])
        finally:
            ofwire.install()

    def reconcile_from_switch(self):
        """One reconcile that reads the switch (not the cache); returns (result, seconds)."""
        wait_until(self.app.idle, 60, what="idle")
        self.app.switch(DPID).held = None
        t = time.perf_counter()
        r = self.app.reconcile(DPID)
        return r, time.perf_counter() - t


@pytest.fixture
def lab(caplog):
    caplog.set_level(logging.INFO, logger="controller.ofapp")
    lab = Lab()
    try:
        yield lab.start()
    finally:
        lab.stop()


def _check_same_and_noop(lab, flows, groups):
    fast = lab.read(fast=True)
    slow = lab.read(fast=False)
    held_fast, groups_fast, stale_fast = fast
    held_slow, groups_slow, stale_slow = slow
    assert stale_fast == stale_slow == []
    assert groups_fast == groups_slow
    assert held_fast.keys() == held_slow.keys()
    for k in held_slow:                         # flow for flow, for a readable failure
        assert held_fast[k] == held_slow[k]
    assert sorted(held_fast.values()) == sorted(flows)      # as compiled: no normaliser

    lab.fabric.want(flows, groups)
    before = dict(ofwire.COUNTS)
    r, _ = lab.reconcile_from_switch()
    assert (r.outcome, r.read, r.changes, r.rejected) == ("noop", "switch", 0, [])
    assert r.unchanged == len(flows)
    # ct with a nat (services, egress: a few per tenant) is the slow path's, on purpose
    natted = sum(1 for f in flows if any(a[0] == "ct" and "nat" in dict(a[1]) for a in f.actions))
    assert ofwire.COUNTS["fast"] - before["fast"] == len(flows) - natted
    assert ofwire.COUNTS["slow"] - before["slow"] == natted


@needs_ovs
def test_compiled_snapshot_fast_read_equals_slow_read(lab):
    flows, groups = compile_snapshot(scale.scale_snapshot(300, 30, 120, n_hosts=3))["h0"]
    assert len(flows) > 2000
    lab.ofctl_install(flows, groups)
    _check_same_and_noop(lab, flows, groups)


@needs_ovs
def test_compiled_dual_stack_snapshot_reads_back_as_compiled(lab):
    """IPv6 flows as compiled (neighbour discovery answers, routes, group classification, rules
    of both families) read back equal to the desired set: no reconcile rewrites them."""
    flows, groups = compile_snapshot(topo.policy_snapshot())["h1"]
    assert sum(1 for f in flows if any(n.startswith(("ipv6_", "nd_")) for n, _v, _m in f.match)) > 20
    lab.ofctl_install(flows, groups)
    _check_same_and_noop(lab, flows, groups)


def _every_kind_snapshot():
    """topo's dual-stack policy snapshot, plus a load-balanced service and a logged deny rule,
    so the compiler makes every kind of flow it has: base, endpoint, network flood groups,
    rule conjunctions, service select group with ct nat, host NAT, the deny-log meter."""
    from dataclasses import replace
    from flows.snapshot import Service
    snap = topo.policy_snapshot()
    eps = tuple(replace(e, labels=("app=web",)) if e.endpoint_id in ("b2", "b3") else e
                for e in snap.endpoints)
    rules = tuple(replace(r, log=True) if r.action == "deny" else r for r in snap.rules)
    svc = Service("blue", "web-svc", "web", "10.1.1.100", ((80, 8080, "tcp"),), ("app=web",), 1)
    return replace(snap, endpoints=eps, rules=rules, services=(svc,))


@needs_ovs
def test_controller_written_flows_read_back_as_compiled_and_restart_rewrites_nothing(lab):
    """Issue 12's one flow form, end to end on a real switch: every kind of flow the compiler
    makes is written by the controller (the codec's fast encoder, one bundle), dumped back
    through the codec (fast decoder, and os-ken's parse) and equal to the compiled set as it
    is, with no normaliser; a new controller process state (restart) reading the switch
    rewrites 0 flows and 0 groups."""
    from flows.pipeline import DENY_LOG_METER, T, parse_cookie
    flows, groups = compile_snapshot(_every_kind_snapshot())["h1"]
    kinds = {parse_cookie(f.cookie)[0].name for f in flows}
    assert kinds >= {"BASE", "TENANT", "NETWORK", "ENDPOINT", "GROUP", "RULE", "SERVICE"}, kinds
    acts = {a[0] for f in flows for a in f.actions}
    assert acts >= {"conjunction", "group", "meter", "ct", "move", "set_field", "write_metadata"}, acts
    assert any(a[0] == "ct" and "nat" in dict(a[1]) for f in flows for a in f.actions)
    assert any(f.table == T.HOST_NAT for f in flows)
    assert any(a == ("meter", DENY_LOG_METER) for f in flows for a in f.actions)
    assert {g.group_type for g in groups} == {"all", "select"}
    assert any(n.startswith(("ipv6_", "nd_")) for f in flows for n, _v, _m in f.match)

    wait_until(lab.app.idle, 60, what="idle")
    before = lab.app.result(DPID)
    lab.fabric.want(flows, groups)
    lab.app.request_reconcile(DPID)
    wait_until(lambda: lab.app.result(DPID) is not before and lab.app.idle(), 60,
               what="first write")
    r = lab.app.result(DPID)
    assert (r.outcome, r.rejected, r.added, r.groups_added) == ("committed", [], len(flows), len(groups))

    for fast in (True, False):
        held, groups_held, stale = lab.read(fast=fast)
        assert stale == []
        assert held == {f.key: f for f in flows}                  # as compiled, field for field
        assert set(groups_held.values()) == set(groups)

    # a restart: a new controller holds nothing in memory, reads the switch, changes nothing
    lab.handle.stop()
    lab.handle = None
    port = free_port()
    lab.handle = ofserver.start(lab.fabric, lab.ovs.root_ip, port)
    lab.ovs.vsctl("set-controller", lab.ovs.bridge, f"tcp:{lab.ovs.root_ip}:{port}")
    wait_until(lambda: lab.app.result(DPID) is not None, 60, what="reconnect reconcile")
    wait_until(lab.app.idle, 60, what="idle")
    r = lab.app.result(DPID)
    assert (r.outcome, r.read, r.changes, r.rejected) == ("noop", "switch", 0, []), r
    assert r.unchanged == len(flows)


@needs_ovs
def test_every_entry_kind_fast_read_equals_slow_read(lab):
    lab.ofctl_install(ALL_FLOWS, ALL_GROUPS)
    _check_same_and_noop(lab, ALL_FLOWS, ALL_GROUPS)


@needs_ovs
def test_unknown_flow_falls_back_per_flow(lab):
    """A marked flow with an action we never install: slow path for that one
    flow only (unparseable -> deleted as stale), fast for the rest."""
    lab.ofctl_install(ALL_FLOWS[:3])
    lab.ovs.ofctl("add-flow", f"cookie={M | 99:#x},table=5,priority=1,actions=resubmit(,6)")
    before = dict(ofwire.COUNTS)
    held, _groups, stale = lab.read(fast=True)
    assert len(held) == 3 and [(s.table_id, s.priority) for s in stale] == [(5, 1)]
    assert ofwire.COUNTS["fast"] - before["fast"] == 3
    assert ofwire.COUNTS["slow"] - before["slow"] == 1
    lab.fabric.want(ALL_FLOWS[:3])
    r, _ = lab.reconcile_from_switch()
    assert (r.outcome, r.deleted, r.unchanged) == ("committed", 1, 3)


# ---------------------------------------------------------------- bench

def l2_flows(n: int) -> list:
    """L2-like flows in table 40: distinct eth_dst + metadata (network), set
    tun_dst/tun_id, output to the VTEP port 100."""
    out = []
    for i in range(n):
        net = i % 64
        mac = "02:00:" + ":".join(f"{b:02x}" for b in i.to_bytes(4, "big"))
        out.append(FlowEntry.make(
            40, 100, {"eth_dst": mac, "metadata": (net << 32, 0xFFFF << 32)},
            [("set_field", "tun_dst", f"192.168.{(i >> 8) & 255}.{i & 255 or 1}"),
             ("set_field", "tun_id", 10000 + net), ("output", 100)],
            M | (1 << 40) | i))
    return out


def bench(n: int, rounds: int = 3) -> dict:
    lab = Lab().start()
    try:
        flows = l2_flows(n)
        add = lab.ofctl_install(flows)
        dumps = []
        for _ in range(rounds):               # the floor: OVS producing and sending the dump
            t = time.perf_counter()
            subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows",
                            f"unix:{lab.ovs.dir}/{lab.ovs.bridge}.mgmt"],
                           env=lab.ovs.env, stdout=subprocess.DEVNULL, check=True)
            dumps.append(time.perf_counter() - t)
        lab.fabric.want(flows)
        out = {"flows": n, "ofctl_add_s": add, "ofctl_dump_s": min(dumps)}
        paused = ofwire.gc_paused
        for mode in ("slow", "fast", "slow", "fast"):
            if mode == "slow":            # exactly the code before ofwire: full parse, GC on
                ofwire.uninstall()
                ofwire.gc_paused = contextlib.nullcontext
            try:
                t = time.perf_counter()
                held, _g, _s = lab.app._read_switch(lab.app.datapaths[DPID])
                read = time.perf_counter() - t
                assert len(held) == n
                r, total = lab.reconcile_from_switch()
            finally:
                ofwire.install()
                ofwire.gc_paused = paused
            assert (r.outcome, r.changes, r.unchanged) == ("noop", 0, n), r
            key = f"{mode}_"
            out[key + "read_s"] = min(read, out.get(key + "read_s", 1e9))
            out[key + "reconcile_s"] = min(total, out.get(key + "reconcile_s", 1e9))
        return out
    finally:
        lab.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="unchanged-reconcile bench, fast vs slow read")
    ap.add_argument("--flows", type=int, default=50000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    res = bench(args.flows)
    LOG.warning("bench %s", " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                     for k, v in res.items()))

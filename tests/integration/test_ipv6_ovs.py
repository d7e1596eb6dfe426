"""IPv6 through real Open vSwitch and real Linux neighbours: the flows of flows/nd.py,
routing and the spoof guard, with kernels doing neighbour discovery.

One private OVS (userspace datapath) in its own namespace holds host h1's compiled flows
of the dual-stack test topology (tests/unit/topo.py); b1 and b3 (blue web) and d2 (blue
db) are network namespaces plugged by veths, with their IPv6 address (nodad) and a
default route via their gateway6. Every neighbour they learn is answered by flows.
Skipped where ovs-vswitchd is missing or we are not root.
"""
from __future__ import annotations

import os
import re
import shutil

import pytest

from flows.engine import compile_snapshot
from flows.pipeline import ROUTER_MAC
from tests.procs import Lab
from tests.unit.topo import EP, snapshot
from topologies.ovs import run

pytestmark = pytest.mark.skipif(
    not shutil.which("ovs-vswitchd") or not shutil.which("ip") or os.geteuid() != 0,
    reason="needs Open vSwitch and root")

SNAP = snapshot()
PLUGGED = ("b1", "b3", "d2")
GW6 = {"web": "2001:db8:1::ff", "db": "2001:db8:2::ff"}


@pytest.fixture(scope="module")
def lab():
    with Lab(f"nwv6-{os.getpid()}") as lab:
        h = lab.host("h1")
        h.vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev",
                "protocols=OpenFlow13", "fail_mode=secure")
        ns = {}
        for eid in PLUGGED:
            e = EP[eid]
            ns[eid] = lab.netns_add(f"{lab.prefix}-{eid}")
            side = f"v6{eid}{os.getpid() % 10000}"
            run("ip", "link", "add", side, "type", "veth", "peer", "name", "eth0", netns=h.netns)
            run("ip", "link", "set", "eth0", "netns", ns[eid], netns=h.netns)
            run("ip", "link", "set", side, "up", netns=h.netns)
            h.vsctl("add-port", "br-int", side, "--", "set", "interface", side,
                    f"ofport_request={SNAP.ofports['h1'][e.port_name]}")
            # the MAC before the link comes up: the kernel derives its link-local from it
            for cmd in (("ip", "link", "set", "eth0", "address", e.mac), ("ip", "link", "set", "eth0", "up"),
                        ("ip", "-6", "addr", "add", f"{e.ip6}/64", "dev", "eth0", "nodad"),
                        ("ip", "-6", "route", "add", "default", "via", GW6[e.network], "dev", "eth0"),
                        ("ethtool", "-K", "eth0", "tx", "off")):
                run(*cmd, netns=ns[eid])
        flows, groups = compile_snapshot(SNAP)["h1"]
        for kind, items in (("add-groups", groups), ("add-flows", flows)):
            path = f"{h.dir}/{kind}.txt"
            with open(path, "w") as fh:
                fh.write("\n".join(x.to_ofctl() for x in sorted(items)) + "\n")
            h.ofctl(kind, path, opts=("--bundle",))
        yield ns


def ping6(ns, dst, src=None):
    args = ["ping", "-6", "-c1", "-W1", dst] + (["-I", src] if src else [])
    return run(*args, netns=ns, check=False)


def neighbour(ns, addr) -> str:
    out = run("ip", "-6", "neigh", "show", addr, netns=ns).stdout
    m = re.search(r"lladdr (\S+)", out)
    return m[1] if m else ""


def test_gateway6_resolved_to_the_router_mac_and_answers_ping(lab):
    r = ping6(lab["b1"], GW6["web"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert neighbour(lab["b1"], GW6["web"]) == ROUTER_MAC
    assert "router" in run("ip", "-6", "neigh", "show", GW6["web"], netns=lab["b1"]).stdout


def test_same_network_neighbours_resolved_by_flows(lab):
    r = ping6(lab["b1"], EP["b3"].ip6)
    assert r.returncode == 0, r.stdout + r.stderr
    assert neighbour(lab["b1"], EP["b3"].ip6) == EP["b3"].mac
    assert neighbour(lab["b3"], EP["b1"].ip6) == EP["b1"].mac     # b3 solicited b1 to reply


def test_routed_to_another_network_with_hop_limit_decremented(lab):
    r = ping6(lab["b1"], EP["d2"].ip6)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ttl=63" in r.stdout                 # one router hop (the reply's, d2 -> b1)


def test_spoofed_source_never_gets_through(lab):
    run("ip", "-6", "addr", "add", "2001:db8:1::99/64", "dev", "eth0", "nodad", netns=lab["b1"])
    try:
        assert ping6(lab["b1"], EP["b3"].ip6, src="2001:db8:1::99").returncode != 0
    finally:
        run("ip", "-6", "addr", "del", "2001:db8:1::99/64", "dev", "eth0", netns=lab["b1"])

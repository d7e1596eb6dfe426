"""Real packets through two OVS hosts joined by VXLAN (and a VLAN uplink wire).

h1 and h2 are namespaces each running a private OVS (userspace datapath);
an underlay veth joins their br-phy bridges (192.168.0.1/.2, the VTEPs of
topo.py).  Endpoints b1 (h1), b2 and d1 (h2) are namespaces on veths into
br-int, v1/v2 (network 'vl', VLAN 100) talk through the hosts' eth1 uplinks,
joined by a veth.  Pings test proxy ARP + tunnel, routing, VLAN and stateful policy.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

import pytest

from flows.engine import compile_snapshot
from flows.pipeline import TUNNEL_PORT
from flows.snapshot import Rule
from tests.procs import Lab
from tests.unit.topo import EP, VTEP, snapshot, with_policies
from topologies.ovs import run

pytestmark = pytest.mark.skipif(
    not shutil.which("ovs-vswitchd") or not shutil.which("ping") or os.geteuid() != 0,
    reason="needs Open vSwitch, ping and root")

EPS = tuple(EP[e] for e in ("b1", "b2", "d1", "v1", "v2"))
GW = {"web": "10.1.1.254", "db": "10.1.2.254", "vl": "10.1.3.254"}


def _load(lab: Lab, snap) -> None:
    for label, (flows, groups) in compile_snapshot(snap).items():
        if label not in lab.hosts:
            continue
        h = lab.hosts[label]
        d = tempfile.mkdtemp(dir=h.dir)
        for kind, items in (("groups", groups), ("flows", flows)):
            with open(f"{d}/{kind}", "w") as fh:
                fh.write("\n".join(x.to_ofctl() for x in sorted(items)) + "\n")
        h.ofctl("del-flows")
        h.ofctl("del-groups")
        h.ofctl("add-groups", f"{d}/groups")
        h.ofctl("add-flows", f"{d}/flows", opts=("--bundle",))


@contextlib.contextmanager
def vxlan_lab():
    lab = Lab()
    try:
        snap = snapshot(endpoints=EPS)
        under = f"u{os.getpid() % 100000}"
        for i, label in enumerate(("h1", "h2")):
            h = lab.host(label)
            h.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev")
            h.vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev",
                    "protocols=OpenFlow13", "fail_mode=secure")
            h.vsctl("add-port", "br-int", "vxlan0", "--", "set", "interface", "vxlan0", "type=vxlan",
                    "options:remote_ip=flow", "options:key=flow", f"ofport_request={TUNNEL_PORT}")
        h1, h2 = lab.hosts["h1"], lab.hosts["h2"]
        h1.ns("ip", "link", "add", under + "a", "type", "veth", "peer", "name", under + "b", "netns", h2.netns)
        for label, dev in (("h1", under + "a"), ("h2", under + "b")):
            h = lab.hosts[label]
            h.ns("ip", "link", "set", dev, "up")
            h.vsctl("add-port", "br-phy", dev)
            h.ns("ip", "addr", "add", f"{VTEP[label]}/24", "dev", "br-phy")
            h.ns("ip", "link", "set", "br-phy", "up")
        # the VLAN wire: both hosts' uplink (Host.uplink_port 'eth1') on one veth
        h1.ns("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1", "netns", h2.netns)
        for label, h in lab.hosts.items():
            h.ns("ip", "link", "set", "eth1", "up")
            h.vsctl("add-port", "br-int", "eth1", "--", "set", "interface", "eth1",
                    f"ofport_request={snap.ofports[label]['eth1']}")
        for e in EPS:
            h = lab.hosts[e.host]
            ns = lab.netns_add(f"{lab.prefix}-{e.endpoint_id}")
            h.ns("ip", "link", "add", e.port_name, "type", "veth", "peer", "name", "eth0", "netns", ns)
            h.ns("ip", "link", "set", e.port_name, "up")
            h.vsctl("add-port", "br-int", e.port_name, "--", "set", "interface", e.port_name,
                    f"ofport_request={snap.ofports[e.host][e.port_name]}")
            for cmd in (("ip", "link", "set", "eth0", "address", e.mac),
                        ("ip", "link", "set", "eth0", "mtu", "1450"),
                        ("ip", "addr", "add", f"{e.ip}/24", "dev", "eth0"),
                        ("ip", "link", "set", "eth0", "up"), ("ip", "link", "set", "lo", "up"),
                        ("ip", "route", "add", "default", "via", GW[e.network])):
                run(*cmd, netns=ns)
            run("ethtool", "-K", "eth0", "tx", "off", netns=ns, check=False)
        _load(lab, snap)
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module")
def lab():
    with vxlan_lab() as lab_:
        yield lab_


def ping(lab: Lab, src: str, dst_ip: str) -> bool:
    """True when any of 3 echoes is answered: the userspace datapath drops the
    first packet towards a VTEP whose MAC it is still resolving (tnl/arp)."""
    r = run("ping", "-c", "3", "-i", "0.3", "-W", "1", dst_ip, netns=lab.ns_of(src), check=False)
    return r.returncode == 0


def test_ping_across_hosts_same_network(lab):
    assert ping(lab, "b1", EP["b2"].ip)
    assert ping(lab, "b2", EP["b1"].ip)


def test_ping_routed_across_hosts(lab):
    assert ping(lab, "b1", EP["d1"].ip)


def test_ping_vlan_network_over_uplink(lab):
    assert ping(lab, "v1", EP["v2"].ip)


def test_ping_routed_from_vxlan_into_vlan_network(lab):
    assert ping(lab, "b1", EP["v2"].ip)
    assert ping(lab, "v2", EP["b1"].ip)


def test_stateful_policy(lab):
    rules = [Rule("blue", "p", "r1", "in", 10, "deny", protocol="icmp", from_group="gweb", rule_uid=1)]
    snap = with_policies(rules, {"gdb": ["p"]})
    snap = snapshot(endpoints=EPS, groups=snap.groups, rules=snap.rules)
    _load(lab, snap)
    try:
        assert not ping(lab, "b1", EP["d1"].ip)       # new icmp into gdb from gweb: denied
        assert ping(lab, "b1", EP["b2"].ip)           # gweb -> gweb untouched
        assert ping(lab, "d1", EP["b1"].ip)           # gdb opens it: the reply is +est
    finally:
        _load(lab, snapshot(endpoints=EPS))

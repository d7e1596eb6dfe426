"""A small fabric used by the unit tests.

Two tenants, blue (vrf 1) and red (vrf 300), each with a network 'web'
10.1.1.0/24 whose endpoints even share IPs and MACs (Contiv derives MACs
from IPs); blue also has 'db' (vxlan) and 'vl' (vlan 100).  Hosts h1, h2, h3.
Dual stack: both 'web' networks are 2001:db8:1::/64 too (the same subnet in both
tenants) and 'db' 2001:db8:2::/64, gateways ::ff; 'vl' is IPv4 only.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from flows.engine import compile_snapshot
from flows.fabric import Fabric
from flows.snapshot import Endpoint, Group, Host, Network, Rule, Snapshot, Tenant

VTEP = {"h1": "192.168.0.1", "h2": "192.168.0.2", "h3": "192.168.0.3"}
TENANTS = (Tenant("blue", 1), Tenant("red", 300))
NETWORKS = (
    Network("blue", "web", "vxlan", 5001, "10.1.1.0/24", "10.1.1.254", 1, "2001:db8:1::/64", "2001:db8:1::ff"),
    Network("blue", "db", "vxlan", 5002, "10.1.2.0/24", "10.1.2.254", 2, "2001:db8:2::/64", "2001:db8:2::ff"),
    Network("red", "web", "vxlan", 6001, "10.1.1.0/24", "10.1.1.254", 3, "2001:db8:1::/64", "2001:db8:1::ff"),
    Network("blue", "vl", "vlan", 100, "10.1.3.0/24", "10.1.3.254", 4),
)
SUBNET = {("blue", "web"): "10.1.1", ("blue", "db"): "10.1.2", ("red", "web"): "10.1.1",
          ("blue", "vl"): "10.1.3"}
SUBNET6 = {("blue", "web"): "2001:db8:1", ("blue", "db"): "2001:db8:2", ("red", "web"): "2001:db8:1"}


def mac_of(ip: str) -> str:
    return "02:02:" + ":".join(f"{int(o):02x}" for o in ip.split("."))


def ep(eid: str, tenant: str, net: str, last: int, host: str, group: str = "") -> Endpoint:
    ip = f"{SUBNET[(tenant, net)]}.{last}"
    ip6 = f"{SUBNET6[(tenant, net)]}::{last:x}" if (tenant, net) in SUBNET6 else ""
    return Endpoint(eid, tenant, net, group, ip, mac_of(ip), host, "p-" + eid, ip6=ip6)


ENDPOINTS = (
    ep("b1", "blue", "web", 1, "h1", "gweb"),
    ep("b3", "blue", "web", 3, "h1", "gweb"),
    ep("b2", "blue", "web", 2, "h2", "gweb"),
    ep("b4", "blue", "web", 4, "h3", "gweb"),
    ep("d1", "blue", "db", 1, "h2", "gdb"),
    ep("d2", "blue", "db", 2, "h1", "gdb"),
    ep("r1", "red", "web", 1, "h1"),
    ep("r2", "red", "web", 2, "h2"),
    ep("v1", "blue", "vl", 1, "h1"),
    ep("v2", "blue", "vl", 2, "h2"),
)
EP = {e.endpoint_id: e for e in ENDPOINTS}
GROUPS = (Group("blue", "gweb", "web", 101), Group("blue", "gdb", "db", 102),
          Group("blue", "gother", "web", 103))
HOSTS = tuple(Host(h, ip, i + 1, "eth1") for i, (h, ip) in enumerate(sorted(VTEP.items())))
UPLINK = 10


def ofports(endpoints: Iterable[Endpoint]) -> dict:
    ports: dict = {h: {"eth1": UPLINK, "vxlan0": 100} for h in VTEP}
    for e in endpoints:
        ports[e.host][e.port_name] = len(ports[e.host]) - 1
    return ports


def snapshot(endpoints=ENDPOINTS, groups=GROUPS, rules: tuple = ()) -> Snapshot:
    return Snapshot(TENANTS, NETWORKS, tuple(endpoints), HOSTS, tuple(groups), tuple(rules),
                    ofports(endpoints))


def with_policies(rules: Iterable[Rule], attach: dict) -> Snapshot:
    """attach: group name -> policy names."""
    groups = tuple(replace(g, policies=tuple(attach.get(g.name, ()))) for g in GROUPS)
    return snapshot(groups=groups, rules=tuple(rules))


def fabric(snap: Snapshot | None = None) -> Fabric:
    snap = snap or snapshot()
    return Fabric.build(snap, compile_snapshot(snap))


def ip_pkt(src: Endpoint, dst_ip: str, dst_mac: str | None = None, proto: str = "tcp",
           dport: int = 80, sport: int = 40000, ttl: int = 64, **kw) -> dict:
    p = {"eth_src": src.mac, "eth_dst": dst_mac or mac_of(dst_ip), "eth_type": 0x0800,
         "ip_src": src.ip, "ip_dst": dst_ip, "nw_ttl": ttl}
    if proto == "tcp":
        p.update(ip_proto=6, tcp_src=sport, tcp_dst=dport)
    elif proto == "udp":
        p.update(ip_proto=17, udp_src=sport, udp_dst=dport)
    elif proto == "icmp":
        p.update(ip_proto=1, icmp_type=8)
    p.update(kw)
    return p


def ip6_pkt(src, dst_ip6, dst_mac=None, proto="tcp", dport=80, sport=40000, hlim=64, **kw):
    p = {"eth_src": src.mac, "eth_dst": dst_mac, "eth_type": 0x86DD, "ipv6_src": src.ip6,
         "ipv6_dst": dst_ip6, "nw_ttl": hlim}
    if proto == "tcp":
        p.update(ip_proto=6, tcp_src=sport, tcp_dst=dport)
    elif proto == "udp":
        p.update(ip_proto=17, udp_src=sport, udp_dst=dport)
    elif proto == "icmp6":
        p.update(ip_proto=58, icmpv6_type=128, icmpv6_code=0)
    p.update(kw)
    return p


def solicit(src, target, src_ip=None, **kw):
    """A neighbour solicitation as Linux sends it: to the target's solicited-node group."""
    low = target.split(":")[-1].zfill(6)[-6:]
    p = {"eth_src": src.mac, "eth_dst": "33:33:ff:" + ":".join([low[0:2], low[2:4], low[4:6]]),
         "eth_type": 0x86DD, "ipv6_src": src.ip6 if src_ip is None else src_ip,
         "ipv6_dst": "ff02::1:ff" + low[:2] + ":" + low[2:], "nw_ttl": 255, "ip_proto": 58,
         "icmpv6_type": 135, "icmpv6_code": 0, "nd_target": target, "nd_sll": src.mac,
         "nd_reserved": 0, "nd_options_type": 1}
    p.update(kw)
    return p


def arp_req(src: Endpoint, tpa: str, **kw) -> dict:
    p = {"eth_src": src.mac, "eth_dst": "ff:ff:ff:ff:ff:ff", "eth_type": 0x0806, "arp_op": 1,
         "arp_sha": src.mac, "arp_spa": src.ip, "arp_tha": "00:00:00:00:00:00", "arp_tpa": tpa}
    p.update(kw)
    return p


def send(fab: Fabric, eid: str, pkt: dict, **kw):
    e = EP[eid]
    return fab.send(e.host, e.port_name, pkt, **kw)


def at(eid: str) -> tuple:
    return (EP[eid].host, EP[eid].port_name)


# A policy set exercised by the OVS cross-check and the dump parser tests.
POLICY_RULES = (
    Rule("blue", "p", "r1", "in", 10, "deny", protocol="tcp", port=5432, from_group="gweb", rule_uid=1),
    Rule("blue", "q", "r2", "out", 20, "allow", to_network="db", rule_uid=2),
    Rule("blue", "q", "r3", "out", 5, "deny", to_ip="10.1.2.1-9", protocol="udp", rule_uid=3),
)


def policy_snapshot() -> Snapshot:
    return with_policies(POLICY_RULES, {"gdb": ["p"], "gweb": ["q"]})

"""Dual stack through the simulated fabric: spoof guard, neighbour discovery answered
by flows, routing inside a tenant only, policy per IP family, multicast.

Topology (topo.py): blue web 2001:db8:1::/64 (b1, b3 on h1, b2 on h2, b4 on h3), blue db
2001:db8:2::/64 (d1 on h2, d2 on h1), red web 2001:db8:1::/64 too (r1 on h1, r2 on h2);
gateways ::ff; blue vl is IPv4 only (v1, v2).
"""
import pytest

from flows.nd import link_local
from flows.pipeline import ROUTER_MAC, T
from flows.snapshot import Rule
from tests.unit.topo import EP, at, fabric, send, with_policies
from tests.unit.topo import ip6_pkt as ip6, solicit

FAB = fabric()
B1, B2, B3, D1 = EP["b1"], EP["b2"], EP["b3"], EP["d1"]
GW6 = "2001:db8:1::ff"
SOLICITED_OVERRIDE, ROUTER_SOLICITED_OVERRIDE = 0x60000000, 0xE0000000


def to(src, dst, **kw):
    """src -> dst over IPv6, through the router when they are in different networks."""
    s, d = EP[src], EP[dst]
    return ip6(s, d.ip6, d.mac if (s.tenant, s.network) == (d.tenant, d.network) else ROUTER_MAC, **kw)


def answer(ft, eid="b1"):
    (pkt,) = ft.at(*at(eid))
    return pkt


# ---------------------------------------------------------------- neighbour discovery

@pytest.mark.parametrize("target", ["b3", "b2", "b4"], ids=["local", "remote-h2", "remote-h3"])
def test_solicitation_for_an_endpoint_answered_with_its_mac(target):
    t = EP[target]
    ft = send(FAB, "b1", solicit(B1, t.ip6))
    na = answer(ft)
    assert ft.wire == [] and ft.endpoints() == [at("b1")]     # never flooded, never sent on
    assert (na["icmpv6_type"], na["nd_reserved"], na["nd_options_type"]) == (136, SOLICITED_OVERRIDE, 2)
    assert na["nd_tll"] == na["eth_src"] == t.mac and na["eth_dst"] == B1.mac
    assert (na["ipv6_src"], na["ipv6_dst"], na["nd_target"]) == (t.ip6, B1.ip6, t.ip6)
    assert na["nw_ttl"] == 255                                  # ND needs hop limit 255: kept


def test_solicitation_for_the_gateway_answered_as_a_router():
    na = answer(send(FAB, "b1", solicit(B1, GW6)))
    assert na["nd_tll"] == na["eth_src"] == ROUTER_MAC
    assert na["nd_reserved"] == ROUTER_SOLICITED_OVERRIDE and na["ipv6_src"] == GW6


def test_solicitation_from_the_link_local_address_answered():
    ll = link_local(B1.mac)
    assert ll == "fe80::2:aff:fe01:101"                        # EUI-64 of 02:02:0a:01:01:01
    na = answer(send(FAB, "b1", solicit(B1, B3.ip6, src_ip=ll)))
    assert na["ipv6_dst"] == ll and na["nd_tll"] == B3.mac


def test_unicast_solicitation_reconfirming_a_neighbour_answered():
    """NUD: a solicitation sent straight to the neighbour's MAC and address."""
    na = answer(send(FAB, "b1", solicit(B1, GW6, eth_dst=ROUTER_MAC, ipv6_dst=GW6)))
    assert na["eth_src"] == ROUTER_MAC and na["icmpv6_type"] == 136


@pytest.mark.parametrize("target", ["2001:db8:1::77", D1.ip6, "2001:db8:2::ff"],
                         ids=["unknown", "other-network", "other-network-gateway"])
def test_solicitation_nobody_answers_is_dropped(target):
    ft = send(FAB, "b1", solicit(B1, target))
    assert ft.delivered == [] and ft.wire == []


def test_solicitations_stay_in_their_tenant():
    """red's web is 2001:db8:1::/64 too: r1 learns r2, never a blue endpoint."""
    na = answer(send(FAB, "r1", solicit(EP["r1"], EP["r2"].ip6)), "r1")
    assert na["nd_tll"] == EP["r2"].mac
    assert send(FAB, "r1", solicit(EP["r1"], B3.ip6)).delivered == []  # ::3: no red endpoint has it


@pytest.mark.parametrize("icmp6,src", [
    (135, "::"),            # duplicate address detection: dropped by the spoof guard, DAD succeeds
    (133, "ll"),            # router solicitation (from the link-local address)
    (133, "own"),
    (134, "own"),           # a rogue router advertisement
    (136, "own"),           # an unsolicited advertisement claiming an address
    (137, "own"),           # redirect
    (143, "ll"),            # MLDv2 report
    (131, "own"),           # MLDv1 report
])
def test_other_neighbour_discovery_and_mld_dropped(icmp6, src):
    ipsrc = {"::": "::", "ll": link_local(B1.mac), "own": B1.ip6}[src]
    p = solicit(B1, B3.ip6, src_ip=ipsrc, icmpv6_type=icmp6)
    ft = send(FAB, "b1", p)
    assert ft.delivered == [] and ft.wire == []
    (_h, tr), = ft.hops
    assert tr.path[-1].table in (T.INGRESS, T.ARP)


# ---------------------------------------------------------------- spoof guard

@pytest.mark.parametrize("kw", [
    {"ipv6_src": "2001:db8:1::99"},                     # an address not its own
    {"ipv6_src": B3.ip6},                               # its neighbour's
    {"eth_src": "02:02:0a:01:01:63"},                   # a MAC not its own
    {"ipv6_src": link_local(B1.mac)},                   # link-local: solicitations only
    {"ipv6_src": link_local(B3.mac), "ip_proto": 58, "icmpv6_type": 135},
], ids=["ip", "neighbour-ip", "mac", "link-local-tcp", "neighbour-link-local"])
def test_spoofed_ipv6_dropped_at_ingress(kw):
    ft = send(FAB, "b1", ip6(B1, B3.ip6, B3.mac, **kw))
    assert ft.delivered == [] and ft.wire == []
    (_h, tr), = ft.hops
    assert tr.path[-1].table == T.INGRESS


def test_endpoint_without_ipv6_sends_none():
    v1 = EP["v1"]
    assert v1.ip6 == ""
    for src in (link_local(v1.mac), "2001:db8:3::1"):
        p = dict(ip6(B1, "ff02::1", "33:33:00:00:00:01"), eth_src=v1.mac, ipv6_src=src)
        ft = send(FAB, "v1", p)
        assert ft.delivered == [] and ft.wire == []


# ---------------------------------------------------------------- forwarding

def test_same_network_local_and_remote():
    assert send(FAB, "b1", to("b1", "b3")).endpoints() == [at("b3")]
    ft = send(FAB, "b1", to("b1", "b2"))
    assert ft.endpoints() == [at("b2")] and ft.wire[0][2]["tun_id"] == 5001


def test_routed_between_networks_of_a_tenant():
    ft = send(FAB, "b1", to("b1", "d1", hlim=64))
    (got,) = ft.at(*at("d1"))
    assert (got["eth_src"], got["eth_dst"], got["nw_ttl"]) == (ROUTER_MAC, D1.mac, 63)
    assert ft.wire[0][2]["tun_id"] == 5002                  # carried in db's VNI
    assert send(FAB, "d1", to("d1", "b1")).endpoints() == [at("b1")]


def test_hop_limit_expires_at_the_router():
    assert send(FAB, "b1", to("b1", "d1", hlim=1)).delivered == []


def test_never_routed_across_tenants():
    r1 = EP["r1"]
    # red has no db: blue's db address is nobody's in red's VRF
    assert send(FAB, "r1", ip6(r1, D1.ip6, ROUTER_MAC)).delivered == []
    # the address blue's b2 and red's r2 share reaches red's r2 only
    assert send(FAB, "r1", ip6(r1, EP["r2"].ip6, EP["r2"].mac)).endpoints() == [at("r2")]


def test_ping6_the_gateway():
    ft = send(FAB, "b1", ip6(B1, GW6, ROUTER_MAC, proto="icmp6"))
    rep = answer(ft)
    assert (rep["icmpv6_type"], rep["ipv6_src"], rep["ipv6_dst"], rep["eth_src"]) == (129, GW6, B1.ip6, ROUTER_MAC)
    # another network's gateway of the VRF answers too, as in IPv4
    assert answer(send(FAB, "b1", ip6(B1, "2001:db8:2::ff", ROUTER_MAC, proto="icmp6")))["icmpv6_type"] == 129


def test_multicast_floods_within_the_network_only():
    ft = send(FAB, "b1", ip6(B1, "ff02::fb", "33:33:00:00:00:fb", proto="udp", dport=5353))
    assert ft.endpoints() == sorted([at("b3"), at("b2"), at("b4")])


# ---------------------------------------------------------------- policy

def R(policy, uid, direction, prio, action, **kw):
    return Rule("blue", policy, f"r{uid}", direction, prio, action, rule_uid=uid, **kw)


def reaches(f, src, dst, v6=True, **kw):
    from tests.unit.test_policy import pkt
    p = to(src, dst, **kw) if v6 else pkt(src, dst, **kw)
    return at(dst) in send(f, src, p).endpoints()


def test_group_rule_applies_to_both_families():
    f = fabric(with_policies([R("p", 1, "in", 10, "deny", protocol="tcp", port=5432, from_group="gweb")],
                             {"gdb": ["p"]}))
    assert not reaches(f, "b1", "d1", dport=5432) and not reaches(f, "b1", "d1", v6=False, dport=5432)
    assert reaches(f, "b1", "d1", dport=80) and reaches(f, "b1", "d1", v6=False, dport=80)


def test_address_rule_applies_to_its_family_only():
    v4 = fabric(with_policies([R("p", 1, "in", 10, "deny", from_ip="10.1.1.0/24")], {"gdb": ["p"]}))
    assert not reaches(v4, "b1", "d1", v6=False) and reaches(v4, "b1", "d1")
    v6 = fabric(with_policies([R("p", 1, "in", 10, "deny", from_ip="2001:db8:1::/64")], {"gdb": ["p"]}))
    assert reaches(v6, "b1", "d1", v6=False) and not reaches(v6, "b1", "d1")
    one = fabric(with_policies([R("p", 1, "out", 10, "deny", to_ip=D1.ip6)], {"gweb": ["p"]}))
    assert not reaches(one, "b1", "d1") and reaches(one, "b1", "d2") and reaches(one, "b1", "d1", v6=False)


def test_network_rule_covers_its_ipv6_subnet():
    f = fabric(with_policies([R("p", 1, "out", 10, "deny", to_network="db")], {"gweb": ["p"]}))
    assert not reaches(f, "b1", "d1") and not reaches(f, "b1", "d1", v6=False)


def test_icmp_rule_means_icmpv6_too():
    f = fabric(with_policies([R("p", 1, "in", 10, "deny", protocol="icmp")], {"gdb": ["p"]}))
    assert not reaches(f, "b1", "d1", proto="icmp6") and reaches(f, "b1", "d1", proto="tcp")
    assert not reaches(f, "b1", "d1", v6=False, proto="icmp")


def test_allowed_connection_replies_pass_conntrack():
    f = fabric(with_policies([R("p", 1, "in", 10, "deny", from_group="gweb"),
                              R("p", 2, "in", 20, "allow", protocol="tcp", port=80, from_group="gweb")],
                             {"gdb": ["p"], "gweb": ["p"]}))
    assert not reaches(f, "b1", "d1", dport=22)
    assert reaches(f, "b1", "d1", dport=80, sport=41000)
    # d1's reply to b1 is +est in b1's 'in' rules (which deny gweb -> gweb only, not gdb)
    assert reaches(f, "d1", "b1", dport=41000, sport=80)


def test_rule_with_peers_of_two_families_is_inert():
    f = fabric(with_policies([R("p", 1, "in", 10, "deny", from_ip="2001:db8:1::/64", to_ip="10.1.2.1")],
                             {"gdb": ["p"]}))
    assert reaches(f, "b1", "d1") and reaches(f, "b1", "d1", v6=False)


# ---------------------------------------------------------------- netctl trace's packet

def test_trace_builds_ipv6_packets_that_walk_the_pipeline():
    from controller.trace import build_packet
    from model.validate import ValidationError
    from tests.unit.topo import snapshot
    snap = snapshot()
    for dst, proto in ((D1.ip6, "tcp"), (B3.ip6, "udp"), (GW6, "icmp")):
        p = build_packet(snap, B1, dst, proto, 80)
        assert p["eth_type"] == 0x86DD and p["ipv6_src"] == B1.ip6
        ft = send(FAB, "b1", p)
        want = [at("b1")] if dst == GW6 else [at("d1")] if dst == D1.ip6 else [at("b3")]
        assert ft.endpoints() == want
    with pytest.raises(ValidationError):
        build_packet(snap, EP["v1"], D1.ip6, "tcp", 80)         # v1 has no IPv6 address

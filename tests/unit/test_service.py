"""Service load balancing (flows/service.py) on the simulator: VIP ARP, select group and
conntrack DNAT on the source host, replies translated back, stickiness, provider changes,
policy on the provider's group."""
from dataclasses import replace

from flows.engine import compile_snapshot
from flows.fabric import Fabric
from flows.pipeline import Owner, T, parse_cookie
from flows.service import vip_mac
from flows.snapshot import Rule, Service
from tests.unit.topo import ENDPOINTS, EP, GROUPS, arp_req, at, ip_pkt, send, snapshot

VIP = "10.1.1.100"
SVC = Service("blue", "web-svc", "web", VIP, ((80, 8080, "tcp"),), ("app=web",), 1)
PROVIDERS = ("b2", "b3", "b4")            # on h2, h1 (the client's host) and h3


def _snap(providers=PROVIDERS, services=(SVC,), rules=(), groups=GROUPS):
    eps = tuple(replace(e, labels=("app=web", "tier=1")) if e.endpoint_id in providers else e
                for e in ENDPOINTS)
    return replace(snapshot(eps, groups, rules), services=services)


def _fabric(snap, keep: Fabric | None = None) -> Fabric:
    fab = Fabric.build(snap, compile_snapshot(snap))
    if keep is not None:                  # a recompile keeps each switch's conntrack
        for h, sw in fab.switches.items():
            sw.conntrack = keep.switches[h].conntrack
    return fab


def _connect(fab, sport, src="b1"):
    return send(fab, src, ip_pkt(EP[src], VIP, dst_mac=vip_mac(VIP), dport=80, sport=sport))


def _provider(ft):
    (host, port, pkt), = ft.delivered
    owner = next(e for e in PROVIDERS if at(e) == (host, port))
    assert pkt["ip_dst"] == EP[owner].ip and pkt["tcp_dst"] == 8080 and pkt["eth_dst"] == EP[owner].mac
    return owner


def test_vip_arp_answered_with_the_vip_mac():
    ft = send(_fabric(_snap()), "b1", arp_req(EP["b1"], VIP))
    (h, _, reply), = ft.delivered
    assert h == "h1" and reply["arp_op"] == 2 and reply["arp_sha"] == vip_mac(VIP)


def test_new_connections_spread_over_every_provider_and_stick():
    fab = _fabric(_snap())
    chosen = {sport: _provider(_connect(fab, sport)) for sport in range(41000, 41030)}
    assert set(chosen.values()) == set(PROVIDERS)
    for sport in (41000, 41007, 41023):              # the same connection, again: same provider
        assert _provider(_connect(fab, sport)) == chosen[sport]


def test_replies_translated_back_on_the_client_host():
    fab = _fabric(_snap())
    for sport in range(42000, 42010):
        p = _provider(_connect(fab, sport))
        back = send(fab, p, ip_pkt(EP[p], EP["b1"].ip, dst_mac=EP["b1"].mac, sport=8080, dport=sport))
        (h, port, pkt), = back.delivered
        assert (h, port) == at("b1")
        assert (pkt["ip_src"], pkt["tcp_src"], pkt["tcp_dst"]) == (VIP, 80, sport)


def test_unrelated_traffic_from_a_provider_port_is_not_translated():
    fab = _fabric(_snap())
    ft = send(fab, "b2", ip_pkt(EP["b2"], EP["b1"].ip, dst_mac=EP["b1"].mac, sport=8080, dport=5555))
    (_, _, pkt), = ft.delivered
    assert pkt["ip_src"] == EP["b2"].ip and pkt["tcp_src"] == 8080


def test_removed_provider_gets_no_new_connection_but_keeps_its_established_one():
    fab = _fabric(_snap())
    chosen = {sport: _provider(_connect(fab, sport)) for sport in range(43000, 43030)}
    gone = "b4"
    kept = next(s for s, p in chosen.items() if p == gone)
    send(fab, gone, ip_pkt(EP[gone], EP["b1"].ip, dst_mac=EP["b1"].mac, sport=8080, dport=kept))
    fab2 = _fabric(_snap(providers=("b2", "b3")), keep=fab)
    assert _provider(_connect(fab2, kept)) == gone            # established: still b4
    fresh = {_provider(_connect(fab2, s)) for s in range(44000, 44030)}
    assert fresh == {"b2", "b3"}


def test_deny_rule_on_the_providers_group_blocks_the_service():
    rule = Rule("blue", "svc-deny", "1", "in", 10, "deny", protocol="tcp", port=8080, rule_uid=9)
    groups = tuple(replace(g, policies=("svc-deny",)) if g.name == "gweb" else g for g in GROUPS)
    fab = _fabric(_snap(rules=(rule,), groups=groups))
    for sport in range(45000, 45010):
        ft = _connect(fab, sport)
        assert ft.delivered == []
        assert any(parse_cookie(h.cookie) == (Owner.RULE, 9) for _, t in ft.hops for h in t.path)


def test_no_providers_drops_and_other_tenants_never_reach_the_vip():
    fab = _fabric(_snap(providers=()))
    assert _connect(fab, 46000).delivered == []
    fab = _fabric(_snap())
    ft = send(fab, "r1", ip_pkt(EP["r1"], VIP, dst_mac=vip_mac(VIP), dport=80))
    assert ft.delivered == []


def test_only_tenants_with_services_pay_for_the_service_tables():
    plain = compile_snapshot(snapshot())
    with_svc = compile_snapshot(_snap())
    svc_tables = {T.SERVICE, T.SERVICE_LB, T.SERVICE_FWD}
    assert not any(f.table in svc_tables for fl, _ in plain.values() for f in fl)
    # red (no service) on h1 and h2 adds nothing; the service's entries carry its cookie
    fl, groups = with_svc["h1"]
    (g,) = groups - plain["h1"][1]
    assert g.group_type == "select" and len(g.buckets) == 3 and parse_cookie(g.cookie) == (Owner.SERVICE, 1)
    assert any(f.table == T.SERVICE and parse_cookie(f.cookie) == (Owner.SERVICE, 1) for f in fl)


def test_service_entries_encode_as_ovs_reads_them():
    """A select group whose buckets commit a DNAT, on the wire: Open vSwitch's own decoder
    (ovs-ofctl ofp-print, no daemon) reads back what the compiler meant, and os-ken's parse
    of it gives the same entry (what reconcile compares)."""
    import shutil
    import subprocess
    import pytest
    from controller import ofmsg
    from os_ken.ofproto import ofproto_v1_3 as ofp, ofproto_v1_3_parser as parser
    if shutil.which("ovs-ofctl") is None:
        pytest.skip("ovs-ofctl is not installed")

    class DP:
        ofproto, ofproto_parser = ofp, parser

        def set_xid(self, m):
            m.xid = 1
    fl, groups = compile_snapshot(_snap())["h1"]
    svc = [g for g in groups if g.group_type == "select"]
    nat_flows = [f for f in fl if any(a[0] == "ct" and "nat" in dict(a[1]) for a in f.actions)]
    assert svc and nat_flows
    for x in svc + nat_flows:
        m = ofmsg.group_mod(DP(), x) if x in svc else ofmsg.flow_mod(DP(), x)
        m.serialize()
        out = subprocess.run(["ovs-ofctl", "ofp-print", m.buf.hex()], capture_output=True, text=True).stdout
        assert "decode error" not in out and "nat" in out, out
        if x in svc:
            buckets, off = [], 16                  # after ofp_header + command, type, pad, group_id
            while off < len(m.buf):
                b = parser.OFPBucket.parser(bytes(m.buf), off)
                buckets.append(b)
                off += b.len
            back = ofmsg.group_from_desc(parser.OFPGroupDescStats(
                type_=ofp.OFPGT_SELECT, group_id=x.group_id, buckets=buckets))
            assert back == x                       # canonical as made: no normaliser

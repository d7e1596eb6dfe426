"""Group-based policy through the simulated fabric.

Topology (topo.py): gweb = b1,b3 (h1), b2 (h2), b4 (h3); gdb = d1 (h2), d2 (h1).
"""
import pytest

from flows.pipeline import ROUTER_MAC, Owner, cookie
from flows.snapshot import Rule
from tests.unit.topo import EP, at, fabric, ip_pkt, send, with_policies


def R(policy, uid, direction, prio, action, **kw):
    return Rule("blue", policy, f"r{uid}", direction, prio, action, rule_uid=uid, **kw)


def fab(rules, attach):
    return fabric(with_policies(rules, attach))


def pkt(src, dst_ep, **kw):
    """src -> dst_ep, through the router when they are in different networks."""
    s, d = EP[src], EP[dst_ep]
    mac = d.mac if s.network == d.network else ROUTER_MAC
    return ip_pkt(s, d.ip, dst_mac=mac, **kw)


def ok(f, src, dst_ep, **kw):
    return at(dst_ep) in send(f, src, pkt(src, dst_ep, **kw)).endpoints()


def rule_hit(ft, uid):
    return any(h.cookie == cookie(Owner.RULE, uid) for _, t in ft.hops for h in t.path)


def test_no_policy_is_open():
    f = fab([], {})
    assert ok(f, "b1", "d1", dport=5432) and ok(f, "d1", "b1", dport=22)


def test_policy_without_rules_is_open():
    f = fab([], {"gdb": ["empty"]})
    assert ok(f, "b1", "d1", dport=5432)


def test_in_rule_from_group_enforced_at_destination_host():
    f = fab([R("p", 1, "in", 10, "deny", protocol="tcp", port=5432, from_group="gweb")], {"gdb": ["p"]})
    ft = send(f, "b1", pkt("b1", "d1", dport=5432))
    assert ft.delivered == []
    assert len(ft.wire) == 1                       # left h1: the verdict is h2's
    h2 = dict(ft.hops)["h2"]
    assert h2.path[-1].cookie == cookie(Owner.RULE, 1)   # counted on the rule's conj_id flow
    assert "conj_id" in h2.path[-1].text
    assert ok(f, "b1", "d1", dport=80)             # no rule matches: allowed (Contiv default)
    assert ok(f, "b1", "d1", proto="udp", dport=5432)
    assert ok(f, "d2", "d1", dport=5432)           # source not in gweb


def test_in_rule_enforced_on_same_host():
    f = fab([R("p", 1, "in", 10, "deny", protocol="tcp", port=5432, from_group="gweb")], {"gdb": ["p"]})
    assert not ok(f, "b1", "d2", dport=5432)       # b1 and d2 both on h1
    assert ok(f, "b1", "d2", dport=80)


def test_out_rule_enforced_at_source_host():
    f = fab([R("p", 2, "out", 10, "deny", protocol="tcp", port=22, to_group="gdb")], {"gweb": ["p"]})
    ft = send(f, "b1", pkt("b1", "d1", dport=22))
    assert ft.delivered == [] and ft.wire == []    # never left h1
    assert rule_hit(ft, 2)
    assert ok(f, "b1", "d1", dport=23)
    assert ok(f, "d1", "b1", dport=22)             # gdb has no policy


def test_priority_higher_wins():
    rules = [R("p", 3, "in", 1, "deny", protocol="tcp"),
             R("p", 4, "in", 10, "allow", protocol="tcp", port=80)]
    f = fab(rules, {"gdb": ["p"]})
    assert ok(f, "b1", "d1", dport=80)
    assert not ok(f, "b1", "d1", dport=81)
    assert ok(f, "b1", "d1", proto="udp", dport=81)


def test_priority_lower_allow_loses_to_higher_deny():
    rules = [R("p", 3, "in", 50, "deny", protocol="tcp"),
             R("p", 4, "in", 10, "allow", protocol="tcp", port=80)]
    assert not ok(fab(rules, {"gdb": ["p"]}), "b1", "d1", dport=80)


@pytest.mark.parametrize("uids", [(5, 6), (6, 5), (7, 307)])   # either order of uids
def test_tie_at_same_priority_denies(uids):
    rules = [R("p", uids[0], "in", 5, "allow", protocol="tcp", port=80),
             R("p", uids[1], "in", 5, "deny", protocol="tcp", port=80)]
    assert not ok(fab(rules, {"gdb": ["p"]}), "b1", "d1", dport=80)


def test_same_slot_same_action_rules_merge_and_both_apply():
    rules = [R("p", 7, "in", 5, "deny", protocol="tcp", port=80),
             R("p", 307, "in", 5, "deny", protocol="tcp", port=81)]
    f = fab(rules, {"gdb": ["p"]})
    assert not ok(f, "b1", "d1", dport=80) and not ok(f, "b1", "d1", dport=81)
    assert ok(f, "b1", "d1", dport=82)


@pytest.mark.parametrize("kw,blocked,allowed", [
    (dict(from_network="web"), "b1", "d2"),
    (dict(from_ip="10.1.1.1"), "b1", "b3"),
    (dict(from_ip="10.1.1.0/31"), "b1", "b2"),
    (dict(from_ip="10.1.1.1-2"), "b2", "b3"),
    (dict(from_group="gweb", from_ip="10.1.1.2-4"), "b3", "b1"),
])
def test_in_rule_source_fields(kw, blocked, allowed):
    f = fab([R("p", 8, "in", 10, "deny", **kw)], {"gdb": ["p"]})
    assert not ok(f, blocked, "d1")
    assert ok(f, allowed, "d1")


@pytest.mark.parametrize("kw,blocked,allowed", [
    (dict(to_network="db"), "d1", "b2"),
    (dict(to_ip="10.1.2.1"), "d1", "d2"),
    (dict(to_ip="10.1.2.2-9"), "d2", "b2"),
    (dict(to_group="gweb"), "b2", "d1"),
])
def test_out_rule_destination_fields(kw, blocked, allowed):
    f = fab([R("p", 9, "out", 10, "deny", **kw)], {"gweb": ["p"]})
    assert not ok(f, "b1", blocked)
    assert ok(f, "b1", allowed)


@pytest.mark.parametrize("kw,pkt_blocked,pkt_allowed", [
    (dict(protocol="udp", port=53), dict(proto="udp", dport=53), dict(proto="tcp", dport=53)),
    (dict(protocol="icmp"), dict(proto="icmp"), dict(proto="tcp")),
    (dict(protocol="17"), dict(proto="udp", dport=9), dict(proto="tcp", dport=9)),
    (dict(protocol="", port=443), dict(proto="udp", dport=443), dict(proto="tcp", dport=444)),
    (dict(protocol="tcp"), dict(proto="tcp", dport=1), dict(proto="udp", dport=1)),
])
def test_protocol_and_port(kw, pkt_blocked, pkt_allowed):
    f = fab([R("p", 10, "in", 10, "deny", **kw)], {"gdb": ["p"]})
    assert not ok(f, "b1", "d1", **pkt_blocked)
    assert ok(f, "b1", "d1", **pkt_allowed)


def test_rule_only_applies_to_groups_having_the_policy():
    f = fab([R("p", 11, "in", 10, "deny")], {"gdb": ["p"]})
    assert not ok(f, "b1", "d1") and ok(f, "d1", "b1")


def test_stateful_reply_of_allowed_connection_passes():
    # gdb refuses every new connection coming in, but may itself connect out
    f = fab([R("p", 12, "in", 10, "deny")], {"gdb": ["p"]})
    assert not ok(f, "b1", "d1", dport=80, sport=1234)
    assert ok(f, "d1", "b1", dport=80, sport=5555)                 # d1 -> b1 opens
    assert ok(f, "b1", "d1", dport=5555, sport=80)                 # reply is +est at h2
    assert not ok(f, "b1", "d1", dport=5556, sport=80)             # a different flow is new


def test_stateful_same_host():
    f = fab([R("p", 12, "in", 10, "deny")], {"gdb": ["p"]})
    assert ok(f, "d2", "b1", dport=80, sport=5555)
    assert ok(f, "b1", "d2", dport=5555, sport=80)
    assert not ok(f, "b1", "d2", dport=80, sport=5555)


def test_est_and_rel_pass_new_is_checked():
    f = fab([R("p", 13, "in", 10, "deny")], {"gdb": ["p"]})
    p = pkt("b1", "d1")
    assert send(f, "b1", p, ct_state="+trk+est").endpoints() == [at("d1")]
    assert send(f, "b1", p, ct_state="+trk+rel").endpoints() == [at("d1")]
    assert send(f, "b1", p, ct_state="+trk+new").delivered == []
    assert send(f, "b1", p, ct_state="+trk+inv").delivered == []


def test_allow_commits_connection():
    f = fab([R("p", 14, "in", 10, "allow", protocol="tcp", port=80)], {"gdb": ["p"]})
    assert ok(f, "b1", "d1", dport=80, sport=999)
    zone = 1
    assert any(k[0] == zone for k in f.switches["h2"].conntrack.conns)


def test_conjunction_flow_counts_are_per_rule_not_per_endpoint():
    f = fab([R("p", 15, "in", 10, "deny", from_group="gweb", protocol="tcp", port=1)], {"gdb": ["p"]})
    flows = [x for x in f.switches["h2"].flows() if x.cookie == cookie(Owner.RULE, 15)]
    # 3 clauses + conj_id per IP family (a group peer covers IPv4 and IPv6), independent of
    # the endpoint count
    assert len(flows) == 8
    assert sum("conj_id" in x.to_ofctl() for x in flows) == 2


def test_dscp_marking():
    from dataclasses import replace
    from tests.unit.topo import GROUPS, snapshot
    groups = tuple(replace(g, dscp=46) if g.name == "gweb" else g for g in GROUPS)
    f = fabric(snapshot(groups=groups))
    ft = send(f, "b1", pkt("b1", "d1"))
    assert ft.at(*at("d1"))[0]["ip_dscp"] == 46
    ft = send(f, "d1", pkt("d1", "b1"))
    assert "ip_dscp" not in ft.at(*at("b1"))[0]


def _ct_tables(ft):
    return [h.table for _, t in ft.hops for h in t.path if h.table in (21, 51)]


def test_conntrack_only_where_an_end_has_rules():
    # no rules anywhere: no packet pays a ct() recirculation
    f = fab([], {"gdb": ["empty"]})
    assert _ct_tables(send(f, "b1", pkt("b1", "d1", dport=80))) == []
    # gdb has an 'in' rule: tracked at gdb's host only, both for the request and the reply
    f = fab([R("p", 15, "in", 10, "deny", protocol="tcp", port=22)], {"gdb": ["p"]})
    assert _ct_tables(send(f, "b1", pkt("b1", "d1", dport=80, sport=7000))) == [51]
    assert _ct_tables(send(f, "d1", pkt("d1", "b1", dport=7000, sport=80))) == [21]


def test_reply_to_a_connection_opened_by_an_out_guarded_group_passes():
    # gweb may only open tcp/80 (and refuses everything coming in); gdb is open
    rules = [R("p", 16, "out", 10, "deny", protocol="tcp"), R("p", 17, "out", 20, "allow", protocol="tcp", port=80),
             R("p", 18, "in", 10, "deny")]
    f = fab(rules, {"gweb": ["p"]})
    assert not ok(f, "b1", "d1", dport=81, sport=6000)
    assert ok(f, "b1", "d1", dport=80, sport=6001)              # allowed out, committed at h1
    assert ok(f, "d1", "b1", dport=6001, sport=80)              # the reply is +est at h1's ingress
    assert not ok(f, "d1", "b1", dport=6002, sport=80)          # anything else into gweb: denied


# ---------------------------------------------------------------- denied-traffic log

def test_logged_deny_sends_to_controller_and_still_drops():
    from flows.pipeline import DENY_LOG_MAX_LEN, DENY_LOG_METER
    f = fab([R("p", 1, "in", 10, "deny", protocol="tcp", port=5432, from_group="gweb", log=True)], {"gdb": ["p"]})
    ft = send(f, "b1", pkt("b1", "d1", dport=5432))
    assert ft.delivered == []                          # the datapath still drops it
    assert [h for h, _ in ft.controller] == ["h2"]     # one copy, from the destination's host
    h, p = ft.controller[0]
    assert (p["ip_src"], p["ip_dst"], p["tcp_dst"]) == (EP["b1"].ip, EP["d1"].ip, 5432)
    h2 = dict(ft.hops)["h2"]
    last = h2.path[-1]
    assert last.cookie == cookie(Owner.RULE, 1) and "conj_id" in last.text   # the rule's counter moves
    assert f"meter:{DENY_LOG_METER},controller:{DENY_LOG_MAX_LEN}" in last.text
    assert h2.dropped and "sent to the controller" in h2.drop_reason
    assert ok(f, "b1", "d1", dport=80)                 # what the rule does not match is untouched
    assert send(f, "b1", pkt("b1", "d1", dport=80)).controller == []


def test_logged_out_rule_reports_from_the_source_host():
    f = fab([R("p", 1, "out", 10, "deny", protocol="tcp", port=5432, to_group="gdb", log=True)], {"gweb": ["p"]})
    ft = send(f, "b1", pkt("b1", "d1", dport=5432))
    assert ft.delivered == [] and ft.wire == []        # never left h1
    assert [h for h, _ in ft.controller] == ["h1"]


def test_unlogged_deny_and_allow_rules_unchanged():
    rules = [R("p", 1, "in", 10, "deny", protocol="tcp", port=5432, from_group="gweb"),
             R("p", 2, "in", 20, "allow", protocol="tcp", port=80, from_group="gweb")]
    f = fab(rules, {"gdb": ["p"]})
    ft = send(f, "b1", pkt("b1", "d1", dport=5432))
    assert ft.delivered == [] and ft.controller == []
    verdict = dict(ft.hops)["h2"].path[-1]
    assert verdict.text.endswith("actions=drop")
    assert ok(f, "b1", "d1", dport=80) and send(f, "b1", pkt("b1", "d1", dport=80)).controller == []
    # the same rules with logging on the deny: only the deny's verdict flow differs
    from flows.engine import compile_snapshot
    from tests.unit.topo import with_policies
    plain = compile_snapshot(with_policies(rules, {"gdb": ["p"]}))["h2"][0]
    logged = compile_snapshot(with_policies([R("p", 1, "in", 10, "deny", protocol="tcp", port=5432,
                                          from_group="gweb", log=True), rules[1]], {"gdb": ["p"]}))["h2"][0]
    diff = plain ^ logged                      # one verdict flow per IP family
    assert len(diff) == 4 and {f.key for f in diff} == {f.key for f in plain - logged}
    assert {f.actions for f in logged - plain} == {(("meter", 1), ("controller", 128))}


def test_logged_deny_still_loses_to_a_higher_allow():
    f = fab([R("p", 1, "in", 10, "deny", protocol="tcp", from_group="gweb", log=True),
             R("p", 2, "in", 20, "allow", protocol="tcp", port=5432, from_group="gweb")], {"gdb": ["p"]})
    ft = send(f, "b1", pkt("b1", "d1", dport=5432))
    assert at("d1") in ft.endpoints() and ft.controller == []

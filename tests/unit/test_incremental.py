"""Cookies name owners, so one change touches only its owner's flows."""
from flows.compiler import compile_all, compile_switch
from flows.entry import COOKIE_MARK, COOKIE_MARK_MASK
from flows.pipeline import COOKIE_OWNER_MASK, Owner, endpoint_cookie, parse_cookie
from flows.simulator import Switch
from tests.unit.topo import ENDPOINTS, EP, ep, ip_pkt, snapshot

BASE = snapshot()


def _diff(a, b):
    return a[0] ^ b[0], a[1] ^ b[1]


def test_adding_endpoint_changes_only_its_own_flows():
    new = ep("b5", "blue", "web", 5, "h2", "gweb")
    before = compile_all(BASE)
    after = compile_all(snapshot(ENDPOINTS + (new,)))
    c = endpoint_cookie("b5")
    for host in ("h1", "h2", "h3"):
        flows, groups = _diff(before[host], after[host])
        assert flows, host
        assert {f.cookie for f in flows} == {c}, host
        assert all(f in after[host][0] for f in flows)    # only additions
        if host != "h2":
            assert not groups, host                         # h2 already floods for web
    # on its own host the only group change is its port joining the flood groups
    _, groups = _diff(before["h2"], after["h2"])
    assert {parse_cookie(g.cookie) for g in groups} == {(Owner.NETWORK, 1)}


def test_endpoint_without_ofport_reachable_later():
    new = ep("b5", "blue", "web", 5, "h2", "gweb")
    snap = snapshot(ENDPOINTS + (new,))
    ports = {h: dict(p) for h, p in snap.ofports.items()}
    del ports["h2"]["p-b5"]
    from dataclasses import replace
    unplugged = replace(snap, ofports=ports)
    h1_plugged, h1_unplugged = compile_all(snap)["h1"], compile_all(unplugged)["h1"]
    assert h1_plugged == h1_unplugged           # remote hosts do not care about the port
    h2 = compile_all(unplugged)["h2"][0]
    assert not any(f.table == 0 and f.cookie == endpoint_cookie("b5") for f in h2)


def test_every_cookie_is_marked_and_owned():
    for host, (flows, groups) in compile_all(BASE).items():
        for f in flows:
            assert f.cookie & COOKIE_MARK_MASK == COOKIE_MARK, f
            assert parse_cookie(f.cookie) is not None
        for g in groups:
            assert g.cookie & COOKIE_MARK_MASK == COOKIE_MARK


def test_compile_switch_equals_compile_all():
    assert compile_switch(BASE, "h1") == compile_all(BASE)["h1"]


def test_compile_is_deterministic():
    assert compile_all(BASE) == compile_all(snapshot())


def test_simulator_cookie_delete_removes_only_that_owner():
    flows, groups = compile_all(BASE)["h1"]
    sw = Switch(flows, groups)
    c = endpoint_cookie("b1")
    n_owned = sum(1 for f in flows if f.cookie == c)
    assert sw.delete(c, COOKIE_OWNER_MASK) == n_owned > 0
    assert len(sw.flows()) == len(flows) - n_owned
    assert all(f.cookie != c for f in sw.flows())
    tr = sw.trace(dict(ip_pkt(EP["b1"], "10.1.1.3"), in_port=1))
    assert tr.dropped


def test_cookie_kind_mask_delete():
    from flows.pipeline import COOKIE_KIND_MASK, cookie
    flows, groups = compile_all(BASE)["h1"]
    sw = Switch(flows, groups)
    n = sum(1 for f in flows if parse_cookie(f.cookie)[0] == Owner.ENDPOINT)
    assert sw.delete(cookie(Owner.ENDPOINT), COOKIE_KIND_MASK) == n
    assert all(parse_cookie(f.cookie)[0] != Owner.ENDPOINT for f in sw.flows())


def test_adding_endpoint_to_group_with_policies_adds_only_its_flows():
    from flows.snapshot import Rule
    from tests.unit.topo import with_policies
    from dataclasses import replace
    rules = [Rule("blue", "p", "r1", "in", 10, "deny", rule_uid=1, protocol="tcp", port=22, from_group="gweb"),
             Rule("blue", "q", "r2", "out", 20, "allow", rule_uid=2, to_network="db")]
    before_snap = with_policies(rules, {"gdb": ["p"], "gweb": ["q"]})
    new = ep("b5", "blue", "web", 5, "h3", "gweb")
    after_snap = replace(before_snap, endpoints=before_snap.endpoints + (new,),
                         ofports={**before_snap.ofports, "h3": {**before_snap.ofports["h3"], "p-b5": 7}})
    before, after = compile_all(before_snap), compile_all(after_snap)
    for host in ("h1", "h2", "h3"):
        flows, _ = _diff(before[host], after[host])
        assert flows and {f.cookie for f in flows} == {endpoint_cookie("b5")}, host


def test_duplicate_ip_in_a_tenant_keeps_one_endpoint_and_unique_keys():
    dup = ep("zz", "blue", "web", 2, "h3", "gweb")          # same IP/MAC as b2
    for host, (flows, _) in compile_all(snapshot(ENDPOINTS + (dup,))).items():
        keys = [f.key for f in flows]
        assert len(keys) == len(set(keys)), host
        assert all(f.cookie != endpoint_cookie("zz") for f in flows)

"""Property tests of the incremental engine (flows/engine.py).

Random sequences of typed changes (tenants, networks (IPv4 or dual-stack), groups
with policies and netprofile DSCP, rules (IPv4 and IPv6 peers), endpoints (with or
without an IPv6 address), hosts joining and leaving, ports up and down) go into one
engine step by step.  After every step:
  - each switch's incrementally kept table equals a from-scratch recompute
    (a new engine over the same objects), exactly;
  - both equal flows.compiler.compile_all, the original whole-snapshot
    compiler, wherever it is well formed (one entry per flow key);
  - a replica built only from the deltas the OpenFlow app takes equals the table;
  - the packet simulator gives the same verdicts on both.
"""
from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.compiler import compile_all
from flows.engine import Engine, object_key
from flows.fabric import Fabric as SimFabric
from flows.snapshot import Endpoint, Group, Host, Network, Rule, Service, Snapshot, Tenant

TENANTS = ("ta", "tb")
NETS = ("n1", "n2", "n3")
GROUPS = ("g1", "g2", "g3")
POLICIES = ("p1", "p2")
HOSTS = ("h1", "h2", "h3")
EPS = tuple(f"e{i}" for i in range(8))


def _net(t: str, n: str, encap: str, gw: bool, v6: int = 0) -> Network:
    """v6: 0 IPv4 only, 1 dual-stack without a gateway6, 2 dual-stack with one."""
    i = NETS.index(n) + 1
    ti = TENANTS.index(t)
    return Network(t, n, encap, 100 * (ti + 1) + i if encap == "vxlan" else 10 * (ti + 1) + i,
                   f"10.{i}.0.0/24", f"10.{i}.0.254" if gw else "", 10 * (ti + 1) + i,
                   f"2001:db8:{i}::/64" if v6 else "", f"2001:db8:{i}::fe" if v6 == 2 else "")


tenants = st.builds(lambda t, vrf: ("tenant", t, Tenant(t, vrf)), st.sampled_from(TENANTS), st.sampled_from((3, 4)))
networks = st.builds(lambda t, n, encap, gw, v6: ("network", (t, n), _net(t, n, encap, gw, v6)),
                     st.sampled_from(TENANTS), st.sampled_from(NETS), st.sampled_from(("vxlan", "vlan")),
                     st.booleans(), st.sampled_from((0, 1, 2)))
groups = st.builds(lambda t, g, n, pol, dscp: ("group", (t, g), Group(t, g, n, 500 + GROUPS.index(g) + 10 * TENANTS.index(t),
                                                                      tuple(pol), dscp)),
                   st.sampled_from(TENANTS), st.sampled_from(GROUPS), st.sampled_from(NETS),
                   st.lists(st.sampled_from(POLICIES), max_size=2, unique=True), st.sampled_from((0, 0, 10)))
rules = st.builds(
    lambda p, rid, direction, prio, action, proto, port, peer, logged: ("rule", ("ta", p, rid), Rule(
        "ta", p, rid, direction, prio, action, protocol=proto, port=port if proto in ("tcp", "udp") else 0,
        rule_uid=10 * POLICIES.index(p) + int(rid[1:]), log=logged and action == "deny",
        **({"from_group" if direction == "in" else "to_group": peer[1]} if peer[0] == "g" else
           {"from_network" if direction == "in" else "to_network": peer[1]} if peer[0] == "n" else
           {"from_ip" if direction == "in" else "to_ip": peer[1]} if peer[0] == "ip" else {}))),
    st.sampled_from(POLICIES), st.sampled_from(("r1", "r2", "r3", "r4")), st.sampled_from(("in", "out")),
    st.sampled_from((1, 5)), st.sampled_from(("allow", "deny")), st.sampled_from(("", "tcp", "udp", "icmp")),
    st.sampled_from((0, 80)),
    st.sampled_from((("", ""), ("g", "g1"), ("g", "g2"), ("n", "n1"), ("ip", "10.1.0.0/28"), ("ip", "10.2.0.1-9"),
                     ("ip", "2001:db8:1::/124"), ("ip", "2001:db8:2::3"))),
    st.booleans())
hosts = st.builds(lambda h, up: ("host", h, Host(h, f"192.168.0.{HOSTS.index(h) + 1}", HOSTS.index(h) + 1,
                                                 "uplink" if up else "")),
                  st.sampled_from(HOSTS), st.booleans())
LABELS = ((), ("app=a",), ("app=a", "x=1"), ("app=b",))
endpoints = st.builds(
    lambda eid, t, n, g, host, ipn, labels, ip6n: ("endpoint", eid, Endpoint(
        eid, t, n, g, f"10.{NETS.index(n) + 1}.0.{ipn}", f"02:00:0a:0{NETS.index(n) + 1}:00:{ipn:02x}", host,
        f"p-{eid}", labels, f"2001:db8:{NETS.index(n) + 1}::{ip6n}" if ip6n else "")),
    st.sampled_from(EPS), st.sampled_from(TENANTS), st.sampled_from(NETS), st.sampled_from(("",) + GROUPS),
    st.sampled_from(HOSTS), st.integers(1, 6),      # few addresses: clashes happen, and must be resolved alike
    st.sampled_from(LABELS), st.sampled_from((0, 1, 2, 3)))     # IPv6 too, clashing as well
SERVICES = ("s1", "s2")
services = st.builds(
    lambda t, name, n, ports, sel: ("service", (t, name), Service(
        t, name, n, f"10.{NETS.index(n) + 1}.0.{200 + SERVICES.index(name)}", ports, sel,
        1 + SERVICES.index(name) + 10 * TENANTS.index(t))),
    st.sampled_from(TENANTS), st.sampled_from(SERVICES), st.sampled_from(NETS),
    st.sampled_from((((80, 8080, "tcp"),), ((80, 8080, "tcp"), (53, 5353, "udp")), ((81, 8080, "tcp"),))),
    st.sampled_from((("app=a",), ("app=a", "x=1"), ("app=b",))))
deletes = st.builds(lambda kind, key: ("delete", kind, key), st.sampled_from(
    ("tenant", "network", "group", "rule", "host", "endpoint", "service")), st.integers(0, 40))
ports = st.builds(lambda h, name, n: ("port", h, name, n), st.sampled_from(HOSTS),
                  st.sampled_from(tuple(f"p-{e}" for e in EPS) + ("uplink",)), st.sampled_from((None, 5, 6, 7)))
ops = st.lists(st.one_of(tenants, networks, groups, rules, hosts, endpoints, services, deletes, ports), min_size=3,
               max_size=20)

# Every sequence starts from a small populated fabric, so that random steps meet
# rules, groups and endpoints on several hosts rather than an empty world.
PRELUDE = [
    ("tenant", "ta", Tenant("ta", 3)), ("tenant", "tb", Tenant("tb", 4)),
    ("network", ("ta", "n1"), _net("ta", "n1", "vxlan", True, 2)),
    ("network", ("ta", "n2"), _net("ta", "n2", "vlan", True)),
    ("network", ("tb", "n1"), _net("tb", "n1", "vxlan", False)),
    ("host", "h1", Host("h1", "192.168.0.1", 1, "")), ("host", "h2", Host("h2", "192.168.0.2", 2, "uplink")),
    ("port", "h2", "uplink", 9),
    ("group", ("ta", "g1"), Group("ta", "g1", "n1", 500, ("p1",))),
    ("rule", ("ta", "p1", "r1"), Rule("ta", "p1", "r1", "in", 5, "deny", protocol="tcp", port=80,
                                      from_group="g2", rule_uid=99)),   # apart from generated uids
    ("endpoint", "e0", Endpoint("e0", "ta", "n1", "g1", "10.1.0.1", "02:00:0a:01:00:01", "h1", "p-e0",
                                ip6="2001:db8:1::1")),
    ("endpoint", "e1", Endpoint("e1", "ta", "n2", "", "10.2.0.1", "02:00:0a:02:00:01", "h2", "p-e1")),
    ("endpoint", "e2", Endpoint("e2", "tb", "n1", "", "10.1.0.2", "02:00:0a:01:00:02", "h1", "p-e2")),
    ("port", "h1", "p-e0", 5), ("port", "h2", "p-e1", 5), ("port", "h1", "p-e2", 6),
    ("endpoint", "e3", Endpoint("e3", "ta", "n1", "", "10.1.0.3", "02:00:0a:01:00:03", "h2", "p-e3", ("app=a",),
                                "2001:db8:1::3")),
    ("port", "h2", "p-e3", 6),
    ("service", ("ta", "s1"), Service("ta", "s1", "n1", "10.1.0.200", ((80, 8080, "tcp"),), ("app=a",), 1)),
]


def _snapshot(objs: dict, ofports: dict) -> Snapshot:
    return Snapshot(tuple(objs["tenant"].values()), tuple(objs["network"].values()),
                    tuple(objs["endpoint"].values()), tuple(objs["host"].values()),
                    tuple(objs["group"].values()), tuple(objs["rule"].values()),
                    {h: dict(p) for h, p in ofports.items() if p}, tuple(objs["service"].values()))


def _well_formed(compiled) -> bool:
    flows, groups = compiled
    return (max(Counter(f.key for f in flows).values(), default=1) == 1
            and max(Counter(g.group_id for g in groups).values(), default=1) == 1)


def _verdicts(snap: Snapshot, compiled: dict) -> list:
    """Where a packet from each plugged endpoint to every endpoint's address ends up."""
    registered = {h.label for h in snap.hosts}          # the simulator wires registered hosts only
    sim = SimFabric.build(snap, {h: c for h, c in compiled.items() if h in registered})
    plugged = [e for e in snap.endpoints if e.port_name in snap.ofports.get(e.host, {}) and e.host in registered]
    out = []
    for src in plugged[:3]:
        for dst in snap.endpoints[:4]:
            pkt = {"eth_src": src.mac, "eth_dst": dst.mac if dst.network == src.network else "02:4e:57:00:00:01",
                   "eth_type": 0x0800, "ip_src": src.ip, "ip_dst": dst.ip, "nw_ttl": 64, "ip_proto": 6,
                   "tcp_src": 40000, "tcp_dst": 80}
            ft = sim.send(src.host, src.port_name, pkt)
            out.append((src.endpoint_id, dst.endpoint_id, ft.endpoints(), len(ft.controller)))
            if src.ip6 and dst.ip6:            # the same over IPv6, and a solicitation for dst
                v6 = {k: v for k, v in pkt.items() if k not in ("ip_src", "ip_dst")}
                v6.update(eth_type=0x86DD, ipv6_src=src.ip6, ipv6_dst=dst.ip6)
                ft = sim.send(src.host, src.port_name, v6)
                out.append(("v6", src.endpoint_id, dst.endpoint_id, ft.endpoints(), len(ft.controller)))
                ns = dict(v6, eth_dst="33:33:ff:00:00:01", ip_proto=58, icmpv6_type=135, nd_target=dst.ip6,
                          nd_sll=src.mac, nd_reserved=0, nd_options_type=1, nw_ttl=255)
                ft = sim.send(src.host, src.port_name, ns)
                out.append(("nd", src.endpoint_id, dst.endpoint_id,
                            [(h, n, p.get("nd_tll")) for h, n, p in sorted(ft.delivered, key=repr)]))
    return out


def _replay(steps):
    eng = Engine()
    objs = {k: {} for k in ("tenant", "network", "group", "rule", "host", "endpoint", "service")}
    ofports: dict = {h: {} for h in HOSTS}
    replicas: dict = {}                      # label -> (flows by key, groups by id), from deltas only
    for step in steps:
        if step[0] == "delete":
            _, kind, i = step
            keys = sorted(objs[kind], key=repr)
            if not keys:
                continue
            key = keys[i % len(keys)]
            del objs[kind][key]
            eng.put(kind, key, None)
        elif step[0] == "port":
            _, h, name, n = step
            if n is None:
                ofports[h].pop(name, None)
            else:
                ofports[h][name] = n
            eng.set_ports(h, dict(ofports[h]))
        else:
            kind, key, obj = step
            assert object_key(kind, obj) == key
            objs[kind][key] = obj
            eng.put(kind, key, obj)
        eng.apply()
        for label, t in eng.tables.items():
            fl, gr = replicas.setdefault(label, ({}, {}))
            d = t.take_changes()
            if d is None:                    # first taker: the whole table, as a switch's first reconcile
                fl.update(t.flows)
                gr.update(t.groups)
                continue
            dflows, dgroups = d
            for old, new in dflows:
                if new is None:
                    del fl[old.key]
                else:
                    fl[new.key] = new
            for old, new in dgroups:
                if new is None:
                    del gr[old.group_id]
                else:
                    gr[new.group_id] = new
        snap = _snapshot(objs, ofports)
        ref = Engine()
        ref.load(snap)
        ref.recompute()
        labels = set(eng.tables) | set(ref.tables)
        for label in labels:
            assert eng.compiled(label) == ref.compiled(label), (label, step)
            fl, gr = replicas.get(label, ({}, {}))
            assert set(fl.values()) == eng.compiled(label)[0], (label, step)
            assert set(gr.values()) == eng.compiled(label)[1], (label, step)
        old = compile_all(snap)
        inc = {label: eng.compiled(label) for label in old}
        well_formed = all(_well_formed(c) for c in old.values())
        if well_formed:
            assert inc == old, step
        # no table of its own for a label the compiler does not know
        assert all(not any(eng.compiled(lb)) for lb in labels - set(old))
    # an ill-formed compile (two entries under one flow key, e.g. two tenants given one VRF
    # id) leaves the simulator's choice to set order: compare verdicts where it is well formed
    if well_formed:
        assert _verdicts(snap, inc) == _verdicts(snap, old)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_increments_equal_a_full_compile(steps):
    _replay(PRELUDE + steps)


def test_scale_increments_equal_a_full_compile():
    """One bigger case: the benchmark's shape, endpoints and a rule added and removed."""
    from tests.unit.scale import scale_snapshot
    snap = scale_snapshot(300, 12, 30, n_hosts=4)
    eng = Engine()
    eng.load(snap)
    eng.recompute()
    e = snap.endpoints[0]
    moved = Endpoint("extra", e.tenant, e.network, e.group, "10.0.200.7", "02:02:0a:00:c8:07", "h2", "port-x")
    eng.put("endpoint", "extra", moved)
    eng.set_ports("h2", {**snap.ofports["h2"], "port-x": 4000})
    r = snap.rules[3]
    eng.put("rule", object_key("rule", r), None)
    eng.apply()
    rules = tuple(x for x in snap.rules if x is not r)
    ports = {h: dict(p) for h, p in snap.ofports.items()}
    ports["h2"]["port-x"] = 4000
    want = compile_all(Snapshot(snap.tenants, snap.networks, snap.endpoints + (moved,), snap.hosts, snap.groups,
                                rules, ports))
    assert {h: eng.compiled(h) for h in want} == want


def test_recompute_in_slices_equals_one_run():
    """netmaster's start runs the recompute in slices (pause() between them, the hub
    serving switches meanwhile): the same tables as one run, and it does pause."""
    from tests.unit.scale import scale_snapshot
    snap = scale_snapshot(60, 4, 6, n_hosts=3)
    one, sliced = Engine(), Engine()
    one.load(snap)
    one.recompute()
    sliced.load(snap)
    pauses = []
    sliced.recompute(pause=lambda: pauses.append(1), every=7)
    assert len(pauses) == sliced.last_run // 7 > 0
    assert set(sliced.tables) == set(one.tables)
    for label in one.tables:
        assert sliced.compiled(label) == one.compiled(label), label
    assert {label: sliced.compiled(label) for label in compile_all(snap)} == compile_all(snap)

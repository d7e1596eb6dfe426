"""model/index.py: the indexed create checks give the verdicts and allocations of the
plain O(N) reference (list everything taken, check every network), on random
sequences of creates and deletes of networks, pooled groups and endpoints; a
refused create stores nothing; the indexes equal a rebuild from the mirror."""
from __future__ import annotations

import ipaddress
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model import ipam, schema
from model.index import FreeNumbers, Index, SubnetIndex
from model.service import ID_LIMITS, Model
from model.validate import ModelError
from store.sqlite import SqliteStore

TENANTS = ("default", "t2")


def _subnet(a, b, plen, ranged):
    net = ipaddress.IPv4Network(f"10.{a}.{b}.0/{plen}", strict=False)
    if ranged and plen <= 28:
        base = int(net.network_address)
        return f"{ipaddress.IPv4Address(base + 2)}-{ipaddress.IPv4Address(base + 9)}/{plen}"
    return str(net)


subnets = st.builds(_subnet, st.integers(0, 1), st.sampled_from([0, 1, 2, 4, 128, 130]),
                    st.sampled_from([15, 16, 23, 24, 25, 28, 29, 30]), st.booleans())
subnets6 = st.one_of(st.just(""), st.builds(lambda a, plen: str(ipaddress.IPv6Network(f"fd00:{a}::/{plen}",
                                                                                     strict=False)),
                                            st.sampled_from([0, 1, 0x100]), st.sampled_from([64, 72, 120, 126])))
net_op = st.tuples(st.just("net"), st.sampled_from(TENANTS), st.integers(0, 7), subnets,
                   st.sampled_from(["vxlan", "vlan"]), st.sampled_from([0, 0, 0, 1, 2, 3]), subnets6)
ep_op = st.tuples(st.just("ep"), st.integers(0, 50), st.integers(0, 30), st.booleans(),
                  st.sampled_from([False, False, True]))
ops = st.lists(st.one_of(           # creates weigh more than deletes, so state builds up
    net_op, net_op, ep_op, ep_op, ep_op, ep_op,
    st.tuples(st.just("delnet"), st.integers(0, 50)),
    st.tuples(st.just("group"), st.integers(0, 50), st.integers(0, 3), st.integers(2, 12), st.integers(0, 6)),
    st.tuples(st.just("delgroup"), st.integers(0, 50)),
    st.tuples(st.just("delep"), st.integers(0, 200)),
), min_size=5, max_size=50)


# -- the plain reference: what service.py computed before the indexes ----------
def _nums(store, prefix, conv=int):
    return {conv(k.rsplit("/", 1)[1]) for k in store.keys(prefix)}


def ref_network(m: Model, body) -> tuple[str, dict]:
    """'refused' or 'ok' with the tag and id the create must get."""
    st_ = m.store
    tenant, name = body["tenantName"], body["networkName"]
    sub = ipam.parse_subnet(body["subnet"])
    for other in st_.list("obj/network/").values():
        if other["tenantName"] == tenant and ipam.parse_subnet(other["subnet"]).network.overlaps(sub.network):
            return "refused", {}
        if other["tenantName"] == tenant and body.get("ipv6Subnet") and other.get("ipv6Subnet") and \
                ipaddress.IPv6Network(other["ipv6Subnet"]).overlaps(ipaddress.IPv6Network(body["ipv6Subnet"])):
            return "refused", {}
    g = st_.get("obj/global/global")
    lo, hi = (int(x) for x in g["vxlans" if body["encap"] == "vxlan" else "vlans"].split("-"))
    taken = _nums(st_, f"tag/{body['encap']}/")
    if body.get("pktTag"):
        if body["pktTag"] in taken:
            return "refused", {}
        tag = body["pktTag"]
    else:
        tag = ipam.lowest_free(lo, hi, taken)
    return "ok", {"pktTag": tag, "id": ipam.lowest_free(1, ID_LIMITS["net"], _nums(st_, "id/net/"))}


def ref_ip6(m: Model, net: dict) -> str:
    if not net.get("ipv6Subnet"):
        return ""
    sub6 = ipam.parse_subnet6(net["ipv6Subnet"])
    key = f"{net['tenantName']}:{net['networkName']}"
    used = _nums(m.store, f"ip6/{key}/", ipam.ip6_int) | {ipam.ip6_int(net["ipv6Gateway"])}
    a = ipam.lowest_free(sub6.first, sub6.last, used)
    return ipam.ip6_str(a) if a is not None else None


def ref_endpoint(m: Model, net: dict, grp: dict | None, want: str) -> tuple[str, str | None]:
    key = f"{net['tenantName']}:{net['networkName']}"
    sub = ipam.parse_subnet(net["subnet"])
    used = _nums(m.store, f"ip/{key}/", ipam.ip_int) | {ipam.ip_int(net["gateway"])}
    pools = [ipam.parse_pool(g["ipPool"]) for g in m.store.list("obj/endpointGroup/").values()
             if g["tenantName"] == net["tenantName"] and g["networkName"] == net["networkName"] and g["ipPool"]]
    if want:
        a = ipam.ip_int(want)
        mine = ipam.parse_pool(grp["ipPool"]) if grp and grp["ipPool"] else None
        if not sub.first <= a <= sub.last or a in used or (mine and not mine[0] <= a <= mine[1]) \
                or (not mine and any(x <= a <= y for x, y in pools)):
            return "refused", None
        return "ok", want
    if grp and grp["ipPool"]:
        a = ipam.lowest_free(*ipam.parse_pool(grp["ipPool"]), used)
    else:
        a = ipam.lowest_free(sub.first, sub.last, used, pools)
    return ("ok", ipam.ip_str(a)) if a is not None else ("refused", None)


def _index_state(ix: Index):
    return ({k: set(v.taken) for k, v in ix.numbers.items() if v.taken},
            {t: dict(s.nets) for t, s in ix.subnets.items() if s.nets},
            {t: dict(s.nets) for t, s in ix.subnets6.items() if s.nets},
            {k: dict(v) for k, v in ix.pools.items() if v})


_ids = itertools.count()


def _pick(items, i):
    items = sorted(items)
    return items[i % len(items)] if items else None


def _run(m: Model, op):
    """Do one operation; returns (verdict, result), checking it against the reference."""
    st_ = m.store
    kind = op[0]
    if kind == "net":
        _, tenant, n, subnet, encap, tag, subnet6 = op
        plen = int(subnet.rsplit("/", 1)[1])
        sub = ipam.parse_subnet(subnet)
        body = {"tenantName": tenant, "networkName": f"n{n}", "subnet": subnet, "encap": encap,
                "gateway": ipam.ip_str(sub.first) if plen < 31 else ""}
        if tag:
            body["pktTag"] = tag
        if subnet6:
            body["ipv6Subnet"] = subnet6
        if st_.get(f"obj/network/{tenant}:n{n}") is not None:
            return None
        want, alloc = ref_network(m, body)
        before = dict(st_._data)
        try:
            m.upsert(schema.NETWORK, f"{tenant}:n{n}", body)
        except ModelError:
            assert want == "refused", (body, alloc)
            assert st_._data == before, "a refused create stored something"
            return
        assert want == "ok", body
        assert m.meta("network", f"{tenant}:n{n}") == alloc
    elif kind == "delnet":
        key = _pick((k[len("obj/network/"):] for k in st_.keys("obj/network/")), op[1])
        if key:
            try:
                m.delete(schema.NETWORK, key)
            except ModelError:
                pass
    elif kind == "group":
        _, ni, start, size, g = op
        key = _pick((k[len("obj/network/"):] for k in st_.keys("obj/network/")), ni)
        if key is None or st_.get(f"obj/endpointGroup/{key.split(':')[0]}:g{g}") is not None:
            return
        net = st_.get(f"obj/network/{key}")
        sub = ipam.parse_subnet(net["subnet"])
        lo = sub.first + start * 4
        body = {"tenantName": net["tenantName"], "groupName": f"g{g}", "networkName": net["networkName"],
                "ipPool": f"{ipam.ip_str(lo)}-{ipam.ip_str(min(lo + size, sub.last))}" if start else ""}
        try:
            m.upsert(schema.ENDPOINT_GROUP, f"{net['tenantName']}:g{g}", body)
        except ModelError:
            pass
    elif kind == "delgroup":
        key = _pick((k[len("obj/endpointGroup/"):] for k in st_.keys("obj/endpointGroup/")), op[1])
        if key:
            try:
                m.delete(schema.ENDPOINT_GROUP, key)
            except ModelError:
                pass
    elif kind == "ep":
        _, ni, off, in_group, ask = op
        key = _pick((k[len("obj/network/"):] for k in st_.keys("obj/network/")), ni)
        if key is None:
            return
        net = st_.get(f"obj/network/{key}")
        groups = sorted(g["groupName"] for g in st_.list("obj/endpointGroup/").values()
                        if g["tenantName"] == net["tenantName"] and g["networkName"] == net["networkName"])
        grp = st_.get(f"obj/endpointGroup/{net['tenantName']}:{groups[ni % len(groups)]}") \
            if in_group and groups else None
        sub = ipam.parse_subnet(net["subnet"])
        want_ip = ipam.ip_str(min(sub.first + off, sub.last)) if ask else ""
        want, ip = ref_endpoint(m, net, grp, want_ip)
        ip6 = ref_ip6(m, net)
        if ip6 is None:
            want = "refused"
        eid = f"e{next(_ids)}"
        body = {"tenantName": net["tenantName"], "networkName": net["networkName"], "host": "h1",
                "intfName": "v" + eid, "groupName": grp["groupName"] if grp else ""}
        if want_ip:
            body["ipAddress"] = want_ip
        before = dict(st_._data)
        try:
            rec = m.allocate_endpoint(eid, body)
        except ModelError:
            assert want == "refused", (body, ip)
            assert st_._data == before, "a refused endpoint stored something"
            return
        assert (want, ip, ip6) == ("ok", rec["ipAddress"][0], rec["ipAddress"][1]), body
    elif kind == "delep":
        eid = _pick((k[len("ep/"):] for k in st_.keys("ep/")), op[1])
        if eid:
            m.release_endpoint(eid)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_indexed_checks_equal_the_reference(sequence):
    store = SqliteStore(":memory:")
    try:
        m = Model(store)
        m.upsert(schema.TENANT, "t2", {"tenantName": "t2"})
        m.register_host("h1", {"hostLabel": "h1", "vtepIP": "10.9.0.1", "dpid": "0000000000000001"})
        for op in sequence:
            _run(m, op)
            assert _index_state(m.index) == _index_state(Index(store)), op   # equal to a rebuild
    finally:
        store.close()


def test_free_numbers_hint_follows_releases():
    fn = FreeNumbers()
    for n in range(1, 6):
        assert fn.lowest_free(1, 10) == n
        fn.add(n)
    fn.discard(3)
    assert fn.lowest_free(1, 10) == 3
    assert fn.lowest_free(1, 10, excluded=[(3, 4)]) == 6
    assert fn.lowest_free(4, 5) is None


def test_subnet_index_contains_and_inside():
    ix = SubnetIndex()
    ix.add("a", "10.1.0.0/16")
    ix.add("b", "10.2.3.0/24")
    assert ix.overlapping(ipam.parse_subnet("10.1.2.0/24")) == "a"          # inside a
    assert ix.overlapping(ipam.parse_subnet("10.2.0.0/16")) == "b"          # contains b
    assert ix.overlapping(ipam.parse_subnet("10.3.0.0/16")) is None
    assert ix.overlapping(ipam.parse_subnet("10.1.0.0/16"), exclude="a") is None
    ix.remove("a")
    assert ix.overlapping(ipam.parse_subnet("10.1.2.0/24")) is None

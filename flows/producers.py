"""The flow owners of the pipeline, one producer each, for flows.engine.

Each producer reuses the flow modules (arp, classify, egress, l2, nd,
policy, routing, service) for one owner and says on which hosts its entries
go; together they give what the reference flows.compiler gives for a whole
snapshot (tests/unit/test_engine_props.py).  A new kind of owner
plugs in by adding an OwnerKind to KINDS (or passing its own list to
Engine): the engine learns what it depends on from what it reads.

    base     every switch: table misses               anchor: the set of labels
    tenant   VRF conntrack and default verdicts       anchor: tenant
    guard    a group with rules: its conntrack passes anchor: group
    rule     one rule's conjunction flows             anchor: rule
    netgw    a network's gateways (ARP/ND, echo)      anchor: network
    ep       an endpoint: ARP, route, group, remote L2 on its tenant's hosts,
             port and local L2 flows on its own host  anchor: endpoint
    nethost  a network on one host: fabric classification, flood flows and
             groups                                   anchor: (tenant, network, host)
    service  a service: VIP ARP and match, its select groups   anchor: service
    svcvrf   a tenant with services: into SERVICE, the translated path, un-DNAT
                                                      anchor: tenant
    hostnat  a tenant's egress SNAT to pvtSubnet and the replies' way back
                                                      anchor: tenant
"""
from __future__ import annotations

from typing import Optional

from flows import arp, classify, egress, l2, nd, policy, routing, service as svc_flows
from flows.engine import OwnerKind, Out, View
from flows.pipeline import ROUTER_MAC, Owner, cookie, endpoint_cookie

_BASE = tuple(classify.base_flows())


def base(v: View, _key) -> Out:
    out = Out()
    out.add(v.labels(), _BASE)
    return out


def tenant(v: View, name: str) -> Optional[Out]:
    t = v.tenant(name)
    if t is None:
        return None
    out = Out()
    out.add_scoped(name, policy.vrf_flows(t))
    return out


def guard(v: View, key) -> Optional[Out]:
    """A group with rules: its traffic goes through conntrack (flows.policy.guarded_groups)."""
    g = v.group(*key)
    if g is None or not any(v.policy_has_rules(g.tenant, p) for p in g.policies):
        return None
    t = v.tenant(g.tenant)
    if t is None:
        return None
    out = Out()
    out.add_scoped(g.tenant, policy.guard_flows(t, g.group_id))
    return out


def rule(v: View, key) -> Optional[Out]:
    r = v.get("rule", key)
    if r is None:
        return None
    t = v.tenant(r.tenant)
    if t is None:
        return None
    out = Out()
    out.add_scoped(r.tenant, policy.rule_flows(v, t, r))
    return out


def netgw(v: View, key) -> Optional[Out]:
    n = v.network(*key)
    if n is None or not (n.gateway or n.gateway6):
        return None
    t = v.tenant(n.tenant)
    if t is None:
        return None
    out = Out()
    out.add_scoped(n.tenant, gateway_entries(t.vrf_id, n))
    return out


def gateway_entries(vrf: int, n) -> list:
    """A network's gateways answered with the router MAC (the compiler's too)."""
    c = cookie(Owner.NETWORK, n.net_id)
    out = []
    if n.gateway:
        out += [arp.proxy_arp(n.net_id, n.gateway, ROUTER_MAC, c), arp.gateway_echo(vrf, n.gateway, ROUTER_MAC, c)]
    if n.gateway6:
        out += [nd.proxy_nd(n.net_id, n.gateway6, ROUTER_MAC, c, router=True),
                nd.gateway_echo6(vrf, n.gateway6, ROUTER_MAC, c)]
    return out


def endpoint_shared(t, n, g, e, c) -> list:
    """An endpoint's flows on every host of its tenant: neighbour answers, routes, group."""
    out = [arp.proxy_arp(n.net_id, e.ip, e.mac, c)]
    if e.ip6:
        out.append(nd.proxy_nd(n.net_id, e.ip6, e.mac, c))
    if n.gateway:
        out.append(routing.route(t.vrf_id, n.net_id, e.ip, e.mac, c))
    if n.gateway6 and e.ip6:
        out.append(routing.route6(t.vrf_id, n.net_id, e.ip6, e.mac, c))
    if g is not None:
        out += policy.group_classify(t.vrf_id, e.ip, g.group_id, c, e.ip6)
    return out


def endpoint(v: View, eid: str) -> Optional[Out]:
    e = v.endpoint(eid)
    if e is None:
        return None
    t, n = v.tenant(e.tenant), v.network(e.tenant, e.network)
    c = endpoint_cookie(e.endpoint_id)
    g = v.group(e.tenant, e.group)
    shared = endpoint_shared(t, n, g, e, c)
    if any(svc_flows.usable(t, s) for s in v.tenant_services(e.tenant)):
        shared.append(svc_flows.forward(t, n, e))
    out = Out()
    out.add_scoped(e.tenant, shared)
    # how other hosts reach it (never its own host: local L2 is there)
    if n.encap == "vxlan":
        home = v.host(e.host)
        acts = l2.to_fabric(n, home.vtep_ip if home else None, None)
        if acts is not None:
            out.add_scoped(e.tenant, (l2.remote_unicast(n.net_id, e.mac, acts, c),), exclude=(e.host,))
    else:                              # the uplink is each host's own
        for h in v.tenant_hosts(e.tenant) - {e.host}:
            acts = l2.to_fabric(n, None, v.uplink(h))
            if acts is not None:
                out.add((h,), (l2.remote_unicast(n.net_id, e.mac, acts, c),))
    port = v.ofport(e.host, e.port_name)
    if port is not None:               # not plugged yet: others can still reach it once it is
        out.add((e.host,), classify.endpoint_port_flows(e, port, t.vrf_id, n, g.dscp if g else 0)
                + l2.local_unicast(n.net_id, e.mac, port, c))
    return out


def nethost(v: View, key) -> Optional[Out]:
    tname, nname, host = key
    local = v.local_eps(tname, nname, host)
    n, t = v.network(tname, nname), v.tenant(tname)
    if not local or n is None or t is None:
        return None
    uplink = v.uplink(host)
    out = Out()
    out.add((host,), classify.fabric_flows(n, t.vrf_id, uplink))
    ports = [p for e in local for p in [v.ofport(host, e.port_name)] if p is not None]
    if n.encap == "vxlan":
        remote = []
        for other in sorted(v.net_hosts(tname, nname) - {host}):
            h = v.host(other)
            acts = l2.to_fabric(n, h.vtep_ip if h else None, None)
            if acts is not None:
                remote.append(acts)
    else:
        acts = l2.to_fabric(n, None, uplink)
        remote = [acts] if acts is not None else []
    flows, groups = l2.flood(n, ports, remote)
    out.add((host,), flows + groups)
    return out


def service(v: View, key) -> Optional[Out]:
    s = v.get("service", key)
    t = v.tenant(key[0]) if s is not None else None
    if s is None or not svc_flows.usable(t, s):
        return None
    out = Out()
    out.add_scoped(s.tenant, svc_flows.service_entries(
        t, s, v.network(s.tenant, s.network), svc_flows.providers(s, v.tenant_eps(s.tenant))))
    return out


def svcvrf(v: View, name: str) -> Optional[Out]:
    t = v.tenant(name)
    svcs = [s for s in v.tenant_services(name) if svc_flows.usable(t, s)] if t is not None else []
    if not svcs:
        return None
    out = Out()
    out.add_scoped(name, svc_flows.tenant_entries(t, svcs))
    return out


def hostnat(v: View, name: str) -> Optional[Out]:
    """A tenant's way to its hosts and the outside (flows/egress.py)."""
    t = v.tenant(name)
    if t is None:
        return None
    pvt = v.pvt_subnet()
    own = egress.tenant_entries(t, pvt)
    if not own:
        return None
    out = Out()
    out.add_scoped(name, own + egress.base_entries())
    return out


KINDS = (
    OwnerKind("base", "labels", base),
    OwnerKind("tenant", "tenant", tenant),
    OwnerKind("guard", "group", guard),
    OwnerKind("rule", "rule", rule),
    OwnerKind("netgw", "network", netgw),
    OwnerKind("ep", "endpoint", endpoint),
    OwnerKind("nethost", "net_eps_on", nethost),
    OwnerKind("service", "service", service),
    OwnerKind("svcvrf", "tenant", svcvrf),
    OwnerKind("hostnat", "tenant", hostnat),
)

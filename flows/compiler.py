"""The whole-snapshot compiler: Snapshot -> flows and groups per host, from
scratch.  Pure: no I/O, no clock, no randomness.

Nothing in netmaster runs it: the controller's flows come from the incremental
engine (flows/engine.py), whose full recompute is the fallback.  This stays as
the engine's independent reference (tests/unit/test_engine_props.py checks that
every switch's incrementally kept table equals compile_all exactly) and as the
baseline benches compare the engine with.

What a host carries: every tenant that has an endpoint on it, in full (all its
endpoints' ARP/group/route/L2 flows, its rules), so routing to a network with
no local endpoint still works; fabric classification and flood groups only
for networks with a local endpoint.

Flows that do not depend on the host (most per-endpoint flows) are built once
per snapshot and shared between hosts as frozensets, which keeps compile_all
near-linear: set unions reuse the stored hashes.
"""
from __future__ import annotations

import logging
from typing import Dict, FrozenSet, List, Set, Tuple

from flows import gcpause
from flows import classify, egress, l2, policy, producers, service
from flows.entry import FlowEntry, GroupEntry
from flows.index import Index
from flows.pipeline import endpoint_cookie
from flows.snapshot import Endpoint, Network, Snapshot

log = logging.getLogger(__name__)
Compiled = Tuple[Set[FlowEntry], Set[GroupEntry]]


class _Shared:
    """Host-independent pieces, memoised per snapshot."""

    def __init__(self, ix: Index):
        self.ix = ix
        self._tenant: Dict[str, FrozenSet[FlowEntry]] = {}
        self._remote: Dict[tuple, Tuple[Dict[str, FlowEntry], FrozenSet[FlowEntry]]] = {}
        self._services: Dict[str, Tuple[FrozenSet[FlowEntry], FrozenSet[GroupEntry]]] = {}

    def tenant(self, name: str) -> FrozenSet[FlowEntry]:
        """Tenant-wide flows: VRF conntrack, rules, gateways, per-endpoint ARP/group/route."""
        if name in self._tenant:
            return self._tenant[name]
        ix = self.ix
        t = ix.tenants[name]
        out: List[FlowEntry] = list(policy.tenant_flows(t, policy.guarded_groups(ix, name)))
        out += policy.merge_members([f for r in ix.rules_by_tenant.get(name, ())
                                     for f in policy.rule_flows(ix, t, r)])
        for n in ix.nets_by_tenant.get(name, ()):
            out += producers.gateway_entries(t.vrf_id, n)
        for e in ix.eps_by_tenant.get(name, ()):
            out += producers.endpoint_shared(t, ix.network_of(e), ix.group_of(e), e, endpoint_cookie(e.endpoint_id))
        fs = self._tenant[name] = frozenset(out)
        return fs

    def services(self, name: str) -> Tuple[FrozenSet[FlowEntry], FrozenSet[GroupEntry]]:
        if name not in self._services:
            fl, gr = service.for_tenant(self.ix, name)
            self._services[name] = (frozenset(fl), frozenset(gr))
        return self._services[name]

    def remote_l2(self, net: Network, uplink: int | None
                  ) -> Tuple[Dict[str, FlowEntry], FrozenSet[FlowEntry]]:
        """(endpoint_id -> the L2 flow that reaches it from another host, all of them)."""
        key = ((net.tenant, net.name), uplink if net.encap == "vlan" else None)
        if key in self._remote:
            return self._remote[key]
        ix = self.ix
        out = {}
        for e in ix.eps_by_net.get((net.tenant, net.name), ()):
            h = ix.hosts.get(e.host)
            acts = l2.to_fabric(net, h.vtep_ip if h else None, uplink)
            if acts is not None:
                out[e.endpoint_id] = l2.remote_unicast(net.net_id, e.mac, acts, endpoint_cookie(e.endpoint_id))
        res = self._remote[key] = (out, frozenset(out.values()))
        return res


def _compile(ix: Index, sh: _Shared, host: str) -> Compiled:
    flows: Set[FlowEntry] = set(classify.base_flows())
    groups: Set[GroupEntry] = set()
    uplink = ix.uplink(host)
    local = ix.eps_by_host.get(host, [])
    local_by_net: Dict[Tuple[str, str], List[Endpoint]] = {}
    for e in local:
        local_by_net.setdefault((e.tenant, e.network), []).append(e)
    for t in ix.tenants_on(host):
        flows |= sh.tenant(t)
        sf, sg = sh.services(t)
        flows |= sf
        groups |= sg
        flows.update(egress.tenant_entries(ix.tenants[t], ix.snap.pvt_subnet))
        if egress.usable(ix.tenants[t], ix.snap.pvt_subnet):
            flows.update(egress.base_entries())
        for n in ix.nets_by_tenant.get(t, ()):
            remote = sh.remote_l2(n, uplink)
            mine = [remote[0][e.endpoint_id] for e in local_by_net.get((t, n.name), ())
                    if e.endpoint_id in remote[0]]
            flows |= remote[1].difference(mine) if mine else remote[1]
    for e in local:
        n = ix.network_of(e)
        port = ix.ofport(host, e.port_name)
        if port is None:
            continue                     # not plugged yet: others can still reach it once it is
        g = ix.group_of(e)
        flows.update(classify.endpoint_port_flows(e, port, ix.tenants[e.tenant].vrf_id, n, g.dscp if g else 0))
        flows.update(l2.local_unicast(n.net_id, e.mac, port, endpoint_cookie(e.endpoint_id)))
    for n in ix.networks_on(host):
        vrf = ix.tenants[n.tenant].vrf_id
        flows.update(classify.fabric_flows(n, vrf, uplink))
        ports = [p for e in local_by_net.get((n.tenant, n.name), ())
                 for p in [ix.ofport(host, e.port_name)] if p is not None]
        if n.encap == "vxlan":
            remote = []
            for other in sorted(ix.net_hosts[(n.tenant, n.name)] - {host}):
                h = ix.hosts.get(other)
                acts = l2.to_fabric(n, h.vtep_ip if h else None, None)
                if acts is not None:
                    remote.append(acts)
        else:
            acts = l2.to_fabric(n, None, uplink)
            remote = [acts] if acts is not None else []
        fl, gr = l2.flood(n, ports, remote)
        flows.update(fl)
        groups.update(gr)
    return flows, groups


_gc_paused = gcpause.paused


def compile_switch(snapshot: Snapshot, host_label: str) -> Compiled:
    with _gc_paused():
        ix = Index.build(snapshot)
        return _compile(ix, _Shared(ix), host_label)


def compile_all(snapshot: Snapshot) -> Dict[str, Compiled]:
    """Every host in snapshot.hosts, plus any host label endpoints name."""
    with _gc_paused():
        ix = Index.build(snapshot)
        sh = _Shared(ix)
        labels = sorted(set(ix.hosts) | set(ix.eps_by_host))
        return {h: _compile(ix, sh, h) for h in labels}


"""Lookups over a Snapshot, built once per compile (no quadratic scans)."""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Set, Tuple

from flows.pipeline import NET_ID_MAX
from flows.snapshot import Endpoint, Group, Host, Network, Rule, Snapshot, Tenant

log = logging.getLogger(__name__)


@dataclass
class Index:
    snap: Snapshot
    tenants: Dict[str, Tenant] = field(default_factory=dict)
    networks: Dict[Tuple[str, str], Network] = field(default_factory=dict)
    groups: Dict[Tuple[str, str], Group] = field(default_factory=dict)
    hosts: Dict[str, Host] = field(default_factory=dict)
    eps_by_host: Dict[str, List[Endpoint]] = field(default_factory=lambda: defaultdict(list))
    eps_by_tenant: Dict[str, List[Endpoint]] = field(default_factory=lambda: defaultdict(list))
    nets_by_tenant: Dict[str, List[Network]] = field(default_factory=lambda: defaultdict(list))
    groups_by_policy: Dict[Tuple[str, str], List[Group]] = field(default_factory=lambda: defaultdict(list))
    eps_by_net: Dict[Tuple[str, str], List[Endpoint]] = field(default_factory=lambda: defaultdict(list))
    rules_by_tenant: Dict[str, List[Rule]] = field(default_factory=lambda: defaultdict(list))
    # network key -> hosts that have endpoints in it (flood targets)
    net_hosts: Dict[Tuple[str, str], Set[str]] = field(default_factory=lambda: defaultdict(set))

    @classmethod
    def build(cls, snap: Snapshot) -> "Index":
        ix = cls(snap)
        for t in snap.tenants:
            if not 0 < t.vrf_id <= 0xFFFF:
                raise ValueError(f"tenant {t.name}: vrf_id {t.vrf_id} must be 1..65535 (it is the ct zone)")
            ix.tenants[t.name] = t
        for n in snap.networks:
            if not 0 < n.net_id <= NET_ID_MAX:
                raise ValueError(f"network {n.tenant}/{n.name}: net_id {n.net_id} out of range")
            if n.encap not in ("vxlan", "vlan"):
                raise ValueError(f"network {n.tenant}/{n.name}: encap {n.encap!r}")
            ix.networks[(n.tenant, n.name)] = n
            ix.nets_by_tenant[n.tenant].append(n)
        for g in snap.groups:
            ix.groups[(g.tenant, g.name)] = g
            for p in g.policies:
                ix.groups_by_policy[(g.tenant, p)].append(g)
        for h in snap.hosts:
            ix.hosts[h.label] = h
        # An address or port claimed twice would give two flows with one OpenFlow key and
        # different actions; keep the smallest endpoint_id so the choice is deterministic.
        seen: Dict[tuple, str] = {}
        for e in sorted(snap.endpoints, key=lambda e: e.endpoint_id):
            if (e.tenant, e.network) not in ix.networks or e.tenant not in ix.tenants:
                log.warning("endpoint %s: unknown tenant/network %s/%s, skipped",
                            e.endpoint_id, e.tenant, e.network)
                continue
            claims = [("ip", e.tenant, e.ip), ("mac", e.tenant, e.network, e.mac.lower())]
            if e.ip6:
                claims.append(("ip", e.tenant, e.ip6))
            if e.port_name:
                claims.append(("port", e.host, e.port_name))
            clash = next((c for c in claims if c in seen), None)
            if clash is not None:
                log.warning("endpoint %s: %s already used by %s, skipped", e.endpoint_id, clash, seen[clash])
                continue
            for c in claims:
                seen[c] = e.endpoint_id
            ix.eps_by_host[e.host].append(e)
            ix.eps_by_tenant[e.tenant].append(e)
            ix.net_hosts[(e.tenant, e.network)].add(e.host)
            ix.eps_by_net[(e.tenant, e.network)].append(e)
        for r in snap.rules:
            ix.rules_by_tenant[r.tenant].append(r)
        return ix

    def ofport(self, host: str, port_name: str) -> int | None:
        if not port_name:
            return None
        return self.snap.ofports.get(host, {}).get(port_name)

    def uplink(self, host: str) -> int | None:
        h = self.hosts.get(host)
        return self.ofport(host, h.uplink_port) if h else None

    def network_of(self, e: Endpoint) -> Network:
        return self.networks[(e.tenant, e.network)]

    def group_of(self, e: Endpoint) -> Group | None:
        return self.groups.get((e.tenant, e.group)) if e.group else None

    def tenants_on(self, host: str) -> List[str]:
        return sorted({e.tenant for e in self.eps_by_host.get(host, ())})

    def networks_on(self, host: str) -> List[Network]:
        keys = sorted({(e.tenant, e.network) for e in self.eps_by_host.get(host, ())})
        return [self.networks[k] for k in keys]

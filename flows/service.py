"""Service load balancing (Contiv's serviceLB), distributed and stateful on the source host.

A new connection from a local endpoint to VIP:port goes through conntrack in the tenant's
service zone (table SERVICE), meets the service port's select group (SERVICE_LB), whose
bucket for the chosen provider commits it with a destination NAT to provider:port; the
translated packet gets the provider's MAC and network (SERVICE_FWD) and walks the rest of
the pipeline as if the client had sent it to the provider: the provider's group, its rules
and routing all apply as usual. Later packets of the connection find their translation in
conntrack (+est), so a connection stays on its provider whatever the group becomes:
providers added or removed change only new connections.

Replies are translated back where the connection was committed, on the client's host, as
the last step before delivery (DELIVER): after the policy tables, so those see the
provider's address in both directions, like the connection they committed. A packet from
a service's provider port takes one ct(nat) pass there; reg7 marks it done.

Only tenants with services get any of these flows: their IP goes from ARP to SERVICE;
everyone else's skips the three tables.
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Iterable, List, Tuple

from flows.entry import FlowEntry, GroupEntry
from flows.index import Index
from flows.mk import flow
from flows.pipeline import (ETH_IP, IP_PROTO, MD_FROM_FABRIC, MD_NET_MASK, MD_VRF_MASK,
                            REG_UNNAT, SERVICE_PORTS_MAX, Owner, T, cookie, endpoint_cookie, md,
                            service_group_id, service_zone)
from flows.snapshot import Endpoint, Network, Service, Tenant
from flows import arp

log = logging.getLogger(__name__)
F = flow


def vip_mac(vip: str) -> str:
    """The MAC proxy ARP answers for a VIP (Contiv's 02:02:<VIP octets>)."""
    return "02:02:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(vip).packed)


def _ct(**kw) -> tuple:
    return ("ct", tuple(sorted(kw.items())))


def _l4(proto: str, port: int, side: str) -> dict:
    return {"ip_proto": IP_PROTO[proto], f"{proto}_{side}": port}


def providers(svc: Service, tenant_eps: Iterable[Endpoint]) -> List[Endpoint]:
    """The tenant's endpoints carrying every selector label, in a stable order."""
    want = set(svc.selectors)
    if not want:
        return []
    return sorted((e for e in tenant_eps if e.tenant == svc.tenant and want <= set(e.labels)),
                  key=lambda e: e.endpoint_id)


def usable(t: Tenant | None, svc: Service) -> bool:
    ok = (t is not None and 0 < t.vrf_id < 0x8000 and svc.service_id > 0 and svc.vip
          and 0 < len(svc.ports) <= SERVICE_PORTS_MAX
          and all(p in ("tcp", "udp") for _, _, p in svc.ports))
    if not ok:
        log.warning("event=service_inert service=%s/%s reason=unusable_tenant_id_vip_or_ports",
                    svc.tenant, svc.name)
    return bool(ok)


def service_entries(t: Tenant, svc: Service, net: Network | None, provs: List[Endpoint]
                    ) -> List[FlowEntry | GroupEntry]:
    """One service's own flows and groups (owner: the service)."""
    c = cookie(Owner.SERVICE, svc.service_id)
    z = service_zone(t.vrf_id)
    vrf = (md(t.vrf_id), MD_VRF_MASK)
    local = (md(t.vrf_id), MD_VRF_MASK | MD_FROM_FABRIC)
    out: List[FlowEntry | GroupEntry] = []
    if net is not None:
        out.append(arp.proxy_arp(net.net_id, svc.vip, vip_mac(svc.vip), c))
    for i, (sport, pport, proto) in enumerate(svc.ports):
        gid = service_group_id(svc.service_id, i)
        m = {"eth_type": ETH_IP, "ip_dst": svc.vip, **_l4(proto, sport, "dst")}
        out.append(F(T.SERVICE, 100, {**m, "metadata": local},
                     (_ct(zone=z, nat="", table=int(T.SERVICE_LB)),), c))
        out.append(F(T.SERVICE_LB, 100, {**m, "ct_state": "+new+trk", "metadata": vrf},
                     (("group", gid),), c))
        buckets = tuple((_ct(commit=True, zone=z, nat=f"dst={e.ip}:{pport}",
                             table=int(T.SERVICE_FWD)),) for e in provs)
        out.append(GroupEntry(gid, buckets, "select", c))
    return out


def tenant_entries(t: Tenant, services: Iterable[Service]) -> List[FlowEntry]:
    """What a tenant with services needs beside each service's own entries (owner: the
    tenant): its local IP into SERVICE, the path of translated packets, the table misses,
    and the un-DNAT of replies before delivery, once per provider port of its services."""
    c = cookie(Owner.TENANT, t.vrf_id)
    z = service_zone(t.vrf_id)
    vrf = (md(t.vrf_id), MD_VRF_MASK)
    out = base_entries()
    out.append(F(T.ARP, 10, {"eth_type": ETH_IP, "metadata": (md(t.vrf_id), MD_VRF_MASK | MD_FROM_FABRIC)},
                 (("goto", int(T.SERVICE)),), c))
    # translated already (+new: a connection committed but not answered yet, e.g. a
    # retransmitted SYN; the VIP flows match only untranslated packets)
    for st in ("+new+trk", "+est+trk", "+rel+trk"):
        out.append(F(T.SERVICE_LB, 50, {"eth_type": ETH_IP, "ct_state": st, "metadata": vrf},
                     (("goto", int(T.SERVICE_FWD)),), c))
    # replies: un-DNAT on the client's host, last thing before delivery (reg7: once)
    for proto, pport in sorted({(p, pp) for s in services for _, pp, p in s.ports}):
        out.append(F(T.DELIVER, 200, {"eth_type": ETH_IP, **_l4(proto, pport, "src"),
                                      "metadata": vrf, REG_UNNAT: 0},
                     (("set_field", REG_UNNAT, 1), _ct(zone=z, nat="", table=int(T.DELIVER))), c))
    return out


def forward(t: Tenant, net: Network, e: Endpoint) -> FlowEntry:
    """Where a translated packet to e goes (owner: the endpoint; on tenants with services:
    any endpoint may be a provider, and one that stops being one keeps its connections)."""
    return F(T.SERVICE_FWD, 100, {"eth_type": ETH_IP, "ip_dst": e.ip, "metadata": (md(t.vrf_id), MD_VRF_MASK)},
             (("set_field", "eth_dst", e.mac), ("write_metadata", md(net=net.net_id), MD_NET_MASK),
              ("goto", int(T.SRC_GROUP))), endpoint_cookie(e.endpoint_id))


def base_entries() -> List[FlowEntry]:
    """Table misses of the service tables (on hosts of tenants with services)."""
    c = cookie(Owner.BASE)
    return [F(T.SERVICE, 0, {}, (("goto", int(T.SRC_GROUP)),), c),   # not a service port
            F(T.SERVICE_LB, 0, {}, (), c),                            # +inv, or no such port
            F(T.SERVICE_FWD, 0, {}, (), c)]                           # translated to no endpoint


def for_tenant(ix: Index, tenant: str) -> Tuple[List[FlowEntry], List[GroupEntry]]:
    """Everything services add on a host that carries `tenant`, for flows.compiler (the
    engine's producers call the functions above per owner)."""
    t = ix.tenants.get(tenant)
    svcs = [s for s in ix.snap.services if s.tenant == tenant and usable(t, s)]
    if not svcs:
        return [], []
    eps = ix.eps_by_tenant.get(tenant, ())
    flows: List[FlowEntry] = tenant_entries(t, svcs) + [forward(t, ix.network_of(e), e) for e in eps]
    groups: List[GroupEntry] = []
    for s in svcs:
        for x in service_entries(t, s, ix.networks.get((s.tenant, s.network)), providers(s, eps)):
            (groups if type(x) is GroupEntry else flows).append(x)
    return flows, groups

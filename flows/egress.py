"""Host access and egress: an endpoint reaches its own host and, through it, the outside.

A packet routed (to the router MAC) to an address no endpoint of its VRF holds is
source-NATed on the endpoint's own host to the tenant's address in the global pvtSubnet
(network address + VRF id; conntrack in the tenant's service zone) and leaves by the host
port, an internal port whose kernel side holds the host's pvtSubnet address (its last
usable one); the host's kernel delivers it if it is for the host, or forwards and
masquerades it to the outside (netplugin sets that up, agent/host_access.py).

Nothing gets in that did not go out: from the host port only replies of those
connections pass (+est/+rel after the un-SNAT), turned back into the endpoint's address
and routed to it through the usual tables (its group, its rules). ARP from the kernel for
a tenant's pvtSubnet address is answered with the router MAC. Addresses of pvtSubnet
itself are never NATed out.
"""
from __future__ import annotations

import ipaddress
from typing import List

from flows.entry import FlowEntry
from flows.mk import flow
from flows.pipeline import (ETH_ARP, ETH_IP, HOST_PORT, HOST_PORT_MAC, MD_ALL, MD_FROM_FABRIC,
                            MD_VRF_MASK, ROUTER_MAC, Owner, T, cookie, md, pvt_tenant_ip,
                            service_zone)
from flows.snapshot import Tenant

F = flow


def _ct(**kw) -> tuple:
    return ("ct", tuple(sorted(kw.items())))


def usable(t: Tenant, pvt_subnet: str) -> bool:
    try:
        pvt_tenant_ip(pvt_subnet, t.vrf_id)
        service_zone(t.vrf_id)
    except ValueError:
        return False
    return True


def tenant_entries(t: Tenant, pvt_subnet: str) -> List[FlowEntry]:
    """A tenant's way out and back in, on every host that carries it (owner: the tenant)."""
    if not usable(t, pvt_subnet):
        return []
    c = cookie(Owner.TENANT, t.vrf_id)
    z = service_zone(t.vrf_id)
    me = pvt_tenant_ip(pvt_subnet, t.vrf_id)
    pvt = ipaddress.IPv4Network(pvt_subnet, strict=False)
    vrf = (md(t.vrf_id), MD_VRF_MASK)
    local = (md(t.vrf_id), MD_VRF_MASK | MD_FROM_FABRIC)
    return [
        # out: routed to nobody of the VRF (lower than every endpoint's route)
        F(T.ROUTING, 10, {"eth_type": ETH_IP, "eth_dst": ROUTER_MAC, "metadata": local},
          (("goto", int(T.HOST_NAT)),), c),
        F(T.HOST_NAT, 100, {"eth_type": ETH_IP, "metadata": vrf,
                            "ip_dst": (str(pvt.network_address), str(pvt.netmask))}, (), c),
        F(T.HOST_NAT, 50, {"eth_type": ETH_IP, "metadata": vrf},
          (_ct(commit=True, zone=z, nat=f"src={me}", table=int(T.HOST_OUT)),), c),
        # in: ARP for the tenant's address, and replies to it
        F(T.INGRESS, 100, {"in_port": HOST_PORT, "eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": me},
          (("move", "eth_src", "eth_dst"), ("set_field", "eth_src", ROUTER_MAC),
           ("set_field", "arp_op", 2), ("move", "arp_sha", "arp_tha"), ("move", "arp_spa", "arp_tpa"),
           ("set_field", "arp_sha", ROUTER_MAC), ("set_field", "arp_spa", me), ("in_port",)), c),
        F(T.INGRESS, 100, {"in_port": HOST_PORT, "eth_type": ETH_IP, "ip_dst": me},
          (("write_metadata", md(t.vrf_id), MD_ALL), ("goto", int(T.HOST_IN))), c),
        F(T.HOST_IN, 100, {"eth_type": ETH_IP, "ct_state": "-trk", "metadata": vrf},
          (_ct(zone=z, nat="", table=int(T.HOST_IN)),), c),
    ]


def base_entries() -> List[FlowEntry]:
    """Shared by every tenant with egress (owner: base)."""
    c = cookie(Owner.BASE)
    return [
        F(T.HOST_NAT, 0, {}, (), c),
        F(T.HOST_OUT, 100, {"eth_type": ETH_IP},
          (("set_field", "eth_src", ROUTER_MAC), ("set_field", "eth_dst", HOST_PORT_MAC),
           ("output", HOST_PORT)), c),
        F(T.HOST_OUT, 0, {}, (), c),
        # un-SNATed replies go on as if routed here: their group, their rules, their route
        F(T.HOST_IN, 50, {"eth_type": ETH_IP, "ct_state": "+est+trk"},
          (("set_field", "eth_dst", ROUTER_MAC), ("goto", int(T.SRC_GROUP))), c),
        F(T.HOST_IN, 50, {"eth_type": ETH_IP, "ct_state": "+rel+trk"},
          (("set_field", "eth_dst", ROUTER_MAC), ("goto", int(T.SRC_GROUP))), c),
        F(T.HOST_IN, 0, {}, (), c),            # +new from the host or the outside: never in
    ]

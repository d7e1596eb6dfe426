"""Table ROUTING: distributed routing inside a tenant's VRF, done on the source host.

A packet sent to the router MAC is looked up by ip_dst in its VRF; it leaves
this table already rewritten (TTL-1, src=router MAC, dst=endpoint MAC) and
re-labelled with the destination network, so table L2 then delivers it
locally or tunnels it with the destination network's VNI.
"""
from __future__ import annotations

from flows.entry import FlowEntry
from flows.mk import flow
from flows.pipeline import (ETH_IP, ETH_IP6, MD_FROM_FABRIC, MD_NET_MASK, MD_VRF_MASK, ROUTER_MAC, T, md)


def route(vrf: int, dst_net_id: int, ip: str, mac: str, cookie: int) -> FlowEntry:
    return flow(
        T.ROUTING, 100,
        {"eth_type": ETH_IP, "eth_dst": ROUTER_MAC, "ip_dst": ip,
         "metadata": (md(vrf), MD_VRF_MASK | MD_FROM_FABRIC)},
        (("dec_ttl",), ("set_field", "eth_src", ROUTER_MAC), ("set_field", "eth_dst", mac),
         ("write_metadata", md(net=dst_net_id), MD_NET_MASK), ("goto", int(T.L2))),
        cookie)


def route6(vrf: int, dst_net_id: int, ip6: str, mac: str, cookie: int) -> FlowEntry:
    """The same for IPv6 (dec_ttl decrements the hop limit); a network routes IPv6 when it
    has a gateway6. Within the VRF only: never to another tenant."""
    return flow(
        T.ROUTING, 100,
        {"eth_type": ETH_IP6, "eth_dst": ROUTER_MAC, "ipv6_dst": ip6,
         "metadata": (md(vrf), MD_VRF_MASK | MD_FROM_FABRIC)},
        (("dec_ttl",), ("set_field", "eth_src", ROUTER_MAC), ("set_field", "eth_dst", mac),
         ("write_metadata", md(net=dst_net_id), MD_NET_MASK), ("goto", int(T.L2))),
        cookie)

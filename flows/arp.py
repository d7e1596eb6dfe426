"""Table ARP: proxy ARP, so a request for a known address never leaves the host,
and the gateway's echo replies, so `ping <gateway>` works as on any router.

Only packets from local ports are answered (FROM_FABRIC clear): a reply sent
"back out of in_port" to the tunnel would have no tunnel destination.
"""
from __future__ import annotations

from flows.entry import FlowEntry
from flows.mk import flow
from flows.pipeline import (ETH_ARP, ETH_IP, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, IP_PROTO, MD_FROM_FABRIC,
                            MD_NET_MASK, MD_VRF_MASK, T, md)


def proxy_arp(net_id: int, ip: str, mac: str, cookie: int) -> FlowEntry:
    """Answer 'who has ip' inside network net_id with mac, out of the input port."""
    return flow(
        T.ARP, 100,
        {"eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": ip,
         "metadata": (md(net=net_id), MD_NET_MASK | MD_FROM_FABRIC)},
        (("move", "eth_src", "eth_dst"), ("set_field", "eth_src", mac),
         ("set_field", "arp_op", 2), ("move", "arp_sha", "arp_tha"),
         ("move", "arp_spa", "arp_tpa"), ("set_field", "arp_sha", mac),
         ("set_field", "arp_spa", ip), ("in_port",)),
        cookie)


def gateway_echo(vrf: int, gateway: str, router_mac: str, cookie: int) -> FlowEntry:
    """Answer an ICMP echo request to a gateway of the tenant's VRF, out of the input port:
    like any router, the distributed one answers on each of its addresses, from every network
    it routes for (gateways are distinct within a VRF, since its subnets never overlap).

    Ahead of the policy tables on purpose: the gateway is the network's own router, as
    reachable as its ARP answer. OVS fixes the IP checksum when the addresses are set and the
    ICMP checksum when the type is (the payload and identifiers are kept, as echo requires)."""
    return flow(
        T.ARP, 100,
        {"eth_type": ETH_IP, "ip_proto": IP_PROTO["icmp"], "icmp_type": ICMP_ECHO_REQUEST,
         "ip_dst": gateway, "eth_dst": router_mac,
         "metadata": (md(vrf=vrf), MD_VRF_MASK | MD_FROM_FABRIC)},
        (("move", "eth_src", "eth_dst"), ("set_field", "eth_src", router_mac),
         ("move", "ip_src", "ip_dst"), ("set_field", "ip_src", gateway),
         ("set_field", "icmp_type", ICMP_ECHO_REPLY), ("in_port",)),
        cookie)

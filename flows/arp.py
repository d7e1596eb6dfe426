"""Table ARP: proxy ARP, so a request for a known address never leaves the host.

Only requests from local ports are answered (FROM_FABRIC clear): a reply sent
"back out of in_port" to the tunnel would have no tunnel destination.
"""
from __future__ import annotations

from flows.entry import FlowEntry
from flows.mk import flow
from flows.pipeline import ETH_ARP, MD_FROM_FABRIC, MD_NET_MASK, T, md


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

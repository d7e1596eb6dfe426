"""Table INGRESS: which VRF and network a packet belongs to, and the spoof guard.

IPv6: a local port may send with its own MAC and its IPv6 address (anything), or with
its EUI-64 link-local address a neighbour solicitation only (the kernel may solicit from
it; table ARP answers it). Any other link-local traffic is dropped: it would slip past the
group classification, which knows global addresses only. An endpoint without an IPv6
address sends no IPv6 at all: it has nobody to talk to (its network has no IPv6).
"""
from __future__ import annotations

from typing import Iterable, List

from flows.entry import FlowEntry
from flows.mk import flow
from flows import nd
from flows.pipeline import (ETH_ARP, ETH_IP, ETH_IP6, IPPROTO_ICMPV6, MD_ALL, MULTICAST_BIT, ND_NS,
                            OFPVID_PRESENT, TUNNEL_PORT, Owner, T, cookie, endpoint_cookie, md)
from flows.snapshot import Endpoint, Network

F = flow


def base_flows() -> List[FlowEntry]:
    """Fixed flows: each table's miss as flows/contract.py declares it (on to
    the next table, or drop), and a multicast source dropped on entry."""
    from flows.contract import CONTRACT
    c = cookie(Owner.BASE)
    out = [F(t, 0, {}, () if d.miss is None else (("goto", int(d.miss)),), c)
           for t, d in CONTRACT.items() if d.base]
    out.append(F(T.INGRESS, 200, {"eth_src": MULTICAST_BIT}, (), c))
    return out + nd.base_flows()


def endpoint_port_flows(e: Endpoint, port: int, vrf: int, net: Network, dscp: int) -> List[FlowEntry]:
    """A local endpoint port may send IPv4, ARP and IPv6 with its own MAC and addresses only."""
    c = endpoint_cookie(e.endpoint_id)
    meta = ("write_metadata", md(vrf, net.net_id), MD_ALL)
    ip_actions = ((("set_field", "ip_dscp", dscp),) if dscp else ()) + (meta, ("goto", int(T.ARP)))
    out = [
        F(T.INGRESS, 100, {"in_port": port, "eth_src": e.mac, "eth_type": ETH_IP, "ip_src": e.ip},
          ip_actions, c),
        F(T.INGRESS, 100, {"in_port": port, "eth_src": e.mac, "eth_type": ETH_ARP,
                           "arp_sha": e.mac, "arp_spa": e.ip}, (meta, ("goto", int(T.ARP))), c),
        F(T.INGRESS, 50, {"in_port": port}, (), c),       # anything else from the port: spoofed
    ]
    if e.ip6:
        out += [F(T.INGRESS, 100, {"in_port": port, "eth_src": e.mac, "eth_type": ETH_IP6, "ipv6_src": e.ip6},
                  ip_actions, c),
                F(T.INGRESS, 100, {"in_port": port, "eth_src": e.mac, "eth_type": ETH_IP6,
                                   "ip_proto": IPPROTO_ICMPV6, "icmpv6_type": ND_NS,
                                   "ipv6_src": nd.link_local(e.mac)}, (meta, ("goto", int(T.ARP))), c)]
    return out


def fabric_flows(net: Network, vrf: int, uplink: int | None) -> Iterable[FlowEntry]:
    """Packets of a network arriving from other hosts, marked FROM_FABRIC."""
    c = cookie(Owner.NETWORK, net.net_id)
    meta = ("write_metadata", md(vrf, net.net_id, fabric=True), MD_ALL)
    if net.encap == "vxlan":
        yield F(T.INGRESS, 100, {"in_port": TUNNEL_PORT, "tun_id": net.pkt_tag},
                (meta, ("goto", int(T.ARP))), c)
    elif uplink is not None:
        yield F(T.INGRESS, 100, {"in_port": uplink, "vlan_vid": OFPVID_PRESENT | net.pkt_tag},
                (("pop_vlan",), meta, ("goto", int(T.ARP))), c)

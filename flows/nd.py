"""IPv6 neighbour discovery answered by flows (table ARP, then ND_REPLY), as proxy ARP is.

A neighbour solicitation (ICMPv6 135) from a local port for an address the network knows,
an endpoint's (local or remote) or its gateway6's, is turned into the solicited
advertisement in place and sent back out of the input port: addresses swapped, type 136,
flags S|O (R|S|O for the gateway), the target's MAC as source and in the target link-layer
option. No solicitation is flooded and no endpoint ever answers one.

Why two tables: OVS checks a set_field against the flow's match, and the target
link-layer option (nd_tll) can only be written where the packet is an advertisement
(icmpv6_type=136), which it becomes in table ARP; ND_REPLY then copies eth_src (already
the target's MAC) into it. Writing nd_sll instead is accepted but lost: the datapath
turns the option into a TLL before it writes the SLL (seen on OVS 3.1).

Cost: OVS 3.1's datapath has no action to write nd_reserved/nd_options_type, so each
answered solicitation is executed by ovs-vswitchd's slow path (ofproto/trace says so); ND is
rare, but a port flooding solicitations costs upcalls, which a meter could cap (not done).

Everything else of ND and its neighbours is dropped in table ARP, from anyone: router
solicitations (netplugin configures the default route itself; there is no router
advertisement), router advertisements and redirects (no endpoint is a router), unanswered
solicitations, unsolicited advertisements (nobody may claim an address), MLD. A duplicate
address probe (source ::) is already dropped by the spoof guard, so an endpoint's DAD
always succeeds: IPAM hands every address out once.
"""
from __future__ import annotations

import ipaddress
from typing import List

from flows.entry import FlowEntry
from flows.mk import flow
from flows.pipeline import (ETH_IP6, ICMP6_ECHO_REPLY, ICMP6_ECHO_REQUEST, IPPROTO_ICMPV6, MD_FROM_FABRIC,
                            MD_NET_MASK, MD_VRF_MASK, MLD_TYPES, ND_FLAG_OVERRIDE, ND_FLAG_ROUTER,
                            ND_FLAG_SOLICITED, ND_NA, ND_NS, ND_OPT_TLL, ND_RA, ND_REDIRECT, ND_RS, Owner, T,
                            cookie, md)

ICMP6 = {"eth_type": ETH_IP6, "ip_proto": IPPROTO_ICMPV6}
PRIO_ND_DROP = 90              # below every answer (100)


def link_local(mac: str) -> str:
    """The EUI-64 link-local address of a MAC (fe80::/64, universal/local bit flipped):
    what a Linux interface takes by default (addr_gen_mode eui64)."""
    b = bytearray(bytes.fromhex(mac.replace(":", "")))
    b[0] ^= 0x02
    iid = bytes(b[:3]) + b"\xff\xfe" + bytes(b[3:])
    return str(ipaddress.IPv6Address(b"\xfe\x80" + b"\0" * 6 + iid))


def proxy_nd(net_id: int, ip6: str, mac: str, cookie_: int, router: bool = False) -> FlowEntry:
    """Answer a solicitation for ip6 inside network net_id with mac (table ND_REPLY sends it)."""
    flags = ND_FLAG_SOLICITED | ND_FLAG_OVERRIDE | (ND_FLAG_ROUTER if router else 0)
    return flow(
        T.ARP, 100,
        {**ICMP6, "icmpv6_type": ND_NS, "nd_target": ip6,
         "metadata": (md(net=net_id), MD_NET_MASK | MD_FROM_FABRIC)},
        (("move", "eth_src", "eth_dst"), ("set_field", "eth_src", mac),
         ("move", "ipv6_src", "ipv6_dst"), ("set_field", "ipv6_src", ip6),
         ("set_field", "icmpv6_type", ND_NA), ("set_field", "nd_reserved", flags),
         ("set_field", "nd_options_type", ND_OPT_TLL), ("goto", int(T.ND_REPLY))),
        cookie_)


def gateway_echo6(vrf: int, gateway6: str, router_mac: str, cookie_: int) -> FlowEntry:
    """ping6 to any gateway6 of the VRF answered out of the input port (see arp.gateway_echo);
    OVS fixes the ICMPv6 checksum, pseudo-header included, as the fields are set."""
    return flow(
        T.ARP, 100,
        {**ICMP6, "icmpv6_type": ICMP6_ECHO_REQUEST, "ipv6_dst": gateway6, "eth_dst": router_mac,
         "metadata": (md(vrf=vrf), MD_VRF_MASK | MD_FROM_FABRIC)},
        (("move", "eth_src", "eth_dst"), ("set_field", "eth_src", router_mac),
         ("move", "ipv6_src", "ipv6_dst"), ("set_field", "ipv6_src", gateway6),
         ("set_field", "icmpv6_type", ICMP6_ECHO_REPLY), ("in_port",)),
        cookie_)


def base_flows() -> List[FlowEntry]:
    """Every switch: the advertisement's link-layer option, and ND/MLD nobody answers dropped."""
    c = cookie(Owner.BASE)
    out = [flow(T.ND_REPLY, 100, {**ICMP6, "icmpv6_type": ND_NA},
                (("move", "eth_src", "nd_tll"), ("in_port",)), c)]
    for t in (ND_RS, ND_RA, ND_NS, ND_NA, ND_REDIRECT) + MLD_TYPES:
        out.append(flow(T.ARP, PRIO_ND_DROP, {**ICMP6, "icmpv6_type": t}, (), c))
    return out

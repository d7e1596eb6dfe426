"""Tables L2 and DELIVER, and the per-network flood groups.

Known unicast goes straight to its port or host.  Broadcast/multicast floods
through the network's ALL group (local ports + every other host that has
endpoints in the network), or, for a packet that came from the fabric, the
LOCAL group only (split horizon).  Unknown unicast is dropped on purpose: the
controller knows every endpoint's MAC, so nobody would answer it anyway.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

from flows.entry import FlowEntry, GroupEntry
from flows.mk import flow
from flows.pipeline import (ETH_8021Q, GROUP_FLOOD_ALL, GROUP_FLOOD_LOCAL, MD_FROM_FABRIC,
                            MD_NET_MASK, MULTICAST_BIT, OFPVID_PRESENT, TUNNEL_PORT, Owner, T,
                            cookie, flood_group_id, md)
from flows.snapshot import Network

F = flow


def to_fabric(net: Network, vtep_ip: str | None, uplink: int | None) -> Tuple[tuple, ...] | None:
    """Actions that carry a frame of `net` to another host, None if impossible."""
    if net.encap == "vxlan":
        if not vtep_ip:
            return None
        return (("set_field", "tun_dst", vtep_ip), ("set_field", "tun_id", net.pkt_tag),
                ("output", TUNNEL_PORT))
    if uplink is None:
        return None
    return (("push_vlan", ETH_8021Q), ("set_field", "vlan_vid", OFPVID_PRESENT | net.pkt_tag),
            ("output", uplink))


def local_unicast(net_id: int, mac: str, port: int, cookie_: int) -> List[FlowEntry]:
    m = {"eth_dst": mac, "metadata": (md(net=net_id), MD_NET_MASK)}
    return [F(T.L2, 100, m, (("goto", int(T.INGRESS_CT)),), cookie_),
            F(T.DELIVER, 100, m, (("output", port),), cookie_)]


def remote_unicast(net_id: int, mac: str, actions: Tuple[tuple, ...], cookie_: int) -> FlowEntry:
    # FROM_FABRIC must be clear: never send a frame from the fabric back into it.
    return F(T.L2, 100, {"eth_dst": mac, "metadata": (md(net=net_id), MD_NET_MASK | MD_FROM_FABRIC)},
             actions, cookie_)


def flood(net: Network, local_ports: Sequence[int], remote: Sequence[Tuple[tuple, ...]]
          ) -> Tuple[List[FlowEntry], List[GroupEntry]]:
    """Flood flows and groups of one network on one host.

    remote: one action list per destination (per remote host for vxlan, the
    uplink once for vlan).
    """
    c = cookie(Owner.NETWORK, net.net_id)
    g_all = flood_group_id(GROUP_FLOOD_ALL, net.net_id)
    g_loc = flood_group_id(GROUP_FLOOD_LOCAL, net.net_id)
    local = tuple((("output", p),) for p in sorted(local_ports))
    groups = [GroupEntry(g_all, local + tuple(remote), "all", c),
              GroupEntry(g_loc, local, "all", c)]
    mask = MD_NET_MASK | MD_FROM_FABRIC
    flows = [F(T.L2, 50, {"eth_dst": MULTICAST_BIT, "metadata": (md(net=net.net_id), mask)},
               (("group", g_all),), c),
             F(T.L2, 50, {"eth_dst": MULTICAST_BIT, "metadata": (md(net=net.net_id, fabric=True), mask)},
               (("group", g_loc),), c)]
    return flows, groups

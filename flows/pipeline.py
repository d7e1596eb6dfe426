"""The pipeline, declared in one place: tables, metadata/register layout,
cookie layout, fixed ports, group ids and the router MAC.

Packet walk (every table misses to the next one unless stated):

  INGRESS -> ARP -> [SERVICE => SERVICE_LB -> (group) => SERVICE_FWD] -> SRC_GROUP -> DST_GROUP -> EGRESS_CT => EGRESS_POLICY
          (ARP -> ND_REPLY: a neighbour solicitation turned advertisement, out of in_port)
          -> ROUTING -> L2 -> (local) INGRESS_CT => INGRESS_POLICY -> DELIVER
                          -> (remote) tunnel / uplink output, (bcast) flood group
"""
from __future__ import annotations

import hashlib
from enum import IntEnum

from flows.entry import COOKIE_MARK, COOKIE_MARK_MASK


class T(IntEnum):
    """Table ids."""
    INGRESS = 0          # classify by in_port/tun_id/vlan into VRF+network; spoof guard
    ARP = 1              # proxy ARP and neighbour discovery for endpoints and gateways of the network
    SERVICE = 2          # IP to a service VIP:port from a local port -> ct(nat) in the service zone
    SERVICE_LB = 3       # +new: the service port's select group (ct commit+DNAT); +est: on
    SERVICE_FWD = 4      # after DNAT: ip_dst -> the provider's MAC and network
    HOST_IN = 5          # from the host port: only replies of SNATed connections, un-SNATed, in
    ND_REPLY = 6         # a neighbour solicitation made advertisement: its target link-layer
                         # option (set here, where the packet is an advertisement), out of in_port
    SRC_GROUP = 10       # ip_src within the VRF -> source group id (reg5)
    DST_GROUP = 11       # ip_dst within the VRF -> destination group id (reg6)
    EGRESS_CT = 20       # IP from a local port -> conntrack in the VRF's zone
    EGRESS_POLICY = 21   # 'out' rules of the source group, +new only
    ROUTING = 30         # eth_dst=router MAC: route by ip_dst within the VRF
    HOST_NAT = 35        # routed to no endpoint: SNAT to the tenant's pvtSubnet address
    HOST_OUT = 36        # ... and out of the host port to the host's kernel (which masquerades)
    L2 = 40              # (network, eth_dst) -> local / remote host; flood
    INGRESS_CT = 50      # IP to a local port -> conntrack in the VRF's zone
    INGRESS_POLICY = 51  # 'in' rules of the destination group, +new only
    DELIVER = 52         # (network, eth_dst) -> local ofport; replies of a service un-DNATed first


# --- metadata: | flags 63..56 | reserved 55..48 | VRF 47..32 | network 31..0 |
MD_NET_MASK = 0xFFFFFFFF
MD_VRF_SHIFT = 32
MD_VRF_MASK = 0xFFFF << MD_VRF_SHIFT
MD_FROM_FABRIC = 1 << 63          # came in through the tunnel or the uplink
MD_ALL = MD_NET_MASK | MD_VRF_MASK | MD_FROM_FABRIC

# --- registers (32 bits each)
REG_SRC_GROUP = "reg5"            # source endpoint group id, 0 = none/unknown
REG_DST_GROUP = "reg6"            # destination endpoint group id, 0 = none/unknown
REG_UNNAT = "reg7"                # 1 once a packet went through the service un-DNAT in DELIVER


def md(vrf: int = 0, net: int = 0, fabric: bool = False) -> int:
    return (vrf << MD_VRF_SHIFT) | net | (MD_FROM_FABRIC if fabric else 0)


# --- cookies: | COOKIE_MARK 63..56 | owner kind 55..48 | owner id 47..0 |
class Owner(IntEnum):
    BASE = 1       # table-miss and fixed flows; id 0
    TENANT = 2     # per-VRF flows (conntrack, default verdicts); id = vrf_id
    NETWORK = 3    # per-network flows and flood groups; id = net_id
    HOST = 4       # per-host flows; id = endpoint_owner_id(label)
    ENDPOINT = 5   # per-endpoint flows; id = endpoint_owner_id(endpoint_id)
    GROUP = 6      # per-group flows; id = group_id
    RULE = 7       # per-rule flows (conjunction members and conj_id); id = rule_uid
    SERVICE = 8    # per-service flows and select groups; id = service_id


OWNER_SHIFT = 48
OWNER_ID_MASK = (1 << OWNER_SHIFT) - 1
OWNER_KIND_MASK = 0xFF << OWNER_SHIFT
COOKIE_OWNER_MASK = COOKIE_MARK_MASK | OWNER_KIND_MASK | OWNER_ID_MASK  # all 64 bits
COOKIE_KIND_MASK = COOKIE_MARK_MASK | OWNER_KIND_MASK


def cookie(kind: Owner, owner_id: int = 0) -> int:
    if not 0 <= owner_id <= OWNER_ID_MASK:
        raise ValueError(f"owner id {owner_id} does not fit 48 bits")
    return COOKIE_MARK | (int(kind) << OWNER_SHIFT) | owner_id


def parse_cookie(c: int) -> tuple[Owner, int] | None:
    """(kind, owner id) of a netweave cookie, None for anyone else's."""
    if c & COOKIE_MARK_MASK != COOKIE_MARK:
        return None
    return Owner((c & OWNER_KIND_MASK) >> OWNER_SHIFT), c & OWNER_ID_MASK


def name_owner_id(name: str) -> int:
    """Stable 48-bit id for objects named by strings (endpoints, hosts).

    A hash, not a counter, so every controller replica derives the same id
    without coordination; 48 bits keep collisions negligible (~1e-7 at 10k).
    """
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=6).digest(), "big")


endpoint_owner_id = name_owner_id


def endpoint_cookie(endpoint_id: str) -> int:
    return cookie(Owner.ENDPOINT, name_owner_id(endpoint_id))


# --- ports
TUNNEL_PORT = 100                 # ofport requested for the flow-based VXLAN port
TUNNEL_PORT_NAME = "vxlan0"       # type=vxlan options:remote_ip=flow options:key=flow
# The host port: an internal port whose kernel side holds the host's pvtSubnet address;
# endpoints reach their host and, through the host's masquerading, the outside by it.
HOST_PORT = 102
HOST_PORT_NAME = "nethost0"
HOST_PORT_MAC = "02:4e:57:00:00:02"       # the kernel side's MAC (the agent sets it)
DEFAULT_PVT_SUBNET = "172.19.0.0/16"


def pvt_tenant_ip(pvt_subnet: str, vrf_id: int) -> str:
    """A tenant's address in pvtSubnet: its SNAT source, and how the host's replies name it."""
    import ipaddress
    net = ipaddress.IPv4Network(pvt_subnet, strict=False)
    if not 0 < vrf_id < net.num_addresses - 2:
        raise ValueError(f"vrf {vrf_id} has no address in {pvt_subnet}")
    return str(net.network_address + vrf_id)


def pvt_host_ip(pvt_subnet: str) -> str:
    """The host kernel's address on the host port (the last usable one of pvtSubnet)."""
    import ipaddress
    net = ipaddress.IPv4Network(pvt_subnet, strict=False)
    return str(net.broadcast_address - 1)


# The uplink of 'vlan' networks has no fixed number: it is the ofport that
# Snapshot.ofports gives for Host.uplink_port (see index.Index.uplink).
OFPVID_PRESENT = 0x1000
ETH_8021Q = 0x8100
ETH_IP = 0x0800
ETH_ARP = 0x0806
IP_PROTO = {"tcp": 6, "udp": 17, "icmp": 1}
ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0

# --- IPv6 (flows/nd.py, classify, routing, policy)
ETH_IP6 = 0x86DD
IPPROTO_ICMPV6 = 58
ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY = 128, 129
ND_RS, ND_RA, ND_NS, ND_NA, ND_REDIRECT = 133, 134, 135, 136, 137
MLD_TYPES = (130, 131, 132, 143)              # query, v1 report, done, v2 report
# nd_reserved of an advertisement: its R(outer), S(olicited), O(verride) flags
ND_FLAG_ROUTER, ND_FLAG_SOLICITED, ND_FLAG_OVERRIDE = 0x80000000, 0x40000000, 0x20000000
ND_OPT_TLL = 2                                # nd_options_type: target link-layer address

# --- meters
# A deny rule with logging sends the packets it drops to the controller through
# this meter (OpenFlow 1.3 meter, packets/s with a burst), so one host cannot
# flood netmaster with packet-ins whatever it is sent.  The controller creates
# it on each switch before the first flow that uses it (controller/ofapp.py).
DENY_LOG_METER = 1
# Bytes of a denied packet sent to the controller: Ethernet + IPv4 with options
# + the TCP/UDP/ICMP header, which is all the log needs.
DENY_LOG_MAX_LEN = 128

# --- group ids: | kind 31..28 | net_id 27..0 |  or  | 3 | service_id 27..4 | port index 3..0 |
GROUP_FLOOD_ALL = 1      # local ports + remote hosts (from a local port)
GROUP_FLOOD_LOCAL = 2    # local ports only (from the fabric: split horizon)
GROUP_SERVICE = 3        # select: one bucket per provider of one service port
NET_ID_MAX = (1 << 28) - 1
SERVICE_ID_MAX = (1 << 24) - 1
SERVICE_PORTS_MAX = 16


def service_group_id(service_id: int, port_index: int) -> int:
    if not 0 < service_id <= SERVICE_ID_MAX or not 0 <= port_index < SERVICE_PORTS_MAX:
        raise ValueError(f"service {service_id} port {port_index} out of range")
    return (GROUP_SERVICE << 28) | (service_id << 4) | port_index


# --- conntrack zones: a tenant's policy uses zone vrf_id; its services' NAT a zone of its
# own, so policy sees the translated connection and NAT the original one, each once.
SERVICE_ZONE_BASE = 0x8000


def service_zone(vrf_id: int) -> int:
    if not 0 < vrf_id < SERVICE_ZONE_BASE:
        raise ValueError(f"vrf {vrf_id}: services need a VRF id below {SERVICE_ZONE_BASE}")
    return SERVICE_ZONE_BASE | vrf_id


# Group kinds netweave makes: the controller deletes a group only when its id is
# of one of these kinds (OpenFlow 1.3 groups carry no cookie to say whose they are).
# A new kind of group adds its kind here.
OWNED_GROUP_KINDS = {GROUP_FLOOD_ALL, GROUP_FLOOD_LOCAL, GROUP_SERVICE}


def group_owned(group_id: int) -> bool:
    return (group_id >> 28) in OWNED_GROUP_KINDS and (group_id & NET_ID_MAX) != 0


def flood_group_id(kind: int, net_id: int) -> int:
    if not 0 < net_id <= NET_ID_MAX:
        raise ValueError(f"net_id {net_id} out of range")
    return (kind << 28) | net_id


# Gateway MAC answered for every gateway IP (locally administered, unicast).
ROUTER_MAC = "02:4e:57:00:00:01"
MULTICAST_BIT = ("01:00:00:00:00:00", "01:00:00:00:00:00")

# --- priorities used across modules
PRIO_POLICY_BASE = 1000     # rule priorities live in [1000, 61000)
PRIO_POLICY_SLOTS = 300     # OVS priorities per (user priority, action)
PRIO_CT_PASS = 65000        # +est / +rel

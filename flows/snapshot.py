"""The compiler's input: an immutable picture of the desired network.

The controller builds one Snapshot from the REST model (netmaster objects plus
what the agents and switches reported) and hands it to flows.compiler.  All
ids here are allocated by netmaster, never by a host, so every switch agrees
on them (Contiv let each agent allocate 8-bit VRF ids: we do not).

Names are scoped by tenant: (tenant, network) and (tenant, group) are the keys
that Endpoint, Group and Rule use to refer to each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Tuple


@dataclass(frozen=True)
class Tenant:
    """A tenant, which is also one VRF.

    name:   tenant name (netmaster key).
    vrf_id: netmaster-allocated VRF id, 1..0xFFFF, unique across tenants.  It
            is carried in metadata and is also the conntrack zone, hence the
            16-bit ceiling (never 8 bits, unlike Contiv).
    """
    name: str
    vrf_id: int


@dataclass(frozen=True)
class Network:
    """A network (one L2 segment / subnet) of a tenant.

    tenant:  owning tenant name.
    name:    network name, unique within the tenant only.
    encap:   'vxlan' (overlay through the tunnel port) or 'vlan' (tagged on
             the host's uplink port).
    pkt_tag: the VNI for vxlan, the VLAN id (1..4094) for vlan; unique per encap
             across all tenants (netmaster allocates it).
    subnet:  'a.b.c.d/len'; used for from_network / to_network rule matches.
    gateway: the gateway IP ('a.b.c.d') answered with the router MAC on every
             host, or '' for a network that is not routed.
    net_id:  netmaster-allocated id, unique across all tenants, 1..0x0FFFFFFF;
             carried in metadata and used for flood group ids and cookies.
    subnet6: '' (IPv4 only) or the IPv6 subnet in canonical compressed form
             ('2001:db8:1::/64'): the network is dual-stack.
    gateway6: '' or its IPv6 gateway (canonical compressed form), answered
             with the router MAC by neighbour discovery on every host.
    """
    tenant: str
    name: str
    encap: str
    pkt_tag: int
    subnet: str
    gateway: str
    net_id: int
    subnet6: str = ""
    gateway6: str = ""


@dataclass(frozen=True)
class Endpoint:
    """A workload interface plugged into a host's integration bridge.

    endpoint_id: netmaster's endpoint id (string; the flow cookie owner id is
                 a stable 48-bit hash of it, see pipeline.endpoint_owner_id).
    tenant, network: where it lives.
    group:       endpoint group name within the tenant, or '' for none.
    ip:          its IPv4 address 'a.b.c.d' (no prefix length).
    mac:         its MAC, lower case 'aa:bb:cc:dd:ee:ff'.
    host:        label of the host it runs on (Host.label).
    port_name:   OVS port name on that host; its ofport comes from
                 Snapshot.ofports and, until known, the endpoint gets no local
                 port flows (remote hosts can still reach it).
    labels:      'key=value' strings (a service's selectors pick its providers by them).
    ip6:         its IPv6 address (canonical compressed form, no prefix length) on a
                 dual-stack network, else ''.  Without it the endpoint sends and
                 receives no IPv6 but link-local neighbour discovery (flows/nd.py).
    """
    endpoint_id: str
    tenant: str
    network: str
    group: str
    ip: str
    mac: str
    host: str
    port_name: str
    labels: Tuple[str, ...] = ()
    ip6: str = ""


@dataclass(frozen=True)
class Service:
    """A service load balancer (Contiv's serviceLB).

    tenant, name: key.
    network:    the network its VIP belongs to (ARP for the VIP is answered there).
    vip:        the virtual IPv4 address 'a.b.c.d'.
    ports:      (service port, provider port, 'tcp' | 'udp') triples.
    selectors:  'key=value' labels; its providers are the tenant's endpoints that carry
                them all.
    service_id: netmaster-allocated, 1..SERVICE_ID_MAX: group ids and cookies.
    """
    tenant: str
    name: str
    network: str
    vip: str
    ports: Tuple[Tuple[int, int, str], ...]
    selectors: Tuple[str, ...]
    service_id: int


@dataclass(frozen=True)
class Host:
    """A compute host running one OVS integration bridge.

    label:       host name as the agent reports it.
    vtep_ip:     its VXLAN tunnel endpoint IP (tun_dst from other hosts).
    dpid:        datapath id of its bridge (the controller uses it; the
                 compiler only keys by label).
    uplink_port: OVS port name of the uplink used by 'vlan' networks, or ''.
    """
    label: str
    vtep_ip: str
    dpid: int
    uplink_port: str = ""


@dataclass(frozen=True)
class Group:
    """An endpoint group (EPG).

    tenant, name: key.
    network:  network name the group belongs to (informational here).
    group_id: netmaster-allocated, unique across tenants, 1..0xFFFFFFFF;
              carried in reg5/reg6 and used in cookies.
    policies: names of the tenant's policies attached to the group.  No
              policy means open: everything is allowed.
    dscp:     0, or a DSCP value (1..63) stamped on its endpoints' IP traffic.
    """
    tenant: str
    name: str
    network: str
    group_id: int
    policies: Tuple[str, ...] = ()
    dscp: int = 0


@dataclass(frozen=True)
class Rule:
    """One rule of a policy (Contiv's rule object).  A policy is the set of
    rules sharing (tenant, policy); a group may attach a policy with no rules.

    tenant, policy, rule_id: key (rule_id is the user's string id).
    direction: 'in'  -- traffic TO the policy's groups, matched on from_group /
                        from_network / from_ip (and to_ip, Contiv's k8s case),
                        enforced on the destination host;
               'out' -- traffic FROM the policy's groups, matched on to_group /
                        to_network / to_ip, enforced on the source host.
    priority:  1..100, higher wins; at equal priority deny beats allow.
    action:    'allow' or 'deny'.
    protocol:  '' (any IP), 'tcp', 'udp', 'icmp' or an IP protocol number as a
               string.
    port:      destination port, 0 = any (tcp/udp only; with protocol '' it
               means tcp or udp to that port).
    from_group, to_group:     group names in the tenant, or ''.
    from_network, to_network: network names in the tenant, or '' (matched as
                              that network's subnet, within the tenant's VRF).
    from_ip, to_ip:           '' or 'a.b.c.d', 'a.b.c.d/len' or 'a.b.c.d-e'
                              (last-octet range, inclusive), or an IPv6 address
                              or CIDR (then the rule matches IPv6 only).
    rule_uid:  netmaster-allocated unique id, 1..0xFFFFFFFF: the conjunction id
               and the cookie owner id, so per-rule counters are readable.  The
               default 0 means "not allocated yet": such a rule compiles to nothing.
    log:       a deny rule whose dropped packets (the first of each connection)
               also go to the controller through the per-host deny-log meter.
    """
    tenant: str
    policy: str
    rule_id: str
    direction: str
    priority: int
    action: str
    protocol: str = ""
    port: int = 0
    from_group: str = ""
    to_group: str = ""
    from_network: str = ""
    to_network: str = ""
    from_ip: str = ""
    to_ip: str = ""
    rule_uid: int = 0
    log: bool = False


@dataclass(frozen=True)
class Snapshot:
    """Everything the compiler needs, for all hosts.

    ofports: host label -> {OVS port name -> ofport number}, as learned by the
             controller from each switch (port status / port desc).
    """
    tenants: Tuple[Tenant, ...] = ()
    networks: Tuple[Network, ...] = ()
    endpoints: Tuple[Endpoint, ...] = ()
    hosts: Tuple[Host, ...] = ()
    groups: Tuple[Group, ...] = ()
    rules: Tuple[Rule, ...] = ()
    ofports: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    services: Tuple[Service, ...] = ()
    pvt_subnet: str = "172.19.0.0/16"     # the global pvtSubnet: egress SNAT addresses (flows/egress.py)

"""The object model's wire schema: one declaration that validation, the
dataclasses' defaults and the OpenAPI document are all derived from.

Field names, lengths, formats, ranges and defaults follow Contiv's object
model (contivmodel/*.json), so Contiv's clients can drive netmaster.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

# Contiv's name regex: DNS-label-like, dots allowed, no ':' '/' '_' or leading '-'.
NAME = r"^(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])\.)*([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9])$"
NAME_OPT = r"^((([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])\.)*([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9]))?$"
_OCT = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = rf"{_OCT}(\.{_OCT}){{3}}"
IPV4_OPT = rf"^({IPV4})?$"
SUBNET = rf"^({IPV4})(\-({IPV4}))?/(3[0-1]|2[0-9]|1[0-9]|[1-9])$"
IP_POOL = rf"^$|^({IPV4})(\-({IPV4}))?$"
_H = r"[0-9a-fA-F]{1,4}"
_IPV6 = rf"(({_H})((\:{_H}){{7}}))|((({_H}\:){{0,6}}|\:)((\:{_H}){{0,6}}|\:))"   # Contiv's
_PLEN6 = r"(12[0-8]|1[01][0-9]|[1-9][0-9]|[0-9])"
IPV6_SUBNET = rf"^({_IPV6})/(12[0-8]|1[01][0-9]|[1-9][0-9]|[1-9])$|^$"
IPV6 = rf"^({_IPV6})?$"
# a rule's peer: Contiv's IPv4 forms, or (netweave) an IPv6 address or CIDR; model/service.py
# parses it fully (the regex lets some non-addresses through, e.g. '1:2')
RULE_IP = rf"^(({IPV4})(\-{_OCT})?(/(3[0-2]|2[0-9]|1[0-9]|[1-9]))?)?$|^({_IPV6})(/{_PLEN6})?$"
BANDWIDTH = (r"^([1-9][0-9]* (([kmgKMG]bps)|[kmgKMG]|(kb|Kb|Gb|gb|Mb|mb)))?$"
             r"|^([1-9][0-9]*(((k|m|g|K|G|M)bps)|(k|m|g|K|M|G)|(kb|Kb|Gb|gb|Mb|mb)))?$")


@dataclass(frozen=True)
class Field:
    name: str
    type: str = "string"           # string | int | bool | array (of strings)
    length: Optional[int] = None   # max length of a string
    format: Optional[str] = None   # regex a string must match
    min: Optional[int] = None
    max: Optional[int] = None
    default: Any = None
    required: bool = False
    mutable: bool = True           # may change after creation (else 409)
    description: str = ""


@dataclass(frozen=True)
class Kind:
    name: str                      # Contiv's object name, e.g. "endpointGroup"
    collection: str                # URL segment, e.g. "endpointGroups"
    key: tuple                     # key fields, joined by ':' in the URL
    fields: tuple                  # Field, in Contiv's (alphabetical) wire order
    links: dict = field(default_factory=dict)      # link name -> (kind, key fields)
    link_sets: tuple = ()                          # link-set names (filled from state)
    read_only: bool = False        # no POST/PUT/DELETE by users (endpoint)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def field_names(self) -> tuple:
        return tuple(f.name for f in self.fields)


def _key(name: str, desc: str, length: int = 64) -> Field:
    return Field(name, length=length, format=NAME, required=True, mutable=False, description=desc)


TENANT = Kind("tenant", "tenants", ("tenantName",), (
    Field("defaultNetwork", length=64, format=NAME_OPT, description="default network of the tenant"),
    _key("tenantName", "tenant name"),
), link_sets=("AppProfiles", "EndpointGroups", "NetProfiles", "Networks", "Policies"))

NETWORK = Kind("network", "networks", ("tenantName", "networkName"), (
    Field("cfgdTag", length=128, format=NAME_OPT, description="configured network tag"),
    Field("encap", format=r"^(vlan|vxlan)$", mutable=False, default="vxlan",
          description="encapsulation between hosts"),
    Field("gateway", format=IPV4_OPT, mutable=False, description="gateway address, inside the subnet"),
    Field("ipv6Gateway", format=IPV6, mutable=False),
    Field("ipv6Subnet", format=IPV6_SUBNET, mutable=False),
    _key("networkName", "network name"),
    Field("nwType", format=r"^(infra|data)$", default="data", mutable=False),
    Field("pktTag", type="int", min=0, max=16777216, default=0, mutable=False,
          description="requested VLAN id or VNI; 0 allocates one"),
    Field("subnet", format=SUBNET, required=True, mutable=False,
          description="a.b.c.d[-e.f.g.h]/len; the range form limits the addresses handed out"),
    _key("tenantName", "tenant name"),
), links={"Tenant": ("tenant", ("tenantName",))}, link_sets=("EndpointGroups",))

ENDPOINT_GROUP = Kind("endpointGroup", "endpointGroups", ("tenantName", "groupName"), (
    Field("cfgdTag", length=128, format=NAME_OPT),
    Field("extContractsGrps", type="array"),
    _key("groupName", "endpoint group name"),
    Field("ipPool", format=IP_POOL, mutable=False, description="a.b.c.d[-e.f.g.h] inside the network"),
    Field("netProfile", length=64, description="netprofile applied to the group's endpoints"),
    Field("networkName", length=64, format=NAME, required=True, mutable=False),
    Field("policies", type="array", description="policies applied to the group's endpoints"),
    _key("tenantName", "tenant name"),
), links={"Tenant": ("tenant", ("tenantName",)), "Network": ("network", ("tenantName", "networkName")),
          "NetProfile": ("netprofile", ("tenantName", "netProfile")), "AppProfile": None},
   link_sets=("Policies",))

POLICY = Kind("policy", "policys", ("tenantName", "policyName"), (
    _key("policyName", "policy name"),
    _key("tenantName", "tenant name"),
), links={"Tenant": ("tenant", ("tenantName",))}, link_sets=("EndpointGroups", "Rules"))

RULE = Kind("rule", "rules", ("tenantName", "policyName", "ruleId"), (
    Field("action", format=r"^(allow|deny)$", required=True, mutable=False),
    Field("direction", format=r"^(in|out)$", required=True, mutable=False),
    # netweave's own field (Antrea's name; Contiv's clients never send it): a
    # deny rule with it sends the first packet of each connection it drops to
    # netmaster, meter-capped per host, to be logged (see controller/denylog.py).
    Field("enableLogging", type="bool", default=False,
          description="log the connections this rule denies (deny rules only; netweave extension)"),
    Field("fromEndpointGroup", length=64, format=NAME_OPT, mutable=False),
    Field("fromIpAddress", format=RULE_IP, mutable=False),
    Field("fromNetwork", length=64, format=NAME_OPT, mutable=False),
    _key("policyName", "policy name"),
    Field("port", type="int", min=0, max=65535, default=0, mutable=False),
    Field("priority", type="int", min=1, max=100, default=1, mutable=False,
          description="1-100, higher wins; 0 is taken as 1"),
    Field("protocol", format=r"^(tcp|udp|icmp||[0-9]{1,3}?)$", mutable=False),
    _key("ruleId", "rule id"),
    _key("tenantName", "tenant name"),
    Field("toEndpointGroup", length=64, format=NAME_OPT, mutable=False),
    Field("toIpAddress", format=RULE_IP, mutable=False),
    Field("toNetwork", length=64, format=NAME_OPT, mutable=False),
), links={"MatchEndpointGroup": None}, link_sets=("Policies",))

APP_PROFILE = Kind("appProfile", "appProfiles", ("tenantName", "appProfileName"), (
    _key("appProfileName", "application profile name"),
    Field("endpointGroups", type="array"),
    _key("tenantName", "tenant name"),
), links={"Tenant": ("tenant", ("tenantName",))}, link_sets=("EndpointGroups",))

NETPROFILE = Kind("netprofile", "netprofiles", ("tenantName", "profileName"), (
    Field("DSCP", type="int", min=0, max=63, default=0),
    Field("bandwidth", length=64, format=BANDWIDTH, description="e.g. 10mbps, 100 kbps, 1gbps"),
    Field("burst", type="int", min=0, max=10486, default=0),
    Field("profileName", length=64, required=True, mutable=False),
    _key("tenantName", "tenant name"),
), links={"Tenant": ("tenant", ("tenantName",))}, link_sets=("EndpointGroups",))

GLOBAL = Kind("global", "globals", ("name",), (
    Field("arpMode", length=64, format=r"^(proxy|flood)?$", default="proxy"),
    Field("fwdMode", length=64, format=r"^(bridge|routing)?$", default="bridge"),
    Field("name", length=64, format=r"^(global)$", required=True, mutable=False),
    Field("networkInfraType", length=64, format=r"^(aci|aci-opflex|default)?$", default="default"),
    Field("pvtSubnet", format=rf"^({IPV4})/16$", default="172.19.0.0/16"),
    Field("vlans", format=r"^([0-9]{1,4}?-[0-9]{1,4}?)$", default="1-4094"),
    Field("vxlans", format=r"^([0-9]{1,8}?-[0-9]{1,8}?)$", default="1-10000"),
))

# Contiv's service load balancer: a VIP (allocated from the network when empty) whose ports
# lead to the tenant's endpoints carrying every selector label (model/service.py checks the
# selectors and ports; flows/service.py balances connections over the providers).
SERVICE_LB = Kind("serviceLB", "serviceLBs", ("tenantName", "serviceName"), (
    Field("ipAddress", length=15, format=IPV4_OPT, mutable=False,
          description="the VIP wanted, inside the network (empty: the lowest free address)"),
    Field("networkName", length=64, format=NAME, required=True, mutable=False,
          description="the network the VIP belongs to"),
    Field("ports", type="array", description="svcPort:provPort:protocol (TCP or UDP), at least one"),
    Field("selectors", type="array", description="key=value labels a provider endpoint carries, "
                                                  "at least one"),
    _key("serviceName", "service name", length=256),
    _key("tenantName", "tenant name"),
), links={"Tenant": ("tenant", ("tenantName",)), "Network": ("network", ("tenantName", "networkName"))})

# A registered host (netweave's own object; Contiv kept hosts in its service registry).
HOST = Kind("host", "hosts", ("hostLabel",), (
    Field("agentPort", type="int", min=0, max=65535, default=0,
          description="port of the agent's local API (live trace), 0 for none"),
    Field("dpid", format=r"^[0-9a-fA-F]{16}$", required=True, description="br-int datapath id, 16 hex digits"),
    _key("hostLabel", "host label", length=256),
    Field("uplink", length=15, description="uplink interface for VLAN networks"),
    Field("vtepIP", format=rf"^{IPV4}$", required=True, description="underlay (VTEP) address"),
    Field("vtepMAC", length=17, format=r"^$|^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$",
          description="MAC of the VTEP interface; other hosts pre-resolve their tunnels with it"),
))

# An endpoint (read-only to users; the agent allocates it on CNI ADD).
# An endpoint request may ask for its address and MAC (CNI_ARGS IP/MAC, runtimeConfig ips/mac)
# and names what it belongs to, kept in the record: containerName (Contiv's oper field; the pod
# or container name), podNamespace, and cniNetwork (the CNI network configuration's name, which
# CNI GC uses to find the endpoints it answers for).
EP_IP = rf"^({IPV4})(/(3[0-2]|[12]?[0-9]))?$"
MAC = r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$"
EP_IP6 = rf"^$|^({_IPV6})(/{_PLEN6})?$"

ENDPOINT = Kind("endpoint", "endpoints", ("endpointID",), (
    Field("cniNetwork", length=256, description="the CNI network configuration's name (CNI GC)"),
    Field("containerID", length=256, description="the container's id (written again when it is learnt)"),
    Field("containerName", length=256, description="the container's or pod's name"),
    Field("dockerEndpoint", length=64, format=r"^([0-9a-f]{64})?$",
          description="Docker's endpoint id, for endpoints of the Docker driver"),
    _key("endpointID", "endpoint id"),
    Field("groupName", length=64, format=NAME_OPT),
    Field("host", length=256, format=NAME, required=True),
    Field("ifName", length=15),
    Field("intfName", length=15, required=True, format=r"^[A-Za-z0-9_.\-]+$"),
    Field("ipAddress", length=18, format=rf"^$|{EP_IP}",
          description="the address wanted, a.b.c.d[/len] (empty: the lowest free one)"),
    Field("ipv6Address", length=43, format=EP_IP6,
          description="the IPv6 address wanted on a dual-stack network, addr[/len] (empty: the "
                      "lowest free one); netweave extension"),
    Field("labels", type="array", description="the container's labels, key=value"),
    Field("macAddress", length=17, format=rf"^$|{MAC}", description="the MAC wanted (empty: from the address)"),
    Field("networkName", length=64, format=NAME, required=True),
    Field("podNamespace", length=256),
    _key("tenantName", "tenant name"),
), read_only=True)
# What the agent may write again on an existing endpoint (it learns them after the attach).
ENDPOINT_ATTACHMENT = ("containerID", "containerName", "dockerEndpoint", "labels")

KINDS = {k.collection: k for k in (TENANT, NETWORK, ENDPOINT_GROUP, POLICY, RULE, APP_PROFILE,
                                   NETPROFILE, GLOBAL, SERVICE_LB, HOST, ENDPOINT)}
BY_NAME = {k.name: k for k in KINDS.values()}


def key_of(kind: Kind, obj: dict) -> str:
    return ":".join(str(obj.get(f, "")) for f in kind.key)


# What a format means, in words, for error messages.
FORMAT_WORDS = {
    NAME: "a valid name (letters, digits, '-' and '.', not starting or ending with '-')",
    NAME_OPT: "empty or a valid name (letters, digits, '-' and '.', not starting or ending with '-')",
    IPV4_OPT: "empty or a valid IPv4 address",
    SUBNET: "a valid CIDR (a.b.c.d/len or a.b.c.d-e.f.g.h/len, len 1-31)",
    IP_POOL: "empty, an IPv4 address or a range a.b.c.d-e.f.g.h",
    RULE_IP: "empty, an IPv4 address, a.b.c.d/len, a.b.c.d-N, an IPv6 address or an IPv6 CIDR",
    EP_IP6: "empty or an IPv6 address (addr or addr/len)",
    IPV6_SUBNET: "empty or a valid IPv6 CIDR",
    IPV6: "empty or a valid IPv6 address",
    BANDWIDTH: "a rate such as 10mbps, 100 kbps or 1gbps",
    rf"^({IPV4})/16$": "a /16 IPv4 subnet",
    rf"^{IPV4}$": "a valid IPv4 address",
    r"^([0-9]{1,4}?-[0-9]{1,4}?)$": "a range MIN-MAX",
    r"^([0-9]{1,8}?-[0-9]{1,8}?)$": "a range MIN-MAX",
    r"^[0-9a-fA-F]{16}$": "16 hexadecimal digits",
    r"^(tcp|udp|icmp||[0-9]{1,3}?)$": "tcp, udp, icmp, a protocol number or empty",
    rf"^$|{EP_IP}": "empty or an IPv4 address (a.b.c.d or a.b.c.d/len)",
    rf"^$|{MAC}": "empty or a MAC address (six hex pairs joined by ':')",
    r"^$|^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$": "empty or a MAC address (six hex pairs joined by ':')",
}


def format_words(pattern: str) -> str:
    if pattern in FORMAT_WORDS:
        return FORMAT_WORDS[pattern]
    import re
    m = re.fullmatch(r"\^\(([a-z|\-]+)\)(\??)\$", pattern)
    if m:
        words = " or ".join(m.group(1).split("|"))
        return ("empty or " if m.group(2) else "") + words
    return f"matching {pattern}"

"""The pipeline's contract: what each table may match, set, and where it may go.

Declared once, as Faucet declares its tables (faucet_pipeline.py) and checks
every flow mod against them (valve_table.py, _verify_flowmod).  The table-miss
flows (classify.base_flows) come from `miss`, and `verify` says what is wrong
with an entry: the unit tests run it over every flow the compiler and the
incremental engine make, so a producer that strays (a field its table never
matches, a goto backwards or to a table it may not reach) fails there, not on
a switch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import FrozenSet, List, Optional

from flows.entry import FlowEntry
from flows.pipeline import REG_DST_GROUP, REG_SRC_GROUP, REG_UNNAT, T


@dataclass(frozen=True)
class Table:
    matches: FrozenSet[str]              # fields a flow of this table may match
    next: FrozenSet[T]                   # tables it may continue in (goto, or ct(table=))
    miss: Optional[T]                    # where a packet no flow matches goes; None = dropped
    sets: FrozenSet[str] = frozenset()   # fields its actions may set (set_field)
    base: bool = True                    # its miss is a base flow on every switch (else its
                                         # feature installs it where it is used: services)


def _t(matches, nxt=(), miss=None, sets=(), base=True) -> Table:
    return Table(frozenset(matches.split()), frozenset(nxt), miss, frozenset(sets.split() if sets else ()),
                 base)


_POLICY = "eth_type ct_state metadata conj_id ip_proto ip_src ip_dst ipv6_src ipv6_dst tcp_dst udp_dst " + \
          f"{REG_SRC_GROUP} {REG_DST_GROUP}"

CONTRACT = {
    # (the host port's flows: ARP for a tenant's pvtSubnet address answered, replies to it in)
    # (IPv6: ipv6_src, and ip_proto/icmpv6_type for a link-local solicitation)
    T.INGRESS: _t("in_port eth_src eth_type ip_src arp_sha arp_spa tun_id vlan_vid arp_op arp_tpa ip_dst "
                  "ipv6_src ip_proto icmpv6_type",
                  [T.ARP, T.HOST_IN], sets="ip_dscp eth_src arp_op arp_sha arp_spa"),
    T.ARP: _t("eth_type arp_op arp_tpa metadata ip_proto icmp_type ip_dst eth_dst icmpv6_type nd_target ipv6_dst",
              [T.SERVICE, T.ND_REPLY, T.SRC_GROUP], T.SRC_GROUP,
              sets="eth_src arp_op arp_sha arp_spa ip_src icmp_type ipv6_src icmpv6_type nd_reserved nd_options_type"),
    T.ND_REPLY: _t("eth_type ip_proto icmpv6_type"),
    T.SERVICE: _t("eth_type ip_dst ip_proto tcp_dst udp_dst metadata", [T.SERVICE_LB, T.SRC_GROUP], T.SRC_GROUP,
                  base=False),
    T.SERVICE_LB: _t("eth_type ip_dst ip_proto tcp_dst udp_dst ct_state metadata", [T.SERVICE_FWD], base=False),
    T.SERVICE_FWD: _t("eth_type ip_dst metadata", [T.SRC_GROUP], sets="eth_dst", base=False),
    T.HOST_IN: _t("eth_type ct_state metadata", [T.HOST_IN, T.SRC_GROUP], sets="eth_dst", base=False),
    T.SRC_GROUP: _t("eth_type metadata ip_src ipv6_src", [T.DST_GROUP], T.DST_GROUP, sets=REG_SRC_GROUP),
    T.DST_GROUP: _t("eth_type metadata ip_dst ipv6_dst", [T.EGRESS_CT], T.EGRESS_CT, sets=REG_DST_GROUP),
    T.EGRESS_CT: _t(f"eth_type metadata {REG_SRC_GROUP}", [T.EGRESS_POLICY, T.ROUTING], T.ROUTING),
    T.EGRESS_POLICY: _t(_POLICY, [T.ROUTING]),
    T.ROUTING: _t("eth_type eth_dst ip_dst ipv6_dst metadata", [T.L2, T.HOST_NAT], T.L2, sets="eth_src eth_dst"),
    T.HOST_NAT: _t("eth_type metadata ip_dst", [T.HOST_OUT], base=False),
    T.HOST_OUT: _t("eth_type", sets="eth_src eth_dst", base=False),
    T.L2: _t("eth_dst metadata", [T.INGRESS_CT], sets="tun_dst tun_id vlan_vid"),
    T.INGRESS_CT: _t(f"eth_type metadata {REG_DST_GROUP}", [T.INGRESS_POLICY, T.DELIVER], T.DELIVER),
    T.INGRESS_POLICY: _t(_POLICY, [T.DELIVER]),
    T.DELIVER: _t(f"eth_dst metadata eth_type ip_proto tcp_src udp_src {REG_UNNAT}", [T.DELIVER],
                  sets=REG_UNNAT),
}


def verify(e: FlowEntry) -> List[str]:
    """What is wrong with e under the contract ([] when nothing)."""
    try:
        table = T(e.table)
    except ValueError:
        return [f"table {e.table} is not declared"]
    c = CONTRACT[table]
    out = []
    for name, _v, _m in e.match:
        if name not in c.matches:
            out.append(f"table {table.name} does not match {name}")
    if e.priority == 0 and e.match:
        out.append(f"table {table.name}: a priority-0 flow is the table miss and matches nothing")
    for a in e.actions:
        nxt = a[1] if a[0] == "goto" else dict(a[1]).get("table") if a[0] == "ct" else None
        if nxt is not None and nxt not in c.next:
            out.append(f"table {table.name} may not continue in table {nxt}")
        if a[0] == "set_field" and a[1] not in c.sets:
            out.append(f"table {table.name} does not set {a[1]}")
    return out

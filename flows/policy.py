"""Group-based policy: group classification, conntrack and rules.

Semantics (Contiv's, made stateful):
- an endpoint gets the policies of its group; a group with no policy is open;
- 'out' rules of the source's group are checked on the source host (table
  EGRESS_POLICY), 'in' rules of the destination's group on the destination
  host (table INGRESS_POLICY);
- only the first packet of a connection (ct_state=+trk+new) meets the rules;
  +est and +rel pass; an allowed +new packet is committed in the VRF's zone;
- the highest rule priority wins, and at one priority deny beats allow;
- traffic that matches no rule is ALLOWED (Contiv's default), even for a
  group that has policies.

IPv4 and IPv6 alike (dual stack): members are classified by ip_src/ip_dst and
ipv6_src/ipv6_dst, conntrack runs for both in the VRF's zone, and every flow names its
family (eth_type), so a rule applies to the families its peers allow: an address peer
(from_ip/to_ip) is one family's, a network peer both when the network has a subnet6
(else IPv4 only), a group peer or none both. Protocol 'icmp' means ICMPv4 for IPv4 and
ICMPv6 for IPv6 (neighbour discovery never reaches policy: table ARP answers or drops
it); a protocol number is that ip_proto in both; tcp/udp ports apply to both.

Each rule is one OVS conjunctive match: one clause per constrained dimension
(own groups, peer group, peer network, peer IP, protocol/port), member flows
carrying conjunction(rule_uid, k/n), and one conj_id=rule_uid flow holding
the verdict and the rule's cookie (so its counters are the rule's counters).
A dimension's member flows depend on the rule and the groups named, never on
endpoints, so flows grow with endpoints + rules, not their product.  Remote
sources are given a group by ip_src in table SRC_GROUP (per endpoint).
"""
from __future__ import annotations

import ipaddress
import logging
from collections import defaultdict
from typing import Dict, List, Tuple

from flows.entry import FlowEntry
from flows.index import Index
from flows.iprange import as_match, family, prefixes
from flows.mk import flow
from flows.pipeline import (DENY_LOG_MAX_LEN, DENY_LOG_METER, ETH_IP, ETH_IP6, IP_PROTO, IPPROTO_ICMPV6,
                            MD_FROM_FABRIC, MD_VRF_MASK, PRIO_CT_PASS, PRIO_POLICY_BASE,
                            PRIO_POLICY_SLOTS, REG_DST_GROUP, REG_SRC_GROUP, Owner, T, cookie, md)
from flows.snapshot import Rule, Tenant

log = logging.getLogger(__name__)
F = flow


ETH = {4: ETH_IP, 6: ETH_IP6}
SRC_FIELD = {4: "ip_src", 6: "ipv6_src"}
DST_FIELD = {4: "ip_dst", 6: "ipv6_dst"}


def group_classify(vrf: int, ip: str, group_id: int, ep_cookie: int, ip6: str = "") -> List[FlowEntry]:
    out = []
    for fam, addr in ((4, ip), (6, ip6)):
        if not addr:
            continue
        m = {"eth_type": ETH[fam], "metadata": (md(vrf), MD_VRF_MASK)}
        out += [F(T.SRC_GROUP, 100, {**m, SRC_FIELD[fam]: addr},
                  (("set_field", REG_SRC_GROUP, group_id), ("goto", int(T.DST_GROUP))), ep_cookie),
                F(T.DST_GROUP, 100, {**m, DST_FIELD[fam]: addr},
                  (("set_field", REG_DST_GROUP, group_id), ("goto", int(T.EGRESS_CT))), ep_cookie)]
    return out


def _ct(**kw) -> tuple:
    return ("ct", tuple(sorted(kw.items())))


def guarded_groups(ix: Index, tenant: str) -> List[int]:
    """Ids of the tenant's groups that have at least one rule: only their
    traffic needs conntrack.  An open group's packets skip both ct() passes,
    which the userspace datapath pays for with a recirculation each."""
    ids = set()
    for r in ix.rules_by_tenant.get(tenant, ()):
        ids.update(g.group_id for g in ix.groups_by_policy.get((tenant, r.policy), ()))
    return sorted(ids)


def tenant_flows(t: Tenant, guarded: List[int]) -> List[FlowEntry]:
    """Conntrack and default verdicts of one VRF (zone = vrf_id).

    Traffic goes through conntrack where an end has rules: egress when the
    source's group is guarded, ingress when the destination's is.  A guarded
    group's own connections are thus tracked both ways on its host, so the
    replies of a connection it opened pass its 'in' rules as +est, and the
    replies of one it accepted pass its 'out' rules."""
    out = []
    for gid in guarded:
        out += guard_flows(t, gid)
    return out + vrf_flows(t)


def guard_flows(t: Tenant, gid: int) -> List[FlowEntry]:
    """The two conntrack passes of one guarded group (a group with rules)."""
    gc = cookie(Owner.GROUP, gid)
    z = t.vrf_id
    # Only traffic from local ports is checked on egress; the fabric's was checked at its source.
    return [f for eth in (ETH_IP, ETH_IP6) for f in (
            F(T.EGRESS_CT, 100, {"eth_type": eth, REG_SRC_GROUP: gid,
                                 "metadata": (md(t.vrf_id), MD_VRF_MASK | MD_FROM_FABRIC)},
              (_ct(table=int(T.EGRESS_POLICY), zone=z),), gc),
            F(T.INGRESS_CT, 100, {"eth_type": eth, REG_DST_GROUP: gid, "metadata": (md(t.vrf_id), MD_VRF_MASK)},
              (_ct(table=int(T.INGRESS_POLICY), zone=z),), gc))]


def vrf_flows(t: Tenant) -> List[FlowEntry]:
    """What every VRF has: +est/+rel pass, and the default verdict of a new connection."""
    c = cookie(Owner.TENANT, t.vrf_id)
    z = t.vrf_id
    vrf = (md(t.vrf_id), MD_VRF_MASK)
    out = []
    for table, nxt in ((T.EGRESS_POLICY, T.ROUTING), (T.INGRESS_POLICY, T.DELIVER)):
        for eth in (ETH_IP, ETH_IP6):
            for st in ("+est+trk", "+rel+trk"):
                out.append(F(table, PRIO_CT_PASS, {"eth_type": eth, "ct_state": st, "metadata": vrf},
                             (("goto", int(nxt)),), c))
            # no rule matched a new connection: allowed (Contiv semantics), and remembered
            out.append(F(table, 10, {"eth_type": eth, "ct_state": "+new+trk", "metadata": vrf},
                         (_ct(commit=True, zone=z), ("goto", int(nxt))), c))
    return out


def rule_priority(r: Rule) -> int:
    """Distinct OVS priority per rule where possible (conjunction needs it).

    Order: user priority, then deny above allow, then a slot from rule_uid
    (stable when other rules change).  Two rules sharing (priority, action)
    and slot share an OVS priority: same verdict, only counters may mix.
    """
    p = min(max(r.priority, 1), 100)
    level = (p - 1) * 2 + (1 if r.action == "deny" else 0)
    return PRIO_POLICY_BASE + level * PRIO_POLICY_SLOTS + r.rule_uid % PRIO_POLICY_SLOTS


# A clause member is (family, match): family 4 or 6 for a member that only one family can
# meet, None for one that applies to each family the rule covers.
Member = Tuple[int | None, dict]


def _proto_clause(r: Rule) -> List[Member]:
    proto = r.protocol.strip().lower()
    if not proto:
        if not r.port:
            return []
        return [(None, {"ip_proto": 6, "tcp_dst": r.port}), (None, {"ip_proto": 17, "udp_dst": r.port})]
    if proto == "icmp":
        return [(4, {"ip_proto": IP_PROTO["icmp"]}), (6, {"ip_proto": IPPROTO_ICMPV6})]
    num = IP_PROTO[proto] if proto in IP_PROTO else int(proto)
    m = {"ip_proto": num}
    if r.port and num in (6, 17):
        m["tcp_dst" if num == 6 else "udp_dst"] = r.port
    return [(None, m)]


def _subnets(ix: Index, tenant: str, name: str) -> List[Tuple[int, Tuple[str, str]]] | None:
    """A network's subnets as (family, (address, mask)): IPv4, and IPv6 when it has one."""
    n = ix.networks.get((tenant, name))
    if n is None:
        return None
    out = []
    for fam, text in ((4, n.subnet), (6, n.subnet6)):
        if text:
            net = ipaddress.ip_network(text, strict=False)
            out.append((fam, (str(net.network_address), str(net.netmask))))
    return out


def _addr_clause(field: Dict[int, str], spec: str) -> List[Member]:
    fam = family(spec)
    return [(fam, {field[fam]: as_match(*p)}) for p in prefixes(spec)]


def rule_flows(ix: Index, t: Tenant, r: Rule) -> List[FlowEntry]:
    if (r.direction not in ("in", "out") or r.action not in ("allow", "deny")
            or not 0 < r.rule_uid <= 0xFFFFFFFF):
        log.warning("rule %s/%s/%s: direction %r, action %r or rule_uid %r unusable, rule inert",
                    r.tenant, r.policy, r.rule_id, r.direction, r.action, r.rule_uid)
        return []
    out_dir = r.direction == "out"
    table = T.EGRESS_POLICY if out_dir else T.INGRESS_POLICY
    nxt = T.ROUTING if out_dir else T.DELIVER
    own_reg, peer_reg = (REG_SRC_GROUP, REG_DST_GROUP) if out_dir else (REG_DST_GROUP, REG_SRC_GROUP)
    peer_ip = DST_FIELD if out_dir else SRC_FIELD
    peer_group, peer_net, peer_addr = ((r.to_group, r.to_network, r.to_ip) if out_dir
                                       else (r.from_group, r.from_network, r.from_ip))
    vrf = (md(t.vrf_id), MD_VRF_MASK)

    own = ix.groups_by_policy.get((r.tenant, r.policy), [])
    if not own:
        return []                       # policy attached nowhere: nothing to enforce
    clauses: List[List[Member]] = [[(None, {own_reg: g.group_id, "ct_state": "+new+trk", "metadata": vrf})
                                    for g in sorted(own, key=lambda g: g.group_id)]]
    fams = {4, 6}                        # the families every clause lets through
    if peer_group:
        g = ix.groups.get((r.tenant, peer_group))
        if g is None:
            log.warning("rule %s/%s/%s: unknown group %s, rule inert", r.tenant, r.policy, r.rule_id, peer_group)
            return []
        clauses.append([(None, {peer_reg: g.group_id})])
    if peer_net:
        sn = _subnets(ix, r.tenant, peer_net)
        if sn is None:
            log.warning("rule %s/%s/%s: unknown network %s, rule inert", r.tenant, r.policy, r.rule_id, peer_net)
            return []
        clauses.append([(fam, {peer_ip[fam]: as_match(*p)}) for fam, p in sn])
    if peer_addr:
        clauses.append(_addr_clause(peer_ip, peer_addr))
    if not out_dir and r.to_ip:          # Contiv's k8s case: an 'in' rule narrowed to own IPs
        clauses.append(_addr_clause(DST_FIELD, r.to_ip))
    for clause in clauses[1:]:
        if all(f is not None for f, _m in clause):
            fams &= {f for f, _m in clause}
    if not fams:
        log.warning("rule %s/%s/%s: its peers are of different IP families, rule inert",
                    r.tenant, r.policy, r.rule_id)
        return []
    pc = _proto_clause(r)
    if pc:
        clauses.append(pc)
    if len(clauses) == 1:
        clauses.append([(None, {})])     # conjunction needs n >= 2: a clause every IP packet meets

    prio = rule_priority(r)
    c = cookie(Owner.RULE, r.rule_uid)
    n = len(clauses)
    flows = []
    for k, clause in enumerate(clauses, 1):
        for fam, m in clause:
            for f in sorted(fams) if fam is None else (fam,) if fam in fams else ():
                flows.append(F(table, prio, {"eth_type": ETH[f], **m}, (("conjunction", r.rule_uid, k, n),), c))
    if r.action == "allow":
        verdict = (("ct", (("commit", True), ("zone", t.vrf_id))), ("goto", int(nxt)))
    elif r.log:
        # Still dropped in the datapath; a copy of the packet, capped per host by the
        # meter, goes to the controller to be logged (controller/denylog.py).  Only
        # +new packets reach this flow and a denied one is never committed, so a
        # retransmitted SYN comes again: the controller dedups per connection.
        verdict = (("meter", DENY_LOG_METER), ("controller", DENY_LOG_MAX_LEN))
    else:
        verdict = ()
    # ct(commit) needs the IP prerequisite on the flow that runs it: one verdict per family
    for f in sorted(fams):
        flows.append(F(table, prio, {"conj_id": r.rule_uid, "eth_type": ETH[f]}, verdict, c))
    return flows


def merge_members(flows: List[FlowEntry]) -> List[FlowEntry]:
    """Member flows of different rules with the same (table, priority, match)
    must be one OpenFlow flow carrying all their conjunction actions."""
    by_key: Dict[tuple, List[FlowEntry]] = defaultdict(list)
    for f in flows:
        by_key[f.key].append(f)
    out = []
    for same in by_key.values():
        if len(same) == 1:
            out.append(same[0])
            continue
        acts = tuple(sorted({a for f in same for a in f.actions}))
        if any(a[0] != "conjunction" for a in acts):
            raise ValueError(f"conflicting policy flows {same}")
        first = min(same, key=lambda f: f.cookie)
        out.append(FlowEntry(first.table, first.priority, first.match, acts, first.cookie))
    return out

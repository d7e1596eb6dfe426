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
from flows.iprange import as_match, prefixes
from flows.mk import flow
from flows.pipeline import (DENY_LOG_MAX_LEN, DENY_LOG_METER, ETH_IP, IP_PROTO, MD_FROM_FABRIC, MD_VRF_MASK,
                            PRIO_CT_PASS, PRIO_POLICY_BASE,
                            PRIO_POLICY_SLOTS, REG_DST_GROUP, REG_SRC_GROUP, Owner, T, cookie, md)
from flows.snapshot import Rule, Tenant

log = logging.getLogger(__name__)
F = flow


def group_classify(vrf: int, ip: str, group_id: int, ep_cookie: int) -> List[FlowEntry]:
    m = {"eth_type": ETH_IP, "metadata": (md(vrf), MD_VRF_MASK)}
    return [F(T.SRC_GROUP, 100, {**m, "ip_src": ip},
              (("set_field", REG_SRC_GROUP, group_id), ("goto", int(T.DST_GROUP))), ep_cookie),
            F(T.DST_GROUP, 100, {**m, "ip_dst": ip},
              (("set_field", REG_DST_GROUP, group_id), ("goto", int(T.EGRESS_CT))), ep_cookie)]


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
    return [F(T.EGRESS_CT, 100, {"eth_type": ETH_IP, REG_SRC_GROUP: gid,
                                 "metadata": (md(t.vrf_id), MD_VRF_MASK | MD_FROM_FABRIC)},
              (_ct(table=int(T.EGRESS_POLICY), zone=z),), gc),
            F(T.INGRESS_CT, 100, {"eth_type": ETH_IP, REG_DST_GROUP: gid, "metadata": (md(t.vrf_id), MD_VRF_MASK)},
              (_ct(table=int(T.INGRESS_POLICY), zone=z),), gc)]


def vrf_flows(t: Tenant) -> List[FlowEntry]:
    """What every VRF has: +est/+rel pass, and the default verdict of a new connection."""
    c = cookie(Owner.TENANT, t.vrf_id)
    z = t.vrf_id
    vrf = (md(t.vrf_id), MD_VRF_MASK)
    out = []
    for table, nxt in ((T.EGRESS_POLICY, T.ROUTING), (T.INGRESS_POLICY, T.DELIVER)):
        for st in ("+est+trk", "+rel+trk"):
            out.append(F(table, PRIO_CT_PASS, {"eth_type": ETH_IP, "ct_state": st, "metadata": vrf},
                         (("goto", int(nxt)),), c))
        # no rule matched a new connection: allowed (Contiv semantics), and remembered
        out.append(F(table, 10, {"eth_type": ETH_IP, "ct_state": "+new+trk", "metadata": vrf},
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


def _proto_clause(r: Rule) -> List[dict]:
    proto = r.protocol.strip().lower()
    if not proto:
        if not r.port:
            return []
        return [{"ip_proto": 6, "tcp_dst": r.port}, {"ip_proto": 17, "udp_dst": r.port}]
    num = IP_PROTO[proto] if proto in IP_PROTO else int(proto)
    m = {"ip_proto": num}
    if r.port and num in (6, 17):
        m["tcp_dst" if num == 6 else "udp_dst"] = r.port
    return [m]


def _subnet(ix: Index, tenant: str, name: str) -> Tuple[str, str] | None:
    n = ix.networks.get((tenant, name))
    if n is None:
        return None
    net = ipaddress.IPv4Network(n.subnet, strict=False)
    return str(net.network_address), str(net.netmask)


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
    peer_ip = "ip_dst" if out_dir else "ip_src"
    peer_group, peer_net, peer_addr = ((r.to_group, r.to_network, r.to_ip) if out_dir
                                       else (r.from_group, r.from_network, r.from_ip))
    vrf = (md(t.vrf_id), MD_VRF_MASK)

    own = ix.groups_by_policy.get((r.tenant, r.policy), [])
    if not own:
        return []                       # policy attached nowhere: nothing to enforce
    clauses: List[List[dict]] = [[{own_reg: g.group_id, "ct_state": "+new+trk", "metadata": vrf}
                                  for g in sorted(own, key=lambda g: g.group_id)]]
    if peer_group:
        g = ix.groups.get((r.tenant, peer_group))
        if g is None:
            log.warning("rule %s/%s/%s: unknown group %s, rule inert", r.tenant, r.policy, r.rule_id, peer_group)
            return []
        clauses.append([{peer_reg: g.group_id}])
    if peer_net:
        sn = _subnet(ix, r.tenant, peer_net)
        if sn is None:
            log.warning("rule %s/%s/%s: unknown network %s, rule inert", r.tenant, r.policy, r.rule_id, peer_net)
            return []
        clauses.append([{peer_ip: as_match(*sn)}])
    if peer_addr:
        clauses.append([{peer_ip: as_match(*p)} for p in prefixes(peer_addr)])
    if not out_dir and r.to_ip:          # Contiv's k8s case: an 'in' rule narrowed to own IPs
        clauses.append([{"ip_dst": as_match(*p)} for p in prefixes(r.to_ip)])
    pc = _proto_clause(r)
    if pc:
        clauses.append(pc)
    if len(clauses) == 1:
        clauses.append([{}])             # conjunction needs n >= 2: a clause every IP packet meets

    prio = rule_priority(r)
    c = cookie(Owner.RULE, r.rule_uid)
    n = len(clauses)
    flows = []
    for k, clause in enumerate(clauses, 1):
        for m in clause:
            flows.append(F(table, prio, {"eth_type": ETH_IP, **m}, (("conjunction", r.rule_uid, k, n),), c))
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
    # ct(commit) needs the IPv4 prerequisite on the flow that runs it
    flows.append(F(table, prio, {"conj_id": r.rule_uid, "eth_type": ETH_IP}, verdict, c))
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

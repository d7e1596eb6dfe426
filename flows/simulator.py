"""An exact, small OpenFlow 1.3 (+ the Nicira extensions we emit) interpreter.

Switch executes FlowEntry/GroupEntry sets: priorities, masked matches
(pkt & mask == value & mask, unlike Faucet's FakeOFTable), goto,
write_metadata, registers, set_field, move, dec_ttl, push/pop vlan, output,
ALL groups, tunnel metadata, conjunctive matches and ct with a model of
conntrack.  A meter lets every packet through (rates are not modelled); output
to the controller is not an output of the datapath: the packet is recorded in
Trace.to_controller and, with nothing else sent, counts as dropped.  Fabric joins switches: tunnel output goes to the host whose
vtep_ip is tun_dst, uplink output to every other host's uplink.

A packet is a dict of field -> value using the names of flows/entry.py plus
in_port; MACs and IPs are strings.  Absent metadata/regs/tun_id read as 0;
absent L3/L4 fields never match.  IPv6 packets carry ipv6_src/ipv6_dst, their hop
limit in nw_ttl (as OVS names it), ICMPv6 in icmpv6_type/icmpv6_code and neighbour
discovery in nd_target, nd_sll, nd_tll, nd_reserved and nd_options_type.
"""
from __future__ import annotations

import ipaddress
import logging
import zlib
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from flows.entry import FlowEntry, GroupEntry

log = logging.getLogger(__name__)
MAX_RESUBMITS = 64
ZERO_DEFAULT = {"metadata", "tun_id", "conj_id", "ct_zone"} | {f"reg{i}" for i in range(8)}
# packet fields that do not survive leaving a switch
PIPELINE_ONLY = ZERO_DEFAULT - {"tun_id"} | {"ct_state", "in_port"}


def to_int(v) -> int:
    if isinstance(v, int):
        return v
    if len(v) == 17 and v[2::3] == ":::::":       # MAC (an IPv6 address never has this shape)
        return int(v.replace(":", ""), 16)
    if ":" in v:
        return int(ipaddress.IPv6Address(v))
    if "." in v:
        return int(ipaddress.IPv4Address(v))
    return int(v, 0)


def _ct_flags(spec: str) -> Tuple[frozenset, frozenset]:
    """'+trk+new-est' -> ({trk, new}, {est})."""
    must, must_not, sign, word = set(), set(), None, ""
    for ch in spec + "+":
        if ch in "+-":
            if word:
                (must if sign == "+" else must_not).add(word)
            sign, word = ch, ""
        else:
            word += ch
    return frozenset(must), frozenset(must_not)


def _state_set(state: str) -> frozenset:
    return _ct_flags(state)[0]


@dataclass
class _Compiled:
    flow: FlowEntry
    tests: Tuple[tuple, ...]           # (field, value_int, mask_int) or ("ct_state", must, must_not)
    conj: Tuple[Tuple[int, int, int], ...]   # (id, k, n) when a conjunction member


def _compile(f: FlowEntry) -> _Compiled:
    tests = []
    for name, v, m in f.match:
        if name == "ct_state":
            tests.append(("ct_state",) + _ct_flags(v))
        else:
            tests.append((name, to_int(v), -1 if m is None else to_int(m)))
    conj = tuple((a[1], a[2], a[3]) for a in f.actions if a[0] == "conjunction")
    return _Compiled(f, tuple(tests), conj)


def _matches(c: _Compiled, pkt: dict) -> bool:
    for t in c.tests:
        name = t[0]
        if name == "ct_state":
            have = _state_set(pkt.get("ct_state", ""))
            if not t[1] <= have or t[2] & have:
                return False
            continue
        if name in pkt:
            pv = to_int(pkt[name])
        elif name in ZERO_DEFAULT or name == "vlan_vid":
            pv = 0
        else:
            return False
        if pv & t[2] != t[1] & t[2]:
            return False
    return True


@dataclass
class Hit:
    table: int
    priority: int
    cookie: int
    text: str


@dataclass
class Trace:
    path: List[Hit] = field(default_factory=list)
    outputs: List[Tuple[int, dict]] = field(default_factory=list)
    drops: List[str] = field(default_factory=list)
    to_controller: List[dict] = field(default_factory=list)     # packet-ins (after any meter)

    @property
    def dropped(self) -> bool:
        return not self.outputs

    @property
    def drop_reason(self) -> str:
        """Why nothing (or not everything) went out: the last recorded reason."""
        return self.drops[-1] if self.drops else ""

    def ports(self) -> List[int]:
        return [p for p, _ in self.outputs]

    def cookies(self) -> List[int]:
        return [h.cookie for h in self.path]

    def __str__(self) -> str:
        lines = [f"  t{h.table} p{h.priority} {h.text}" for h in self.path]
        lines += [f"  -> output {p}: {pk}" for p, pk in self.outputs]
        lines += [f"  -> controller: {pk}" for pk in self.to_controller]
        lines += [f"  x {d}" for d in self.drops]
        return "\n".join(lines)


class Conntrack:
    """Per-switch connection table: commit records a connection; a later lookup
    of the reply direction is +est+rpl, the original direction +new until a
    reply was seen, +est after (as Linux conntrack reports it).

    NAT (destination only, what services use): a commit with nat(dst=IP[:port])
    records the translation with the connection, once (a later commit keeps it);
    a lookup with nat applies it: the original direction's destination, or the
    reply direction's source, rewritten as conntrack would."""

    def __init__(self) -> None:
        self.conns: Dict[tuple, bool] = {}     # (zone, 5-tuple) -> reply seen
        self.nats: Dict[tuple, Tuple[str, int]] = {}      # (zone, original 5-tuple) -> (ip, port)
        self.replies: Dict[tuple, tuple] = {}  # (zone, translated reply 5-tuple) -> (zone, original)

    @staticmethod
    def _key(pkt: dict) -> tuple:
        proto = pkt.get("ip_proto", 0)
        sp = pkt.get("tcp_src", pkt.get("udp_src", 0))
        dp = pkt.get("tcp_dst", pkt.get("udp_dst", 0))
        if "ipv6_src" in pkt:                      # IPv6: its addresses (NAT is IPv4's only)
            return (proto, pkt.get("ipv6_src"), sp, pkt.get("ipv6_dst"), dp)
        return (proto, pkt.get("ip_src"), sp, pkt.get("ip_dst"), dp)

    @staticmethod
    def _set_l4(pkt: dict, side: str, port: int) -> None:
        for proto in ("tcp", "udp"):
            if f"{proto}_{side}" in pkt and port:
                pkt[f"{proto}_{side}"] = port

    def lookup(self, zone: int, pkt: dict, nat: bool = False) -> str:
        k = self._key(pkt)
        if (zone, k) in self.conns:
            if nat and (zone, k) in self.nats:
                self._translate(pkt, self.nats[(zone, k)])
            return "+trk+est" if self.conns[(zone, k)] else "+trk+new"
        if (zone, k) in self.replies:
            orig = self.replies[(zone, k)]
            self.conns[orig] = True
            if nat:
                _p, s0, sp0, d0, dp0 = orig[1]
                side = self.nats[orig][0]
                # the reply's other side is turned back: a DNAT's source, a SNAT's destination
                self._translate(pkt, ("src", d0, dp0) if side == "dst" else ("dst", s0, sp0))
            return "+trk+est+rpl"
        p, s, sp, d, dp = k
        rk = (zone, (p, d, dp, s, sp))
        if rk in self.conns:
            self.conns[rk] = True
            return "+trk+est+rpl"
        return "+trk+new"

    def commit(self, zone: int, pkt: dict, nat: str | None = None) -> None:
        """Record pkt's connection; with nat 'dst=IP[:port]', translate pkt in place."""
        k = self._key(pkt)
        p, s, sp, d, dp = k
        if (zone, (p, d, dp, s, sp)) in self.conns or (zone, k) in self.replies:
            return                          # pkt is a reply: its connection is recorded already
        self.conns.setdefault((zone, k), False)
        if nat and (zone, k) not in self.nats:
            side, _, target = nat.partition("=")
            ip, _, port = target.partition(":")
            if side == "dst":
                self.nats[(zone, k)] = ("dst", ip, int(port) if port else dp)
                self.replies[(zone, (p, ip, int(port) if port else dp, s, sp))] = (zone, k)
            else:
                self.nats[(zone, k)] = ("src", ip, int(port) if port else sp)
                self.replies[(zone, (p, d, dp, ip, int(port) if port else sp))] = (zone, k)
        if (zone, k) in self.nats:
            self._translate(pkt, self.nats[(zone, k)])

    def _translate(self, pkt: dict, nat: tuple) -> None:
        side, ip, port = nat
        pkt["ip_" + side] = ip
        self._set_l4(pkt, side, port)


class Switch:
    """One bridge's flow tables and groups."""

    def __init__(self, flows: Iterable[FlowEntry] = (), groups: Iterable[GroupEntry] = (),
                 conntrack: Optional[Conntrack] = None):
        self.tables: Dict[int, Dict[tuple, _Compiled]] = {}
        self.groups: Dict[int, GroupEntry] = {}
        self._sorted: Dict[int, List[_Compiled]] = {}
        self.conntrack = conntrack or Conntrack()
        self.add_flows(flows)
        self.add_groups(groups)

    @classmethod
    def from_dump(cls, flows_text: str, groups_text: str = "") -> "Switch":
        """A switch holding what `ovs-ofctl -O OpenFlow13 dump-flows/dump-groups` printed."""
        from flows.ofctl_parse import parse_dump_flows, parse_dump_groups
        return cls(parse_dump_flows(flows_text), parse_dump_groups(groups_text))

    # --- table store
    def add_flows(self, flows: Iterable[FlowEntry]) -> None:
        for f in flows:
            self.tables.setdefault(f.table, {})[f.key] = _compile(f)   # same key replaces (OFPFC_ADD)
            self._sorted.pop(f.table, None)

    def add_groups(self, groups: Iterable[GroupEntry]) -> None:
        for g in groups:
            self.groups[g.group_id] = g

    def delete(self, cookie: int, mask: int) -> int:
        """OFPFC_DELETE in all tables by cookie/cookie_mask; returns how many went."""
        n = 0
        for t, entries in self.tables.items():
            gone = [k for k, c in entries.items() if c.flow.cookie & mask == cookie & mask]
            for k in gone:
                del entries[k]
            if gone:
                self._sorted.pop(t, None)
            n += len(gone)
        return n

    def flows(self) -> List[FlowEntry]:
        return sorted(c.flow for t in self.tables.values() for c in t.values())

    def _table(self, t: int) -> List[_Compiled]:
        if t not in self._sorted:
            self._sorted[t] = sorted(self.tables.get(t, {}).values(), key=lambda c: -c.flow.priority)
        return self._sorted[t]

    # --- lookup
    def lookup(self, table: int, pkt: dict) -> Optional[FlowEntry]:
        """Highest-priority match, with OVS conjunction semantics: at each
        priority a plain flow wins; otherwise a conj id all of whose clauses
        matched at that priority selects the conj_id=<id> flow."""
        entries = self._table(table)
        i = 0
        while i < len(entries):
            prio = entries[i].flow.priority
            clauses: Dict[int, set] = {}
            need: Dict[int, int] = {}
            while i < len(entries) and entries[i].flow.priority == prio:
                c = entries[i]
                i += 1
                if not _matches(c, pkt):
                    continue
                if not c.conj:
                    return c.flow
                for cid, k, n in c.conj:
                    clauses.setdefault(cid, set()).add(k)
                    need[cid] = n
            for cid in sorted(cid for cid, ks in clauses.items() if len(ks) == need[cid]):
                with_id = dict(pkt, conj_id=cid)
                for c in entries:
                    if any(t[0] == "conj_id" for t in c.tests) and _matches(c, with_id):
                        return c.flow
        return None

    def trace(self, pkt: dict, ct_state: Optional[str] = None) -> Trace:
        """Run pkt (which must hold in_port) from table 0.  ct_state, when given,
        is what every ct lookup reports instead of the conntrack model."""
        tr = Trace()
        self._run(0, dict(pkt), tr, ct_state, 0)
        return tr

    def _run(self, table: int, pkt: dict, tr: Trace, forced: Optional[str], depth: int) -> None:
        if depth > MAX_RESUBMITS:
            tr.drops.append("too many resubmits")
            return
        while True:
            f = self.lookup(table, pkt)
            if f is None:
                tr.drops.append(f"table {table}: no match")
                return
            tr.path.append(Hit(f.table, f.priority, f.cookie, f.to_ofctl()))
            nxt = None
            for a in f.actions:
                kind = a[0]
                if kind == "goto":
                    if a[1] <= table:
                        raise ValueError(f"goto backwards from {table} to {a[1]}: {f.to_ofctl()}")
                    nxt = a[1]
                elif kind == "ct":
                    self._ct(a, pkt, tr, forced, depth)
                elif not self._apply(a, pkt, tr, forced, depth):
                    return
            if nxt is None:
                if not any(a[0] in ("output", "in_port", "group")
                           or (a[0] == "ct" and "table" in dict(a[1])) for a in f.actions):
                    why = ("drop" if not f.actions else "drop, sent to the controller"
                           if any(a[0] == "controller" for a in f.actions) else "no output")
                    tr.drops.append(f"table {table} priority {f.priority} cookie {f.cookie:#x}: {why}")
                return
            table = nxt

    def _ct(self, a: tuple, pkt: dict, tr: Trace, forced: Optional[str], depth: int) -> None:
        """ct(): commit (with a NAT), look up (applying a NAT), recirculate to table.
        The packet that goes on is a copy; after ct() with a table nothing else runs on
        the original (the pipeline resumes in the recirculation)."""
        opts = dict(a[1])
        zone = opts.get("zone", 0)
        rec = dict(pkt)
        nat = opts.get("nat")
        if opts.get("commit"):
            self.conntrack.commit(zone, rec, nat or None)
        if "table" in opts:
            state = self.conntrack.lookup(zone, dict(rec) if opts.get("commit") else rec,
                                          nat is not None and not opts.get("commit"))
            rec.update(ct_zone=zone, ct_state=forced or state)
            self._run(opts["table"], rec, tr, forced, depth + 1)

    @staticmethod
    def select_bucket(g: GroupEntry, pkt: dict) -> int:
        """A select group's choice: a stable hash of the 5-tuple, as OVS's is of its fields."""
        key = repr(Conntrack._key(pkt)).encode()
        return zlib.crc32(key) % len(g.buckets)

    def _apply(self, a: tuple, pkt: dict, tr: Trace, forced: Optional[str] = None, depth: int = 0) -> bool:
        """Apply one action in place; False stops the pipeline (packet dropped)."""
        kind = a[0]
        if kind == "output":
            if a[1] == pkt.get("in_port"):
                tr.drops.append(f"output to in_port {a[1]} suppressed")
            else:
                tr.outputs.append((a[1], dict(pkt)))
        elif kind == "in_port":
            tr.outputs.append((pkt["in_port"], dict(pkt)))
        elif kind == "group":
            g = self.groups.get(a[1])
            if g is None:
                tr.drops.append(f"group {a[1]} missing")
                return False
            buckets = g.buckets
            if g.group_type == "select":
                if not buckets:
                    tr.drops.append(f"group {a[1]}: select group without buckets")
                    return False
                buckets = (buckets[self.select_bucket(g, pkt)],)
            for bucket in buckets:
                copy_ = dict(pkt)
                for b in bucket:
                    if b[0] == "ct":
                        self._ct(b, copy_, tr, forced, depth)
                    elif not self._apply(b, copy_, tr, forced, depth):
                        break
        elif kind == "set_field":
            if a[1] == "vlan_vid" and "vlan_vid" not in pkt:
                raise ValueError("set_field vlan_vid on an untagged packet")
            pkt[a[1]] = a[2]
        elif kind == "move":
            if a[1] not in pkt:
                raise ValueError(f"move from absent field {a[1]}")
            pkt[a[2]] = pkt[a[1]]
        elif kind == "dec_ttl":
            ttl = pkt.get("nw_ttl", 64)
            if ttl <= 1:
                tr.drops.append("dec_ttl: ttl expired")
                return False
            pkt["nw_ttl"] = ttl - 1
        elif kind == "push_vlan":
            if "vlan_vid" in pkt:
                raise ValueError("double tagging not modelled")
            pkt["vlan_vid"] = 0x1000
        elif kind == "pop_vlan":
            pkt.pop("vlan_vid", None)
        elif kind == "write_metadata":
            pkt["metadata"] = (pkt.get("metadata", 0) & ~a[2]) | (a[1] & a[2])
        elif kind == "controller":
            tr.to_controller.append(dict(pkt))
        elif kind == "meter":
            pass                        # rates are not modelled: the meter lets it through
        elif kind == "conjunction":
            raise ValueError("conjunction action executed")
        else:
            raise ValueError(f"unknown action {a!r}")
        return True

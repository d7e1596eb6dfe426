"""FlowEntry/GroupEntry <-> OpenFlow 1.3 messages (os-ken parser), both ways.

Pure functions: no I/O, no app state.  `flow_mod`/`group_mod` build messages,
`entry_from_stats`/`group_from_desc` read what a switch reports back, and
`normalize`/`normalize_group` put a compiler-made entry in the exact form the
read-back produces, so reconcile can compare sets with `==`.

Conventions where flows/entry.py leaves room (OVS dump-flows meaning chosen):
- vlan_vid (match and set_field) is the OXM value: it includes OFPVID_PRESENT
  (0x1000), as in OVS's `vlan_vid` field for OpenFlow 1.3 (`vlan_vid=0x1005`).
- ct_state is a '+flag-flag' string; the mask is implied by the flags named.
  Canonical order (what read-back yields): trk first, then OVS's bit order
  new, est, rel, rpl, inv, snat, dnat ("+trk+new", "+trk+est", "+trk-inv").
  An (int value, int mask) pair is accepted on input and normalized to the string.
- A mask equal to the whole field is no mask (OVS reports it as exact), and a
  masked value is reported with the bits outside the mask cleared.
- ct options are a tuple of (key, value) sorted by key; commit appears only
  when true, zone only when non-zero, table only when set, zone_reg is a field
  name (e.g. "reg6") whose bits [0..15] give the zone, nat only when there is a
  nat() ("" plain, "dst=a.b.c.d[:port]" a destination NAT).
- Instruction-level actions: meter first (OVS reports it before the
  apply-actions, the order OpenFlow runs them in), then apply-actions in their
  own order, then write_metadata, then goto.  No actions = drop.
- conjunction clauses are 1-based (as ovs-ofctl prints them); the wire is 0-based.
- move is whole-field: n_bits = the smaller of the two OXM widths, offsets 0.
- output to OFPP_CONTROLLER is ("controller", max_len); output to OFPP_IN_PORT
  is ("in_port",); any other output is ("output", port) and its max_len is ignored.
- Groups: buckets carry weight 0 (1 for select) and watch ANY; GroupEntry.cookie
  does not exist on the wire (OpenFlow 1.3 groups have no cookie) and reads back 0.
"""
from __future__ import annotations

import functools
import ipaddress
import re
from typing import Any, Iterable

from os_ken.lib import type_desc
from os_ken.ofproto import nicira_ext
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto import oxm_fields

from flows.entry import ACTIONS, FlowEntry, GroupEntry


class _EricssonOxm(oxm_fields._OxmClass):
    """OVS's ERICOXM_OF_ class (0x1000): the ND responder's fields, which os-ken lacks."""
    _class = 0x1000


def _register_nd_fields() -> None:
    """Teach os-ken nd_reserved and nd_options_type (ovs-fields(7): ERICOXM_OF_ICMPV6_ND_RESERVED(1),
    _ND_OPTIONS_TYPE(2), since OVS 2.11), so set_field on them encodes, decodes and reads back.
    Regenerating the module's OXM lookups is how os-ken builds them from oxm_types itself."""
    if any(f.name == "nd_reserved" for f in ofp.oxm_types):
        return
    ofp.oxm_types.append(_EricssonOxm("nd_reserved", 1, type_desc.Int4))
    ofp.oxm_types.append(_EricssonOxm("nd_options_type", 2, type_desc.Int1))
    oxm_fields.generate(ofp.__name__)


_register_nd_fields()

# entry (OVS) field name -> os-ken OXM/NXM field name
_TO_OSKEN = {
    "ip_src": "ipv4_src", "ip_dst": "ipv4_dst", "icmp_type": "icmpv4_type",
    "tun_id": "tunnel_id", "tun_src": "tun_ipv4_src", "tun_dst": "tun_ipv4_dst",
    "nd_target": "ipv6_nd_target", "nd_sll": "ipv6_nd_sll", "nd_tll": "ipv6_nd_tll",
}
_FROM_OSKEN = {v: k for k, v in _TO_OSKEN.items()}
# NXM spellings os-ken may decode from a switch reply
_FROM_OSKEN.update({"tunnel_id_nxm": "tun_id", "arp_op_nxm": "arp_op",
                    "arp_spa_nxm": "arp_spa", "arp_tpa_nxm": "arp_tpa",
                    "arp_sha_nxm": "arp_sha", "arp_tha_nxm": "arp_tha",
                    "eth_src_nxm": "eth_src", "eth_dst_nxm": "eth_dst",
                    "eth_type_nxm": "eth_type", "ip_proto_nxm": "ip_proto",
                    "ipv4_src_nxm": "ip_src", "ipv4_dst_nxm": "ip_dst",
                    "tcp_src_nxm": "tcp_src", "tcp_dst_nxm": "tcp_dst",
                    "udp_src_nxm": "udp_src", "udp_dst_nxm": "udp_dst",
                    "icmpv4_type_nxm": "icmp_type", "ipv6_src_nxm": "ipv6_src",
                    "ipv6_dst_nxm": "ipv6_dst", "icmpv6_type_nxm": "icmpv6_type",
                    "icmpv6_code_nxm": "icmpv6_code"})

_WIDTH = {f.name: f.type.size * 8 for f in ofp.oxm_types}   # os-ken name -> bits

# ct_state bits (ovs-fields(7)) in canonical print order
CT_FLAGS = (("trk", 0x20), ("new", 0x01), ("est", 0x02), ("rel", 0x04),
            ("rpl", 0x08), ("inv", 0x10), ("snat", 0x40), ("dnat", 0x80))
_CT_BIT = dict(CT_FLAGS)
_CT_RE = re.compile(r"([+-])([a-z]+)")

_GROUP_TYPES = {"all": ofp.OFPGT_ALL, "select": ofp.OFPGT_SELECT,
                "indirect": ofp.OFPGT_INDIRECT, "ff": ofp.OFPGT_FF}
_GROUP_NAMES = {v: k for k, v in _GROUP_TYPES.items()}


class ConversionError(ValueError):
    """An entry or a switch's flow that this module cannot express."""


def osken_field(name: str) -> str:
    return _TO_OSKEN.get(name, name)


def ovs_field(name: str) -> str:
    return _FROM_OSKEN.get(name, name)


# ---------------------------------------------------------------- ct_state

def ct_state_to_int(s: str) -> tuple[int, int]:
    """'+trk+new' -> (value, mask) as OVS encodes NXM_NX_CT_STATE."""
    value = mask = 0
    pos = 0
    for m in _CT_RE.finditer(s):
        if m.start() != pos or m.group(2) not in _CT_BIT:
            raise ConversionError(f"bad ct_state {s!r}")
        bit = _CT_BIT[m.group(2)]
        mask |= bit
        if m.group(1) == "+":
            value |= bit
        pos = m.end()
    if pos != len(s) or not s:
        raise ConversionError(f"bad ct_state {s!r}")
    return value, mask


def ct_state_to_str(value: int, mask: int | None) -> str:
    if mask is None:            # exact match: every known flag is specified
        mask = 0xFF
    out = []
    for name, bit in CT_FLAGS:
        if mask & bit:
            out.append(("+" if value & bit else "-") + name)
    if mask & ~0xFF:
        raise ConversionError(f"ct_state mask {mask:#x} has unknown bits")
    return "".join(out)


# ---------------------------------------------------------------- match

def _full_mask(width: int) -> int:
    return (1 << width) - 1


_CANON_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_CANON_IP = re.compile(r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$")


@functools.lru_cache(maxsize=1 << 18)      # values repeat across flows (a MAC in ~5 of them)
def _norm_field(name: str, value: Any, mask: Any) -> tuple:
    """One match field in canonical form (see module doc)."""
    if name == "ct_state":
        if isinstance(value, int):
            return (name, ct_state_to_str(value, mask), None)
        if mask is not None:
            raise ConversionError("ct_state mask is implied by the flag string")
        return (name, ct_state_to_str(*ct_state_to_int(value)), None)
    oname = osken_field(name)
    if oname not in _WIDTH:
        raise ConversionError(f"unknown match field {name!r}")
    width = _WIDTH[oname]
    if mask is None and isinstance(value, str) and (_CANON_MAC.match(value) or _CANON_IP.match(value)):
        return (name, value, None)                       # already canonical: the common case
    if isinstance(value, str) and width == 128:         # IPv6, canonical compressed text
        v = int(ipaddress.IPv6Address(value))
        m = None if mask is None else int(ipaddress.IPv6Address(mask))
        to = lambda x: str(ipaddress.IPv6Address(x))
    elif isinstance(value, str) and ":" in value:         # MAC
        v = int(value.replace(":", ""), 16)
        m = None if mask is None else int(mask.replace(":", ""), 16)
        to = lambda x: ":".join(f"{x:012x}"[i:i + 2] for i in range(0, 12, 2))
    elif isinstance(value, str):                         # IPv4
        v = int(ipaddress.IPv4Address(value))
        m = None if mask is None else int(ipaddress.IPv4Address(mask))
        to = lambda x: str(ipaddress.IPv4Address(x))
    else:
        v, m, to = value, mask, (lambda x: x)
    if m is not None and m == _full_mask(width):
        m = None
    if m is not None:
        v &= m
    return (name, to(v), None if m is None else to(m))


def normalize_match(match: Iterable[tuple]) -> tuple:
    return tuple(sorted((_norm_field(*f) for f in match), key=lambda f: f[0]))


# Fields other fields depend on (ovs-fields(7) prerequisites).  OVS checks
# prerequisites field by field as it parses, and os-ken's default order puts NXM
# fields (e.g. nw_ttl) before OXM ones (eth_type): send these first.
_PREREQ_RANK = {"in_port": 0, "eth_type": 1, "vlan_vid": 1, "ip_proto": 2}


def to_ofpmatch(match: Iterable[tuple]) -> parser.OFPMatch:
    fields = []
    for name, value, mask in match:
        if name == "ct_state":
            v, m = ct_state_to_int(value) if isinstance(value, str) else (value, mask)
            fields.append(("ct_state", (v, m)))
            continue
        fields.append(ofp.oxm_normalize_user(osken_field(name),
                                             value if mask is None else (value, mask)))

    def order(f):
        n, _v, _m = ofp.oxm_from_user(*f)
        return (_PREREQ_RANK.get(f[0], 9), n[0] if isinstance(n, tuple) else n)
    return parser.OFPMatch(_ordered_fields=sorted(fields, key=order))


def from_ofpmatch(match: parser.OFPMatch) -> tuple:
    out = []
    for name, val in match.items():
        v, m = val if isinstance(val, tuple) else (val, None)
        out.append(_norm_field(ovs_field(name), v, m))
    return tuple(sorted(out, key=lambda f: f[0]))


# ---------------------------------------------------------------- actions

def _ct_opts(opts: Iterable[tuple]) -> tuple:
    d = dict(opts)
    unknown = set(d) - {"commit", "zone", "table", "zone_reg", "nat"}
    if unknown:
        raise ConversionError(f"unknown ct options {sorted(unknown)}")
    out = {}
    if d.get("commit"):
        out["commit"] = True
    if d.get("zone_reg"):
        out["zone_reg"] = d["zone_reg"]
    elif d.get("zone"):
        out["zone"] = int(d["zone"])
    if d.get("table") is not None:
        out["table"] = int(d["table"])
    if d.get("nat") is not None:
        out["nat"] = _nat_text(d["nat"])
    return tuple(sorted(out.items()))


NX_NAT_F_SRC, NX_NAT_F_DST = 1 << 0, 1 << 1      # OVS's nx_nat_flags (os-ken does not name them)


def _nat_text(text: str) -> str:
    """'' (plain nat: apply the connection's translation) or '(src|dst)=a.b.c.d[:port]'."""
    if not text:
        return ""
    m = re.fullmatch(r"(src|dst)=(\d+\.\d+\.\d+\.\d+)(?::(\d+))?", text)
    if not m:
        raise ConversionError(f"unsupported nat {text!r}")
    return f"{m[1]}={ipaddress.IPv4Address(m[2])}" + (f":{int(m[3])}" if m[3] else "")


def _nat_action(text: str):
    if not text:
        return parser.NXActionNAT(flags=0)
    m = re.fullmatch(r"(src|dst)=([\d.]+)(?::(\d+))?", text)
    flags = NX_NAT_F_SRC if m[1] == "src" else NX_NAT_F_DST
    # os-ken does not pad what it appends after NXActionNAT's header: send the ranges in a
    # multiple of 8 bytes (address and port ranges of one value each mean the same to OVS)
    if m[3]:
        kw = {"range_ipv4_min": m[2], "range_proto_min": int(m[3]), "range_proto_max": int(m[3])}
    else:
        kw = {"range_ipv4_min": m[2], "range_ipv4_max": m[2]}
    return parser.NXActionNAT(flags=flags, **kw)


def _nat_from(act) -> str:
    if act.flags == 0 and not act.range_ipv4_min and act.range_proto_min is None:
        return ""
    if act.flags not in (NX_NAT_F_SRC, NX_NAT_F_DST) or not act.range_ipv4_min or act.range_ipv6_min \
            or act.range_ipv4_max not in ("", act.range_ipv4_min) \
            or act.range_proto_max not in (None, act.range_proto_min):
        raise ConversionError(f"unsupported nat {act}")
    side = "src" if act.flags == NX_NAT_F_SRC else "dst"
    return f"{side}={act.range_ipv4_min}" + (f":{act.range_proto_min}" if act.range_proto_min else "")


@functools.lru_cache(maxsize=1 << 16)
def _norm_action(a: tuple) -> tuple:
    kind = a[0]
    if kind not in ACTIONS:
        raise ConversionError(f"unknown action {a!r}")
    if kind == "move" and not all(osken_field(f) in _WIDTH for f in a[1:3]):
        raise ConversionError(f"unknown field in {a!r}")
    if kind == "ct":
        return ("ct", _ct_opts(a[1]))
    if kind == "set_field":
        return ("set_field", a[1], _norm_field(a[1], a[2], None)[1])
    return tuple(a)


_INSTR_ORDER = {"meter": -1, "write_metadata": 1, "goto": 2}


def normalize_actions(actions: Iterable[tuple]) -> tuple:
    acts = [_norm_action(a) for a in actions]
    return tuple(sorted(acts, key=lambda a: _INSTR_ORDER.get(a[0], 0)))  # stable


def to_ofpaction(a: tuple):
    kind = a[0]
    if kind == "output":
        return parser.OFPActionOutput(a[1], 0)
    if kind == "in_port":
        return parser.OFPActionOutput(ofp.OFPP_IN_PORT, 0)
    if kind == "controller":
        return parser.OFPActionOutput(ofp.OFPP_CONTROLLER, a[1])
    if kind == "group":
        return parser.OFPActionGroup(a[1])
    if kind == "set_field":
        if a[1] == "ct_state":
            raise ConversionError("ct_state cannot be set")
        return parser.OFPActionSetField(**{osken_field(a[1]): a[2]})
    if kind == "move":
        src, dst = osken_field(a[1]), osken_field(a[2])
        if src not in _WIDTH or dst not in _WIDTH:
            raise ConversionError(f"unknown field in {a!r}")
        return parser.NXActionRegMove(src_field=src, dst_field=dst,
                                      n_bits=min(_WIDTH[src], _WIDTH[dst]))
    if kind == "dec_ttl":
        return parser.OFPActionDecNwTtl()
    if kind == "push_vlan":
        return parser.OFPActionPushVlan(a[1])
    if kind == "pop_vlan":
        return parser.OFPActionPopVlan()
    if kind == "ct":
        d = dict(_ct_opts(a[1]))
        flags = nicira_ext.NX_CT_F_COMMIT if d.get("commit") else 0
        if "zone_reg" in d:
            zsrc, zval = osken_field(d["zone_reg"]), nicira_ext.ofs_nbits(0, 15)
        else:
            zsrc, zval = "", d.get("zone", 0)
        return parser.NXActionCT(flags=flags, zone_src=zsrc, zone_ofs_nbits=zval,
                                 recirc_table=d.get("table", nicira_ext.NX_CT_RECIRC_NONE),
                                 alg=0, actions=[_nat_action(d["nat"])] if "nat" in d else [])
    if kind == "conjunction":
        return parser.NXActionConjunction(clause=a[2] - 1, n_clauses=a[3], id_=a[1])
    raise ConversionError(f"unknown action {a!r}")


def from_ofpaction(act) -> tuple:
    if isinstance(act, parser.OFPActionOutput):
        if act.port == ofp.OFPP_CONTROLLER:
            return ("controller", act.max_len)
        if act.port == ofp.OFPP_IN_PORT:
            return ("in_port",)
        return ("output", act.port)
    if isinstance(act, parser.OFPActionGroup):
        return ("group", act.group_id)
    if isinstance(act, parser.OFPActionSetField):
        name = ovs_field(act.key)
        return ("set_field", name, _norm_field(name, act.value, None)[1])
    if isinstance(act, parser.NXActionRegMove):
        return ("move", ovs_field(act.src_field), ovs_field(act.dst_field))
    if isinstance(act, parser.OFPActionDecNwTtl):
        return ("dec_ttl",)
    if isinstance(act, parser.OFPActionPushVlan):
        return ("push_vlan", act.ethertype)
    if isinstance(act, parser.OFPActionPopVlan):
        return ("pop_vlan",)
    if isinstance(act, parser.NXActionCT):
        opts = {}
        if act.flags & nicira_ext.NX_CT_F_COMMIT:
            opts["commit"] = True
        if act.zone_src:
            opts["zone_reg"] = ovs_field(act.zone_src)
        else:
            opts["zone"] = act.zone_ofs_nbits
        if act.recirc_table != nicira_ext.NX_CT_RECIRC_NONE:
            opts["table"] = act.recirc_table
        nats = [a for a in act.actions if isinstance(a, parser.NXActionNAT)]
        if act.flags & ~nicira_ext.NX_CT_F_COMMIT or len(nats) != len(act.actions) \
                or len(nats) > 1 or act.alg:
            raise ConversionError(f"unsupported ct action {act}")
        if nats:
            opts["nat"] = _nat_from(nats[0])
        return ("ct", _ct_opts(opts.items()))
    if isinstance(act, parser.NXActionConjunction):
        return ("conjunction", act.id, act.clause + 1, act.n_clauses)
    raise ConversionError(f"unsupported action {act}")


def to_instructions(actions: Iterable[tuple]) -> list:
    apply, instr = [], []
    meter = []
    for a in normalize_actions(actions):
        if a[0] == "meter":
            meter.append(parser.OFPInstructionMeter(a[1], ofp.OFPIT_METER))
        elif a[0] == "goto":
            instr.append(parser.OFPInstructionGotoTable(a[1]))
        elif a[0] == "write_metadata":
            instr.append(parser.OFPInstructionWriteMetadata(a[1], a[2]))
        else:
            apply.append(to_ofpaction(a))
    if apply:
        instr.insert(0, parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, apply))
    return meter + instr


def from_instructions(instructions: Iterable) -> tuple:
    out, tail = [], []
    for ins in instructions:
        if isinstance(ins, parser.OFPInstructionActions) and ins.type == ofp.OFPIT_APPLY_ACTIONS:
            out.extend(from_ofpaction(a) for a in ins.actions)
        elif isinstance(ins, parser.OFPInstructionWriteMetadata):
            tail.append(("write_metadata", ins.metadata, ins.metadata_mask))
        elif isinstance(ins, parser.OFPInstructionGotoTable):
            tail.append(("goto", ins.table_id))
        elif isinstance(ins, parser.OFPInstructionMeter):
            tail.append(("meter", ins.meter_id))        # normalize_actions puts it first
        else:
            raise ConversionError(f"unsupported instruction {ins}")
    return normalize_actions(out + tail)


# ---------------------------------------------------------------- entries

MAC_FIELDS = frozenset(("eth_src", "eth_dst", "arp_sha", "arp_tha"))
_HEX = frozenset("0123456789abcdef")


def _canonical_mac(v) -> bool:
    return (isinstance(v, str) and len(v) == 17 and v[2::3] == ":::::"
            and _HEX.issuperset(v[0::3] + v[1::3]))


@functools.lru_cache(maxsize=1 << 16)      # real flow sets share few distinct action lists
def _normalize_actions_cached(actions: tuple) -> tuple:
    return normalize_actions(actions)


def _first(f: tuple):
    return f[0]


@functools.lru_cache(maxsize=1 << 18)      # a recompile yields equal entries again
def normalize(e: FlowEntry) -> FlowEntry:
    """The entry exactly as entry_from_stats will report it back.

    Same result as normalize_match and normalize_actions of its parts, faster: the
    desired set of every switch goes through here once per compile. An exact MAC already in
    canonical form is its own normal form (not cached: most are one endpoint's), and
    compiler-made matches are usually sorted already."""
    match = tuple([f if f[0] in MAC_FIELDS and f[2] is None and _canonical_mac(f[1])
                   else _norm_field(*f) for f in e.match])
    if any(match[i][0] > match[i + 1][0] for i in range(len(match) - 1)):
        match = tuple(sorted(match, key=_first))
    return FlowEntry(e.table, e.priority, match, _normalize_actions_cached(e.actions), e.cookie)


def flow_mod(dp, entry: FlowEntry, command: int = ofp.OFPFC_ADD) -> parser.OFPFlowMod:
    """ADD (or MODIFY*) carries cookie and instructions; DELETE* is by
    table/priority/match with out_port/out_group ANY (else OVS deletes nothing)."""
    match = to_ofpmatch(entry.match)
    if command in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT):
        return parser.OFPFlowMod(dp, cookie=0, cookie_mask=0, table_id=entry.table,
                                 command=command, priority=entry.priority,
                                 out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                                 match=match, instructions=[])
    return parser.OFPFlowMod(dp, cookie=entry.cookie, table_id=entry.table,
                             command=command, priority=entry.priority,
                             out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                             match=match, instructions=to_instructions(entry.actions))


def entry_from_stats(stat) -> FlowEntry:
    """OFPFlowStats -> FlowEntry (raises ConversionError for what we never install)."""
    return FlowEntry(stat.table_id, stat.priority, from_ofpmatch(stat.match),
                     from_instructions(stat.instructions), stat.cookie)


def normalize_group(g: GroupEntry) -> GroupEntry:
    return GroupEntry(g.group_id, tuple(normalize_actions(b) for b in g.buckets),
                      g.group_type, 0)


def group_mod(dp, g: GroupEntry, command: int = ofp.OFPGC_ADD) -> parser.OFPGroupMod:
    gtype = _GROUP_TYPES.get(g.group_type)
    if gtype is None:
        raise ConversionError(f"unknown group type {g.group_type!r}")
    if command == ofp.OFPGC_DELETE:
        return parser.OFPGroupMod(dp, command, gtype, g.group_id, [])
    weight = 1 if gtype == ofp.OFPGT_SELECT else 0
    buckets = [parser.OFPBucket(weight, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                [to_ofpaction(a) for a in normalize_actions(b)])
               for b in g.buckets]
    return parser.OFPGroupMod(dp, command, gtype, g.group_id, buckets)


def group_from_desc(desc) -> GroupEntry:
    """OFPGroupDescStats -> GroupEntry."""
    if desc.type not in _GROUP_NAMES:
        raise ConversionError(f"unknown group type {desc.type}")
    buckets = tuple(normalize_actions(from_ofpaction(a) for a in b.actions)
                    for b in desc.buckets)
    return GroupEntry(desc.group_id, buckets, _GROUP_NAMES[desc.type], 0)

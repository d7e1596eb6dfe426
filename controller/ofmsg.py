"""FlowEntry/GroupEntry <-> OpenFlow 1.3 messages through os-ken's parser, both ways.

The reference codec: controller/ofcodec is the one interface the controller
uses, and its fast paths (ofencode, ofwire) are tested byte for byte and entry
for entry against this module.  Pure functions: no I/O, no app state.
Entries are canonical when constructed (flows/fields.py), so what
`entry_from_stats` reads back from a switch equals what the compiler made.

Wire conventions where flows/fields.py leaves room (OVS's meaning chosen):
- vlan_vid (match and set_field) is the OXM value: it includes OFPVID_PRESENT
  (0x1000), as in OVS's `vlan_vid` field for OpenFlow 1.3 (`vlan_vid=0x1005`).
- ct_state goes out as NXM_NX_CT_STATE (value, mask), the mask from the flags named.
- Match fields are sent prerequisites first (fields.Field.rank), then by OXM
  number: OVS checks prerequisites field by field as it parses.
- move is whole-field: n_bits = the smaller of the two widths, offsets 0.
- conjunction clauses are 1-based (as ovs-ofctl prints them); the wire is 0-based.
- output to OFPP_CONTROLLER is ("controller", max_len); output to OFPP_IN_PORT
  is ("in_port",); any other output is ("output", port) and its max_len is ignored.
- Groups: buckets carry weight 0 (1 for select) and watch ANY; GroupEntry.cookie
  does not exist on the wire (OpenFlow 1.3 groups have no cookie) and reads back 0.
"""
from __future__ import annotations

import re
from typing import Iterable

from os_ken.lib import type_desc
from os_ken.ofproto import nicira_ext
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto import oxm_fields

from flows import fields as F
from flows.entry import FlowEntry, GroupEntry
from flows.fields import CT_FLAGS, ct_state_to_int, ct_state_to_str  # noqa: F401 (re-exported)


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

# An entry or a switch's flow that netweave cannot express (one error for both).
ConversionError = F.EntryError

_WIDTH = {f.name: f.type.size * 8 for f in ofp.oxm_types}   # os-ken name -> bits
# the table's os-ken names must be os-ken's, with the table's widths
for _fd in F.FIELDS.values():
    assert _fd.osken is None or _WIDTH.get(_fd.osken) == _fd.width, _fd
del _fd

_GROUP_TYPES = {"all": ofp.OFPGT_ALL, "select": ofp.OFPGT_SELECT,
                "indirect": ofp.OFPGT_INDIRECT, "ff": ofp.OFPGT_FF}
_GROUP_NAMES = {v: k for k, v in _GROUP_TYPES.items()}


def osken_field(name: str) -> str:
    fd = F.field(name)
    if fd.osken is None:
        raise ConversionError(f"os-ken cannot express {name}")
    return fd.osken


def ovs_field(name: str) -> str:
    """os-ken's name (OXM, or NXM with its _nxm suffix) -> the entry's."""
    n = F.ALIASES.get(name) or F.ALIASES.get(name[:-4] if name.endswith("_nxm") else name)
    if n is None:
        raise ConversionError(f"unknown field {name!r}")
    return n


# ---------------------------------------------------------------- match

def oxm_rank(name: str) -> tuple:
    """The order fields go on the wire: prerequisites first, then OXM number."""
    n = ofp.oxm_from_user_header(osken_field(name))
    return (F.field(name).rank, n[0] if isinstance(n, tuple) else n)


def to_ofpmatch(match: Iterable[tuple]) -> parser.OFPMatch:
    fields = []
    for name, value, mask in match:
        fd = F.field(name)
        oname = osken_field(name)
        if fd.kind == "ct_state":
            value, mask = ct_state_to_int(value)
        fields.append((oxm_rank(name), (oname, value if mask is None else (value, mask))))
    fields.sort(key=lambda f: f[0])
    return parser.OFPMatch(_ordered_fields=[f[1] for f in fields])


def from_ofpmatch(match: parser.OFPMatch) -> tuple:
    """os-ken's match -> the entry's (canonical) match."""
    out = []
    for name, val in match.items():
        v, m = val if isinstance(val, tuple) else (val, None)
        out.append((ovs_field(name), v, m))
    return F.canon_match(out)


# ---------------------------------------------------------------- actions

NX_NAT_F_SRC, NX_NAT_F_DST = 1 << 0, 1 << 1      # OVS's nx_nat_flags (os-ken does not name them)


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
        return parser.OFPActionSetField(**{osken_field(a[1]): a[2]})
    if kind == "move":
        src, dst = osken_field(a[1]), osken_field(a[2])
        return parser.NXActionRegMove(src_field=src, dst_field=dst,
                                      n_bits=min(_WIDTH[src], _WIDTH[dst]))
    if kind == "dec_ttl":
        return parser.OFPActionDecNwTtl()
    if kind == "push_vlan":
        return parser.OFPActionPushVlan(a[1])
    if kind == "pop_vlan":
        return parser.OFPActionPopVlan()
    if kind == "ct":
        d = dict(F.ct_opts(a[1]))
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
        return ("set_field", ovs_field(act.key), act.value)
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
        return ("ct", F.ct_opts(opts.items()))
    if isinstance(act, parser.NXActionConjunction):
        return ("conjunction", act.id, act.clause + 1, act.n_clauses)
    raise ConversionError(f"unsupported action {act}")


def to_instructions(actions: Iterable[tuple]) -> list:
    apply, instr = [], []
    meter = []
    for a in F.canon_actions(actions):
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
            tail.append(("meter", ins.meter_id))        # canon_actions puts it first
        else:
            raise ConversionError(f"unsupported instruction {ins}")
    return F.canon_actions(out + tail)


# ---------------------------------------------------------------- entries

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


def group_mod(dp, g: GroupEntry, command: int = ofp.OFPGC_ADD) -> parser.OFPGroupMod:
    gtype = _GROUP_TYPES.get(g.group_type)
    if gtype is None:
        raise ConversionError(f"unknown group type {g.group_type!r}")
    if command == ofp.OFPGC_DELETE:
        return parser.OFPGroupMod(dp, command, gtype, g.group_id, [])
    weight = 1 if gtype == ofp.OFPGT_SELECT else 0
    buckets = [parser.OFPBucket(weight, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                [to_ofpaction(a) for a in b])
               for b in g.buckets]
    return parser.OFPGroupMod(dp, command, gtype, g.group_id, buckets)


def group_from_desc(desc) -> GroupEntry:
    """OFPGroupDescStats -> GroupEntry."""
    if desc.type not in _GROUP_NAMES:
        raise ConversionError(f"unknown group type {desc.type}")
    buckets = tuple(tuple(from_ofpaction(a) for a in b.actions) for b in desc.buckets)
    return GroupEntry(desc.group_id, buckets, _GROUP_NAMES[desc.type], 0)

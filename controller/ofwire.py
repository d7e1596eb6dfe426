"""Flow-stats replies decoded straight from the wire bytes into FlowEntry.

Why: reading a switch after a restart is the controller's hot path.  os-ken
parses every ofp_flow_stats into objects (OFPMatch, instructions, actions) in
its receive loop and ofmsg.entry_from_stats then converts them: ~240 us per
flow.  Here one struct walk with precomputed tables turns the bytes into the
entry directly.

Contract: `decode(buf, offset)` returns exactly
`ofmsg.entry_from_stats(<os-ken's parse of the same bytes>)` (a canonical
FlowEntry, flows/fields.py) for the match fields and actions of flows/fields.py, and raises `Unsupported`
for anything else (unknown field, masked set_field, partial reg_move, ct with
nested actions, ...).  Unsupported means "not for the fast path", never "bad
flow": the caller then takes the slow path for that one flow, which gives the
same answer as before this module existed.  When in doubt we raise.

How the bytes are kept: `install()` makes os-ken build a `RawFlowStats` per
entry of every OFPFlowStatsReply instead of OFPFlowStats.  RawFlowStats is a
subclass of OFPFlowStats that unpacks only the fixed header (length, table_id,
priority, cookie, counters, ...) and remembers (buf, offset); `.match` and
`.instructions` are parsed by os-ken on first access.  So every other reader of
flow stats (controller/switch_stats.py, os-ken apps) keeps working unchanged;
only readers that call `to_entry` skip os-ken's parse.

Measured 2026-11-28 (2 vCPU VM shared with other test runs, load ~1; best of
2 rounds), private userspace OVS 3.1 in its own netns, flows installed with
`ovs-ofctl --bundle add-flows`, L2-like flows in table 40 (distinct eth_dst +
masked metadata; set tun_dst, set tun_id, output:100; cookies with COOKIE_MARK):

    .venv/bin/python -m tests.integration.test_ofwire_ovs --flows 50000

                                   before (os-ken parse)   after (ofwire)
    _read_switch, 50k flows              8.15 s                0.66 s
    unchanged reconcile, 50k flows      11.44 s                3.17 s
    _read_switch, 5k flows               0.97 s                0.06 s
    unchanged reconcile, 5k flows        0.90 s                0.31 s
    floor: `ovs-ofctl dump-flows` of the same 50k bridge: 0.33-0.44 s (5k: 0.07 s)

Per flow: decode ~6-7 us (os-ken parse + entry_from_stats ~115 us offline,
~165 us in the live read with the GC on).  What is left of the 50k reconcile
(~2.5 s) was not the read but the desired side (a normaliser over the 50k desired
entries, since gone: entries are canonical when constructed).
"""
from __future__ import annotations

import logging
import socket
import struct
from operator import itemgetter

from os_ken.ofproto import nicira_ext
from os_ken.ofproto import ofproto_common
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import ofmsg
from flows import fields, gcpause
from flows.entry import FlowEntry

LOG = logging.getLogger(__name__)


class Unsupported(Exception):
    """This flow is not for the fast path; parse it the slow way (ofmsg)."""


# How many entries went each way since start (for logs and tests).
COUNTS = {"fast": 0, "slow": 0}

# ofp_flow_stats up to the match: length, table_id, priority, cookie.
_FS_HEAD = struct.Struct("!HB9xH10xQ16x")
_FS_FULL = struct.Struct(ofp.OFP_FLOW_STATS_0_PACK_STR)
assert _FS_HEAD.size == _FS_FULL.size == 48
_HH = struct.Struct("!HH")
_U8 = struct.Struct("!B")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_B4 = struct.Struct("!BBBB").unpack_from
_GOTO = struct.Struct("!HHB3x")
_WMETA = struct.Struct("!HH4xQQ")
_METER = struct.Struct("!HHI")
_OUTPUT = struct.Struct("!HHIH6x")
_EXP = struct.Struct("!HHIH")                  # type, len, experimenter, subtype
_REG_MOVE = struct.Struct("!HHH")              # n_bits, src_ofs, dst_ofs
_CONJ = struct.Struct("!BBI")                  # clause (0-based), n_clauses, id
_CT = struct.Struct("!HIHB3xH")                # flags, zone_src, zone_ofs_nbits, table, alg
_OXM_OFB = ofp.OFPMT_OXM

_NX = ofproto_common.NX_EXPERIMENTER_ID
_NXAST_REG_MOVE, _NXAST_CONJUNCTION, _NXAST_CT = 6, 34, 35
_CT_ZONE_REG_BITS = nicira_ext.ofs_nbits(0, 15)   # zone=regN[0..15], as ofmsg writes it

# The match fields of flows/fields.py, by os-ken name (OXM, or NXM without _nxm).
FIELDS = tuple(fields.FIELDS)
_INT_STRUCT = {1: _U8, 2: _U16, 4: _U32, 8: _U64}
_MAC_FULL = (1 << 48) - 1


def _mac(x: int) -> str:
    return x.to_bytes(6, "big").hex(":")


def _ip(x: int) -> str:
    return socket.inet_ntoa(x.to_bytes(4, "big"))


# ---------------------------------------------------------------- field tables
# Each table maps a whole 32-bit OXM header (class, field, hasmask, length) to
# a function (buf, value_offset) -> (name, value, mask) in ofmsg's canonical
# form.  Keying on the whole header also checks the length: a header we did
# not precompute (other class, odd length, experimenter OXM) is Unsupported.

def _int_conv(name, size, masked):
    st, full = _INT_STRUCT[size], (1 << (8 * size)) - 1
    unpack = st.unpack_from
    if name == "ct_state":      # '+trk+est' strings, mask implied (ofmsg.ct_state_to_str)
        cache = {}

        def conv(buf, p):
            v = unpack(buf, p)[0]
            m = unpack(buf, p + size)[0] if masked else None
            s = cache.get((v, m))
            if s is None:
                try:
                    s = cache[(v, m)] = fields.ct_state_to_str(v, m)
                except fields.EntryError as e:
                    raise Unsupported(str(e)) from None
            return (name, s, None)
        return conv
    if not masked:
        return lambda buf, p: (name, unpack(buf, p)[0], None)

    def conv_masked(buf, p):
        v, m = unpack(buf, p)[0], unpack(buf, p + size)[0]
        if m == full:
            return (name, v, None)
        return (name, v & m, m)
    return conv_masked


def _mac_conv(name, masked):
    if not masked:
        return lambda buf, p: (name, buf[p:p + 6].hex(":"), None)

    def conv(buf, p):
        v = int.from_bytes(buf[p:p + 6], "big")
        m = int.from_bytes(buf[p + 6:p + 12], "big")
        if m == _MAC_FULL:
            return (name, _mac(v), None)
        return (name, _mac(v & m), _mac(m))
    return conv


def _ip6(b) -> str:
    t = socket.inet_ntop(socket.AF_INET6, b)
    # inet_ntop writes some addresses with a dotted tail (::ffff:1.2.3.4); fields' form has none
    return t if "." not in t else fields.value_of(fields.FIELDS["ipv6_src"], int.from_bytes(b, "big"))


def _ip6_conv(name, masked):
    if not masked:
        return lambda buf, p: (name, _ip6(bytes(buf[p:p + 16])), None)
    full = (1 << 128) - 1

    def conv(buf, p):
        v = int.from_bytes(buf[p:p + 16], "big")
        m = int.from_bytes(buf[p + 16:p + 32], "big")
        if m == full:
            return (name, _ip6(v.to_bytes(16, "big")), None)
        return (name, _ip6((v & m).to_bytes(16, "big")), _ip6(m.to_bytes(16, "big")))
    return conv


def _ip_conv(name, masked):
    if not masked:
        return lambda buf, p: (name, "%d.%d.%d.%d" % _B4(buf, p), None)

    def conv(buf, p):
        v, m = _U32.unpack_from(buf, p)[0], _U32.unpack_from(buf, p + 4)[0]
        if m == 0xFFFFFFFF:
            return (name, _ip(v), None)
        return (name, _ip(v & m), _ip(m))
    return conv


def _build_tables():
    match, set_field, header_name = {}, {}, {}
    for f in ofp.oxm_types:
        if isinstance(f.num, tuple):                # experimenter OXMs: not ours
            continue
        # every header os-ken knows for a field of ours, OXM or NXM (OVS answers with either)
        name = fields.ALIASES.get(f.name[:-4] if f.name.endswith("_nxm") else f.name)
        if name is None:
            continue
        size = f.type.size
        kind = type(f.type).__name__
        for masked in (False, True):
            hdr = (f.num << 9) | (int(masked) << 8) | (size * (2 if masked else 1))
            if kind == "IntDescr":
                conv = _int_conv(name, size, masked)
            elif size == 6:
                conv = _mac_conv(name, masked)
            elif size == 4:
                conv = _ip_conv(name, masked)
            elif size == 16:
                conv = _ip6_conv(name, masked)
            else:
                continue
            match[hdr] = (conv, 4 + (hdr & 0xFF))
            if not masked:
                header_name[hdr] = name                 # reg_move / ct zone_src
                if name != "ct_state":                  # cannot be set
                    set_field[hdr] = conv
    return match, set_field, header_name


_MATCH, _SET_FIELD, _HEADER_NAME = _build_tables()
# whole-field reg_move n_bits, as ofmsg.to_ofpaction writes it: min of the widths
_WIDTH_BITS = {hdr: (hdr & 0xFF) * 8 for hdr in _HEADER_NAME}
_by_name = itemgetter(0)


# ---------------------------------------------------------------- decoding

def decode(buf, offset: int = 0) -> FlowEntry:
    """One ofp_flow_stats at buf[offset:] -> FlowEntry (canonical), or Unsupported."""
    try:
        return _decode(buf, offset)
    except (struct.error, IndexError, KeyError, ValueError, OSError) as e:
        raise Unsupported(f"{type(e).__name__}: {e}") from None


# the decoder's output is canonical by construction (tests compare it with the constructor's)
_entry = FlowEntry.trusted
# constants as module globals: attribute lookups on ofp cost in the per-flow loop
_IT_APPLY, _IT_GOTO, _IT_WMETA = ofp.OFPIT_APPLY_ACTIONS, ofp.OFPIT_GOTO_TABLE, ofp.OFPIT_WRITE_METADATA
_IT_METER = ofp.OFPIT_METER
_AT_OUTPUT, _AT_SET_FIELD, _AT_GROUP = ofp.OFPAT_OUTPUT, ofp.OFPAT_SET_FIELD, ofp.OFPAT_GROUP
_AT_EXP, _AT_PUSH_VLAN, _AT_POP_VLAN = ofp.OFPAT_EXPERIMENTER, ofp.OFPAT_PUSH_VLAN, ofp.OFPAT_POP_VLAN
_AT_DEC_NW_TTL = ofp.OFPAT_DEC_NW_TTL
_P_CONTROLLER, _P_IN_PORT = ofp.OFPP_CONTROLLER, ofp.OFPP_IN_PORT


def _decode(buf, off, _head=_FS_HEAD.unpack_from, _hh=_HH.unpack_from,
            _u32=_U32.unpack_from, _get=_MATCH.get):
    length, table, priority, cookie = _head(buf, off)
    end = off + length
    mtype, mlen = _hh(buf, off + 48)
    if mtype != _OXM_OFB or mlen < 4:
        raise Unsupported(f"match type {mtype}")
    p, mend = off + 52, off + 48 + mlen
    fields = []
    while p < mend:
        hdr = _u32(buf, p)[0]
        d = _get(hdr)
        if d is None:
            raise Unsupported(f"match field header {hdr:#010x}")
        fields.append(d[0](buf, p + 4))
        p += d[1]
    if p != mend:
        raise Unsupported("match length")
    if len(fields) > 1:
        fields.sort(key=_by_name)
        if len({f[0] for f in fields}) != len(fields):
            raise Unsupported("a match field twice")
    p = off + 48 + ((mlen + 7) & ~7)
    acts, tail, meter = [], None, None
    while p < end:
        itype, ilen = _hh(buf, p)
        if ilen < 8 or p + ilen > end:
            raise Unsupported("instruction length")
        if itype == _IT_APPLY:
            _actions(buf, p + 8, p + ilen, acts)
        elif itype == _IT_METER:
            if ilen != 8 or meter is not None:
                raise Unsupported("meter instruction")
            meter = ("meter", _METER.unpack_from(buf, p)[2])
        elif itype == _IT_GOTO or itype == _IT_WMETA:
            tail = tail or []
            if itype == _IT_GOTO:
                tail.append((2, ("goto", _GOTO.unpack_from(buf, p)[2])))
            else:
                _, _, md, mask = _WMETA.unpack_from(buf, p)
                tail.append((1, ("write_metadata", md, mask)))
        else:
            raise Unsupported(f"instruction type {itype}")
        p += ilen
    if p != end:
        raise Unsupported("instructions length")
    if tail:        # ofmsg: apply-actions in order, then write_metadata, then goto
        tail.sort(key=_by_name)       # stable: by kind only
        acts.extend(a for _, a in tail)
    if meter is not None:           # ofmsg: the meter before everything
        acts.insert(0, meter)
    return _entry(table, priority, tuple(fields), tuple(acts), cookie)


def _actions(buf, p, end, out, _hh=_HH.unpack_from, _output=_OUTPUT.unpack_from,
             _u32=_U32.unpack_from, _set=_SET_FIELD.get):
    while p < end:
        atype, alen = _hh(buf, p)
        if alen < 8 or p + alen > end:
            raise Unsupported("action length")
        if atype == _AT_OUTPUT:
            _, _, port, max_len = _output(buf, p)
            if port == _P_CONTROLLER:
                out.append(("controller", max_len))
            elif port == _P_IN_PORT:
                out.append(("in_port",))
            else:
                out.append(("output", port))
        elif atype == _AT_SET_FIELD:
            hdr = _u32(buf, p + 4)[0]
            conv = _set(hdr)
            if conv is None or 8 + (hdr & 0xFF) > alen:
                raise Unsupported(f"set_field header {hdr:#010x}")
            name, value, _ = conv(buf, p + 8)
            out.append(("set_field", name, value))
        elif atype == _AT_GROUP:
            out.append(("group", _u32(buf, p + 4)[0]))
        elif atype == _AT_EXP:
            out.append(_nx_action(buf, p, alen))
        elif atype == _AT_PUSH_VLAN:
            out.append(("push_vlan", _U16.unpack_from(buf, p + 4)[0]))
        elif atype == _AT_POP_VLAN:
            out.append(("pop_vlan",))
        elif atype == _AT_DEC_NW_TTL:
            out.append(("dec_ttl",))
        else:
            raise Unsupported(f"action type {atype}")
        p += alen
    if p != end:
        raise Unsupported("actions length")


def _nx_action(buf, p, alen):
    _, _, exp, subtype = _EXP.unpack_from(buf, p)
    if exp != _NX:
        raise Unsupported(f"experimenter {exp:#x}")
    body = p + 10
    if subtype == _NXAST_CONJUNCTION:
        clause, n_clauses, id_ = _CONJ.unpack_from(buf, body)
        return ("conjunction", id_, clause + 1, n_clauses)
    if subtype == _NXAST_REG_MOVE:
        n_bits, src_ofs, dst_ofs = _REG_MOVE.unpack_from(buf, body)
        src_h, dst_h = _U32.unpack_from(buf, body + 6)[0], _U32.unpack_from(buf, body + 10)[0]
        src, dst = _HEADER_NAME.get(src_h), _HEADER_NAME.get(dst_h)
        # only whole-field moves are ours; anything else goes to the slow path
        if (src is None or dst is None or src_ofs or dst_ofs
                or n_bits != min(_WIDTH_BITS[src_h], _WIDTH_BITS[dst_h]) or alen < 24):
            raise Unsupported("reg_move")
        return ("move", src, dst)
    if subtype == _NXAST_CT:
        flags, zone_src, zone_v, table, alg = _CT.unpack_from(buf, body)
        if flags & ~nicira_ext.NX_CT_F_COMMIT or alg or alen != 24:   # 24: no nested actions
            raise Unsupported("ct with flags/alg/actions")
        opts = []                                  # sorted by key, as fields.ct_opts
        if flags:
            opts.append(("commit", True))
        if table != nicira_ext.NX_CT_RECIRC_NONE:
            opts.append(("table", table))
        if zone_src:
            reg = _HEADER_NAME.get(zone_src)
            if reg is None or zone_v != _CT_ZONE_REG_BITS:
                raise Unsupported("ct zone_src")
            opts.append(("zone_reg", reg))
        elif zone_v:
            opts.append(("zone", zone_v))
        return ("ct", tuple(opts))
    raise Unsupported(f"nicira subtype {subtype}")


# ---------------------------------------------------------------- os-ken hook

class RawFlowStats(parser.OFPFlowStats):
    """An OFPFlowStats that keeps its bytes and parses match/instructions only
    when someone reads them (then exactly as os-ken would)."""

    @classmethod
    def parser(cls, buf, offset):
        self = cls.__new__(cls)
        (self.length, self.table_id, self.duration_sec, self.duration_nsec,
         self.priority, self.idle_timeout, self.hard_timeout, self.flags,
         self.cookie, self.packet_count, self.byte_count) = _FS_FULL.unpack_from(buf, offset)
        self._buf, self._offset = buf, offset
        return self

    def __getattr__(self, name):
        # only called for attributes not set by parser(): match, instructions
        if name in ("match", "instructions"):
            full = parser.OFPFlowStats.parser(self._buf, self._offset)
            self.match, self.instructions = full.match, full.instructions
            return getattr(self, name)
        raise AttributeError(name)

    def entry(self) -> FlowEntry:
        """The fast decode (raises Unsupported)."""
        return decode(self._buf, self._offset)


gc_paused = gcpause.paused       # speed: see flows/gcpause.py


def install() -> None:
    """Make os-ken keep flow-stats entries raw (process-wide; idempotent)."""
    parser.OFPFlowStatsReply.cls_stats_body_cls = RawFlowStats


def uninstall() -> None:
    parser.OFPFlowStatsReply.cls_stats_body_cls = parser.OFPFlowStats


def to_entry(st) -> FlowEntry:
    """FlowEntry of one flow-stats entry: fast when possible, else ofmsg's slow
    path (which raises ofmsg.ConversionError for flows we never install)."""
    if type(st) is RawFlowStats:
        try:
            e = decode(st._buf, st._offset)
            COUNTS["fast"] += 1
            return e
        except Unsupported as why:
            LOG.debug("event=ofwire_slow table=%s priority=%s reason=%s",
                      st.table_id, st.priority, why)
    COUNTS["slow"] += 1
    return ofmsg.entry_from_stats(st)

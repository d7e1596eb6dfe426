"""FlowEntry -> OF1.3 FLOW_MOD bytes (and ONF bundle-add bytes), without os-ken objects.

Why: building each flow mod through os-ken (OFPMatch parses every MAC through
netaddr three times, then every object serializes itself) dominated a large
push (bench/flow_push: ~4.7k flows/s).  Here a flow mod is struct-packed:

- match fields are encoded one at a time with a per-field header precomputed
  from os-ken's own OXM/NXM tables (so header bytes are os-ken's by
  construction) and cached by (name, value, mask); they are ordered exactly as
  ofmsg.to_ofpmatch orders them (prerequisites first, then OXM number);
- the instruction block depends only on the entry's actions tuple, and real
  flow sets share few distinct ones, so it is built once per distinct tuple
  through ofmsg.to_instructions + os-ken serialize (byte-identical by
  construction, covers every action ofmsg covers) and cached.

The output is byte-for-byte what os-ken serializes for ofmsg.flow_mod (see
tests/unit/test_ofencode.py).  Anything this module cannot encode raises
(ConversionError or another exception) and the caller falls back to ofmsg.
"""
from __future__ import annotations

import socket
import struct

from os_ken.ofproto import ofproto_common
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import ofmsg
from flows import fields, gcpause
from flows.entry import FlowEntry

_CACHE_MAX = 200_000            # per cache; cleared when full (bounded memory)

# ofp_flow_mod fixed part after the ofp_header (cookie .. pad), then the match header
_FLOW_MOD = struct.Struct("!QQBBHHHIIIH2x")
_OFP_HEADER = struct.Struct("!BBHI")
_MATCH_HDR = struct.Struct("!HH")
# ofp_header + experimenter + exp_type + bundle_id + pad + flags
_BUNDLE_ADD = struct.Struct("!BBHIIII2xH")
_BUNDLE_ADD_LEN = _BUNDLE_ADD.size
_ONF = ofproto_common.ONF_EXPERIMENTER_ID
_ET_BUNDLE_ADD = ofp.ONF_ET_BUNDLE_ADD_MESSAGE
_V = ofp.OFP_VERSION
_T_FLOW_MOD = ofp.OFPT_FLOW_MOD
_T_EXPERIMENTER = ofp.OFPT_EXPERIMENTER
_NO_BUFFER = ofp.OFP_NO_BUFFER
_PORT_ANY, _GROUP_ANY = ofp.OFPP_ANY, ofp.OFPG_ANY
_DELETES = (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT)
_PAD = [b"\0" * i for i in range(8)]


# ---------------------------------------------------------------- match fields

class _Field:
    """Precomputed wire facts for one match field (entry name)."""
    __slots__ = ("width", "kind", "hdr", "hdr_w", "rank")

    def __init__(self, name: str):
        fd = fields.field(name)
        oname = ofmsg.osken_field(name)
        self.width = w = fd.width // 8
        self.kind = fd.kind
        n = ofp.oxm_from_user_header(oname)
        buf = bytearray()
        ln = ofp.oxm_serialize(n, b"\0" * w, None, buf, 0)
        self.hdr = bytes(buf[:ln - w])
        buf = bytearray()
        ln = ofp.oxm_serialize(n, b"\0" * w, b"\0" * w, buf, 0)
        self.hdr_w = bytes(buf[:ln - 2 * w])
        self.rank = ofmsg.oxm_rank(name)       # the very order ofmsg.to_ofpmatch sends


_FIELDS: dict[str, _Field] = {}
_MAC_FIELDS = frozenset(n for n, f in fields.FIELDS.items() if f.kind == "mac")
_FIELD_CACHE: dict[tuple, tuple] = {}       # (name, value, mask) -> (sort key, bytes)


def _value_bytes(v, width: int, kind: str) -> bytes:
    if kind == "mac":
        return bytes.fromhex(v.replace(":", ""))
    if kind == "ipv4":
        return socket.inet_aton(v)
    if kind == "ipv6":
        return socket.inet_pton(socket.AF_INET6, v)
    return v.to_bytes(width, "big")


def _encode_field(f: tuple) -> tuple:
    name, value, mask = f
    fd = _FIELDS.get(name)
    if fd is None:
        fd = _FIELDS[name] = _Field(name)
    w, kind = fd.width, fd.kind
    if kind == "ct_state":              # sent as NXM_NX_CT_STATE value/mask
        value, mask = fields.ct_state_to_int(value)
    if mask is None:
        out = fd.hdr + _value_bytes(value, w, kind)
    else:
        out = fd.hdr_w + _value_bytes(value, w, kind) + _value_bytes(mask, w, kind)
    r = (fd.rank, out)
    if name in _MAC_FIELDS and mask is None:
        return r                        # not cached: usually one per endpoint
    if len(_FIELD_CACHE) >= _CACHE_MAX:
        _FIELD_CACHE.clear()
    _FIELD_CACHE[f] = r
    return r


def encode_match(match: tuple) -> bytes:
    """ofp_match (OXM type, padded to 8) for an entry's match tuple."""
    cache = _FIELD_CACHE
    enc = []
    for f in match:
        r = cache.get(f)
        enc.append(r if r is not None else _encode_field(f))
    if len(enc) > 1:
        enc.sort(key=_rank)
    body = b"".join([e[1] for e in enc])
    ln = 4 + len(body)
    return _MATCH_HDR.pack(ofp.OFPMT_OXM, ln) + body + _PAD[-ln % 8]


def _rank(e):
    return e[0]


# ---------------------------------------------------------------- instructions

_INSTR_CACHE: dict[tuple, bytes] = {}


def encode_instructions(actions: tuple) -> bytes:
    b = _INSTR_CACHE.get(actions)
    if b is None:
        buf = bytearray()
        off = 0
        for ins in ofmsg.to_instructions(actions):
            ins.serialize(buf, off)
            off = len(buf)
        b = bytes(buf)
        if len(_INSTR_CACHE) >= _CACHE_MAX:
            _INSTR_CACHE.clear()
        _INSTR_CACHE[actions] = b
    return b


# ---------------------------------------------------------------- messages

def flow_mod_body(entry: FlowEntry, command: int = ofp.OFPFC_ADD) -> bytes:
    """Everything of the FLOW_MOD after its 8-byte ofp_header."""
    match = encode_match(entry.match)
    if command in _DELETES:         # as ofmsg.flow_mod: by match, no cookie, no instructions
        return _FLOW_MOD.pack(0, 0, entry.table, command, 0, 0, entry.priority,
                              _NO_BUFFER, _PORT_ANY, _GROUP_ANY, 0) + match
    return (_FLOW_MOD.pack(entry.cookie, 0, entry.table, command, 0, 0, entry.priority,
                           _NO_BUFFER, _PORT_ANY, _GROUP_ANY, 0)
            + match + encode_instructions(entry.actions))


def flow_mod(entry: FlowEntry, command: int = ofp.OFPFC_ADD, xid: int = 0) -> bytes:
    body = flow_mod_body(entry, command)
    return _OFP_HEADER.pack(_V, _T_FLOW_MOD, 8 + len(body), xid) + body


def bundle_add(body: bytes, bundle_id: int, flags: int, xid: int) -> bytes:
    """ONF bundle-add (OF1.3 bundle extension) wrapping a FLOW_MOD body; the
    inner message carries the outer xid, as the extension requires."""
    inner = 8 + len(body)
    return (_BUNDLE_ADD.pack(_V, _T_EXPERIMENTER, _BUNDLE_ADD_LEN + inner, xid, _ONF,
                             _ET_BUNDLE_ADD, bundle_id, flags)
            + _OFP_HEADER.pack(_V, _T_FLOW_MOD, inner, xid) + body)


class EncodedFlowMod:
    """A flow mod already encoded; ofapp sends it inside a bundle-add as raw
    bytes.  Its description (for the error log) is built only when asked."""
    __slots__ = ("entry", "command", "body")

    def __init__(self, entry: FlowEntry, command: int):
        self.entry, self.command = entry, command
        self.body = flow_mod_body(entry, command)

    def bundle_add(self, bundle_id: int, flags: int, xid: int) -> bytes:
        return bundle_add(self.body, bundle_id, flags, xid)

    def describe(self) -> str:
        text = self.entry.to_ofctl()
        return "delete " + text if self.command in _DELETES else text

    def to_osken(self, dp) -> parser.OFPFlowMod:
        """The same message through os-ken (tests, or a caller that needs an object)."""
        return ofmsg.flow_mod(dp, self.entry, self.command)


gc_paused = gcpause.paused       # speed: see flows/gcpause.py

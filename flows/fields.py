"""The one table of match fields, and the canonical form of entries built on it.

Every field netweave matches or sets is declared here once: its name (OVS's,
ovs-fields(7)), width in bits on the wire, os-ken name, the names ovs-ofctl and
NXM use for it, its kind of value, and its prerequisites.  FlowEntry and
GroupEntry canonicalise through `canon_match` / `canon_actions` when they are
constructed, so an entry the compiler makes and the entry a switch reports back
for it are equal as they are: no normaliser step anywhere.

Canonical form (what a switch reports back, as read by controller/ofcodec):
- int fields are ints, MACs "aa:bb:cc:dd:ee:ff" (lower case), IPv4 dotted
  quads, IPv6 addresses compressed ("2001:db8::1"), ct_state a "+flag-flag"
  string in CT_FLAGS order (trk first, then OVS's bit order) with its mask
  implied by the flags named;
- a mask of all ones is no mask (OVS reports such a field as exact); a masked
  value has the bits outside its mask cleared; a mask of 0 is refused (it
  matches anything: leave the field out);
- fields are sorted by name; a field whose prerequisites name one value
  (arp_op -> eth_type=0x0806, tcp_dst -> ip_proto=6, icmpv6_type ->
  eth_type=0x86dd and ip_proto=58, ...) implies it, so it is added when absent;
- actions: set_field values in their field's canonical form, ct options sorted
  by key with commit only when true, zone only when non-zero; the meter first,
  then the apply-actions in their own order, then write_metadata, then goto
  (the order OpenFlow runs them in and OVS prints them).

Pure data: nothing here knows about os-ken or OVS beyond names and widths
(controller/ofcodec checks the os-ken names against os-ken's own tables).
"""
from __future__ import annotations

import ipaddress
import re
from operator import is_not, itemgetter
from dataclasses import dataclass
from typing import Dict, Optional, Tuple


class EntryError(ValueError):
    """An entry (or a switch's flow) netweave cannot express."""


@dataclass(frozen=True)
class Field:
    name: str                          # entry name (ovs-fields(7))
    width: int                         # bits on the wire (a full mask has this many ones)
    kind: str                          # int | mac | ipv4 | ipv6 | ct_state
    osken: Optional[str]               # os-ken's OXM/NXM name; None = os-ken has none
    aliases: Tuple[str, ...] = ()      # other spellings in ovs-ofctl output and NXM move/ct
    prereq: Tuple[Tuple[str, Tuple[int, ...]], ...] = ()  # (field, allowed values)
    rank: int = 9                      # encoding order: prerequisites before what needs them
    settable: bool = True


_IP = (("eth_type", (0x0800, 0x86DD)),)
_V4 = (("eth_type", (0x0800,)),)
_V6 = (("eth_type", (0x86DD,)),)
_ARP = (("eth_type", (0x0806,)),)


def _f(name, width, kind, osken=None, aliases=(), prereq=(), rank=9, settable=True):
    return Field(name, width, kind, name if osken is None else osken, tuple(aliases),
                 prereq, rank, settable)


FIELDS: Dict[str, Field] = {f.name: f for f in [
    _f("in_port", 32, "int", aliases=("NXM_OF_IN_PORT",), rank=0),
    _f("eth_src", 48, "mac", aliases=("dl_src", "NXM_OF_ETH_SRC")),
    _f("eth_dst", 48, "mac", aliases=("dl_dst", "NXM_OF_ETH_DST")),
    _f("eth_type", 16, "int", aliases=("dl_type", "NXM_OF_ETH_TYPE"), rank=1),
    _f("vlan_vid", 16, "int", rank=1),
    _f("arp_op", 16, "int", prereq=_ARP),
    _f("arp_spa", 32, "ipv4", aliases=("NXM_OF_ARP_SPA",), prereq=_ARP),
    _f("arp_tpa", 32, "ipv4", aliases=("NXM_OF_ARP_TPA",), prereq=_ARP),
    _f("arp_sha", 48, "mac", aliases=("NXM_NX_ARP_SHA",), prereq=_ARP),
    _f("arp_tha", 48, "mac", aliases=("NXM_NX_ARP_THA",), prereq=_ARP),
    _f("ip_src", 32, "ipv4", "ipv4_src", ("nw_src", "NXM_OF_IP_SRC"), _V4),
    _f("ip_dst", 32, "ipv4", "ipv4_dst", ("nw_dst", "NXM_OF_IP_DST"), _V4),
    _f("ipv6_src", 128, "ipv6", aliases=("NXM_NX_IPV6_SRC",), prereq=_V6),
    _f("ipv6_dst", 128, "ipv6", aliases=("NXM_NX_IPV6_DST",), prereq=_V6),
    _f("ip_proto", 8, "int", aliases=("nw_proto", "NXM_OF_IP_PROTO"), prereq=_IP, rank=2),
    _f("ip_dscp", 8, "int", prereq=_IP),
    _f("nw_ttl", 8, "int", prereq=_IP),
    _f("tcp_src", 16, "int", aliases=("NXM_OF_TCP_SRC",), prereq=_IP + (("ip_proto", (6,)),)),
    _f("tcp_dst", 16, "int", aliases=("NXM_OF_TCP_DST",), prereq=_IP + (("ip_proto", (6,)),)),
    _f("udp_src", 16, "int", aliases=("NXM_OF_UDP_SRC",), prereq=_IP + (("ip_proto", (17,)),)),
    _f("udp_dst", 16, "int", aliases=("NXM_OF_UDP_DST",), prereq=_IP + (("ip_proto", (17,)),)),
    _f("icmp_type", 8, "int", "icmpv4_type", prereq=_V4 + (("ip_proto", (1,)),)),
    _f("icmp_code", 8, "int", "icmpv4_code", prereq=_V4 + (("ip_proto", (1,)),)),
    _f("icmpv6_type", 8, "int", prereq=_V6 + (("ip_proto", (58,)),)),
    _f("icmpv6_code", 8, "int", prereq=_V6 + (("ip_proto", (58,)),)),
    _f("nd_target", 128, "ipv6", "ipv6_nd_target", ("NXM_NX_ND_TARGET",),
       _V6 + (("ip_proto", (58,)), ("icmpv6_type", (135, 136)))),
    _f("nd_sll", 48, "mac", "ipv6_nd_sll", ("NXM_NX_ND_SLL",),
       _V6 + (("ip_proto", (58,)), ("icmpv6_type", (135,)))),
    _f("nd_tll", 48, "mac", "ipv6_nd_tll", ("NXM_NX_ND_TLL",),
       _V6 + (("ip_proto", (58,)), ("icmpv6_type", (136,)))),
    # OVS's ERICOXM_OF_ICMPV6_ND_RESERVED / _ND_OPTIONS_TYPE (class 0x1000), which
    # controller/ofmsg registers in os-ken under these names
    _f("nd_reserved", 32, "int", prereq=_V6 + (("ip_proto", (58,)), ("icmpv6_type", (135, 136)))),
    _f("nd_options_type", 8, "int", prereq=_V6 + (("ip_proto", (58,)), ("icmpv6_type", (135, 136)))),
    _f("tun_id", 64, "int", "tunnel_id", ("NXM_NX_TUN_ID",)),
    _f("tun_src", 32, "ipv4", "tun_ipv4_src", ("tun_ipv4_src", "NXM_NX_TUN_IPV4_SRC")),
    _f("tun_dst", 32, "ipv4", "tun_ipv4_dst", ("tun_ipv4_dst", "NXM_NX_TUN_IPV4_DST")),
    _f("metadata", 64, "int", aliases=("OXM_OF_METADATA",)),
    *[_f(f"reg{i}", 32, "int", aliases=(f"NXM_NX_REG{i}",)) for i in range(8)],
    _f("ct_state", 32, "ct_state", aliases=("NXM_NX_CT_STATE",), settable=False),
    _f("ct_zone", 16, "int", aliases=("NXM_NX_CT_ZONE",), settable=False),
    _f("conj_id", 32, "int", settable=False),
]}

# any spelling (entry, os-ken, ofctl, NXM) -> entry name
ALIASES: Dict[str, str] = {}
for _fd in FIELDS.values():
    for _a in (_fd.name, _fd.osken, *_fd.aliases):
        if _a:
            ALIASES[_a] = _fd.name
del _fd, _a


def ofctl_name(name: str) -> str:
    """The name ovs-ofctl prints a field under: its older OpenFlow 1.0 one
    (dl_src, nw_dst) when it has one, else the entry name."""
    fd = field(name)
    return next((a for a in fd.aliases if a.islower() and a != fd.osken), fd.name)


def field(name: str) -> Field:
    f = FIELDS.get(name)
    if f is None:
        raise EntryError(f"unknown field {name!r}")
    return f


# ---------------------------------------------------------------- ct_state

# ct_state bits (ovs-fields(7)) in canonical print order
CT_FLAGS = (("trk", 0x20), ("new", 0x01), ("est", 0x02), ("rel", 0x04),
            ("rpl", 0x08), ("inv", 0x10), ("snat", 0x40), ("dnat", 0x80))
_CT_BIT = dict(CT_FLAGS)
_CT_RE = re.compile(r"([+-])([a-z]+)")


def ct_state_to_int(s: str) -> tuple:
    """'+trk+new' -> (value, mask) as OVS encodes NXM_NX_CT_STATE."""
    value = mask = 0
    pos = 0
    for m in _CT_RE.finditer(s):
        if m.start() != pos or m.group(2) not in _CT_BIT:
            raise EntryError(f"bad ct_state {s!r}")
        bit = _CT_BIT[m.group(2)]
        mask |= bit
        if m.group(1) == "+":
            value |= bit
        pos = m.end()
    if pos != len(s) or not s:
        raise EntryError(f"bad ct_state {s!r}")
    return value, mask


def ct_state_to_str(value: int, mask: Optional[int]) -> str:
    if mask is None:            # exact match: every known flag is specified
        mask = 0xFF
    if mask & ~0xFF:
        raise EntryError(f"ct_state mask {mask:#x} has unknown bits")
    out = []
    for name, bit in CT_FLAGS:
        if mask & bit:
            out.append(("+" if value & bit else "-") + name)
    return "".join(out)


# ---------------------------------------------------------------- values

_HEX = frozenset("0123456789abcdef")


def _is_mac(v) -> bool:
    return (type(v) is str and len(v) == 17 and v[2::3] == ":::::"
            and _HEX.issuperset(v[0::3] + v[1::3]))


def _mac_int(v) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        x = v
    elif isinstance(v, str) and re.fullmatch(r"[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}", v):
        x = int(v.replace(":", "").replace("-", ""), 16)
    else:
        raise EntryError(f"bad MAC {v!r}")
    if not 0 <= x < 1 << 48:
        raise EntryError(f"bad MAC {v!r}")
    return x


def _mac_str(x: int) -> str:
    return x.to_bytes(6, "big").hex(":")


def _addr_int(v, cls) -> int:
    try:
        return int(cls(v))
    except (ValueError, TypeError):
        raise EntryError(f"bad {cls.__name__} {v!r}") from None


_TO_INT = {
    "mac": _mac_int,
    "ipv4": lambda v: _addr_int(v, ipaddress.IPv4Address),
    "ipv6": lambda v: _addr_int(v, ipaddress.IPv6Address),
}
_FROM_INT = {
    "mac": _mac_str,
    "ipv4": lambda x: str(ipaddress.IPv4Address(x)),
    "ipv6": lambda x: ipaddress.IPv6Address(x).compressed,
}


def _int(fd: Field, v) -> int:
    if fd.kind == "int":
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << fd.width:
            raise EntryError(f"{fd.name}: {v!r} is not an integer of {fd.width} bits")
        return v
    return _TO_INT[fd.kind](v)


def value_of(fd: Field, x: int):
    """A field's value (an int on the wire) in canonical form."""
    return x if fd.kind == "int" else _FROM_INT[fd.kind](x)


# an IPv4 address as ipaddress prints it (no leading zeros, each part <= 255): canonical already
_IPV4_CANON = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")


def _canon_field_slow(f: tuple) -> tuple:
    if len(f) != 3:
        raise EntryError(f"a match field is (name, value, mask), not {f!r}")
    name, value, mask = f
    fd = field(name)
    if mask is None and fd.kind == "ipv4" and type(value) is str and _IPV4_CANON.fullmatch(value):
        # speed: most of a start's recompute misses (each endpoint's own address) are
        # these, and two ipaddress objects per field cost ~10 us
        return (name, value, None)
    if fd.kind == "ct_state":
        if isinstance(value, int) and not isinstance(value, bool):
            return (name, ct_state_to_str(value, mask), None)
        if mask is not None or not isinstance(value, str):
            raise EntryError("ct_state is a '+flag-flag' string, its mask implied by the flags")
        return (name, ct_state_to_str(*ct_state_to_int(value)), None)
    v = _int(fd, value)
    if mask is None:
        return (name, value_of(fd, v), None)
    m = _int(fd, mask)
    if m == (1 << fd.width) - 1:
        return (name, value_of(fd, v), None)
    if m == 0:
        raise EntryError(f"{name}: a mask of 0 matches anything; leave the field out")
    return (name, value_of(fd, v & m), value_of(fd, m))


# field triple -> its canonical triple (the first one made: equal fields share one
# tuple across entries). A start's recompute builds ~125k matches of ~3.4 fields
# from ~73k distinct fields (10k endpoints, 10 hosts): most lookups hit.
_FIELD_CACHE: dict = {}
_CACHE_MAX = 1 << 18
_MAC_NAMES = frozenset(n for n, fd in FIELDS.items() if fd.kind == "mac")


def _canon_field_miss(f: tuple) -> tuple:
    if f[0] in _MAC_NAMES and f[2] is None and _is_mac(f[1]):
        r = f if type(f) is tuple else tuple(f)   # speed: a lower-case MAC is canonical as is
    else:
        r = _canon_field_slow(f)
        if r == f and type(f) is tuple:
            r = f
    if len(_FIELD_CACHE) >= _CACHE_MAX:
        _FIELD_CACHE.clear()
    _FIELD_CACHE[f] = r
    return r


def canon_field(f: tuple) -> tuple:
    r = _FIELD_CACHE.get(f)
    return _canon_field_miss(f) if r is None else r


_first = itemgetter(0)


# names tuple (a match's fields in their given order) -> what canon_match does with it:
# _ORDERED (sorted, no duplicates, nothing implied: take the fields as they are), or the
# fields its prerequisites imply (single allowed values; maybe none), then sort
_PLAN_CACHE: dict = {}
_ORDERED = object()


def _plan(names: tuple):
    r = _PLAN_CACHE.get(names)
    if r is None:
        have = set(names)
        add = []
        for n in names:
            for pname, allowed in FIELDS[n].prereq:
                if pname not in have and len(allowed) == 1:
                    add.append((pname, allowed[0], None))
                    have.add(pname)
        ordered = all(names[i] < names[i + 1] for i in range(len(names) - 1))
        r = _ORDERED if ordered and not add else tuple(add)
        if len(_PLAN_CACHE) >= _CACHE_MAX:
            _PLAN_CACHE.clear()
        _PLAN_CACHE[names] = r
    return r


def _canon_match_ref(match) -> tuple:
    """canon_match written plainly: the reference its fast form is tested against."""
    fields = [_canon_field_slow(f) for f in match]
    have = {f[0] for f in fields}
    for n in [f[0] for f in fields]:
        for pname, allowed in FIELDS[n].prereq:
            if pname not in have and len(allowed) == 1:
                fields.append((pname, allowed[0], None))
                have.add(pname)
    fields.sort(key=_first)
    if any(fields[i][0] == fields[i + 1][0] for i in range(len(fields) - 1)):
        raise EntryError(f"a field appears twice in {fields!r}")
    return tuple(fields)


def canon_match(match) -> tuple:
    """A match (iterable of (name, value, mask)) in canonical form (see module doc)."""
    if type(match) is not tuple:
        match = tuple(match)
    # speed (a start builds ~125k matches): cache lookups and checks run in C (map,
    # `in`), a match's shape (names in order) is planned once; _canon_match_ref is
    # the plain form, and tests/unit/test_entryspeed.py holds this one to it
    fields = list(map(_FIELD_CACHE.get, match))
    if None in fields:
        fields = [_canon_field_miss(f) if r is None else r for r, f in zip(fields, match)]
    names = tuple(map(_first, fields))
    plan = _PLAN_CACHE.get(names)
    if plan is None:
        plan = _plan(names)
    if plan is _ORDERED:
        return match if not any(map(is_not, fields, match)) else tuple(fields)
    if plan:
        fields.extend(plan)
    fields.sort(key=_first)
    if any(fields[i][0] == fields[i + 1][0] for i in range(len(fields) - 1)):
        raise EntryError(f"a field appears twice in {fields!r}")
    return tuple(fields)


def prereq_errors(match: tuple) -> list:
    """What a switch would refuse: a field whose prerequisite is absent or another value."""
    have = {n: v for n, v, _m in match}
    out = []
    for n in have:
        for pname, allowed in FIELDS[n].prereq:
            if have.get(pname) not in allowed:
                out.append(f"{n} needs {pname} in {[hex(a) for a in allowed]}")
    return out


# ---------------------------------------------------------------- actions

ACTIONS = {
    "output": "port (int)",
    "in_port": "send back out of the input port (OFPP_IN_PORT)",
    "group": "group id (int)",
    "set_field": "field name, value",
    "move": "src field, dst field (whole field; NXAST_REG_MOVE)",
    "dec_ttl": "",
    "push_vlan": "ethertype (int)",
    "pop_vlan": "",
    "ct": "frozen dict as tuple of (key, value): commit, zone, table, zone_reg, nat "
          "('' for plain nat, '(src|dst)=a.b.c.d[:port]' for a translation)",
    "conjunction": "id, clause (1-based), n_clauses",
    "goto": "table id (int) -- instruction",
    "write_metadata": "value, mask -- instruction",
    "controller": "max_len (int)",
    "meter": "meter id (int) -- instruction, runs before the apply-actions",
}
_INSTR_ORDER = {"meter": -1, "write_metadata": 1, "goto": 2}
_NAT_RE = re.compile(r"(src|dst)=(\d+\.\d+\.\d+\.\d+)(?::(\d+))?")


def nat_text(text: str) -> str:
    """'' (plain nat: apply the connection's translation) or '(src|dst)=a.b.c.d[:port]'."""
    if not text:
        return ""
    m = _NAT_RE.fullmatch(text)
    if not m:
        raise EntryError(f"unsupported nat {text!r}")
    return f"{m[1]}={ipaddress.IPv4Address(m[2])}" + (f":{int(m[3])}" if m[3] else "")


def ct_opts(opts) -> tuple:
    d = dict(opts)
    unknown = set(d) - {"commit", "zone", "table", "zone_reg", "nat"}
    if unknown:
        raise EntryError(f"unknown ct options {sorted(unknown)}")
    out = {}
    if d.get("commit"):
        out["commit"] = True
    if d.get("zone_reg"):
        out["zone_reg"] = field(d["zone_reg"]).name
    elif d.get("zone"):
        out["zone"] = int(d["zone"])
    if d.get("table") is not None:
        out["table"] = int(d["table"])
    if d.get("nat") is not None:
        out["nat"] = nat_text(d["nat"])
    return tuple(sorted(out.items()))


def _canon_action(a: tuple) -> tuple:
    kind = a[0] if a else None
    if kind not in ACTIONS:
        raise EntryError(f"unknown action {a!r}")
    if kind == "ct":
        return ("ct", ct_opts(a[1]))
    if kind == "set_field":
        fd = field(a[1])
        if not fd.settable:
            raise EntryError(f"{a[1]} cannot be set")
        return ("set_field", a[1], canon_field((a[1], a[2], None))[1])
    if kind == "move":
        field(a[1]), field(a[2])
    return tuple(a)


_ACTIONS_CACHE: dict = {}


def canon_actions(actions) -> tuple:
    """Actions in canonical form: each action's own, then the instruction order."""
    if type(actions) is not tuple:
        actions = tuple(actions)
    r = _ACTIONS_CACHE.get(actions)
    if r is None:
        acts = [_canon_action(a) for a in actions]
        r = tuple(sorted(acts, key=lambda a: _INSTR_ORDER.get(a[0], 0)))    # stable
        if r == actions:
            r = actions
        if len(_ACTIONS_CACHE) >= _CACHE_MAX:
            _ACTIONS_CACHE.clear()
        _ACTIONS_CACHE[actions] = r
    return r

"""Read `ovs-ofctl -O OpenFlow13 dump-flows/dump-groups` text back into entries.

OVS prints flows in its own normal form: older field names (dl_src, nw_dst),
NXM names in move and ct, `ip`/`tcp` shorthands, prefixes as addr/len,
dl_vlan without the CFI bit, tp_src/tp_dst and ICMPv6 as icmp_*.  Field
names and value kinds come from flows/fields.py (every spelling a field has is
declared there, once); only OVS's printing quirks are handled here.  The
entries built from the text are canonical, so parse(dump(compile(x))) ==
compile(x).  Used by the simulator (trace what a switch really holds) and by
the tests that compare the simulator with OVS.
"""
from __future__ import annotations

import re
from typing import Dict, List, Tuple

from flows import fields as F
from flows.entry import FlowEntry, GroupEntry
from flows.pipeline import ETH_ARP, ETH_IP, ETH_IP6, IP_PROTO

# ovs-ofctl's protocol words: eth_type (and ip_proto) in one
SHORTHAND = {"ip": {"eth_type": ETH_IP}, "arp": {"eth_type": ETH_ARP}, "ipv6": {"eth_type": ETH_IP6},
             **{p: {"eth_type": ETH_IP, "ip_proto": n} for p, n in IP_PROTO.items()},
             **{p + "6": {"eth_type": ETH_IP6, "ip_proto": n} for p, n in IP_PROTO.items() if p != "icmp"},
             "icmp6": {"eth_type": ETH_IP6, "ip_proto": 58}}
# a flow's statistics and timeouts: not part of an entry
IGNORED = {"duration", "n_packets", "n_bytes", "idle_age", "hard_age", "reset_counts",
           "send_flow_rem", "no_packet_counts", "no_byte_counts", "idle_timeout", "hard_timeout"}
_ZONE_REG = re.compile(r"(\w+)\[0\.\.15\]")


def split_top(s: str) -> List[str]:
    """Split on commas outside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    if cur:
        out.append(cur)
    return [p.strip() for p in out if p.strip()]


def _num(v: str) -> int:
    return int(v, 0)


def field_name(spelling: str) -> str:
    """Any spelling of a field (entry, os-ken, ofctl, NXM) -> its entry name (fields.ALIASES)."""
    name = F.ALIASES.get(spelling)
    if name is None:
        raise F.EntryError(f"unknown field {spelling!r}")
    return name


def _scalar(fd: F.Field, v: str):
    return _num(v) if fd.kind == "int" else v


def field_value(name: str, text: str):
    """A field's value as OVS prints it -> value, or (value, mask) for a masked one.
    Addresses keep their text (the entry canonicalises it); an address prefix
    (addr/len) becomes its mask; ct_state stays a flag string."""
    fd = F.field(name)
    if fd.kind == "ct_state":
        return text
    v, slash, m = text.partition("/")
    if not slash:
        return _scalar(fd, v)
    if fd.kind in ("ipv4", "ipv6") and m.isdigit():
        host_bits = fd.width - int(m)
        return (v, ((1 << fd.width) - 1) ^ ((1 << host_bits) - 1))
    return (_scalar(fd, v), _scalar(fd, m))


def parse_match(text: str) -> Dict[str, object]:
    match: Dict[str, object] = {}
    tp: Dict[str, str] = {}
    for part in split_top(text):
        name, eq, v = part.partition("=")
        if not eq:
            if part not in SHORTHAND:
                raise F.EntryError(f"unknown match word {part!r}")
            match.update(SHORTHAND[part])
        elif name in ("tp_src", "tp_dst"):
            tp[name[3:]] = v                   # resolved below once the protocol is known
        elif name == "dl_vlan":                # the VID alone; vlan_vid carries OFPVID_PRESENT
            match["vlan_vid"] = 0x1000 | _num(v)
        else:
            name = field_name(name)
            match[name] = field_value(name, v)
    if match.get("eth_type") == ETH_IP6:         # OVS prints ICMPv6's type and code as icmp_*
        for f in ("icmp_type", "icmp_code"):
            if f in match:
                match["icmpv6" + f[4:]] = match.pop(f)
    for side, v in tp.items():
        p = {6: "tcp", 17: "udp"}.get(match.get("ip_proto"), "tcp")
        match[f"{p}_{side}"] = _num(v)
    return match


def _ct_option(o: str) -> tuple:
    if o == "commit":
        return ("commit", True)
    if o == "nat" or o.startswith("nat("):
        return ("nat", o[4:-1] if o != "nat" else "")
    k, _, v = o.partition("=")
    m = _ZONE_REG.fullmatch(v) if k == "zone" else None
    if m:                                      # zone=NXM_NX_REG6[0..15]: the zone from a register
        return ("zone_reg", field_name(m[1]))
    return (k, _num(v))


def parse_action(a: str) -> tuple | None:
    if a == "drop":
        return None
    if a == "IN_PORT" or a == "in_port":
        return ("in_port",)
    if a in ("dec_ttl", "pop_vlan"):
        return (a,)
    m = re.fullmatch(r"ct\((.*)\)", a)
    if m:
        return ("ct", tuple(sorted(_ct_option(o) for o in split_top(m[1]))))
    m = re.fullmatch(r"conjunction\((\d+),(\d+)/(\d+)\)", a)
    if m:
        return ("conjunction", int(m[1]), int(m[2]), int(m[3]))
    m = re.fullmatch(r"move:(\w+)\[\]->(\w+)\[\]", a)
    if m:
        return ("move", field_name(m[1]), field_name(m[2]))
    m = re.fullmatch(r"set_field:(.+)->(\w+)", a)
    if m:
        name = field_name(m[2])
        return ("set_field", name, field_value(name, m[1]))
    m = re.fullmatch(r"mod_nw_tos:(\d+)", a)   # OVS prints set_field:ip_dscp as the TOS byte
    if m:
        return ("set_field", "ip_dscp", int(m[1]) >> 2)
    m = re.fullmatch(r"write_metadata:(\w+)(?:/(\w+))?", a)
    if m:
        return ("write_metadata", _num(m[1]), _num(m[2]) if m[2] else (1 << 64) - 1)
    kind, _, arg = a.partition(":")
    if kind in ("output", "group", "push_vlan"):
        return (kind, _num(arg))
    if kind == "goto_table":
        return ("goto", _num(arg))
    if kind == "meter":
        return ("meter", _num(arg))
    if kind == "CONTROLLER" or kind == "controller":
        return ("controller", _num(arg) if arg else 65535)
    raise F.EntryError(f"unsupported action {a!r}")


def _actions(text: str) -> Tuple[tuple, ...]:
    return tuple(x for x in (parse_action(a) for a in split_top(text)) if x is not None)


def parse_flow(line: str) -> FlowEntry:
    head, _, acts = line.strip().partition(" actions=")
    if not _:
        head, _, acts = line.strip().partition(",actions=")
    fields = split_top(head.replace(", ", ","))
    cookie, table, prio, rest = 0, 0, 32768, []
    for f in fields:
        k, eq, v = f.partition("=")
        if k == "cookie":
            cookie = _num(v.split("/")[0])
        elif k == "table":
            table = _num(v)
        elif k == "priority":
            prio = _num(v)
        elif k in IGNORED:
            continue
        else:
            rest.append(f)
    return FlowEntry.make(table, prio, parse_match(",".join(rest)), _actions(acts), cookie)


def parse_dump_flows(text: str) -> List[FlowEntry]:
    return [parse_flow(l) for l in text.splitlines()
            if "actions=" in l and "group_id=" not in l and not l.startswith(("OFPST", "NXST"))]


def parse_group(line: str) -> GroupEntry:
    head, *buckets = line.strip().split(",bucket=")
    gid, gtype = 0, "all"
    for f in split_top(head):
        k, _, v = f.partition("=")
        if k == "group_id":
            gid = _num(v)
        elif k == "type":
            gtype = v
    parsed = []
    for b in buckets:
        b = b[len("actions="):] if b.startswith("actions=") else b
        parsed.append(_actions(b))
    return GroupEntry(gid, tuple(parsed), gtype)


def parse_dump_groups(text: str) -> List[GroupEntry]:
    return [parse_group(l) for l in text.splitlines() if "group_id=" in l]

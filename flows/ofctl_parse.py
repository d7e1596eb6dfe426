"""Read `ovs-ofctl -O OpenFlow13 dump-flows/dump-groups` text back into entries.

OVS prints flows in its own normal form (dl_src, nw_dst=a/len, `ip`/`tcp`
shorthands, NXM names in move, dl_vlan); this maps that form back onto
entry.py's conventions so that parse(dump(compile(x))) == compile(x).  Used
by the simulator (trace what a switch really holds) and by reconciliation.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Dict, List, Tuple

from flows.entry import FlowEntry, GroupEntry

SHORTHAND = {"ip": {"eth_type": 0x0800}, "arp": {"eth_type": 0x0806},
             "tcp": {"eth_type": 0x0800, "ip_proto": 6}, "udp": {"eth_type": 0x0800, "ip_proto": 17},
             "icmp": {"eth_type": 0x0800, "ip_proto": 1}, "ipv6": {"eth_type": 0x86DD},
             "tcp6": {"eth_type": 0x86DD, "ip_proto": 6}, "udp6": {"eth_type": 0x86DD, "ip_proto": 17},
             "icmp6": {"eth_type": 0x86DD, "ip_proto": 58}}
RENAME = {"dl_src": "eth_src", "dl_dst": "eth_dst", "dl_type": "eth_type", "nw_src": "ip_src",
          "nw_dst": "ip_dst", "nw_proto": "ip_proto", "tun_ipv4_dst": "tun_dst",
          "tun_ipv4_src": "tun_src"}
NXM = {"NXM_OF_ETH_SRC": "eth_src", "NXM_OF_ETH_DST": "eth_dst", "NXM_NX_ARP_SHA": "arp_sha",
       "NXM_NX_ARP_THA": "arp_tha", "NXM_OF_ARP_SPA": "arp_spa", "NXM_OF_ARP_TPA": "arp_tpa",
       "NXM_OF_IP_SRC": "ip_src", "NXM_OF_IP_DST": "ip_dst", "NXM_NX_TUN_ID": "tun_id",
       "NXM_NX_TUN_IPV4_DST": "tun_dst", "NXM_OF_IN_PORT": "in_port",
       "NXM_NX_IPV6_SRC": "ipv6_src", "NXM_NX_IPV6_DST": "ipv6_dst", "NXM_NX_ND_TLL": "nd_tll",
       "NXM_NX_ND_SLL": "nd_sll", "NXM_NX_ND_TARGET": "nd_target",
       **{f"NXM_NX_REG{i}": f"reg{i}" for i in range(8)}}
STRING_FIELDS = {"eth_src", "eth_dst", "arp_sha", "arp_tha", "arp_spa", "arp_tpa", "ip_src", "ip_dst",
                 "tun_src", "tun_dst", "ipv6_src", "ipv6_dst", "nd_target", "nd_sll", "nd_tll"}
IP6_FIELDS = {"ipv6_src", "ipv6_dst", "nd_target"}
IGNORED = {"duration", "n_packets", "n_bytes", "idle_age", "hard_age", "reset_counts",
           "send_flow_rem", "no_packet_counts", "no_byte_counts", "idle_timeout", "hard_timeout"}


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


def _value(name: str, v: str):
    if name == "ct_state":
        flags = re.findall(r"([+-])([a-z]+)", v)
        return "".join(s + f for s, f in sorted(flags, key=lambda x: x[1]))
    if name in IP6_FIELDS:               # OVS prints a prefix as addr/len, ours as addr/mask
        net = ipaddress.IPv6Network(v, strict=False) if "/" in v and ":" not in v.split("/")[1] else None
        if net is None and "/" in v:
            a, m = v.split("/")
            return (str(ipaddress.IPv6Address(a)), str(ipaddress.IPv6Address(m)))
        if net is None:
            return str(ipaddress.IPv6Address(v))
        return str(net.network_address) if net.prefixlen == 128 else (str(net.network_address), str(net.netmask))
    if name in STRING_FIELDS:
        if "/" in v and name.startswith(("ip_", "arp_s", "arp_t", "tun_")) and "." in v:
            net = ipaddress.IPv4Network(v, strict=False)
            if net.prefixlen == 32:
                return str(net.network_address)
            return (str(net.network_address), str(net.netmask))
        if "/" in v:
            a, m = v.split("/")
            return (a, m)
        return v
    if "/" in v:
        a, m = v.split("/")
        return (_num(a), _num(m))
    return _num(v)


def parse_match(text: str) -> Dict[str, object]:
    match: Dict[str, object] = {}
    proto = None
    for part in split_top(text):
        if "=" not in part:
            match.update(SHORTHAND[part])
            proto = part.rstrip("6") if part in ("tcp", "udp", "tcp6", "udp6") else proto
            continue
        name, v = part.split("=", 1)
        if name in ("tp_src", "tp_dst"):
            match[("tp", name)] = v            # resolved below once the protocol is known
            continue
        if name == "dl_vlan":
            match["vlan_vid"] = 0x1000 | int(v)
            continue
        name = RENAME.get(name, name)
        match[name] = _value(name, v)
    if match.get("eth_type") == 0x86DD:          # OVS prints ICMPv6's type and code as icmp_*
        for f in ("icmp_type", "icmp_code"):
            if f in match:
                match["icmpv6" + f[4:]] = match.pop(f)
    for key in [k for k in match if isinstance(k, tuple)]:
        v = match.pop(key)
        p = proto or {6: "tcp", 17: "udp"}.get(match.get("ip_proto"), "tcp")
        match[f"{p}_{key[1][3:]}"] = _num(v)
    return match


def parse_action(a: str) -> tuple | None:
    if a == "drop":
        return None
    if a == "IN_PORT" or a == "in_port":
        return ("in_port",)
    if a in ("dec_ttl", "pop_vlan"):
        return (a,)
    m = re.fullmatch(r"ct\((.*)\)", a)
    if m:
        opts = []
        for o in split_top(m[1]):
            if o == "commit":
                opts.append(("commit", True))
            elif o == "nat" or o.startswith("nat("):
                opts.append(("nat", o[4:-1] if o != "nat" else ""))
            else:
                k, v = o.split("=", 1)
                opts.append((k, _num(v)))
        return ("ct", tuple(sorted(opts)))
    m = re.fullmatch(r"conjunction\((\d+),(\d+)/(\d+)\)", a)
    if m:
        return ("conjunction", int(m[1]), int(m[2]), int(m[3]))
    m = re.fullmatch(r"move:(\w+)\[\]->(\w+)\[\]", a)
    if m:
        return ("move", NXM.get(m[1], m[1]), NXM.get(m[2], m[2]))
    m = re.fullmatch(r"set_field:(.+)->(\w+)", a)
    if m:
        name = RENAME.get(m[2], m[2])
        return ("set_field", name, _value(name, m[1]) if name in STRING_FIELDS else _num(m[1]))
    m = re.fullmatch(r"mod_nw_tos:(\d+)", a)
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
    raise ValueError(f"unsupported action {a!r}")


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

"""One flow form (flows/fields.py) and one codec (controller/ofcodec.py), held to os-ken.

Random canonical entries over the whole field table (IPv6 and ND included),
with ct (zones, nat), conjunction, meter, move and set_field actions:
- constructing an entry again from its parts, or from a messy spelling of the
  same flow (upper-case MACs, all-ones masks, bits outside the mask, ct_state
  flags in another order, fields unsorted, instructions first), gives it back;
- the fast encoder's bytes are os-ken's, byte for byte (ofmsg is the reference);
- the fast decoder and os-ken's parse both read those bytes back as the very
  entry (no normaliser), or the fast one says Unsupported (ct with nat).

Run:  .venv/bin/python -m pytest tests/unit/test_ofcodec.py -q
"""
import ipaddress
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_protocol
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import ofcodec, ofencode, ofmsg, ofwire
from flows import fields
from flows.entry import COOKIE_MARK, FlowEntry, GroupEntry

DP = ofproto_protocol.ProtocolDesc(ofp.OFP_VERSION)
_FS = struct.Struct(ofp.OFP_FLOW_STATS_0_PACK_STR)
CASES = 150                 # per property; bounded for make test's budget

# every field of the table has an os-ken name (ofmsg registers the two os-ken lacks)
OSKEN_FIELDS = sorted(n for n, f in fields.FIELDS.items() if f.osken is not None)


def _value(fd: fields.Field, x: int):
    return fields.value_of(fd, x)


@st.composite
def field_values(draw, name):
    fd = fields.FIELDS[name]
    if fd.kind == "ct_state":
        mask = draw(st.integers(1, 0xFF))
        return (name, fields.ct_state_to_str(draw(st.integers(0, 0xFF)) & mask, mask), None)
    full = (1 << fd.width) - 1
    v = draw(st.integers(0, full))
    if name == "vlan_vid":
        v = 0x1000 | (v & 0xFFF)
    if draw(st.booleans()):
        return (name, _value(fd, v), None)
    m = draw(st.integers(1, full - 1))
    return (name, _value(fd, v & m), _value(fd, m))


# prerequisites satisfied: each field comes with what it needs
_PREREQ_SETS = {
    "l2": ({}, ["in_port", "eth_src", "eth_dst", "vlan_vid", "tun_id", "tun_src", "tun_dst",
                "metadata", "reg0", "reg3", "reg6", "ct_state", "ct_zone", "conj_id"]),
    "arp": ({"eth_type": 0x806}, ["arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha"]),
    "tcp4": ({"eth_type": 0x800, "ip_proto": 6}, ["ip_src", "ip_dst", "ip_dscp", "nw_ttl",
                                                 "tcp_src", "tcp_dst"]),
    "udp6": ({"eth_type": 0x86DD, "ip_proto": 17}, ["ipv6_src", "ipv6_dst", "udp_src", "udp_dst"]),
    "icmp4": ({"eth_type": 0x800, "ip_proto": 1}, ["icmp_type", "icmp_code", "ip_dst"]),
    "ns": ({"eth_type": 0x86DD, "ip_proto": 58, "icmpv6_type": 135},
           ["nd_target", "nd_sll", "ipv6_src", "icmpv6_code"]),
    "na": ({"eth_type": 0x86DD, "ip_proto": 58, "icmpv6_type": 136}, ["nd_target", "nd_tll"]),
}


@st.composite
def matches(draw):
    base, extra = _PREREQ_SETS[draw(st.sampled_from(sorted(_PREREQ_SETS)))]
    names = draw(st.lists(st.sampled_from(extra + _PREREQ_SETS["l2"][1]), unique=True, max_size=5))
    out = [(n, v, None) for n, v in base.items()]
    out += [draw(field_values(n)) for n in names if n not in base]
    return tuple(sorted(out))


_SETTABLE = sorted(n for n in OSKEN_FIELDS if fields.FIELDS[n].settable
                   and n not in ("in_port", "metadata", "vlan_vid"))
_REGS = ["reg0", "reg1", "reg5", "reg6", "tun_id", "metadata", "eth_src", "eth_dst", "ip_src", "ipv6_dst"]


@st.composite
def set_fields(draw):
    name = draw(st.sampled_from(_SETTABLE))
    fd = fields.FIELDS[name]
    return ("set_field", name, _value(fd, draw(st.integers(0, (1 << fd.width) - 1))))


@st.composite
def ct_actions(draw):
    opts = {}
    if draw(st.booleans()):
        opts["commit"] = True
    if draw(st.booleans()):
        opts["zone_reg"] = draw(st.sampled_from(["reg6", "reg7"]))
    else:
        opts["zone"] = draw(st.integers(0, 0xFFFF))
    if draw(st.booleans()):
        opts["table"] = draw(st.integers(0, 254))
    nat = draw(st.sampled_from([None, "", "dst", "src", "dstport"]))
    if nat is not None:
        ip = str(ipaddress.IPv4Address(draw(st.integers(1, 0xFFFFFFFE))))
        opts["nat"] = {"": "", "dst": f"dst={ip}", "src": f"src={ip}",
                       "dstport": f"dst={ip}:{draw(st.integers(1, 65535))}"}[nat]
    return ("ct", tuple(sorted(opts.items())))


APPLY = st.one_of(
    st.tuples(st.just("output"), st.integers(1, 0xFFFFFF00)),
    st.just(("in_port",)), st.just(("dec_ttl",)), st.just(("pop_vlan",)),
    st.tuples(st.just("push_vlan"), st.sampled_from([0x8100, 0x88A8])),
    st.tuples(st.just("group"), st.integers(0, 0xFFFFFF00)),
    st.tuples(st.just("controller"), st.integers(0, 0xFFFF)),
    st.tuples(st.just("conjunction"), st.integers(0, 0xFFFFFFFF), st.just(1), st.just(2)),
    st.tuples(st.just("move"), st.sampled_from(_REGS[:4]), st.sampled_from(_REGS[:4])),
    set_fields(), ct_actions())


@st.composite
def action_lists(draw):
    acts = draw(st.lists(APPLY, max_size=4))
    if draw(st.booleans()):
        acts.insert(0, ("meter", draw(st.integers(1, 0xFFFF0000))))
    if draw(st.booleans()):
        acts.append(("write_metadata", draw(st.integers(0, (1 << 64) - 1)),
                     draw(st.integers(0, (1 << 64) - 1))))
    if draw(st.booleans()):
        acts.append(("goto", draw(st.integers(1, 254))))
    return tuple(acts)


@st.composite
def entries(draw):
    return FlowEntry(draw(st.integers(0, 254)), draw(st.integers(0, 0xFFFF)), draw(matches()),
                     draw(action_lists()), COOKIE_MARK | draw(st.integers(0, (1 << 56) - 1)))


def _stats(e: FlowEntry) -> bytes:
    """ofp_flow_stats for e, as a switch reports it: os-ken's match + instructions."""
    fm = ofmsg.flow_mod(DP, e)
    fm.xid = 1
    fm.serialize()
    rest = bytes(fm.buf[48:])
    return _FS.pack(48 + len(rest), fm.table_id, 1, 2, fm.priority, 0, 0, 0, fm.cookie, 3, 4) + rest


def _osken_bytes(e, command):
    m = ofmsg.flow_mod(DP, e, command)
    m.xid = 9
    m.serialize()
    return bytes(m.buf)


def _natted(e):
    return any(a[0] == "ct" and "nat" in dict(a[1]) for a in e.actions)


@settings(max_examples=CASES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries(), st.sampled_from([ofp.OFPFC_ADD, ofp.OFPFC_MODIFY_STRICT, ofp.OFPFC_DELETE_STRICT]))
def test_fast_encode_is_osken_bytes(e, command):
    assert ofencode.flow_mod(e, command, xid=9) == _osken_bytes(e, command)
    m = ofcodec.encode_flow(DP, e, command)
    assert isinstance(m, ofcodec.Encoded)        # every field and action here has the fast path


@settings(max_examples=CASES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries())
def test_decoded_equals_the_entry_fast_and_osken(e):
    buf = _stats(e)
    osken = ofmsg.entry_from_stats(parser.OFPFlowStats.parser(buf, 0))
    assert osken == e                                  # no normaliser: equal as made
    if _natted(e):
        with pytest.raises(ofwire.Unsupported):        # ct with nat: the slow path's, on purpose
            ofwire.decode(buf)
    else:
        assert ofwire.decode(buf) == e
    assert ofcodec.decode_flow(ofwire.RawFlowStats.parser(buf, 0)) == e


@st.composite
def messy(draw, e):
    """Another spelling of e's match and actions that means the same flow."""
    out = []
    for name, v, m in e.match:
        fd = fields.FIELDS[name]
        if fd.kind == "ct_state":       # an (int, mask) pair, or the flags in another order
            value, mask = fields.ct_state_to_int(v)
            out.append((name, value, mask) if draw(st.booleans())
                       else (name, "".join(reversed(_split_flags(v))), None))
            continue
        full = (1 << fd.width) - 1
        iv = v if fd.kind == "int" else fields._TO_INT[fd.kind](v)
        im = full if m is None else (m if fd.kind == "int" else fields._TO_INT[fd.kind](m))
        noise = draw(st.integers(0, full)) & ~im                 # bits the mask clears
        mask_out = None if m is None and draw(st.booleans()) else im
        val = iv | (noise if mask_out is not None else 0)
        out.append((name, _spell(fd, val), None if mask_out is None else _spell(fd, mask_out)))
    out = draw(st.permutations(out))
    acts = list(e.actions)
    instr = [a for a in acts if a[0] in ("goto", "write_metadata")]
    acts = instr + [a for a in acts if a not in instr]           # instructions first
    return tuple(out), tuple(acts)


def _split_flags(s):
    import re
    return re.findall(r"[+-][a-z]+", s)


def _spell(fd, x):
    if fd.kind == "mac":
        return ":".join(f"{b:02X}" for b in x.to_bytes(6, "big"))    # upper case
    if fd.kind == "ipv6":
        return ipaddress.IPv6Address(x).exploded                     # long form
    return fields.value_of(fd, x)


@settings(max_examples=CASES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_construction_is_canonical(data):
    e = data.draw(entries())
    assert FlowEntry(e.table, e.priority, e.match, e.actions, e.cookie) == e
    match, acts = data.draw(messy(e))
    assert FlowEntry(e.table, e.priority, match, acts, e.cookie) == e


def test_canonical_rules_by_example():
    F = FlowEntry.make
    e = F(0, 1, {"ct_state": "+new+trk", "eth_dst": ("02:00:00:00:00:05", "ff:ff:ff:ff:ff:ff"),
                 "reg0": (0x1234, 0xFF00), "ip_src": ("10.1.2.3", "255.255.0.0"),
                 "tun_id": (5, 0xFFFFFFFFFFFFFFFF), "eth_src": "02:AB:CD:00:00:01"},
          [("goto", 3), ("ct", (("zone", 0), ("commit", False), ("table", 4))), ("output", 1),
           ("meter", 2)])
    assert e.match_dict() == {"ct_state": "+trk+new", "eth_dst": "02:00:00:00:00:05",
                              "eth_src": "02:ab:cd:00:00:01", "eth_type": 0x800,       # implied by ip_src
                              "reg0": (0x1200, 0xFF00), "ip_src": ("10.1.0.0", "255.255.0.0"),
                              "tun_id": 5}
    assert e.actions == (("meter", 2), ("ct", (("table", 4),)), ("output", 1), ("goto", 3))
    nd = F(0, 1, {"nd_target": "2001:DB8:0::1", "icmpv6_type": 135})
    assert nd.match_dict() == {"eth_type": 0x86DD, "ip_proto": 58, "icmpv6_type": 135,
                               "nd_target": "2001:db8::1"}
    assert F(0, 1, {"tcp_dst": 80, "eth_type": 0x800}).match_dict() == {
        "eth_type": 0x800, "ip_proto": 6, "tcp_dst": 80}
    g = GroupEntry(5, [[("output", 1), ("set_field", "eth_dst", "02:AA:00:00:00:01")]])
    assert g.buckets == ((("output", 1), ("set_field", "eth_dst", "02:aa:00:00:00:01")),)


@pytest.mark.parametrize("bad", [
    (("no_such", 1, None),), (("reg0", 1 << 32, None),), (("eth_dst", "02:00:00:00:00", None),),
    (("ip_src", "10.1.2.300", None),), (("reg0", 5, 0),), (("ct_state", "+trk+bogus", None),),
    (("reg0", 1, None), ("reg0", 2, None)), (("eth_type", -1, None),),
])
def test_bad_match_is_refused_naming_it(bad):
    with pytest.raises(fields.EntryError):
        FlowEntry(0, 1, bad, ())


@settings(max_examples=CASES, deadline=None)
@given(st.integers(0, (1 << 32) - 1), st.sampled_from(["", "0", "00", " ", "\n", ".1"]),
       st.integers(0, 4))
def test_ipv4_taken_as_is_only_when_ipaddress_prints_it_so(x, junk, at):
    """The IPv4 fast path of construction (fields._IPV4_CANON) takes exactly the
    strings ipaddress would print, and spoiled ones go the slow way (refused here)."""
    text = str(ipaddress.IPv4Address(x))
    assert FlowEntry(0, 1, (("ip_dst", text, None),), ()).match[-1] == ("ip_dst", text, None)
    parts = text.split(".")
    spoiled = ".".join(parts[:at] + [junk + p for p in parts[at:at + 1]] + parts[at + 1:]) if at < 4 \
        else text + junk
    try:
        ok = str(ipaddress.IPv4Address(spoiled)) == spoiled
    except ValueError:
        ok = False
    assert bool(fields._IPV4_CANON.fullmatch(spoiled)) == ok
    if not ok:
        with pytest.raises(fields.EntryError):
            FlowEntry(0, 1, (("ip_dst", spoiled, None),), ())


@pytest.mark.parametrize("bad", [("bogus",), ("set_field", "ct_state", 1), ("set_field", "nope", 1),
                                 ("ct", (("zone", 1), ("alg", 21))), ("ct", (("nat", "dst=1.2.3"),)),
                                 ("move", "reg0", "nope")])
def test_bad_action_is_refused(bad):
    with pytest.raises(fields.EntryError):
        FlowEntry(0, 1, (), (bad,))


def test_the_table_matches_osken():
    """Names and widths of the table are os-ken's (ofmsg asserts it at import too)."""
    widths = {f.name: f.type.size * 8 for f in ofp.oxm_types}
    for name in OSKEN_FIELDS:
        fd = fields.FIELDS[name]
        assert widths[fd.osken] == fd.width, name
    assert fields.ALIASES["dl_dst"] == "eth_dst" and fields.ALIASES["NXM_NX_REG6"] == "reg6"
    assert fields.ALIASES["ipv4_src"] == "ip_src" and fields.ALIASES["ipv6_nd_target"] == "nd_target"

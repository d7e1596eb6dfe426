"""controller.ofencode against os-ken: the bytes must be exactly what os-ken
serializes for ofmsg.flow_mod of the same entry (and bundle-add of it)."""
import pytest
from os_ken.ofproto import ofproto_parser, ofproto_protocol
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import ofencode, ofmsg
from flows.engine import compile_snapshot
from flows.entry import COOKIE_MARK, FlowEntry
from tests.unit import topo
from tests.unit.flow_catalogue import ALL_FLOWS
from tests.unit.scale import scale_snapshot

DP = ofproto_protocol.ProtocolDesc(ofp.OFP_VERSION)
COMMANDS = (ofp.OFPFC_ADD, ofp.OFPFC_MODIFY_STRICT, ofp.OFPFC_DELETE_STRICT)


def _osken(entry, command, xid=7):
    m = ofmsg.flow_mod(DP, entry, command)
    m.xid = xid
    m.serialize()
    return bytes(m.buf)


def _compiled():
    """The flows netweave installs for realistic snapshots (policies; a scale snapshot over hosts)."""
    out = set()
    for snap in (topo.policy_snapshot(), scale_snapshot(60, 8, 24, n_hosts=3)):
        for flows, _groups in compile_snapshot(snap).values():
            out |= flows
    return sorted(out)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("entry", ALL_FLOWS, ids=lambda e: e.to_ofctl()[:60])
def test_all_flows_byte_equal(entry, command):
    assert ofencode.flow_mod(entry, command, xid=7) == _osken(entry, command)


@pytest.mark.parametrize("entry", ALL_FLOWS, ids=lambda e: e.to_ofctl()[:60])
def test_bundle_add_byte_equal(entry):
    want = parser.ONFBundleAddMsg(DP, 0x1234, ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED,
                                  ofmsg.flow_mod(DP, entry), [])
    want.xid = 99
    want.serialize()
    got = ofencode.EncodedFlowMod(entry, ofp.OFPFC_ADD).bundle_add(
        0x1234, ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED, 99)
    assert got == bytes(want.buf)


def test_parses_back_to_the_entry():
    for e in ALL_FLOWS:
        b = ofencode.flow_mod(e, ofp.OFPFC_ADD, 3)
        m = ofproto_parser.msg(DP, ofp.OFP_VERSION, ofp.OFPT_FLOW_MOD, len(b), 3, b)
        assert ofmsg.from_ofpmatch(m.match) == e.match


def test_unknown_field_raises():
    with pytest.raises(Exception):
        ofencode.EncodedFlowMod(FlowEntry(0, 1, (("no_such", 1, None),), ()), ofp.OFPFC_ADD)


def test_caches_give_same_bytes_twice():
    e = ALL_FLOWS[0]
    assert ofencode.flow_mod(e, ofp.OFPFC_ADD, 1) == ofencode.flow_mod(e, ofp.OFPFC_ADD, 1)


def test_bench_flows_byte_equal():
    for i in range(300):
        mac = f"02:00:00:00:{i >> 8:02x}:{i & 0xff:02x}"
        e = FlowEntry.make(40, 100, {"metadata": (1, 0xFFFFFFFF), "eth_dst": mac},
                           [("output", 1 + i % 48)], COOKIE_MARK | i)
        assert ofencode.flow_mod(e, ofp.OFPFC_ADD, 5) == _osken(e, ofp.OFPFC_ADD, 5)


def test_compiled_flows_byte_equal():
    flows = _compiled()
    assert len(flows) > 200
    bad = [e for e in flows for c in COMMANDS if ofencode.flow_mod(e, c, 9) != _osken(e, c, 9)]
    assert bad == []


def test_unknown_field_or_action_is_refused_at_construction():
    with pytest.raises(ofmsg.ConversionError):
        FlowEntry(0, 1, (("no_such", 1, None),), ())
    with pytest.raises(ofmsg.ConversionError):
        FlowEntry(0, 1, (), (("bogus",),))

"""The simulator's own semantics, on hand-written flows."""
import pytest

from flows.entry import FlowEntry, GroupEntry
from flows.simulator import Conntrack, Switch

F = FlowEntry.make


def test_masked_match_compares_masked_packet_value():
    # FakeOFTable's bug: a /24 flow matched only the network address itself
    sw = Switch([F(0, 10, {"eth_type": 0x800, "ip_dst": ("10.1.0.0", "255.255.255.0")}, [("output", 2)]),
                 F(0, 1, {}, [("output", 3)])])
    assert sw.trace({"in_port": 1, "eth_type": 0x800, "ip_dst": "10.1.0.9"}).ports() == [2]
    assert sw.trace({"in_port": 1, "eth_type": 0x800, "ip_dst": "10.1.1.9"}).ports() == [3]


def test_priority_and_missing_field_never_matches():
    sw = Switch([F(0, 10, {"tcp_dst": 80}, [("output", 2)]), F(0, 5, {}, [("output", 3)])])
    # (tcp_dst implies its prerequisite ip_proto=6, as on a switch)
    assert sw.trace({"in_port": 1, "eth_type": 0x800, "ip_proto": 6, "tcp_dst": 80}).ports() == [2]
    assert sw.trace({"in_port": 1, "eth_type": 0x800, "ip_proto": 17, "tcp_dst": 80}).ports() == [3]
    assert sw.trace({"in_port": 1}).ports() == [3]


def test_metadata_mask_and_goto():
    sw = Switch([F(0, 1, {}, [("write_metadata", 0xAB00, 0xFF00), ("goto", 5)]),
                 F(5, 1, {"metadata": (0xAB00, 0xFF00)}, [("output", 7)])])
    tr = sw.trace({"in_port": 1, "metadata": 0x12})
    assert tr.ports() == [7] and tr.outputs[0][1]["metadata"] == 0xAB12


def test_goto_backwards_is_an_error():
    sw = Switch([F(3, 1, {}, [("goto", 2)]), F(0, 1, {}, [("goto", 3)])])
    with pytest.raises(ValueError):
        sw.trace({"in_port": 1})


def test_conjunction_needs_every_clause_at_that_priority():
    flows = [F(0, 50, {"reg1": 1}, [("conjunction", 9, 1, 2)]),
             F(0, 50, {"reg2": 2}, [("conjunction", 9, 2, 2)]),
             F(0, 50, {"conj_id": 9}, [("output", 9)]),
             F(0, 1, {}, [("output", 1)])]
    sw = Switch(flows)
    assert sw.trace({"in_port": 5, "reg1": 1, "reg2": 2}).ports() == [9]
    assert sw.trace({"in_port": 5, "reg1": 1}).ports() == [1]
    assert sw.trace({"in_port": 5, "reg2": 2}).ports() == [1]


def test_group_all_gives_each_bucket_a_copy_and_skips_in_port():
    g = GroupEntry(1, ((("set_field", "tun_id", 5), ("output", 100)), (("output", 1),), (("output", 2),)))
    sw = Switch([F(0, 1, {}, [("group", 1)])], [g])
    tr = sw.trace({"in_port": 1})
    assert tr.ports() == [100, 2]
    assert tr.outputs[0][1]["tun_id"] == 5 and "tun_id" not in tr.outputs[1][1]


def test_vlan_push_set_pop_and_dec_ttl():
    sw = Switch([F(0, 1, {}, [("dec_ttl",), ("push_vlan", 0x8100), ("set_field", "vlan_vid", 0x1064),
                              ("output", 4), ("pop_vlan",), ("output", 5)])])
    tr = sw.trace({"in_port": 1, "nw_ttl": 9})
    (p4, a), (p5, b) = tr.outputs
    assert a["vlan_vid"] == 0x1064 and "vlan_vid" not in b and a["nw_ttl"] == 8


def test_ct_model_new_then_reply_established():
    ct = Conntrack()
    fwd = {"ip_proto": 6, "ip_src": "1.1.1.1", "ip_dst": "2.2.2.2", "tcp_src": 1000, "tcp_dst": 80}
    rev = {"ip_proto": 6, "ip_src": "2.2.2.2", "ip_dst": "1.1.1.1", "tcp_src": 80, "tcp_dst": 1000}
    assert ct.lookup(1, fwd) == "+trk+new"
    ct.commit(1, fwd)
    assert ct.lookup(1, fwd) == "+trk+new"          # no reply seen yet
    assert ct.lookup(2, rev) == "+trk+new"          # other zone knows nothing
    assert ct.lookup(1, rev) == "+trk+est+rpl"
    assert ct.lookup(1, fwd) == "+trk+est"


def test_ct_action_recirculates_with_state():
    flows = [F(0, 1, {"eth_type": 0x800}, [("ct", (("table", 1), ("zone", 3)))]),
             F(1, 10, {"ct_state": "+est+trk"}, [("output", 2)]),
             F(1, 5, {"ct_state": "+new+trk"}, [("ct", (("commit", True), ("zone", 3))), ("output", 3)])]
    sw = Switch(flows)
    pkt = {"in_port": 1, "eth_type": 0x800, "ip_proto": 17, "ip_src": "1.1.1.1", "ip_dst": "2.2.2.2",
           "udp_src": 5, "udp_dst": 6}
    assert sw.trace(pkt).ports() == [3]
    assert sw.trace(pkt, ct_state="+trk+est").ports() == [2]
    rev = dict(pkt, ip_src="2.2.2.2", ip_dst="1.1.1.1", udp_src=6, udp_dst=5)
    assert sw.trace(rev).ports() == [2]


def test_delete_by_cookie_mask():
    sw = Switch([F(0, 1, {"reg1": i}, [], cookie=(0xA0 if i % 2 else 0xB0) | i) for i in range(6)])
    assert sw.delete(0xA0, 0xF0) == 3
    assert sorted(f.cookie for f in sw.flows()) == [0xB0, 0xB2, 0xB4]


def test_fast_builder_equals_flowentry_make():
    from flows.mk import flow
    m = {"ip_dst": ("10.0.0.0", "255.0.0.0"), "eth_type": 0x800, "reg5": 3, "metadata": (1, 3),
         "arp_op": 1, "ct_state": "+new+trk"}
    assert flow(4, 9, m, [("output", 1)], 7) == FlowEntry.make(4, 9, m, [("output", 1)], 7)

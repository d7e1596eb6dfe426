"""controller.diff without a switch: what a full diff and a delta send, in which
order, what they count, and what the Switch holds once the bundle commits."""
from os_ken.ofproto import ofproto_protocol
from os_ken.ofproto import ofproto_v1_3 as ofp

from controller import diff
from controller.switch import Switch
from flows.entry import COOKIE_MARK as M, FlowEntry, GroupEntry
from flows.pipeline import GROUP_FLOOD_ALL, flood_group_id, group_owned

F = FlowEntry.make
G1, G2 = flood_group_id(GROUP_FLOOD_ALL, 7), flood_group_id(GROUP_FLOOD_ALL, 8)
FOREIGN = 1                                             # a group netweave did not make
A = F(0, 10, {"in_port": 1}, [("group", G1)], M | 1)
B = F(0, 20, {"in_port": 2}, [("output", 1)], M | 1)
C = F(1, 30, {"reg0": 5}, [("output", 3)], M | 2)


def _sw():
    return Switch(1, talk=None, flush=None, dp=ofproto_protocol.ProtocolDesc(ofp.OFP_VERSION))


def _kinds(msgs) -> list:
    """(what, command) of each message, in order: flow mods by their entry, groups by id."""
    out = []
    for _desc, m in msgs:
        if hasattr(m, "entry"):                         # ofencode's fast flow mod
            out.append((m.entry, m.command))
        else:                                           # os-ken OFPGroupMod
            out.append((m.group_id, m.command))
    return out


def _group(gid, port):
    return GroupEntry(gid, (((("output", port),),)))


def test_full_diff_orders_groups_around_flows_and_keeps_what_is_not_ours():
    sw, res = _sw(), diff.ReconcileResult(1)
    b2 = F(0, 20, {"in_port": 2}, [("output", 9)], M | 1)          # B's key, cookie, other actions
    c2 = F(1, 30, {"reg0": 5}, [("output", 3)], M | 3)             # C's key, another cookie
    want = diff.checked_desired(sw, ({A, b2, c2}, {_group(G1, 5)}), res)
    held = {B.key: B, C.key: C, F(2, 1, {}, [("output", 1)], M).key: F(2, 1, {}, [("output", 1)], M)}
    gone = held[F(2, 1, {}, [("output", 1)], M).key]
    groups_held = {G2: _group(G2, 6), FOREIGN: _group(FOREIGN, 6)}
    msgs = diff.full_diff(sw, want, held, groups_held, [], res, group_owned)
    kinds = _kinds(msgs)
    assert kinds[0] == (G1, ofp.OFPGC_ADD)                         # before the flow that uses it
    assert kinds[-1] == (G2, ofp.OFPGC_DELETE)                      # after every flow
    assert (FOREIGN, ofp.OFPGC_DELETE) not in kinds                 # not ours: left alone
    assert set(kinds[1:-1]) == {(A, ofp.OFPFC_ADD), (b2, ofp.OFPFC_MODIFY_STRICT),
                                (c2, ofp.OFPFC_ADD), (gone, ofp.OFPFC_DELETE_STRICT)}
    assert (res.added, res.modified, res.deleted, res.unchanged) == (2, 1, 1, 0)
    assert (res.groups_added, res.groups_modified, res.groups_deleted) == (1, 0, 1)
    assert sw.pending == want
    assert sw.commit_pending() and sw.held == want
    # the same desired object again: the memo, and nothing to send against what it holds
    res = diff.ReconcileResult(1)
    again = diff.checked_desired(sw, sw.desired_memo[0], res)
    assert again is sw.desired_memo[1]
    assert diff.full_diff(sw, again, *sw.held, [], res, group_owned) == [] and res.unchanged == 3


def test_bad_desired_set_is_reported_and_not_diffed():
    sw, res = _sw(), diff.ReconcileResult(1)
    unmarked = F(0, 5, {"in_port": 3}, [("output", 1)], 0x1)
    twin = F(0, 20, {"in_port": 2}, [("output", 7)], M | 1)        # B's key, other actions
    assert diff.checked_desired(sw, ({A, unmarked}, set()), res) is None
    assert res.rejected == [(unmarked.to_ofctl(), None, "cookie lacks COOKIE_MARK")]
    assert sw.desired_memo is None
    res = diff.ReconcileResult(1)
    assert diff.checked_desired(sw, ({B, twin}, set()), res) is None
    assert len(res.rejected) == 1 and res.rejected[0][2] == "two entries with one table/priority/match"


def test_delta_against_what_was_committed_then_commit_equals_full():
    sw, res = _sw(), diff.ReconcileResult(1)
    sw.held = ({A.key: A, B.key: B}, {G1: _group(G1, 5), FOREIGN: _group(FOREIGN, 6)})
    b2 = F(0, 20, {"in_port": 2}, [("output", 9)], M | 1)
    flows = [(A, None), (B, b2), (None, C)]
    groups = [(None, _group(G2, 6)), (_group(G1, 5), None), (_group(FOREIGN, 6), None)]
    msgs = diff.delta_diff(sw, (flows, groups), res, group_owned)
    kinds = _kinds(msgs)
    assert kinds[0] == (G2, ofp.OFPGC_ADD) and kinds[-1] == (G1, ofp.OFPGC_DELETE)
    assert (FOREIGN, ofp.OFPGC_DELETE) not in kinds
    assert set(kinds[1:-1]) == {(A, ofp.OFPFC_DELETE_STRICT), (b2, ofp.OFPFC_MODIFY_STRICT),
                                (C, ofp.OFPFC_ADD)}
    assert len(msgs) == 5
    assert (res.read, res.added, res.modified, res.deleted) == ("delta", 1, 1, 1)
    assert (res.groups_added, res.groups_modified, res.groups_deleted) == (1, 0, 1)
    assert sw.commit_pending()
    assert sw.held == ({B.key: b2, C.key: C}, {G2: _group(G2, 6), FOREIGN: _group(FOREIGN, 6)})


def test_delta_with_an_unmarked_flow_falls_back_to_the_full_path():
    sw = _sw()
    sw.held = ({}, {})
    bad = F(0, 5, {"in_port": 3}, [("output", 1)], 0x1)
    assert diff.delta_diff(sw, ([(None, bad)], []), diff.ReconcileResult(1), group_owned) is None
    assert sw.pending is None

"""Every flow netweave compiles keeps to the declared pipeline (flows/contract.py),
as Faucet checks each flow mod against its table's declaration."""
from dataclasses import replace

from flows.compiler import compile_all
from flows.contract import CONTRACT, verify
from flows.engine import Engine, compile_snapshot
from flows.entry import FlowEntry
from flows.pipeline import T
from flows.snapshot import Group, Rule
from tests.unit.scale import scale_snapshot
from tests.unit.topo import policy_snapshot, snapshot, with_policies

LOGGED = with_policies((Rule("blue", "p", "r1", "in", 10, "deny", protocol="tcp", port=5432, from_group="gweb",
                             rule_uid=1, log=True),
                        Rule("blue", "q", "r2", "out", 20, "allow", protocol="udp", port=53, to_ip="10.1.2.0/28",
                             rule_uid=2)), {"gdb": ["p"], "gweb": ["q"]})
DSCP = replace(snapshot(), groups=tuple(replace(g, dscp=10) if isinstance(g, Group) else g for g in snapshot().groups))
SNAPSHOTS = [snapshot(), policy_snapshot(), LOGGED, DSCP, scale_snapshot(300, 12, 40, n_hosts=4)]


def _with_service():
    from tests.unit.test_service import _snap
    return _snap()


SNAPSHOTS.append(_with_service())


def _problems(compiled):
    return [(h, f.to_ofctl(), p) for h, (flows, _) in compiled.items() for f in flows for p in verify(f)]


def test_every_compiled_flow_keeps_to_its_table():
    for snap in SNAPSHOTS:
        assert _problems(compile_all(snap)) == []


def test_every_engine_flow_keeps_to_its_table():
    for snap in SNAPSHOTS:
        eng = Engine()
        eng.load(snap)
        eng.recompute()
        assert _problems({h: eng.compiled(h) for h in eng.tables}) == []


def test_every_table_has_its_declared_miss():
    flows = compile_snapshot(_with_service())["h1"][0]
    for t, decl in CONTRACT.items():
        miss = [f for f in flows if f.table == t and f.priority == 0]
        assert len(miss) == 1 and not miss[0].match, t
        assert miss[0].actions == (() if decl.miss is None else (("goto", int(decl.miss)),)), t
        assert decl.miss is None or decl.miss in decl.next, t


def test_a_stray_flow_is_named():
    bad = FlowEntry.make(T.DELIVER, 100, {"ip_src": "10.0.0.1"}, (("goto", int(T.INGRESS)),
                                                                  ("set_field", "reg5", 1)))
    # (actions are canonical: the goto is an instruction and comes last)
    assert verify(bad) == ["table DELIVER does not match ip_src", "table DELIVER does not set reg5",
                           "table DELIVER may not continue in table 0"]
    assert verify(FlowEntry.make(99, 0)) == ["table 99 is not declared"]
    assert verify(FlowEntry.make(T.L2, 0, {"eth_dst": "02:00:00:00:00:01"})) == [
        "table L2: a priority-0 flow is the table miss and matches nothing"]


def test_only_groups_netweave_makes_are_its_own():
    from flows.pipeline import GROUP_FLOOD_ALL, GROUP_FLOOD_LOCAL, flood_group_id, group_owned, service_group_id
    for snap in SNAPSHOTS:
        for _, groups in compile_snapshot(snap).values():
            assert all(group_owned(g.group_id) for g in groups)
    assert group_owned(flood_group_id(GROUP_FLOOD_ALL, 7)) and group_owned(flood_group_id(GROUP_FLOOD_LOCAL, 7))
    assert group_owned(service_group_id(5, 0))
    assert not any(group_owned(g) for g in (1, 2, 7, 0x50000001, GROUP_FLOOD_ALL << 28))

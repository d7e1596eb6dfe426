"""Parsing real `ovs-ofctl -O OpenFlow13 dump-flows` output (captured from OVS 3.1
with tests/integration's bridge) back into the exact compiled entries."""
from flows.engine import compile_snapshot
from flows.ofctl_parse import parse_dump_flows, parse_dump_groups, parse_flow
from flows.simulator import Switch
from tests.unit.topo import policy_snapshot

SNAP = policy_snapshot()

DUMP = """OFPST_FLOW reply (OF1.3) (xid=0x2):
 cookie=0x4e05f3698b2943cd, duration=0.006s, table=1, n_packets=0, n_bytes=0, priority=100,arp,metadata=0x1/0x80000000ffffffff,arp_tpa=10.1.1.2,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:02:02:0a:01:01:02->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:02:02:0a:01:01:02->arp_sha,set_field:10.1.1.2->arp_spa,IN_PORT
 cookie=0x4e05ea8d35d3b06a, duration=0.006s, table=1, n_packets=0, n_bytes=0, priority=100,arp,metadata=0x3/0x80000000ffffffff,arp_tpa=10.1.1.2,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:02:02:0a:01:01:02->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:02:02:0a:01:01:02->arp_sha,set_field:10.1.1.2->arp_spa,IN_PORT
 cookie=0x4e03000000000001, duration=0.006s, table=1, n_packets=0, n_bytes=0, priority=100,arp,metadata=0x1/0x80000000ffffffff,arp_tpa=10.1.1.254,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:02:4e:57:00:00:01->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:02:4e:57:00:00:01->arp_sha,set_field:10.1.1.254->arp_spa,IN_PORT
 cookie=0x4e03000000000003, duration=0.006s, table=1, n_packets=0, n_bytes=0, priority=100,arp,metadata=0x3/0x80000000ffffffff,arp_tpa=10.1.1.254,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:02:4e:57:00:00:01->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:02:4e:57:00:00:01->arp_sha,set_field:10.1.1.254->arp_spa,IN_PORT
 cookie=0x4e0571b120ed5194, duration=0.006s, table=0, n_packets=0, n_bytes=0, priority=100,arp,in_port=1,dl_src=02:02:0a:01:01:01,arp_spa=10.1.1.1,arp_sha=02:02:0a:01:01:01 actions=write_metadata:0x100000001/0x8000ffffffffffff,goto_table:1
 cookie=0x4e0571b120ed5194, duration=0.006s, table=0, n_packets=0, n_bytes=0, priority=100,ip,in_port=1,dl_src=02:02:0a:01:01:01,nw_src=10.1.1.1 actions=write_metadata:0x100000001/0x8000ffffffffffff,goto_table:1
 cookie=0x4e03000000000004, duration=0.006s, table=0, n_packets=0, n_bytes=0, priority=100,in_port=10,dl_vlan=100 actions=pop_vlan,write_metadata:0x8000000100000004/0x8000ffffffffffff,goto_table:1
 cookie=0x4e03000000000001, duration=0.006s, table=0, n_packets=0, n_bytes=0, priority=100,tun_id=0x1389,in_port=100 actions=write_metadata:0x8000000100000001/0x8000ffffffffffff,goto_table:1
 cookie=0x4e07000000000003, duration=0.005s, table=21, n_packets=0, n_bytes=0, priority=3703,conj_id=3,ip actions=drop
 cookie=0x4e07000000000002, duration=0.006s, table=21, n_packets=0, n_bytes=0, priority=12402,conj_id=2,ip actions=ct(commit,zone=1),goto_table:30
 cookie=0x4e07000000000003, duration=0.006s, table=21, n_packets=0, n_bytes=0, priority=3703,ct_state=+new+trk,ip,reg5=0x65,metadata=0x100000000/0xffff00000000 actions=conjunction(3,1/3)
 cookie=0x4e07000000000002, duration=0.006s, table=21, n_packets=0, n_bytes=0, priority=12402,ct_state=+new+trk,ip,reg5=0x65,metadata=0x100000000/0xffff00000000 actions=conjunction(2,1/2)
 cookie=0x4e07000000000002, duration=0.006s, table=21, n_packets=0, n_bytes=0, priority=12402,ip,nw_dst=10.1.2.0/24 actions=conjunction(2,2/2)
 cookie=0x4e07000000000003, duration=0.006s, table=21, n_packets=0, n_bytes=0, priority=3703,ip,nw_dst=10.1.2.1 actions=conjunction(3,2/3)
 cookie=0x4e07000000000003, duration=0.006s, table=21, n_packets=0, n_bytes=0, priority=3703,ip,nw_dst=10.1.2.2/31 actions=conjunction(3,2/3)
 cookie=0x4e07000000000003, duration=0.006s, table=21, n_packets=0, n_bytes=0, priority=3703,ip,nw_dst=10.1.2.8/31 actions=conjunction(3,2/3)
 cookie=0x4e07000000000003, duration=0.006s, table=21, n_packets=0, n_bytes=0, priority=3703,ip,nw_dst=10.1.2.4/30 actions=conjunction(3,2/3)
 cookie=0x4e07000000000003, duration=0.006s, table=21, n_packets=0, n_bytes=0, priority=3703,udp actions=conjunction(3,3/3)
 cookie=0x4e07000000000001, duration=0.006s, table=51, n_packets=0, n_bytes=0, priority=6701,conj_id=1,ip actions=drop
 cookie=0x4e07000000000001, duration=0.006s, table=51, n_packets=0, n_bytes=0, priority=6701,ct_state=+new+trk,ip,reg6=0x66,metadata=0x100000000/0xffff00000000 actions=conjunction(1,1/3)
 cookie=0x4e07000000000001, duration=0.006s, table=51, n_packets=0, n_bytes=0, priority=6701,tcp,tp_dst=5432 actions=conjunction(1,3/3)
 cookie=0x4e07000000000001, duration=0.006s, table=51, n_packets=0, n_bytes=0, priority=6701,ip,reg5=0x65 actions=conjunction(1,2/3)
 cookie=0x4e05f3698b2943cd, duration=0.006s, table=30, n_packets=0, n_bytes=0, priority=100,ip,metadata=0x100000000/0x8000ffff00000000,dl_dst=02:4e:57:00:00:01,nw_dst=10.1.1.2 actions=dec_ttl,set_field:02:4e:57:00:00:01->eth_src,set_field:02:02:0a:01:01:02->eth_dst,write_metadata:0x1/0xffffffff,goto_table:40
 cookie=0x4e05ea8d35d3b06a, duration=0.006s, table=30, n_packets=0, n_bytes=0, priority=100,ip,metadata=0x12c00000000/0x8000ffff00000000,dl_dst=02:4e:57:00:00:01,nw_dst=10.1.1.2 actions=dec_ttl,set_field:02:4e:57:00:00:01->eth_src,set_field:02:02:0a:01:01:02->eth_dst,write_metadata:0x3/0xffffffff,goto_table:40
 group_id=268435460,type=all,bucket=actions=output:5,bucket=actions=push_vlan:0x8100,set_field:4196->vlan_vid,output:10
"""


def test_real_dump_lines_equal_compiled_entries():
    flows, groups = compile_snapshot(SNAP)["h1"]
    parsed = parse_dump_flows(DUMP)
    assert len(parsed) > 8
    assert set(parsed) <= flows
    assert set(parse_dump_groups(DUMP)) <= groups and parse_dump_groups(DUMP)


def test_simulator_runs_parsed_dump():
    flows, groups = compile_snapshot(SNAP)["h1"]
    text = "\n".join(" " + f.to_ofctl().replace(",actions=", " actions=") for f in flows)
    sw = Switch(parse_dump_flows(text), groups)
    assert set(sw.flows()) == flows


def test_shorthand_and_ports():
    f = parse_flow(" cookie=0x1, duration=2.1s, table=51, n_packets=3, n_bytes=9, priority=7,tcp,tp_dst=80 actions=conjunction(9,3/3)")
    assert f.match_dict() == {"eth_type": 0x800, "ip_proto": 6, "tcp_dst": 80}
    assert f.actions == (("conjunction", 9, 3, 3),) and (f.table, f.priority, f.cookie) == (51, 7, 1)
    f = parse_flow(" cookie=0x2, table=0, priority=1,in_port=10,dl_vlan=100 actions=pop_vlan,goto_table:1")
    assert f.match_dict() == {"in_port": 10, "vlan_vid": 0x1064}


def test_switch_from_dump_traces_real_text():
    sw = Switch.from_dump(DUMP, DUMP)
    pkt = {"in_port": 1, "eth_type": 0x806, "eth_src": "02:02:0a:01:01:01", "arp_op": 1,
           "eth_dst": "ff:ff:ff:ff:ff:ff", "arp_sha": "02:02:0a:01:01:01", "arp_spa": "10.1.1.1",
           "arp_tha": "00:00:00:00:00:00", "arp_tpa": "10.1.1.2"}
    tr = sw.trace(pkt)
    # the dump excerpt holds table 0 and the proxy ARP flow for 10.1.1.2
    (port, reply), = tr.outputs
    assert port == 1 and reply["arp_op"] == 2 and reply["arp_sha"] == "02:02:0a:01:01:02"


def test_meter_and_controller_as_ovs_prints_them():
    # OVS 3.1's dump-flows line for a logged deny verdict (meter first, CONTROLLER upper case)
    f = parse_flow(" cookie=0x4e07000000000001, duration=0.004s, table=51, n_packets=0, n_bytes=0, "
                   "priority=6701,conj_id=1,ip actions=meter:1,CONTROLLER:128")
    assert f.actions == (("meter", 1), ("controller", 128))
    assert parse_flow(f.to_ofctl()) == f


# ---------------------------------------------------------------- one table of field names
# Every spelling the parser accepts is flows/fields.py's: each field, under each of
# its names, parses to the entry the compiler would make; an undeclared name is refused.

_SAMPLES = {"int": ("0x21", 0x21, "0x20/0xf0", (0x20, 0xF0)),
            "mac": ("02:AA:bb:cc:dd:ee", "02:aa:bb:cc:dd:ee", "01:00:00:00:00:00/01:00:00:00:00:00",
                    ("01:00:00:00:00:00", "01:00:00:00:00:00")),
            "ipv4": ("10.1.2.3", "10.1.2.3", "10.1.2.0/24", ("10.1.2.0", "255.255.255.0")),
            "ipv6": ("fd00:0::1", "fd00::1", "fd00::/64", ("fd00::", "ffff:ffff:ffff:ffff::")),
            "ct_state": ("-new+trk+est", "+trk-new+est", None, None)}


def _spellings(fd):
    return sorted({fd.name, fd.osken, *fd.aliases} - {None})


def test_every_spelling_of_every_field_parses_from_the_one_table():
    from flows import fields as F
    from flows.entry import FlowEntry
    seen = 0
    for fd in F.FIELDS.values():
        text, value, mtext, masked = _SAMPLES[fd.kind]
        for sp in _spellings(fd):
            got = parse_flow(f" table=3, priority=9,{sp}={text} actions=drop")
            assert got == FlowEntry.make(3, 9, {fd.name: value}), (sp, got)
            if mtext is not None:
                got = parse_flow(f" table=3, priority=9,{sp}={mtext} actions=drop")
                assert got == FlowEntry.make(3, 9, {fd.name: masked}), (sp, got)
            acts = parse_flow(f" table=3, priority=9 actions=move:{sp}[]->reg0[]").actions
            assert acts == (("move", fd.name, "reg0"),), sp
            if fd.settable:
                acts = parse_flow(f" table=3, priority=9 actions=set_field:{text}->{sp}").actions
                assert acts == (("set_field", fd.name, value),), sp
            seen += 1
    assert seen >= 2 * len(F.FIELDS)          # most fields have more than one name


def test_undeclared_names_are_refused():
    import pytest
    from flows.fields import EntryError
    for line in (" table=0, priority=1,nw_tos=32 actions=drop",       # OVS has it; netweave does not
                 " table=0, priority=1,sctp actions=drop",
                 " table=0, priority=1 actions=set_field:1->bogus",
                 " table=0, priority=1 actions=move:NXM_NX_XXREG0[]->reg0[]",
                 " table=0, priority=1 actions=learn(table=1)"):
        with pytest.raises(EntryError):
            parse_flow(line)


def test_ct_zone_from_a_register_as_ovs_prints_it():
    f = parse_flow(" cookie=0x1, table=52, priority=5,ip,reg7=0x1 actions=ct(zone=NXM_NX_REG6[0..15],"
                   "table=52,nat)")
    assert f.actions == (("ct", (("nat", ""), ("table", 52), ("zone_reg", "reg6"))),)
    assert parse_flow(f.to_ofctl()) == f


def test_no_module_keeps_its_own_field_alias_table():
    """A dict literal holding a field's other spelling (dl_src, NXM_OF_IP_SRC, ...)
    outside flows/fields.py is an alias table of its own: derive it instead."""
    import ast
    import pathlib
    from flows import fields as F
    others = set(F.ALIASES) - set(F.FIELDS)
    root = pathlib.Path(__file__).resolve().parents[2]
    found = []
    for d in ("flows", "controller", "agent", "rest", "netctl", "netweave", "topologies", "bench"):
        for p in sorted((root / d).rglob("*.py")):
            if p == root / "flows" / "fields.py":
                continue
            for n in ast.walk(ast.parse(p.read_text())):
                if isinstance(n, ast.Dict):
                    words = {x.value for x in [*n.keys, *n.values] if isinstance(x, ast.Constant)}
                    if words & others:
                        found.append(f"{p.relative_to(root)}:{n.lineno} {sorted(words & others)}")
    assert found == []

"""controller.denylog: attribution of packet-ins to rules, hosts and endpoints,
one entry per connection, the per-tenant ring and the counters."""
from os_ken.lib.packet import ethernet, icmp, ipv4, packet, tcp, udp
from prometheus_client import REGISTRY

from controller.denylog import DenyLog, parse_packet
from flows.engine import Engine
from flows.pipeline import Owner, cookie
from flows.snapshot import Rule
from tests.unit.topo import EP, with_policies

RULE = Rule("blue", "p", "r1", "in", 10, "deny", protocol="tcp", port=5432, from_group="gweb", rule_uid=7, log=True)
SNAP = with_policies([RULE], {"gdb": ["p"]})
C = cookie(Owner.RULE, 7)


def frame(src, dst, proto="tcp", sport=40000, dport=5432, icmp_id=9, truncate=128):
    p = packet.Packet()
    p.add_protocol(ethernet.ethernet(dst="02:00:00:00:00:02", src="02:00:00:00:00:01", ethertype=0x0800))
    num = {"tcp": 6, "udp": 17, "icmp": 1}[proto]
    p.add_protocol(ipv4.ipv4(src=src, dst=dst, proto=num))
    if proto == "tcp":
        p.add_protocol(tcp.tcp(src_port=sport, dst_port=dport, bits=tcp.TCP_SYN, option=b"\x02\x04\x05\xb4" * 5))
    elif proto == "udp":
        p.add_protocol(udp.udp(src_port=sport, dst_port=dport))
    else:
        p.add_protocol(icmp.icmp(type_=8, data=icmp.echo(id_=icmp_id, seq=1, data=b"x" * 56)))
    p.add_protocol(b"payload" * 40)
    p.serialize()
    return bytes(p.data)[:truncate]


def frame6(src, dst, proto="tcp", truncate=128):
    from os_ken.lib.packet import icmpv6, ipv6
    p = packet.Packet()
    p.add_protocol(ethernet.ethernet(dst="02:00:00:00:00:02", src="02:00:00:00:00:01", ethertype=0x86DD))
    p.add_protocol(ipv6.ipv6(src=src, dst=dst, nxt=6 if proto == "tcp" else 58))
    if proto == "tcp":
        p.add_protocol(tcp.tcp(src_port=40000, dst_port=5432, bits=tcp.TCP_SYN))
    else:
        p.add_protocol(icmpv6.icmpv6(type_=128, data=icmpv6.echo(id_=9, seq=1, data=b"x" * 56)))
    p.add_protocol(b"payload" * 40)
    p.serialize()
    return bytes(p.data)[:truncate]


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def engine(snap=SNAP):
    eng = Engine()
    eng.load(snap)
    eng.recompute()
    return eng


def mk(eng=None):
    clk = Clock()
    return DenyLog(eng or engine(), {2: "h2"}.get, keep=5, window=60, clock=lambda: 1.7e9, monotonic=clk), clk


def counter(**labels):
    return REGISTRY.get_sample_value("netweave_policy_denied_connections_total", labels) or 0


def test_parse_truncated_frames():
    assert parse_packet(frame("10.1.1.1", "10.1.2.1")) == {
        "src": "10.1.1.1", "dst": "10.1.2.1", "protocol": "tcp", "srcPort": 40000, "port": 5432}
    assert parse_packet(frame("10.1.1.1", "10.1.2.1", "udp", 5, 53))["port"] == 53
    assert parse_packet(frame("10.1.1.1", "10.1.2.1", "icmp", icmp_id=77)) == {
        "src": "10.1.1.1", "dst": "10.1.2.1", "protocol": "icmp", "srcPort": 77, "port": 8}
    assert parse_packet(b"\x00" * 10) is None
    # IPv6: the same fields (an icmp rule covers ICMPv6: named icmp)
    assert parse_packet(frame6("2001:db8:1::1", "2001:db8:2::1")) == {
        "src": "2001:db8:1::1", "dst": "2001:db8:2::1", "protocol": "tcp", "srcPort": 40000, "port": 5432}
    assert parse_packet(frame6("2001:db8:1::1", "2001:db8:2::1", "icmp")) == {
        "src": "2001:db8:1::1", "dst": "2001:db8:2::1", "protocol": "icmp", "srcPort": 9, "port": 128}
    assert parse_packet(frame("10.1.1.1", "10.1.2.1")[:20]) is None      # no whole IP header


def test_one_entry_per_connection_within_the_window():
    dl, clk = mk()
    before = counter(tenant="blue", rule="blue:p:r1", host="h2")
    b1, d1 = EP["b1"], EP["d1"]
    e = dl.packet_in(2, C, 51, {}, frame(b1.ip, d1.ip))
    assert e["host"] == "h2" and e["tenant"] == "blue" and e["rule"] == "blue:p:r1"
    assert (e["src"], e["srcEndpoint"], e["dst"], e["dstEndpoint"]) == (b1.ip, "b1", d1.ip, "d1")
    assert (e["protocol"], e["port"], e["srcPort"], e["time"]) == ("tcp", 5432, 40000, "2023-11-14T22:13:20.000Z")
    for dt in (1, 2, 4, 8, 16, 32):                 # SYN retransmits: gaps under the window
        clk.t += dt
        assert dl.packet_in(2, C, 51, {}, frame(b1.ip, d1.ip)) is None
    assert dl.packet_in(2, C, 51, {}, frame(b1.ip, d1.ip, sport=40001)) is not None   # a new connection
    clk.t += 61                                      # silent for longer than the window: new again
    assert dl.packet_in(2, C, 51, {}, frame(b1.ip, d1.ip)) is not None
    assert len(dl.recent("blue")) == 3 and dl.recent("red") == []
    assert counter(tenant="blue", rule="blue:p:r1", host="h2") == before + 3


def test_ring_keeps_the_last_n_per_tenant_oldest_first():
    dl, _ = mk()
    for port in range(10):
        dl.packet_in(2, C, 51, {}, frame(EP["b1"].ip, EP["d1"].ip, sport=30000 + port))
    got = dl.recent("blue", 100)
    assert [e["srcPort"] for e in got] == [30005, 30006, 30007, 30008, 30009]
    assert [e["srcPort"] for e in dl.recent("blue", 2)] == [30008, 30009]
    assert dl.recent(None, 3) == got[-3:]


def test_unattributed_packet_ins_are_counted_not_logged():
    dl, _ = mk()

    def un(reason):
        return REGISTRY.get_sample_value("netweave_policy_log_unattributed_packet_ins_total", {"reason": reason}) or 0
    before = {r: un(r) for r in ("cookie", "rule", "packet")}
    assert dl.packet_in(2, 0x1234, 51, {}, frame("10.1.1.1", "10.1.2.1")) is None         # not our cookie
    assert dl.packet_in(2, cookie(Owner.TENANT, 1), 51, {}, frame("10.1.1.1", "10.1.2.1")) is None
    assert dl.packet_in(2, cookie(Owner.RULE, 99), 51, {}, frame("10.1.1.1", "10.1.2.1")) is None
    assert dl.packet_in(2, C, 51, {}, b"\x01\x02") is None
    assert {r: un(r) - before[r] for r in before} == {"cookie": 2, "rule": 1, "packet": 1}
    assert dl.recent() == []


def test_unknown_addresses_and_unregistered_switch():
    dl, _ = mk()
    e = dl.packet_in(0xAB, C, 51, {}, frame("192.0.2.1", EP["d1"].ip, "udp", 1, 5432))
    assert (e["host"], e["srcEndpoint"], e["dstEndpoint"], e["protocol"]) == ("00000000000000ab", "", "d1", "udp")


def test_follows_the_engine_without_a_rebuild():
    """The log reads the engine the switches' flows come from: a rule or endpoint
    changed by a delta is what the next packet-in sees."""
    from dataclasses import replace
    from flows.engine import object_key
    eng = engine()
    dl, clk = mk(eng)
    b1, d1 = EP["b1"], EP["d1"]
    assert dl.packet_in(2, C, 51, {}, frame(b1.ip, d1.ip))["srcEndpoint"] == "b1"
    # b1 leaves and another endpoint takes its address; the rule gets a new uid
    eng.put("endpoint", "b1", None)
    eng.put("endpoint", "b1x", replace(b1, endpoint_id="b1x"))
    eng.put("rule", object_key("rule", RULE), replace(RULE, rule_uid=8))
    eng.apply()
    clk.t += 61
    assert dl.packet_in(2, C, 51, {}, frame(b1.ip, d1.ip)) is None          # uid 7 is no rule now
    e = dl.packet_in(2, cookie(Owner.RULE, 8), 51, {}, frame(b1.ip, d1.ip))
    assert (e["rule"], e["srcEndpoint"], e["dstEndpoint"]) == ("blue:p:r1", "b1x", "d1")
    eng.put("rule", object_key("rule", RULE), None)
    eng.apply()
    assert eng.rule_by_uid(8) is None and eng.st.rule_uids == {}

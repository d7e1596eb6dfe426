"""A catalogue of flows and groups that uses every match field and action of
flows/entry.py, in forms Open vSwitch accepts: the offline round trips
(tests/unit/test_ofencode.py, tests/integration/test_ofapp.py) and the real switch
(tests/integration/test_ofwire_ovs.py) all check it. A plain module: importing it
patches nothing (the OpenFlow test modules monkey-patch eventlet)."""
from flows.entry import COOKIE_MARK as M, FlowEntry, GroupEntry

DPID = 0x4E0000000000AB
F = FlowEntry.make

# Every match field and action of flows/entry.py, in flows OVS accepts.
ALL_FLOWS = [
    F(0, 200, {"in_port": 5, "eth_src": "02:00:00:00:00:01",
               "eth_dst": ("02:00:00:00:00:00", "ff:ff:ff:00:00:00"), "vlan_vid": 0x1005,
               "eth_type": 0x806, "arp_op": 1, "arp_spa": "10.0.0.1", "arp_tpa": "10.0.0.2",
               "arp_sha": "02:00:00:00:00:01", "arp_tha": "02:00:00:00:00:02"},
      [("pop_vlan",), ("output", 6)], M | 1),
    F(0, 190, {"eth_type": 0x800, "ip_src": ("10.1.0.0", "255.255.0.0"),
               "ip_dst": ("10.2.3.0", "255.255.255.0"), "ip_proto": 6, "nw_ttl": 64,
               "tcp_src": 1234, "tcp_dst": 80, "metadata": (0x10, 0xFF0),
               "reg0": (1, 0xFF), "reg1": 5},
      [("set_field", "eth_dst", "02:00:00:00:00:09"), ("move", "reg0", "reg1"), ("dec_ttl",),
       ("write_metadata", 0x5, 0xF), ("goto", 10)], M | 2),
    F(10, 100, {"eth_type": 0x800, "ip_proto": 17, "udp_src": 53, "udp_dst": 5353,
                "reg2": (0x20, 0xF0), "reg3": 7, "reg4": 8, "reg5": (1, 1), "reg6": 9,
                "reg7": 10, "ct_state": "+trk+est", "ct_zone": 5},
      [("push_vlan", 0x8100), ("set_field", "vlan_vid", 0x1064), ("output", 7)], M | 3),
    F(10, 90, {"tun_id": 5000, "tun_src": "192.0.2.1", "tun_dst": "192.0.2.2",
               "eth_type": 0x800, "ip_proto": 1, "icmp_type": 8},
      [("ct", (("commit", True), ("table", 20), ("zone", 7)))], M | 4),
    F(10, 80, {"eth_type": 0x800, "ip_src": "10.9.9.9"}, [("conjunction", 10, 1, 2)], M | 5),
    F(10, 80, {"eth_type": 0x800, "ip_dst": "10.8.8.8"}, [("conjunction", 10, 2, 2)], M | 5),
    F(10, 70, {"eth_type": 0x800, "conj_id": 10},
      [("ct", (("table", 20), ("zone_reg", "reg6")))], M | 6),
    F(20, 60, {"reg0": 3}, [("set_field", "tun_id", 5000), ("set_field", "tun_dst", "192.0.2.9"),
                            ("output", 8)], M | 7),
    F(20, 50, {"in_port": 6}, [("group", 1), ("controller", 128), ("in_port",)], M | 8),
    F(20, 40, {"eth_type": 0x800}, [("set_field", "reg5", 3), ("set_field", "ip_dst", "10.0.0.5"),
                                    ("goto", 30)], M | 9),
    F(20, 0, {}, [], M | 10),
    # a logged deny's verdict: the meter (which the app creates on connect) then the controller
    F(21, 30, {"eth_type": 0x800, "ip_proto": 6, "tcp_dst": 22}, [("meter", 1), ("controller", 128)], M | 11),
    # IPv6 (flows/nd.py, routing, policy): a solicitation answered in place, the
    # advertisement's link-layer option, a route, conntrack, ND fields matched
    F(1, 100, {"eth_type": 0x86DD, "ip_proto": 58, "icmpv6_type": 135, "nd_target": "2001:db8:1::a",
               "metadata": (3, 0x80000000FFFFFFFF)},
      [("move", "eth_src", "eth_dst"), ("set_field", "eth_src", "02:4e:57:00:00:01"),
       ("move", "ipv6_src", "ipv6_dst"), ("set_field", "ipv6_src", "2001:db8:1::a"),
       ("set_field", "icmpv6_type", 136), ("set_field", "nd_reserved", 0xE0000000),
       ("set_field", "nd_options_type", 2), ("goto", 6)], M | 12),
    F(1, 90, {"eth_type": 0x86DD, "ip_proto": 58, "icmpv6_type": 128, "icmpv6_code": 0,
              "ipv6_dst": "2001:db8:1::ff", "eth_dst": "02:4e:57:00:00:01"},
      [("move", "eth_src", "eth_dst"), ("move", "ipv6_src", "ipv6_dst"),
       ("set_field", "ipv6_src", "2001:db8:1::ff"), ("set_field", "icmpv6_type", 129), ("in_port",)], M | 13),
    F(1, 80, {"eth_type": 0x86DD, "ip_proto": 58, "icmpv6_type": 135, "nd_sll": "02:00:00:00:00:01"}, [], M | 14),
    F(1, 80, {"eth_type": 0x86DD, "ip_proto": 58, "icmpv6_type": 136, "nd_tll": "02:00:00:00:00:01"}, [], M | 14),
    F(6, 100, {"eth_type": 0x86DD, "ip_proto": 58, "icmpv6_type": 136},
      [("move", "eth_src", "nd_tll"), ("in_port",)], M | 15),
    F(30, 100, {"eth_type": 0x86DD, "ipv6_src": ("2001:db8:1::", "ffff:ffff:ffff:ffff::"),
                "ipv6_dst": "2001:db8:2::5", "ip_proto": 6, "tcp_dst": 80},
      [("dec_ttl",), ("set_field", "eth_dst", "02:00:00:00:00:05"), ("ct", (("commit", True), ("zone", 3))),
       ("goto", 40)], M | 16),
]
ALL_GROUPS = [
    GroupEntry(1, ((("output", 5),), (("set_field", "eth_dst", "02:00:00:00:00:07"), ("output", 6)))),
    GroupEntry(2, ((("output", 7),),), "indirect"),
]

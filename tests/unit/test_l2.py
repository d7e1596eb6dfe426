from flows.pipeline import GROUP_FLOOD_ALL, TUNNEL_PORT, flood_group_id
from tests.unit.topo import EP, at, arp_req, fabric, ip_pkt, send

FAB = fabric()


def test_same_host_unicast_stays_local():
    ft = send(FAB, "b1", ip_pkt(EP["b1"], "10.1.1.3"))
    assert ft.endpoints() == [at("b3")]
    assert ft.wire == []


def test_cross_host_unicast_through_tunnel():
    ft = send(FAB, "b1", ip_pkt(EP["b1"], "10.1.1.2"))
    assert ft.endpoints() == [at("b2")]
    assert len(ft.wire) == 1
    host, port, pkt = ft.wire[0]
    assert (host, port) == ("h1", TUNNEL_PORT)
    assert pkt["tun_id"] == 5001 and pkt["tun_dst"] == "192.168.0.2"
    delivered = ft.at(*at("b2"))[0]
    assert delivered["eth_dst"] == EP["b2"].mac and "tun_id" not in delivered


def test_broadcast_floods_network_once_and_never_back_into_tunnel():
    ft = send(FAB, "b1", arp_req(EP["b1"], "10.1.1.77"))   # unknown address: flooded
    assert ft.endpoints() == sorted([at("b3"), at("b2"), at("b4")])
    assert sorted(p["tun_dst"] for h, _, p in ft.wire) == ["192.168.0.2", "192.168.0.3"]
    assert {h for h, _, _ in ft.wire} == {"h1"}             # receivers do not re-flood
    assert ft.problems == []


def test_flood_group_lists_local_ports_and_remote_hosts():
    flows, groups = FAB.switches["h1"].flows(), FAB.switches["h1"].groups
    g = groups[flood_group_id(GROUP_FLOOD_ALL, 1)]
    outs = [b[-1][1] for b in g.buckets]
    assert sorted(outs) == sorted([1, 2, TUNNEL_PORT, TUNNEL_PORT])  # b1, b3 and h2, h3


def test_unknown_unicast_dropped():
    ft = send(FAB, "b1", ip_pkt(EP["b1"], "10.1.1.3", dst_mac="02:99:00:00:00:01"))
    assert ft.delivered == [] and ft.wire == []


def test_frame_from_tunnel_for_a_remote_mac_is_not_sent_back():
    sw = FAB.switches["h2"]
    pkt = ip_pkt(EP["b1"], "10.1.1.4", in_port=TUNNEL_PORT, tun_id=5001)  # b4 lives on h3
    tr = sw.trace(pkt)
    assert tr.outputs == []
    assert tr.path[-1].priority == 0 and tr.path[-1].table == 40   # L2 miss, not a tunnel flow
    assert not any("in_port" in d for d in tr.drops)


def test_split_horizon_is_explicit_not_just_in_port_suppression():
    # A flood arriving from the tunnel must use the local-only group: relying on
    # "never output to in_port" would break as soon as a second fabric port exists.
    sw = FAB.switches["h2"]
    pkt = dict(arp_req(EP["b1"], "10.1.1.77"), in_port=TUNNEL_PORT, tun_id=5001)
    tr = sw.trace(pkt)
    assert tr.ports() == [1]                                   # p-b2 only
    assert not any("in_port" in d for d in tr.drops), tr.drops

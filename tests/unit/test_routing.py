from flows.pipeline import ROUTER_MAC, TUNNEL_PORT
from tests.unit.topo import EP, UPLINK, at, fabric, ip_pkt, send

FAB = fabric()


def test_routed_across_hosts_rewritten_on_source_host():
    ft = send(FAB, "b1", ip_pkt(EP["b1"], "10.1.2.1", dst_mac=ROUTER_MAC, ttl=64))
    assert ft.endpoints() == [at("d1")]
    (host, port, wire), = ft.wire
    assert (host, port) == ("h1", TUNNEL_PORT)
    assert wire["tun_id"] == 5002 and wire["tun_dst"] == "192.168.0.2"   # destination network's VNI
    assert wire["nw_ttl"] == 63                                           # already done at the source
    assert wire["eth_src"] == ROUTER_MAC and wire["eth_dst"] == EP["d1"].mac
    got = ft.at(*at("d1"))[0]
    assert got["nw_ttl"] == 63 and got["eth_src"] == ROUTER_MAC and got["eth_dst"] == EP["d1"].mac


def test_routed_on_same_host():
    ft = send(FAB, "b1", ip_pkt(EP["b1"], "10.1.2.2", dst_mac=ROUTER_MAC))
    assert ft.endpoints() == [at("d2")] and ft.wire == []
    assert ft.at(*at("d2"))[0]["nw_ttl"] == 63


def test_routed_into_vlan_network_leaves_tagged_on_uplink():
    ft = send(FAB, "b1", ip_pkt(EP["b1"], "10.1.3.2", dst_mac=ROUTER_MAC))
    assert ft.endpoints() == [at("v2")]
    assert [(h, p, w["vlan_vid"]) for h, p, w in ft.wire] == [("h1", UPLINK, 0x1064)]


def test_ttl_expiry_drops():
    ft = send(FAB, "b1", ip_pkt(EP["b1"], "10.1.2.1", dst_mac=ROUTER_MAC, ttl=1))
    assert ft.delivered == []
    assert any("ttl" in d for _, t in ft.hops for d in t.drops)


def test_unknown_destination_not_routed():
    ft = send(FAB, "b1", ip_pkt(EP["b1"], "10.1.2.77", dst_mac=ROUTER_MAC))
    assert ft.delivered == [] and ft.wire == []

from tests.unit.topo import EP, UPLINK, at, arp_req, fabric, ip_pkt, send

FAB = fabric()


def test_vlan_unicast_via_uplink_with_tag():
    ft = send(FAB, "v1", ip_pkt(EP["v1"], "10.1.3.2"))
    assert ft.endpoints() == [at("v2")]
    (host, port, w), = ft.wire
    assert (host, port, w["vlan_vid"]) == ("h1", UPLINK, 0x1000 | 100)
    assert "vlan_vid" not in ft.at(*at("v2"))[0]      # popped on arrival
    assert "tun_id" not in w


def test_vlan_broadcast_reaches_remote_and_is_not_reflooded_to_uplink():
    ft = send(FAB, "v1", arp_req(EP["v1"], "10.1.3.77"))
    assert ft.endpoints() == [at("v2")]
    assert [(h, p) for h, p, _ in ft.wire] == [("h1", UPLINK)]

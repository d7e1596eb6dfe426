from flows.pipeline import ROUTER_MAC
from tests.unit.topo import EP, at, arp_req, fabric, send

FAB = fabric()


def _reply(ft, requester):
    assert ft.wire == [], "ARP for a known address must not cross the overlay"
    assert ft.endpoints() == [at(requester)]
    return ft.at(*at(requester))[0]


def test_proxy_arp_for_remote_endpoint():
    b1 = EP["b1"]
    r = _reply(send(FAB, "b1", arp_req(b1, "10.1.1.2")), "b1")
    assert r["arp_op"] == 2
    assert r["eth_dst"] == b1.mac and r["eth_src"] == EP["b2"].mac
    assert r["arp_sha"] == EP["b2"].mac and r["arp_spa"] == "10.1.1.2"
    assert r["arp_tha"] == b1.mac and r["arp_tpa"] == b1.ip


def test_proxy_arp_for_gateway_gives_router_mac():
    r = _reply(send(FAB, "b1", arp_req(EP["b1"], "10.1.1.254")), "b1")
    assert r["arp_sha"] == ROUTER_MAC and r["eth_src"] == ROUTER_MAC
    assert r["arp_spa"] == "10.1.1.254" and r["arp_op"] == 2


def test_gateway_answered_on_every_host():
    for eid in ("b2", "b4", "r1", "v2"):
        net_gw = EP[eid].ip.rsplit(".", 1)[0] + ".254"
        r = _reply(send(FAB, eid, arp_req(EP[eid], net_gw)), eid)
        assert r["arp_sha"] == ROUTER_MAC


def test_arp_for_address_in_another_network_is_not_proxied():
    ft = send(FAB, "b1", arp_req(EP["b1"], "10.1.2.1"))   # d1 lives in db, not web
    assert all(p.get("arp_op") == 1 for _, _, p in ft.delivered)
    assert at("d1") not in ft.endpoints()

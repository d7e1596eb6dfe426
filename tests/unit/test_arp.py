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


def test_gateway_answers_ping_on_the_local_switch():
    from tests.unit.topo import ip_pkt
    for eid in ("b1", "b2", "r1", "v2"):
        e = EP[eid]
        gw = e.ip.rsplit(".", 1)[0] + ".254"
        req = ip_pkt(e, gw, ROUTER_MAC, proto="icmp")
        r = _reply(send(FAB, eid, req), eid)
        assert r["icmp_type"] == 0
        assert (r["ip_src"], r["ip_dst"]) == (gw, e.ip)
        assert (r["eth_src"], r["eth_dst"]) == (ROUTER_MAC, e.mac)


def test_only_echo_requests_to_the_gateway_are_answered():
    from tests.unit.topo import ip_pkt
    b1 = EP["b1"]
    # an echo reply, or a TCP packet, to the gateway is not reflected back
    for pkt in (ip_pkt(b1, "10.1.1.254", ROUTER_MAC, proto="icmp", icmp_type=0),
                ip_pkt(b1, "10.1.1.254", ROUTER_MAC, proto="tcp")):
        ft = send(FAB, "b1", pkt)
        assert at("b1") not in ft.endpoints()


def test_router_answers_on_every_gateway_of_its_vrf_only():
    from tests.unit.topo import ip_pkt
    b1, r1 = EP["b1"], EP["r1"]
    # blue's router: db's gateway answers a web endpoint (one distributed router per tenant)
    r = _reply(send(FAB, "b1", ip_pkt(b1, "10.1.2.254", ROUTER_MAC, proto="icmp")), "b1")
    assert (r["ip_src"], r["icmp_type"]) == ("10.1.2.254", 0)
    # red has no network 10.1.2.0/24: its router does not answer for blue's gateway
    ft = send(FAB, "r1", ip_pkt(r1, "10.1.2.254", ROUTER_MAC, proto="icmp"))
    assert at("r1") not in ft.endpoints()

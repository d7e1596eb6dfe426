"""Two tenants with the same network name, subnet, IPs and MACs never meet."""
from flows.pipeline import ROUTER_MAC, TUNNEL_PORT
from tests.unit.topo import EP, at, arp_req, fabric, ip_pkt, send

FAB = fabric()


def test_same_ip_and_mac_go_to_own_tenant_only_across_hosts():
    assert EP["b2"].mac == EP["r2"].mac and EP["b2"].ip == EP["r2"].ip
    assert send(FAB, "b1", ip_pkt(EP["b1"], "10.1.1.2")).endpoints() == [at("b2")]
    assert send(FAB, "r1", ip_pkt(EP["r1"], "10.1.1.2")).endpoints() == [at("r2")]
    assert send(FAB, "r2", ip_pkt(EP["r2"], "10.1.1.1")).endpoints() == [at("r1")]
    assert send(FAB, "b2", ip_pkt(EP["b2"], "10.1.1.1")).endpoints() == [at("b1")]


def test_tunnel_vni_selects_the_tenant():
    ft = send(FAB, "r1", ip_pkt(EP["r1"], "10.1.1.2"))
    assert [p["tun_id"] for _, _, p in ft.wire] == [6001]


def test_broadcast_stays_in_tenant():
    ft = send(FAB, "r1", arp_req(EP["r1"], "10.1.1.99"))
    assert ft.endpoints() == [at("r2")]
    ft = send(FAB, "b1", arp_req(EP["b1"], "10.1.1.99"))
    assert at("r1") not in ft.endpoints() and at("r2") not in ft.endpoints()


def test_proxy_arp_answers_inside_tenant_only():
    # red has no 10.1.1.3 even though blue does: red's request is flooded, not answered
    ft = send(FAB, "r1", arp_req(EP["r1"], "10.1.1.3"))
    assert at("r1") not in ft.endpoints()
    assert at("b3") not in ft.endpoints()


def test_no_routing_between_tenants():
    # red routes to blue's db address: red's VRF has no such route
    ft = send(FAB, "r1", ip_pkt(EP["r1"], "10.1.2.1", dst_mac=ROUTER_MAC))
    assert ft.delivered == [] and ft.wire == []
    # and blue cannot reach red's address space beyond its own network either
    ft = send(FAB, "b1", ip_pkt(EP["b1"], "10.1.1.2", dst_mac=ROUTER_MAC))
    assert ft.endpoints() == [at("b2")]          # routed to blue's own 10.1.1.2, never red's


def test_foreign_vni_from_tunnel_does_not_reach_other_tenant():
    sw = FAB.switches["h2"]
    pkt = ip_pkt(EP["r1"], "10.1.1.2", in_port=TUNNEL_PORT, tun_id=6001)
    ports = sw.trace(pkt).ports()
    assert ports == [3]                          # p-r2 on h2, not p-b2 (1)

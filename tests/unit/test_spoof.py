import pytest

from tests.unit.topo import EP, at, arp_req, fabric, ip_pkt, send

FAB = fabric()
B1 = EP["b1"]


def test_genuine_traffic_passes():
    assert send(FAB, "b1", ip_pkt(B1, "10.1.1.3")).endpoints() == [at("b3")]
    assert send(FAB, "b1", arp_req(B1, "10.1.1.3")).endpoints() == [at("b1")]


@pytest.mark.parametrize("pkt", [
    ip_pkt(B1, "10.1.1.3", eth_src="02:02:0a:01:01:63"),
    ip_pkt(B1, "10.1.1.3", ip_src="10.1.1.99"),
    ip_pkt(B1, "10.1.1.3", ip_src="10.1.1.3"),
    arp_req(B1, "10.1.1.3", arp_spa="10.1.1.99"),
    arp_req(B1, "10.1.1.3", arp_sha="02:02:0a:01:01:63"),
    arp_req(B1, "10.1.1.3", eth_src="02:02:0a:01:01:63", arp_sha="02:02:0a:01:01:63"),
    {"eth_src": B1.mac, "eth_dst": EP["b3"].mac, "eth_type": 0x86DD},
], ids=["mac", "ip", "ip-of-neighbour", "arp_spa", "arp_sha", "arp-mac", "ipv6"])
def test_spoofed_dropped_at_ingress(pkt):
    ft = send(FAB, "b1", pkt)
    assert ft.delivered == [] and ft.wire == []
    (host, tr), = ft.hops
    assert tr.path[-1].table == 0          # dropped by the port's guard

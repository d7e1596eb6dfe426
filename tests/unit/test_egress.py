"""Host access and egress (flows/egress.py) on the simulator: SNAT to the tenant's pvtSubnet
address out of the host port, replies un-SNATed back to the endpoint, nothing new in."""
from flows.engine import compile_snapshot
from flows.pipeline import HOST_PORT, HOST_PORT_MAC, ROUTER_MAC, pvt_tenant_ip
from flows.simulator import Switch
from tests.unit.topo import EP, arp_req, ip_pkt, snapshot

SNAP = snapshot()
OUTSIDE = "192.0.2.10"


def _switch(host="h1"):
    fl, gr = compile_snapshot(SNAP)[host]
    return Switch(fl, gr)


def _out(sw, src="b1", dst=OUTSIDE, sport=41000):
    e = EP[src]
    port = SNAP.ofports[e.host][e.port_name]
    return sw.trace(dict(ip_pkt(e, dst, dst_mac=ROUTER_MAC, sport=sport, dport=80), in_port=port))


def test_outside_traffic_leaves_by_the_host_port_snated_to_the_tenant_address():
    sw = _switch()
    tr = _out(sw)
    (port, pkt), = tr.outputs
    assert port == HOST_PORT and pkt["ip_src"] == pvt_tenant_ip(SNAP.pvt_subnet, 1) == "172.19.0.1"
    assert pkt["eth_dst"] == HOST_PORT_MAC and pkt["ip_dst"] == OUTSIDE
    # red (VRF 300) leaves with its own address, so the host's replies name the tenant
    tr = _out(sw, "r1")
    assert tr.outputs[0][1]["ip_src"] == "172.19.1.44"


def test_replies_come_back_un_snated_and_nothing_new_gets_in():
    sw = _switch()
    _out(sw)
    reply = {"in_port": HOST_PORT, "eth_src": HOST_PORT_MAC, "eth_dst": ROUTER_MAC, "eth_type": 0x0800,
             "ip_src": OUTSIDE, "ip_dst": "172.19.0.1", "nw_ttl": 64, "ip_proto": 6, "tcp_src": 80,
             "tcp_dst": 41000}
    tr = sw.trace(dict(reply))
    (port, pkt), = tr.outputs
    assert port == SNAP.ofports["h1"]["p-b1"] and pkt["ip_dst"] == EP["b1"].ip and pkt["eth_dst"] == EP["b1"].mac
    # a connection opened from the outside (or the host) towards the tenant's address: dropped
    tr = sw.trace(dict(reply, tcp_src=5555, tcp_dst=22))
    assert tr.dropped
    # the kernel's ARP for the tenant's address is answered with the router MAC
    arp = arp_req(EP["b1"], "172.19.0.1", eth_src=HOST_PORT_MAC, arp_sha=HOST_PORT_MAC, arp_spa="172.19.255.254")
    (port, ans), = sw.trace(dict(arp, in_port=HOST_PORT)).outputs
    assert port == HOST_PORT and ans["arp_op"] == 2 and ans["arp_sha"] == ROUTER_MAC


def test_pvt_subnet_itself_never_goes_out():
    assert _out(_switch(), dst="172.19.0.9").dropped

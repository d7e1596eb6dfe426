"""Which peers an agent pre-resolves in OVS's tunnel neighbour cache (agent/tunnel_neigh.py)."""
from agent.tunnel_neigh import TunnelNeighbours, parse_show

HOSTS = [
    {"hostLabel": "h1", "vtepIP": "10.95.0.11", "vtepMAC": "02:00:00:00:00:11"},
    {"hostLabel": "h2", "vtepIP": "10.95.0.12", "vtepMAC": "02:00:00:00:00:12"},
    {"hostLabel": "h3", "vtepIP": "10.95.0.13", "vtepMAC": ""},                 # an older agent
    {"hostLabel": "h4", "vtepIP": "10.77.0.4", "vtepMAC": "02:00:00:00:00:04"},  # behind a router
]

# what OVS 3.1 prints
SHOW = """IP                                            MAC                 Bridge
==========================================================================
10.95.0.12                                    02:00:00:00:00:99   br-phy
10.95.0.13                                    02:00:00:00:00:13   br-phy
"""


def test_wanted_are_on_link_peers_with_a_mac_never_itself():
    n = TunnelNeighbours("/nonexistent.ctl", "h1")
    assert n.wanted(HOSTS) == {}                       # no VTEP interface known yet
    n.configure("br-phy", "10.95.0.0/24")
    want = n.wanted(HOSTS)
    assert want == {"10.95.0.12": "02:00:00:00:00:12"}
    have = parse_show(SHOW)
    assert have == {"10.95.0.12": "02:00:00:00:00:99", "10.95.0.13": "02:00:00:00:00:13"}
    assert n.missing(want, have) == ["10.95.0.12"]     # a stale MAC is as bad as none
    assert n.missing(want, {"10.95.0.12": "02:00:00:00:00:12"}) == []


def test_an_unreachable_switch_is_reported():
    n = TunnelNeighbours("/nonexistent.ctl", "h1")
    n.configure("br-phy", "10.95.0.0/24")
    assert n.sync(HOSTS) == ["10.95.0.12"]             # ovs-appctl cannot reach that target
    assert "tnl/neigh/show failed" in n.problem

"""Which peers an agent pre-resolves in OVS's tunnel neighbour cache (agent/tunnel_neigh.py)."""
from agent.tunnel_neigh import TunnelNeighbours

HOSTS = [
    {"hostLabel": "h1", "vtepIP": "10.95.0.11", "vtepMAC": "02:00:00:00:00:11"},
    {"hostLabel": "h2", "vtepIP": "10.95.0.12", "vtepMAC": "02:00:00:00:00:12"},
    {"hostLabel": "h3", "vtepIP": "10.95.0.13", "vtepMAC": ""},                 # an older agent
    {"hostLabel": "h4", "vtepIP": "10.77.0.4", "vtepMAC": "02:00:00:00:00:04"},  # behind a router
]


def test_wanted_are_on_link_peers_with_a_mac_never_itself():
    n = TunnelNeighbours("/nonexistent.ctl", "h1")
    assert n.wanted(HOSTS) == {}                       # no VTEP interface known yet
    n.configure("br-phy", "10.95.0.0/24")
    assert n.wanted(HOSTS) == {"10.95.0.12": "02:00:00:00:00:12"}
    assert n.missing(HOSTS) == ["10.95.0.12"]


def test_a_failed_set_is_reported_and_retried():
    n = TunnelNeighbours("/nonexistent.ctl", "h1")
    n.configure("br-phy", "10.95.0.0/24")
    assert n.sync(HOSTS) == 0                          # ovs-appctl cannot reach that target
    assert "10.95.0.12" in n.problem and n.missing(HOSTS) == ["10.95.0.12"]

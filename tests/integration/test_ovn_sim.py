"""bench/ovn_sim.py, the OVN 23.03 side of bench/ovn.py: two chassis come up, a port on each
pings the other across Geneve, an ACL added through the NB database stops it, and down()
leaves nothing named after the prefix. Skipped where OVN is not installed (it is not in
scripts/setup.sh: see bench/README.md §6)."""
import pytest

from bench.common import free_port
from bench.ovn_sim import OvnCluster, missing_binaries
from model import ipam
from topologies.cluster import _links, _netns_list

pytestmark = pytest.mark.skipif(bool(missing_binaries()), reason=f"OVN not installed: {missing_binaries()}")


def test_two_chassis_ping_then_acl_drops():
    c = OvnCluster("nwot", "10.87.0.0/24", free_port())
    try:
        c.up(2)
        c.nbctl("ls-add", "s0", "--", "pg-add", "pg_b")
        for host, name, ip in (("h1", "a", "10.70.0.2"), ("h2", "b", "10.70.0.3")):
            mac = ipam.mac_for(ip)
            c.nbctl("lsp-add", "s0", name, "--", "lsp-set-addresses", name, f"{mac} {ip}")
            c.plug(host, name, ip, mac, 24, "10.70.0.1")
        c.nbctl("pg-set-ports", "pg_b", "b")
        c.nbctl("--wait=hv", "sync")
        assert c.exec("a", "ping", "-c3", "-i0.2", "-W1", "10.70.0.3").returncode == 0
        c.nbctl("--wait=hv", "--type=port-group", "acl-add", "pg_b", "to-lport", "1000",
                "outport == @pg_b && icmp4", "drop")
        assert c.exec("a", "ping", "-c2", "-i0.2", "-W1", "10.70.0.3").returncode != 0
        assert c.flow_count("h1") > 0
    finally:
        c.down()
    assert not [n for n in _netns_list() if n.startswith("nwot")]
    assert not [n for n in _links() if n.startswith("nwot")]

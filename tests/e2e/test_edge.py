"""Traffic at the edges of the overlay (issue 15), on one 3-host cluster: the first
packet between hosts, service load balancing, reaching the host and the outside."""
import itertools

import pytest

from tests.e2e.conftest import running_cluster
from tests.procs import wait_until

NET = "/api/v1/networks/"


@pytest.fixture(scope="module")
def cluster():
    with running_cluster("nwx", "10.95.0.0/24") as e:
        yield e


def test_first_ping_between_every_pair_of_hosts_loses_nothing(cluster):
    """A fresh cluster: no two hosts have exchanged a packet yet. The userspace datapath
    would drop the first one towards a VTEP whose MAC it has not resolved; the agents set
    every peer's entry, so a single echo request is answered between every pair."""
    e = cluster
    for label in e.c.state["hosts"]:
        out = e.c.ovs(label).appctl("tnl/neigh/show")
        others = [h["vtep"] for k, h in e.c.state["hosts"].items() if k != label]
        assert all(ip in out for ip in others), (label, out)
    e.post(NET + "default:edge-net/", {"subnet": "10.20.1.0/24", "gateway": "10.20.1.1"})
    for h in ("h1", "h2", "h3"):
        e.c.run(h, f"f{h[1]}", "edge-net")
    wait_until(e.switches_settled, 20, interval=0.2, what="switches hold their flows")
    for a, b in itertools.permutations(("f1", "f2", "f3"), 2):
        p = e.c.exec(a, "ping", "-c", "1", "-W", "2", e.c.ip(b))
        assert p.returncode == 0 and "1 received" in p.stdout, (a, b, p.stdout)

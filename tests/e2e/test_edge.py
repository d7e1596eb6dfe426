"""Traffic at the edges of the overlay (issue 15), on one 3-host cluster: the first
packet between hosts, service load balancing, reaching the host and the outside."""
import itertools
import subprocess
import sys

import pytest
import requests

from tests.e2e.conftest import TCP, running_cluster
from topologies.common import wait_until

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


SVC_NET = "10.30.1"
PROVIDERS = {"p1": "h1", "p2": "h2", "p3": "h3"}


def _serve_named(e, ep, port):
    ns = e.c.state["endpoints"][ep]["ns"]
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, TCP, "serve", str(port), ep],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    e.servers.append(p)
    assert p.stdout.readline().strip() == "listening"


def _names(e, src, ip, port, n):
    p = e.c.exec(src, sys.executable, TCP, "names", ip, str(port), str(n), timeout=120)
    return p.returncode, p.stdout.splitlines()


def _relabel(e, ep, labels):
    """What netplugin does when it learns a container's labels: write them into the record."""
    rec = next(x for x in requests.get(e.url + "/api/v1/endpoints/", timeout=10).json()
               if x["containerID"] == ep)
    body = {k: rec[k] for k in ("tenantName", "networkName", "intfName", "containerID")}
    body.update(host=rec["homingHost"], labels=labels)
    e.post(f"/api/v1/endpoints/{rec['endpointID']}/", body)


@pytest.fixture(scope="module")
def service(cluster):
    """Three providers (one per host, in group web-group) behind 'web': VIP:80 -> :8080."""
    e = cluster
    e.post(NET + "default:svc-net/", {"subnet": f"{SVC_NET}.0/24", "gateway": f"{SVC_NET}.1"})
    e.post("/api/v1/endpointGroups/default:web-group/", {"networkName": "svc-net"})
    for ep, host in PROVIDERS.items():
        e.c.run(host, ep, "svc-net", group="web-group", labels=["app=web", f"name={ep}"])
        _serve_named(e, ep, 8080)
    e.c.run("h1", "c1", "svc-net")
    e.c.run("h2", "c2", "svc-net")
    svc = e.post("/api/v1/serviceLBs/default:web/",
                 {"networkName": "svc-net", "selectors": ["app=web"], "ports": ["80:8080:TCP"]})
    vip = requests.get(e.url + "/api/v1/inspect/serviceLBs/default:web/", timeout=10).json()["Oper"]["serviceVip"]
    wait_until(e.switches_settled, 20, interval=0.2, what="switches hold their flows")
    return {"vip": vip, "svc": svc}


def test_service_spreads_new_connections_over_all_providers(cluster, service):
    e, vip = cluster, service["vip"]
    oper = requests.get(e.url + "/api/v1/inspect/serviceLBs/default:web/", timeout=10).json()["Oper"]
    assert oper["numProviders"] == 3
    for client in ("c1", "c2"):
        rc, got = _names(e, client, vip, 80, 30)
        assert rc == 0 and len(got) == 30, got
        assert set(got) == set(PROVIDERS), got
    # the VIP was resolved by the switch's proxy ARP, with the VIP's own MAC
    from flows.service import vip_mac
    assert vip_mac(vip) in e.c.exec("c1", "ip", "neigh", "show", vip).stdout.lower()
    # the trace follows a packet to the service and names the provider that got it
    ep_id = next(x["endpointID"] for x in requests.get(e.url + "/api/v1/endpoints/", timeout=10).json()
                 if x["containerID"] == "c1")
    t = requests.get(e.url + "/api/v1/trace/", params={"from": ep_id, "to": vip, "protocol": "tcp",
                                                       "port": 80}, timeout=10).json()
    assert t["verdict"] == "delivered" and t["to"]["service"] == "default:web", t
    assert any(st["owner"].startswith("service default:web") for h in t["hops"] for st in h["steps"])


def test_removed_provider_gets_no_new_connection_while_its_own_finishes(cluster, service):
    e, vip = cluster, service["vip"]
    ns = e.c.state["endpoints"]["c1"]["ns"]
    stay = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, TCP, "stay", vip, "80", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = stay.stdout.readline().split()
        assert first[:1] == ["connected"], (first, stay.stderr.read() if stay.poll() is not None else "")
        gone = first[1]
        _relabel(e, gone, [f"name={gone}"])           # no longer app=web: out of the service
        wait_until(lambda: requests.get(e.url + "/api/v1/inspect/serviceLBs/default:web/", timeout=10)
                   .json()["Oper"]["numProviders"] == 2, 10, what="two providers")
        wait_until(e.switches_settled, 20, interval=0.2, what="switches hold their flows")
        rc, got = _names(e, "c1", vip, 80, 30)
        assert rc == 0 and set(got) == set(PROVIDERS) - {gone}, (gone, got)
        out, err = stay.communicate(timeout=30)
        assert stay.returncode == 0 and "echoes" in out, (out, err)    # the established one finished
    finally:
        if stay.poll() is None:
            stay.kill()
            stay.wait()
    _relabel(e, gone, ["app=web", f"name={gone}"])
    wait_until(lambda: requests.get(e.url + "/api/v1/inspect/serviceLBs/default:web/", timeout=10)
               .json()["Oper"]["numProviders"] == 3, 10, what="three providers again")


def test_deny_rule_on_the_providers_group_blocks_the_service(cluster, service):
    e, vip = cluster, service["vip"]
    e.post("/api/v1/policys/default:svc-deny/", {})
    e.post("/api/v1/rules/default:svc-deny:1/", {"direction": "in", "action": "deny", "protocol": "tcp",
                                                 "port": 8080})
    e.post("/api/v1/endpointGroups/default:web-group/?wait=true",
           {"networkName": "svc-net", "policies": ["svc-deny"]})
    wait_until(e.switches_settled, 20, interval=0.2, what="switches hold their flows")
    rc, got = _names(e, "c1", vip, 80, 3)
    assert rc != 0 and len(got) == 3 and all(x.startswith("failed") for x in got), got
    e.post("/api/v1/endpointGroups/default:web-group/?wait=true", {"networkName": "svc-net", "policies": []})
    wait_until(e.switches_settled, 20, interval=0.2, what="switches hold their flows")
    rc, got = _names(e, "c1", vip, 80, 3)
    assert rc == 0 and set(got) <= set(PROVIDERS), got


def _serve_in(e, ns, port):
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, TCP, "serve", str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    e.servers.append(p)
    assert p.stdout.readline().strip() == "listening"


def test_endpoint_reaches_its_host_and_the_outside_and_nothing_gets_in(cluster):
    e = cluster
    c = e.c
    out_ip, h1_ip = c.outside_ip, c.state["hosts"]["h1"]["vtep"]
    wait_until(lambda: "172.19.255.254/16" in c.exec("h1", "ip", "-o", "addr", "show", "dev", "nethost0").stdout,
               20, interval=0.2, what="h1's host port has its pvtSubnet address")
    # the outside namespace, beyond the underlay, and the host itself: ping and TCP
    _serve_in(e, c.outside_ns, 7070)
    _serve_in(e, c.state["hosts"]["h1"]["ns"], 7071)
    assert e.ping("f1", out_ip, 2, 1) and e.ping("f2", out_ip, 2, 1)
    assert e.tcp("f1", out_ip, 7070) and e.tcp("f3", out_ip, 7070)
    assert e.ping("f1", h1_ip, 2, 1) and e.tcp("f1", h1_ip, 7071)
    # the outside saw the host's address (masqueraded), never the endpoint's
    seen = c.exec("outside", "ip", "neigh", "show").stdout
    assert h1_ip in seen, seen
    # nothing opens a connection in: not the host (which has a route to pvtSubnet) ...
    e.serve("f1", 7072)
    assert e.tcp("f1", "127.0.0.1", 7072)                     # the server is up
    assert c.exec("h1", sys.executable, TCP, "connect", "172.19.0.1", "7072", "1.5").returncode != 0
    # ... nor the outside, even given routes through the host to both addresses
    c.exec("outside", "ip", "route", "add", "172.19.0.0/16", "via", h1_ip, check=True)
    c.exec("outside", "ip", "route", "add", "10.20.1.0/24", "via", h1_ip, check=True)
    assert c.exec("outside", sys.executable, TCP, "connect", "172.19.0.1", "7072", "1.5").returncode != 0
    assert c.exec("outside", sys.executable, TCP, "connect", c.ip("f1"), "7072", "1.5").returncode != 0
    assert not e.ping("outside", c.ip("f1"), 1, 1)

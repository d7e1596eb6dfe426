"""Dual stack end to end on one 2-host cluster: real ping6 and TCP over IPv6 between
endpoints on different hosts, routed between two networks of a tenant, never across
tenants (two tenants with the same overlapping subnets), and an IPv6 deny rule that
blocks what it names and nothing else (other ports, other peers, IPv4)."""
import subprocess
import sys

import pytest

from tests.e2e.conftest import TCP, running_cluster
from topologies.common import wait_until

NET_A = {"subnet": "10.61.1.0/24", "gateway": "10.61.1.1", "ipv6Subnet": "fd00:61:1::/64"}
NET_B = {"subnet": "10.61.2.0/24", "gateway": "10.61.2.1", "ipv6Subnet": "fd00:61:2::/64"}


@pytest.fixture(scope="module")
def v6():
    with running_cluster("nw6", "10.86.6.0/24", hosts=2) as e:
        e.post("/api/v1/tenants/blue/", {})
        e.post("/api/v1/networks/default:a/", NET_A)
        e.post("/api/v1/networks/default:b/", NET_B)
        e.post("/api/v1/networks/blue:a/", NET_A)                   # blue overlaps default, v4 and v6
        e.post("/api/v1/policys/default:p6/", {})
        e.post("/api/v1/endpointGroups/default:ga/", {"networkName": "a", "policies": ["p6"]})
        eps = {"a1": ("h1", "a", "default", ""), "a2": ("h2", "a", "default", "ga"),
               "b1": ("h2", "b", "default", ""), "x1": ("h2", "a", "blue", "")}
        for name, (host, net, tenant, group) in eps.items():
            e.c.run(host, name, net, tenant=tenant, group=group)
        for name, port in (("a1", 7000), ("x1", 7000), ("a2", 7000), ("a2", 7001)):
            serve(e, name, port)
        yield e


def serve(e, ep, port):
    """A TCP echo server on both families that first sends its endpoint's name."""
    p = subprocess.Popen(["ip", "netns", "exec", e.c.ep_ns(ep), sys.executable, TCP, "serve", str(port), ep],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    e.servers.append(p)
    assert p.stdout.readline().strip() == "listening"


def names(e, src, ip, port, n=3):
    """The names of the servers n new connections from src reached ("failed ..." for none;
    the servers greet first, so topologies.tcpecho's "connect" does not fit them)."""
    out = e.c.exec(src, sys.executable, TCP, "names", ip, str(port), str(n), timeout=30).stdout
    return out.split("\n")[:n]


def test_addresses_from_ipam(v6):
    e = v6
    assert (e.c.ip("a1"), e.c.ip6("a1")) == ("10.61.1.2", "fd00:61:1::2")
    assert (e.c.ip("a2"), e.c.ip6("a2")) == ("10.61.1.3", "fd00:61:1::3")
    assert e.c.ip6("b1") == "fd00:61:2::2"
    assert e.c.ip6("x1") == "fd00:61:1::2"                        # blue's own, same as a1's
    out = e.c.exec("a1", "ip", "-6", "route", "show", "default").stdout
    assert "default via fd00:61:1::1 dev eth0" in out, out


def test_ping6_and_tcp_between_hosts(v6):
    e = v6
    e.ping_eventually("a1", e.c.ip6("a2"))                        # h1 -> h2 over VXLAN
    assert e.ping("a2", e.c.ip6("a1"), count=3)
    assert e.ping("a1", "fd00:61:1::1")                           # the gateway answers
    assert names(e, "a1", e.c.ip6("a2"), 7000) == ["a2"] * 3
    assert names(e, "a2", e.c.ip6("a1"), 7000) == ["a1"] * 3      # overlapping blue x1 never answers


def test_routed_between_networks_of_a_tenant(v6):
    e = v6
    e.ping_eventually("a1", e.c.ip6("b1"))                        # h1 net a -> h2 net b
    assert names(e, "b1", e.c.ip6("a1"), 7000) == ["a1"] * 3      # h2 net b -> h1 net a
    out = e.c.exec("a1", "ping", "-c", "1", "-W", "1", e.c.ip6("b1")).stdout
    assert "ttl=63" in out or "hlim=63" in out, out                # one routed hop: hop limit 64 - 1


def test_never_across_tenants(v6):
    e = v6
    assert e.ping("x1", "fd00:61:1::1")                           # blue's own gateway: blue works
    assert not e.ping("x1", e.c.ip6("a2"), count=2)               # default's a2: no such address in blue
    assert not e.ping("x1", e.c.ip6("b1"), count=2)               # no route into default's network b
    assert names(e, "x1", e.c.ip6("a2"), 7000, 1) != ["a2"]


def test_ipv6_deny_rule_blocks_only_what_it_names(v6):
    e = v6
    a2 = e.c.ip6("a2")
    assert names(e, "b1", a2, 7001, 1) == ["a2"]                  # open before the rule
    e.post("/api/v1/rules/default:p6:1/", {"direction": "in", "action": "deny", "protocol": "tcp",
                                           "port": 7001, "fromIpAddress": "fd00:61:2::/64"})
    try:
        wait_until(lambda: names(e, "b1", a2, 7001, 1) != ["a2"], 15, what="the IPv6 deny rule")
        assert names(e, "b1", a2, 7000, 1) == ["a2"]              # another port: allowed
        assert names(e, "a1", a2, 7001, 1) == ["a2"]              # another peer: allowed
        assert names(e, "b1", e.c.ip("a2"), 7001, 1) == ["a2"]    # IPv4, same pair and port: allowed
        assert e.ping("b1", a2)                                   # ICMPv6: allowed
    finally:
        e.delete("/api/v1/rules/default:p6:1/")
    wait_until(lambda: names(e, "b1", a2, 7001, 1) == ["a2"], 15, what="the rule removed")

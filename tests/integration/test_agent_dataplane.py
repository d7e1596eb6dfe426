"""Endpoints plugged by netweave-cni carry traffic through br-int and netmaster's flows.

Checks the two traps of the userspace datapath that the CNI plugin must handle: checksum
offload on the endpoint's veth (TCP fails without `ethtool -K tx off`) and the MTU.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.agent_fixtures import (PY, agent_factory, cni, cni_conf, containers, host, host2,  # noqa: E402,F401
                                  netmaster_options)
from topologies.common import wait_until  # noqa: E402
from topologies.ovs import run  # noqa: E402

SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5001)); s.listen(1); s.settimeout(30)
print("listening", flush=True)
c, _ = s.accept(); c.settimeout(30)
n = 0
while True:
    b = c.recv(65536)
    if not b:
        break
    n += len(b)
c.sendall(str(n).encode()); c.close()
"""

CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], 5001), timeout=20)
data = b"x" * (4 * 1024 * 1024)
c.sendall(data); c.shutdown(socket.SHUT_WR)
print(c.recv(100).decode())
"""


def test_two_endpoints_ping_and_tcp(netmaster, host, agent_factory, containers):
    netmaster.create_network()
    agent_factory(host, netmaster.url_for(host), label="dp",
                  controller=netmaster.controller_for(host)).start()
    wait_until(lambda: netmaster.hosts().get("dp", {}).get("state") == "up", 15, what="host up")
    c1, c2 = containers(), containers()
    ips = []
    for i, c in enumerate((c1, c2)):
        rc, res, err = cni(host, "ADD", cni_conf(host, netmaster), "dp%d" % i,
                           "/var/run/netns/" + c)
        assert rc == 0, (res, err)
        ips.append(res["ips"][0]["address"].split("/")[0])
    wait_until(lambda: run("ip", "netns", "exec", c1, "ping", "-c1", "-W1", ips[1],
                           check=False).returncode == 0, 30, what="ping between endpoints")
    # a full-size packet for the endpoint MTU (1450 - 28 bytes of IP+ICMP), don't fragment
    res = run("ip", "netns", "exec", c1, "ping", "-c1", "-W2", "-M", "do", "-s", "1422",
              ips[1], check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    server = subprocess.Popen(["ip", "netns", "exec", c2, PY, "-c", SERVER],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "listening"
        res = run("ip", "netns", "exec", c1, PY, "-c", CLIENT, ips[1], check=False,
                  timeout=60)
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == str(4 * 1024 * 1024)
    finally:
        server.kill()
        server.wait(5)
    for i, c in enumerate((c1, c2)):
        rc, out, err = cni(host, "DEL", cni_conf(host, netmaster), "dp%d" % i,
                           "/var/run/netns/" + c)
        assert rc == 0, (out, err)


def test_two_hosts_over_vxlan(netmaster, host, host2, agent_factory, containers):
    """Two simulated hosts joined by an underlay veth; each host's tunnel IP sits on a
    netdev bridge br-phy (test topology, built with ovs-vsctl). netplugin's flow-based vxlan0
    carries the endpoints' traffic with the endpoint MTU (1450) intact."""
    hosts = [host, host2]
    a, b = hosts
    ul_a, ul_b = "nwul%da" % (os.getpid() % 100000), "nwul%db" % (os.getpid() % 100000)
    run("ip", "link", "add", ul_a, "netns", a.netns, "type", "veth", "peer", "name", ul_b,
        "netns", b.netns)
    netmaster.create_network()
    ips = []
    for i, (h, ul, vtep) in enumerate(((a, ul_a, "10.98.0.1"), (b, ul_b, "10.98.0.2"))):
        h.vsctl("add-br", "br-phy", "--", "set", "Bridge", "br-phy", "datapath_type=netdev")
        h.vsctl("add-port", "br-phy", ul)
        h.ns("ip", "link", "set", ul, "up")
        h.ns("ip", "addr", "add", vtep + "/24", "dev", "br-phy")
        h.ns("ip", "link", "set", "br-phy", "up")
        agent = agent_factory(h, netmaster.url_for(h), label="vx%d" % i,
                              controller=netmaster.controller_for(h))
        agent.args[agent.args.index("--vtep-ip") + 1] = vtep
        agent.start()
    wait_until(lambda: all(netmaster.hosts().get(l, {}).get("state") == "up"
                           for l in ("vx0", "vx1")), 15, what="both hosts up")
    ctrs = [containers(), containers()]
    for i, (h, c) in enumerate(zip(hosts, ctrs)):
        rc, res, err = cni(h, "ADD", cni_conf(h, netmaster), "vx%d" % i,
                           "/var/run/netns/" + c)
        assert rc == 0, (res, err)
        ips.append(res["ips"][0]["address"].split("/")[0])
    c1, c2 = ctrs
    wait_until(lambda: run("ip", "netns", "exec", c1, "ping", "-c1", "-W1", ips[1],
                           check=False).returncode == 0, 30, what="ping across the tunnel")
    res = run("ip", "netns", "exec", c1, "ping", "-c1", "-W2", "-M", "do", "-s", "1422",
              ips[1], check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    server = subprocess.Popen(["ip", "netns", "exec", c2, PY, "-c", SERVER],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "listening"
        res = run("ip", "netns", "exec", c1, PY, "-c", CLIENT, ips[1], check=False,
                  timeout=60)
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == str(4 * 1024 * 1024)
    finally:
        server.kill()
        server.wait(5)
    for i, (h, c) in enumerate(zip(hosts, ctrs)):
        rc, out, err = cni(h, "DEL", cni_conf(h, netmaster), "vx%d" % i,
                           "/var/run/netns/" + c)
        assert rc == 0, (out, err)

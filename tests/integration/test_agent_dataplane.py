"""Endpoints plugged by netweave-cni carry traffic through br-int and netmaster's flows.

Checks the two traps of the userspace datapath that the CNI plugin must handle: checksum
offload on the endpoint's veth (TCP fails without `ethtool -K tx off`) and the MTU.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.agent_fixtures import (PY, agent_factory, cni, cni_conf, containers, host,  # noqa: E402,F401
                                  netmaster, wait_for)
from tests.agent_ovs import run  # noqa: E402

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
    wait_for(lambda: netmaster.hosts().get("dp", {}).get("state") == "up", 15, "host up")
    c1, c2 = containers(), containers()
    ips = []
    for i, c in enumerate((c1, c2)):
        rc, res, err = cni(host, "ADD", cni_conf(host, netmaster), "dp%d" % i,
                           "/var/run/netns/" + c)
        assert rc == 0, (res, err)
        ips.append(res["ips"][0]["address"].split("/")[0])
    wait_for(lambda: run(["ip", "netns", "exec", c1, "ping", "-c1", "-W1", ips[1]],
                         check=False).returncode == 0, 30, "ping between endpoints")
    # a full-size packet for the endpoint MTU (1450 - 28 bytes of IP+ICMP), don't fragment
    res = run(["ip", "netns", "exec", c1, "ping", "-c1", "-W2", "-M", "do", "-s", "1422",
               ips[1]], check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    server = subprocess.Popen(["ip", "netns", "exec", c2, PY, "-c", SERVER],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "listening"
        res = run(["ip", "netns", "exec", c1, PY, "-c", CLIENT, ips[1]], check=False,
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

"""A 3-host simulated cluster shared by the end-to-end tests of one module,
removed afterwards whatever happened."""
import contextlib
import os
import shutil
import subprocess
import sys

import pytest
import requests

from topologies.cluster import Cluster
from topologies.common import free_port, wait_until

TCP = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "topologies", "tcpecho.py")

needs_ovs = pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="Open vSwitch is not installed")


class E2E:
    """Helpers over a Cluster for tests."""

    def __init__(self, c: Cluster):
        self.c = c
        self.servers = []

    @property
    def url(self):
        return self.c.url

    def post(self, path, body):
        r = requests.post(self.url + path, json=body, timeout=10)
        assert r.ok, (path, r.status_code, r.text)
        return r.json()

    def delete(self, path):
        r = requests.delete(self.url + path, timeout=10)
        assert r.status_code in (200, 404), (path, r.status_code, r.text)

    def ping(self, src: str, ip: str, count: int = 2, wait: float = 1.0) -> bool:
        p = self.c.exec(src, "ping", "-c", str(count), "-W", str(wait), "-i", "0.2", ip)
        return p.returncode == 0

    def ping_eventually(self, src, ip, timeout=10.0) -> bool:
        wait_until(lambda: self.ping(src, ip, 1, 1), timeout, interval=0.2, what=f"{src} pings {ip}")
        return True

    def serve(self, ep: str, port: int):
        ns = self.c.state["endpoints"][ep]["ns"]
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, TCP, "serve", str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert p.stdout.readline().strip() == "listening"
        self.servers.append(p)
        return p

    def tcp(self, src: str, ip: str, port: int, timeout: float = 3.0) -> bool:
        return self.c.exec(src, sys.executable, TCP, "connect", ip, str(port), str(timeout)).returncode == 0

    def flows(self, host: str) -> str:
        return self.c.ovs(host).ofctl("dump-flows")

    def switches_settled(self) -> bool:
        """Every connected switch's last reconcile left it equal to what netmaster wants."""
        for h in self.c.state["hosts"]:
            d = requests.get(f"{self.url}/api/v1/flows/{h}/", timeout=10).json()
            if not d.get("connected") or d["diff"]["missing"] or d["diff"]["extra"] or d["diff"]["changed"]:
                return False
        return True

    def stop_servers(self):
        for p in self.servers:
            p.kill()
            p.wait()
        self.servers.clear()


@contextlib.contextmanager
def running_cluster(name: str, underlay: str, hosts: int = 3, **kw):
    """A cluster of `hosts` simulated hosts, removed afterwards whatever happened."""
    if shutil.which("ovs-vswitchd") is None:
        pytest.skip("Open vSwitch is not installed")
    Cluster(name).down()                       # whatever an earlier crashed run left
    c = Cluster(name, underlay=underlay, rest_port=free_port(), of_port=free_port(), **kw)
    e = E2E(c)
    try:
        c.up(hosts, wait=90)
        yield e
    finally:
        e.stop_servers()
        c.down()


@pytest.fixture(scope="module")
def cluster():
    with running_cluster("nwt", "10.96.0.0/24") as e:
        yield e

"""netweave on Mininet: compute hosts are Mininet hosts (own OVS + netplugin), the underlay is
Mininet links and a userspace OVS switch, netmaster is the compute hosts' controller.

Skipped when Mininet (mnexec, the Python package) or Open vSwitch is missing, or not root.
Every name carries the prefix nwmt / nwmu, and everything is removed even when a test fails."""
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

if shutil.which("mnexec") is None:
    pytest.skip("Mininet's mnexec is not installed (apt-get install mininet)", allow_module_level=True)
if shutil.which("ovs-vswitchd") is None:
    pytest.skip("Open vSwitch is not installed", allow_module_level=True)
if os.geteuid() != 0:
    pytest.skip("Mininet needs root", allow_module_level=True)
mininet = pytest.importorskip("mininet", reason="the mininet Python package is not installed")

from topologies.mininet_nodes import workdir_of  # noqa: E402
from topologies.mininet_topos import NetweaveNet, StarTopo  # noqa: E402

TCP = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "topologies", "tcpecho.py")


def _eventually(pred, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    raise AssertionError(f"timed out: {what}")


@pytest.fixture(scope="module")
def star():
    nw = NetweaveNet(StarTopo(2, prefix="nwmt", subnet="10.213.1.0/24"), ready_timeout=60)
    procs = []
    nw.procs = procs
    try:
        nw.start()
        nw.create_network("mn-net", "10.1.2.0/24", "10.1.2.1")
        nw.run_endpoint("nwmt1", "a1", "mn-net")
        nw.run_endpoint("nwmt2", "a2", "mn-net")
        yield nw
    finally:
        for p in procs:
            p.kill()
            p.wait()
        nw.stop()


def _ping(nw, src, ip, count=1, wait=1):
    return nw.exec(src, "ping", "-c", str(count), "-i", "0.2", "-W", str(wait), ip)


def test_compute_hosts_registered_and_connected(star):
    hosts = {h["hostLabel"]: h for h in star.rest("GET", "/api/v1/hosts/")}     # REST from the root namespace
    assert {"nwmt1", "nwmt2"} <= set(hosts) and all(hosts[h]["state"] == "up" for h in ("nwmt1", "nwmt2"))
    for h in star.computes:
        assert h.switch_connected()
        # the VTEP is the Mininet address, on br-phy, whose only port is the Mininet link (or,
        # where the kernel has no netem, the veth to the user-space emulator in front of it)
        assert f"inet {h.IP()}/" in h.cmd("ip -o addr show br-phy")
        ports = h.ovs.vsctl("list-ports", "br-phy").split()
        assert ports == ([h.defaultIntf().name] if h.nw["netem"] == "kernel" else ["ul1"])


def test_ping_and_tcp_between_compute_hosts(star):
    nw = star
    b = nw.ip("a2")
    _eventually(lambda: _ping(nw, "a1", b).returncode == 0, what="a1 pings a2")
    sent_before = int(nw.host("nwmt1").cmd("cat /sys/class/net/nwmt1-eth0/statistics/tx_packets"))
    p = _ping(nw, "a1", b, count=5)
    assert p.returncode == 0, p.stdout
    assert _ping(nw, "a2", nw.ip("a1")).returncode == 0
    # the overlay crossed the Mininet link
    assert int(nw.host("nwmt1").cmd("cat /sys/class/net/nwmt1-eth0/statistics/tx_packets")) >= sent_before + 5
    srv = nw.popen("a2", sys.executable, TCP, "serve", "7100", stdout=subprocess.PIPE,
                   stderr=subprocess.DEVNULL, text=True)
    nw.procs.append(srv)
    assert srv.stdout.readline().strip() == "listening"
    r = nw.exec("a1", sys.executable, TCP, "connect", b, "7100", "3")
    assert r.returncode == 0, r.stderr
    # netmaster's MTU for VXLAN endpoints, and a full-size DF packet gets through the underlay
    assert "mtu 1450" in nw.exec("a1", "ip", "-o", "link", "show", "eth0").stdout
    big = nw.exec("a1", "ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1422", b)
    assert big.returncode == 0, big.stdout


def test_underlay_delay_shapes_the_overlay(star):
    nw = star
    b = nw.ip("a2")
    try:
        nw.set_shaping(delay="10ms")
        _ping(nw, "a1", b, count=1, wait=2)
        # two shaped links, each delaying both directions: at least 4 x 10 ms per round trip
        p = _ping(nw, "a1", b, count=3, wait=2)
        assert p.returncode == 0, p.stdout
        rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", p.stdout)]
        assert rtts and min(rtts) >= 40.0, rtts
    finally:
        nw.set_shaping()
    p = _ping(nw, "a1", b, count=3)
    assert max(float(x) for x in re.findall(r"time=([\d.]+) ms", p.stdout)) < 20.0, p.stdout


def _leftovers(prefix):
    ns = [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
          if n.startswith(prefix)]
    links = [n for n in re.findall(r"^\d+: ([^:@]+)", subprocess.run(["ip", "-o", "link"], capture_output=True,
                                                                      text=True).stdout, re.M)
             if n.startswith(prefix)]
    brs = [b for b in subprocess.run(["ovs-vsctl", "--timeout=5", "list-br"], capture_output=True,
                                     text=True).stdout.split() if b.startswith(prefix)]
    procs = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if workdir_of(prefix) in cmd or re.search(rf"mininet:{prefix}(\d|s\d)", cmd):
                procs.append(cmd)
    return ns + links + brs + procs + ([workdir_of(prefix)] if os.path.exists(workdir_of(prefix)) else [])


def test_stop_removes_everything():
    nw = NetweaveNet(StarTopo(1, prefix="nwmu", subnet="10.213.3.0/24"), ready_timeout=60)
    try:
        nw.start()
        nw.create_network("mn-net", "10.1.2.0/24", "10.1.2.1")
        nw.run_endpoint("nwmu1", "u1", "mn-net")
        assert _leftovers("nwmu")                  # it made namespaces, links, a bridge, processes
    finally:
        nw.stop()
    assert _leftovers("nwmu") == []

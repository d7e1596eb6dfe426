"""The cluster CLI and `make demo`'s tutorial, run as a person would, and
`down` leaving nothing behind, also after the CLI was killed mid-run."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.procs import ROOT
from topologies import docker_host
from topologies.cluster import BASE_DIR
from topologies.common import free_port

needs_ovs = pytest.mark.skipif(not os.path.exists("/usr/sbin/ovs-vswitchd"), reason="Open vSwitch is not installed")


def cli(name, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "topologies.cluster", "--name", name, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def leftovers(name) -> list:
    """Anything of cluster `name` still on the machine."""
    out = []
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    out += [f"netns {l.split()[0]}" for l in ns.splitlines() if l.startswith(f"{name}-")]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    out += [f"link {l.split(':')[1].strip()}" for l in links.splitlines() if f": {name}-" in l]
    workdir = os.path.join(BASE_DIR, name)
    if os.path.exists(workdir):
        out.append(f"dir {workdir}")
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if workdir in cmd:
                out.append(f"process {pid}: {cmd[:80]}")
    return out


@needs_ovs
def test_cli_up_run_exec_ls_down():
    name = "nwc"
    cli(name, "down")
    try:
        r = cli(name, "up", "--hosts", "3", "--underlay", "10.92.0.0/24", "--rest-port", str(free_port()),
                "--of-port", str(free_port()))
        assert r.returncode == 0, r.stderr
        assert "3 hosts up and connected" in r.stdout
        url = json.loads(cli(name, "ls", "--json").stdout)["netmaster"]
        subprocess.run([sys.executable, "-m", "netctl.cli", "--netmaster", url, "net", "create",
                        "--subnet", "10.1.2.0/24", "-g", "10.1.2.1", "n1"], cwd=ROOT, check=True,
                       capture_output=True)
        a = cli(name, "run", "h1", "e1", "--net", "n1")
        b = cli(name, "run", "h3", "e2", "--net", "n1")
        assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
        assert a.stdout.strip() == "10.1.2.2" and b.stdout.strip() == "10.1.2.3"
        ping = cli(name, "exec", "e1", "--", "ping", "-c", "3", "-i", "0.2", "-W", "1", "10.1.2.3")
        assert "bytes from 10.1.2.3" in ping.stdout, ping.stdout
        ls = json.loads(cli(name, "ls", "--json").stdout)
        assert set(ls) == {"netmaster", "hosts", "endpoints"}
        assert [(h["name"], h["state"]) for h in ls["hosts"]] == [("h1", "up"), ("h2", "up"), ("h3", "up")]
        assert [(e["name"], e["host"], e["network"], e["ip"]) for e in ls["endpoints"]] == \
            [("e1", "h1", "n1", "10.1.2.2"), ("e2", "h3", "n1", "10.1.2.3")]
        assert cli(name, "exec", "h2", "--", "ip", "addr", "show", "br-phy").stdout.count("10.92.0.2/24") == 1
    finally:
        assert cli(name, "down").returncode == 0
    assert leftovers(name) == []
    assert cli(name, "down").returncode == 0           # twice is fine


@needs_ovs
def test_down_after_kill_9_mid_run():
    name = "nwk"
    cli(name, "down")
    p = subprocess.Popen([sys.executable, "-m", "topologies.cluster", "--name", name, "up", "--hosts", "3",
                          "--underlay", "10.91.0.0/24", "--rest-port", str(free_port()),
                          "--of-port", str(free_port())], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # kill it while it is building hosts
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(l.startswith("netns nwk-h2") for l in leftovers(name)):
            time.sleep(0.1)
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert leftovers(name), "the interrupted run should have left something to clean"
    finally:
        r = cli(name, "down")
    assert r.returncode == 0, r.stderr
    assert leftovers(name) == []


@needs_ovs
def test_demo_tutorial():
    r = subprocess.run([sys.executable, "-m", "topologies.demo", "--name", "nwdt", "--underlay", "10.90.0.0/24",
                        "--rest-port", str(free_port()), "--of-port", str(free_port())], cwd=ROOT,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "tutorial passed" in r.stdout
    assert "verdict: DROPPED  (by rule default:db-policy:1" in r.stdout
    assert "ok   web1 -> service shop" in r.stdout and "service default:shop: provider " in r.stdout
    assert "ok   v6a (h1) -> v6b fd00:6::3 (h3), ping6" in r.stdout and "TCP over IPv6: yes" in r.stdout
    if docker_host.available():               # the seed's steps with real docker commands too
        assert "[h1]$ docker run -d --net=contiv-net/blue --name=dblue1" in r.stdout, r.stdout[-3000:]
        assert "ok   dweb1 -> ddb" in r.stdout and "FAIL" not in r.stdout
    assert leftovers("nwdt") == []

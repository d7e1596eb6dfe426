"""Clustered netmasters on one simulated cluster: 3 hosts, 3 netmasters (each in
its own namespace), a real 3-member etcd cluster.  kill -9 of the leader under a
continuous ping loses no packet; an endpoint attached 5 s after it pings its
peers; a rule added after the failover is enforced; sampled every 100 ms from
the switches' own controller status, no switch ever has two masters; losing an
etcd member changes nothing visible; a leader cut off from etcd steps down."""
from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
import requests

from tests.e2e.conftest import running_cluster
from topologies.common import wait_until

NET = "hanet"


class RoleSampler:
    """Every 100 ms, each switch's controllers as OVS reports them (connected ones):
    a sample with two masters is a violation."""

    def __init__(self, c):
        self.c = c
        self.samples = 0
        self.violations: list = []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)

    def roles(self, host: str) -> dict:
        out = self.c.ovs(host).vsctl("--format=json", "--columns=target,role,is_connected", "list",
                                     "Controller", check=False)
        try:
            data = json.loads(out)["data"]
        except ValueError:
            return {}
        return {row[0]: row[1] for row in data if row[2] is True}

    def masters(self, host: str) -> list:
        return sorted(t for t, r in self.roles(host).items() if r == "master")

    def _run(self):
        while not self.stop.is_set():
            for h in self.c.state["hosts"]:
                m = self.masters(h)
                if len(m) > 1:
                    self.violations.append((time.monotonic(), h, m))
            self.samples += 1
            self.stop.wait(0.1)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join(10)


def member_get(c, k: int, path: str) -> dict:
    """GET through member k's own address (not the forwarder)."""
    r = subprocess.run(["ip", "netns", "exec", c.member_ns(k), "curl", "-sf", "-m", "3",
                        f"http://{c.member_ip(k)}:{c.state['rest_port']}{path}"],
                       capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else {}


def leader(c) -> tuple[int, int]:
    """(index, generation) of the one live member that says it leads; (0, 0) when none."""
    st = c.cluster_status()
    leads = [m for m in st["members"] if m["state"] == "leader"]
    assert len(leads) <= 1, st
    return (leads[0]["index"], leads[0]["generation"]) if leads else (0, 0)


def master_everywhere(e, k: int) -> bool:
    """Every switch has exactly member k as its connected master."""
    want = f"tcp:{e.c.member_ip(k)}:{e.c.state['of_port']}"
    return all(RoleSampler(e.c).masters(h) == [want] for h in e.c.state["hosts"])


@pytest.fixture(scope="module")
def ha():
    with running_cluster("nwha", "10.94.0.0/24", netmasters=3) as e:
        e.post(f"/api/v1/networks/default:{NET}/", {"subnet": "10.31.0.0/24", "gateway": "10.31.0.1"})
        e.post("/api/v1/policys/default:hapol/", {"tenantName": "default", "policyName": "hapol"})
        e.post("/api/v1/endpointGroups/default:haweb/", {"tenantName": "default", "groupName": "haweb",
                                                         "networkName": NET, "policies": ["hapol"]})
        for ep, h in (("ha1", "h1"), ("ha2", "h2")):
            e.c.run(h, ep, "haweb")
        wait_until(lambda: leader(e.c)[0] != 0, 15, what="a leader")
        e.ping_eventually("ha1", e.c.ip("ha2"))
        yield e


def test_one_leader_every_switch_one_master(ha):
    c = ha.c
    k, gen = leader(c)
    assert gen > 0
    wait_until(lambda: master_everywhere(ha, k), 15, what=f"member {k} master of every switch")
    for h in c.state["hosts"]:                  # every member is a controller of every switch
        assert len(RoleSampler(c).roles(h)) == 3, RoleSampler(c).roles(h)
    info = requests.get(c.url + "/info", timeout=5).json()
    assert info["cluster"]["leader"] == f"{c.member_ip(k)}:{c.state['rest_port']}"
    assert len(info["cluster"]["members"]) == 3
    assert info["leader-ip"] == c.member_ip(k)
    g = requests.get(c.url + "/api/v1/inspect/globals/global/", timeout=5).json()
    assert g["Oper"]["cluster"]["generation"] == gen and len(g["Oper"]["cluster"]["members"]) == 3


def test_leader_kill_no_packet_lost_and_new_leader_serves(ha):
    c = ha.c
    old, old_gen = leader(c)
    wait_until(lambda: master_everywhere(ha, old), 15, what="settled roles")
    with RoleSampler(c) as rs:
        ping = subprocess.Popen(["ip", "netns", "exec", c.ep_ns("ha1"), "ping", "-i", "0.1", "-c", "100",
                                 c.ip("ha2")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.0)
        c.member_stop(old, __import__("signal").SIGKILL)
        t_kill = time.monotonic()
        wait_until(lambda: leader(c)[0] not in (0, old), 15, what="a new leader")
        new, new_gen = leader(c)
        assert new_gen > old_gen
        wait_until(lambda: master_everywhere(ha, new), 15, what=f"member {new} master of every switch")
        # the new master audited the unchanged switches: nothing rewritten
        sw = member_get(c, new, "/api/v1/switches/")
        assert len(sw) == 3 and all(s["lastReconcile"] and s["lastReconcile"]["added"] == 0
                                    and s["lastReconcile"]["modified"] == 0
                                    and s["lastReconcile"]["deleted"] == 0 for s in sw), sw
        time.sleep(max(0.0, 5.0 - (time.monotonic() - t_kill)))
        c.run("h3", "ha3", "haweb")              # attached 5 s after the kill
        for peer in ("ha1", "ha2"):
            ha.ping_eventually("ha3", c.ip(peer), 10)
        out, _ = ping.communicate(timeout=30)
        assert " 0% packet loss" in out, out[-300:]
        # a rule added after the failover is enforced
        ha.serve("ha2", 7777)
        assert ha.tcp("ha1", c.ip("ha2"), 7777)
        r = requests.post(c.url + "/api/v1/rules/default:hapol:1/",
                          json={"tenantName": "default", "policyName": "hapol", "ruleId": "1",
                                "direction": "in", "action": "deny", "protocol": "tcp", "port": 7777,
                                "priority": 10}, timeout=20)
        assert r.ok, r.text
        wait_until(lambda: not ha.tcp("ha1", c.ip("ha2"), 7777, 1.0), 10, what="the rule enforced")
        assert ha.ping("ha1", c.ip("ha2"))       # and only what it names
        ha.stop_servers()
        # netctl sees the new leader through the forwarder
        nc = subprocess.run([".venv/bin/netctl", "--netmaster", c.url, "global", "info"], capture_output=True,
                            text=True, cwd=__import__("tests.procs", fromlist=["ROOT"]).ROOT)
        assert f"Leader: {c.member_ip(new)}:" in nc.stdout, nc.stdout + nc.stderr
    assert rs.samples > 20 and not rs.violations, rs.violations[:3]
    c.member_start(old)                          # back as a follower
    wait_until(lambda: len(member_get(c, new, "/info").get("cluster", {}).get("members", [])) == 3, 15,
               what="the old leader back as a member")
    assert leader(c)[0] == new


def test_one_etcd_member_lost_changes_nothing(ha):
    c = ha.c
    k, gen = leader(c)
    with RoleSampler(c) as rs:
        c.etcd_kill(0)
        try:
            for i in range(5):
                r = requests.post(c.url + f"/api/v1/networks/default:ham{i}/", json={"subnet": f"10.32.{i}.0/24"},
                                  timeout=10)
                assert r.ok, r.text
            assert ha.ping("ha1", c.ip("ha3"))
            time.sleep(3.5)                      # more than a lease: the leadership held
            assert leader(c) == (k, gen)
        finally:
            c.etcd_start(0)
        for i in range(5):
            assert requests.delete(c.url + f"/api/v1/networks/default:ham{i}/", timeout=10).ok
    assert not rs.violations, rs.violations[:3]


def test_leader_cut_off_from_etcd_steps_down(ha):
    c = ha.c
    k, gen = leader(c)
    rule = ["OUTPUT", "-p", "tcp", "-d", c.root_ip, "-m", "multiport", "--dports",
            ",".join(str(p) for p, _ in c.state["etcd_ports"]), "-j", "DROP"]
    with RoleSampler(c) as rs:
        subprocess.run(["ip", "netns", "exec", c.member_ns(k), "iptables", "-A", *rule], check=True)
        try:
            # it steps down (its own word) and another member takes every switch
            wait_until(lambda: member_get(c, k, "/info").get("cluster", {}).get("state") == "follower", 10,
                       what=f"member {k} steps down")
            wait_until(lambda: leader(c)[0] not in (0, k), 15, what="another leader")
            new, new_gen = leader(c)
            assert new_gen > gen
            wait_until(lambda: master_everywhere(ha, new), 15, what=f"member {new} master everywhere")
            assert ha.ping("ha1", c.ip("ha2"))
        finally:
            subprocess.run(["ip", "netns", "exec", c.member_ns(k), "iptables", "-D", *rule], check=False)
    assert not rs.violations, rs.violations[:3]

"""A real etcd cluster of N members on one machine (etcd-server from Debian),
for the simulated cluster and the tests: each member has its own data folder,
client and peer ports on one address, and can be killed and started again.

    c = EtcdCluster("/tmp/x", members=3, host="127.0.0.1").start()
    c.url("/netweave/")        # etcd://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/netweave/
    c.kill(1); c.start_member(1)
    c.stop()
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess

import requests

from topologies.common import free_port, wait_until


class EtcdCluster:
    def __init__(self, workdir: str, members: int = 3, host: str = "127.0.0.1",
                 ports: list[tuple[int, int]] | None = None, name: str = "nw"):
        self.workdir = workdir
        self.host = host
        self.name = name
        self.ports = ports or [(free_port(host), free_port(host)) for _ in range(members)]
        self.procs: dict[int, subprocess.Popen | None] = {}

    @property
    def members(self) -> int:
        return len(self.ports)

    def member_name(self, i: int) -> str:
        return f"{self.name}e{i}"

    def client_url(self, i: int) -> str:
        return f"http://{self.host}:{self.ports[i][0]}"

    def url(self, prefix: str = "/netweave/") -> str:
        """The store URL netmaster takes: every member, comma-separated."""
        return "etcd://" + ",".join(f"{self.host}:{c}" for c, _ in self.ports) + prefix

    def start(self, timeout: float = 30.0) -> "EtcdCluster":
        os.makedirs(self.workdir, exist_ok=True)
        for i in range(self.members):
            self.start_member(i, wait=False)
        self.wait_healthy(timeout)
        return self

    def start_member(self, i: int, wait: bool = True) -> None:
        if self.alive(i):
            return
        exe = shutil.which("etcd") or "/usr/bin/etcd"
        os.makedirs(self.workdir, exist_ok=True)
        client, peer = self.ports[i]
        initial = ",".join(f"{self.member_name(j)}=http://{self.host}:{p}" for j, (_, p) in enumerate(self.ports))
        data = os.path.join(self.workdir, f"{self.member_name(i)}.data")
        log = open(os.path.join(self.workdir, f"{self.member_name(i)}.log"), "ab")
        # raft heartbeat 50 ms, election 500 ms (defaults 100/1000): on one machine, a lost
        # leader member is replaced in well under a second, inside netmaster's lease margin
        self.procs[i] = subprocess.Popen(
            [exe, "--name", self.member_name(i), "--data-dir", data,
             "--listen-client-urls", f"http://{self.host}:{client}",
             "--advertise-client-urls", f"http://{self.host}:{client}",
             "--listen-peer-urls", f"http://{self.host}:{peer}",
             "--initial-advertise-peer-urls", f"http://{self.host}:{peer}",
             "--initial-cluster", initial, "--initial-cluster-token", f"{self.name}-etcd",
             "--initial-cluster-state", "new", "--heartbeat-interval", "50", "--election-timeout", "500"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        if wait:
            wait_until(lambda: self.member_healthy(i), 30, interval=0.1, what=f"etcd member {i} healthy")

    def alive(self, i: int) -> bool:
        p = self.procs.get(i)
        return p is not None and p.poll() is None

    def pid(self, i: int) -> int | None:
        p = self.procs.get(i)
        return p.pid if p is not None and p.poll() is None else None

    def member_healthy(self, i: int) -> bool:
        try:
            r = requests.get(self.client_url(i) + "/health", timeout=1)
            return r.ok and r.json().get("health") == "true"
        except (requests.RequestException, ValueError):
            return False

    def wait_healthy(self, timeout: float = 30.0) -> None:
        wait_until(lambda: all(self.member_healthy(i) for i in range(self.members) if self.alive(i)),
                   timeout, interval=0.1, what="etcd cluster healthy")

    def kill(self, i: int, sig=signal.SIGKILL) -> None:
        p = self.procs.get(i)
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs[i] = None

    def stop(self) -> None:
        for i in range(self.members):
            self.kill(i, signal.SIGTERM)

    def cleanup(self) -> None:
        for i in range(self.members):      # the data goes too: no need to wait for a clean stop
            self.kill(i)
        shutil.rmtree(self.workdir, ignore_errors=True)


__all__ = ["EtcdCluster"]

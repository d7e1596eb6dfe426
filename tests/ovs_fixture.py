"""A private Open vSwitch instance for tests: own DB, sockets, pid and log files
under a temp dir, daemons in the root network namespace (so the bridge reaches a
controller on 127.0.0.1), unique bridge/port names, everything removed on stop().
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    """Poll pred() until truthy; return its value or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


class OvsInstance:
    def __init__(self, tag: str | None = None):
        self.tag = tag or f"nwof{os.getpid() % 100000}"
        self.dir = tempfile.mkdtemp(prefix=f"{self.tag}-")
        self.db = os.path.join(self.dir, "conf.db")
        self.sock = os.path.join(self.dir, "db.sock")
        self.env = dict(os.environ, OVS_RUNDIR=self.dir, OVS_LOGDIR=self.dir,
                        OVS_DBDIR=self.dir, OVS_SYSCONFDIR=self.dir)
        self.bridge = self.tag[:15]
        self.links = {self.bridge}     # tap devices the netdev datapath makes (persistent)

    # -- processes
    def _run(self, *cmd, check=True) -> str:
        p = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr.strip()}")
        return p.stdout

    def start(self) -> "OvsInstance":
        self._run("ovsdb-tool", "create", self.db, SCHEMA)
        self._run("ovsdb-server", self.db, f"--remote=punix:{self.sock}",
                  f"--pidfile={self.dir}/ovsdb-server.pid", "--detach",
                  f"--log-file={self.dir}/ovsdb-server.log",
                  f"--unixctl={self.dir}/ovsdb-server.ctl")
        self.vsctl("--no-wait", "init")
        self.start_switch()
        return self

    def start_switch(self) -> None:
        self._run("ovs-vswitchd", f"unix:{self.sock}",
                  f"--pidfile={self.dir}/ovs-vswitchd.pid", "--detach",
                  f"--log-file={self.dir}/ovs-vswitchd.log",
                  f"--unixctl={self.dir}/ovs-vswitchd.ctl")

    def _pid(self, name: str) -> int | None:
        try:
            with open(os.path.join(self.dir, f"{name}.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def kill_switch(self) -> None:
        """Crash ovs-vswitchd (SIGKILL): the userspace datapath loses every flow."""
        pid = self._pid("ovs-vswitchd")
        if pid:
            _kill_wait(pid, signal.SIGKILL)
            try:
                os.unlink(os.path.join(self.dir, "ovs-vswitchd.pid"))
            except OSError:
                pass

    def stop(self) -> None:
        if self._pid("ovs-vswitchd"):
            try:                        # lets vswitchd remove its tap devices itself
                self._run("ovs-vsctl", f"--db=unix:{self.sock}", "--timeout=10",
                          "--if-exists", "del-br", self.bridge, check=False)
            except subprocess.TimeoutExpired:
                pass
        for name in ("ovs-vswitchd", "ovsdb-server"):
            pid = self._pid(name)
            if pid:
                _kill_wait(pid, signal.SIGTERM)
        for link in self.links:         # whatever a crash or kill left behind
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- tools
    def vsctl(self, *args) -> str:
        return self._run("ovs-vsctl", f"--db=unix:{self.sock}", "--timeout=30", *args)

    def ofctl(self, *args, check=True) -> str:
        cmd, rest = args[0], args[1:]
        return self._run("ovs-ofctl", "-O", "OpenFlow13", cmd,
                         f"unix:{self.dir}/{self.bridge}.mgmt", *rest, check=check)

    def add_bridge(self, dpid: int, controller_port: int) -> None:
        b = self.bridge
        self.vsctl("--", "--may-exist", "add-br", b,
                   "--", "set", "bridge", b, "datapath_type=netdev", "protocols=OpenFlow13",
                   "fail_mode=secure", f"other_config:datapath-id={dpid:016x}",
                   "other_config:disable-in-band=true",
                   "--", "--id=@c", "create", "Controller",
                   f"target=\"tcp:127.0.0.1:{controller_port}\"",
                   "connection_mode=out-of-band", "max_backoff=1000", "inactivity_probe=5000",
                   "--", "set", "bridge", b, "controller=@c")

    def add_internal_port(self, name: str, ofport: int) -> None:
        self.links.add(name)
        self.vsctl("add-port", self.bridge, name, "--", "set", "interface", name,
                   "type=internal", f"ofport_request={ofport}")

    def connected(self) -> bool:
        out = self.vsctl("--columns=is_connected", "list", "Controller")
        return "true" in out

    def dump_flows(self) -> list[dict]:
        """ovs-ofctl dump-flows, parsed: cookie, table, priority, duration,
        n_packets, match (text) and actions (text)."""
        flows = []
        for line in self.ofctl("dump-flows").splitlines():
            line = line.strip()
            if not line.startswith("cookie="):
                continue
            head, actions = line.split(" actions=", 1)
            f = {"actions": actions, "match": ""}
            for part in re.split(r",\s*|\s+", head):
                if not part:
                    continue
                k, _, v = part.partition("=")
                if k in ("cookie",):
                    f[k] = int(v, 16)
                elif k in ("table", "priority", "n_packets", "n_bytes"):
                    f[k] = int(v)
                elif k == "duration":
                    f[k] = float(v.rstrip("s"))
                elif k in ("idle_age", "hard_age", "reset_counts", "send_flow_rem"):
                    pass
                else:
                    f["match"] += ("," if f["match"] else "") + part
            f.setdefault("table", 0)
            f.setdefault("priority", 32768)
            flows.append(f)
        return flows

    def dump_groups(self) -> list[str]:
        return [l.strip() for l in self.ofctl("dump-groups").splitlines()
                if l.strip().startswith("group_id=")]


def _kill_wait(pid: int, sig: int, timeout: float = 10.0) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass

"""A private Open vSwitch instance for tests: own DB, sockets, pid and log files
under a temp dir, daemons in their own network namespace `nwof-<pid>`,
everything removed on stop().

Why a namespace: every userspace (netdev) datapath makes a tap device named
`ovs-netdev`; two ovs-vswitchd in one namespace fight over it and the second
cannot create bridges.  The switch reaches a controller in the root namespace
through a veth pair: `controller_ip` (root side) / `switch_ip` (namespace side),
a /30 derived from the pid.  ovs-vsctl and ovs-ofctl talk over unix sockets in
the temp dir, so they run from the root namespace.
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
        pid = os.getpid()
        self.tag = tag or f"nwof{pid % 100000}"
        self.ns = f"nwof-{pid}"
        self.veth = (f"{self.tag}r"[:15], f"{self.tag}n"[:15])      # root side, ns side
        n = pid % 16384                                             # 169.254.0.0/16 in /30s
        base = f"169.254.{n >> 6}.{(n & 0x3F) << 2}"
        self.controller_ip = base.rsplit(".", 1)[0] + f".{((n & 0x3F) << 2) + 1}"
        self.switch_ip = base.rsplit(".", 1)[0] + f".{((n & 0x3F) << 2) + 2}"
        self.dir = tempfile.mkdtemp(prefix=f"{self.tag}-")
        self.db = os.path.join(self.dir, "conf.db")
        self.sock = os.path.join(self.dir, "db.sock")
        self.env = dict(os.environ, OVS_RUNDIR=self.dir, OVS_LOGDIR=self.dir,
                        OVS_DBDIR=self.dir, OVS_SYSCONFDIR=self.dir)
        self.bridge = self.tag[:15]

    # -- processes
    def _run(self, *cmd, check=True) -> str:
        p = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr.strip()}")
        return p.stdout

    def _netns(self, *cmd, check=True) -> str:
        return self._run("ip", "netns", "exec", self.ns, *cmd, check=check)

    def start(self) -> "OvsInstance":
        self._run("ip", "netns", "add", self.ns)
        vr, vn = self.veth
        self._run("ip", "link", "add", vr, "type", "veth", "peer", "name", vn, "netns", self.ns)
        self._run("ip", "addr", "add", f"{self.controller_ip}/30", "dev", vr)
        self._run("ip", "link", "set", vr, "up")
        self._netns("ip", "addr", "add", f"{self.switch_ip}/30", "dev", vn)
        self._netns("ip", "link", "set", vn, "up")
        self._netns("ip", "link", "set", "lo", "up")
        self._run("ovsdb-tool", "create", self.db, SCHEMA)
        self._netns("ovsdb-server", self.db, f"--remote=punix:{self.sock}",
                  f"--pidfile={self.dir}/ovsdb-server.pid", "--detach",
                  f"--log-file={self.dir}/ovsdb-server.log",
                  f"--unixctl={self.dir}/ovsdb-server.ctl")
        self.vsctl("--no-wait", "init")
        self.start_switch()
        return self

    def start_switch(self) -> None:
        self._netns("ovs-vswitchd", f"unix:{self.sock}",
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
        # the namespace takes its taps and the veth pair with it
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.veth[0]], capture_output=True)
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
                   f"target=\"tcp:{self.controller_ip}:{controller_port}\"",
                   "connection_mode=out-of-band", "max_backoff=1000", "inactivity_probe=5000",
                   "--", "set", "bridge", b, "controller=@c")

    def add_internal_port(self, name: str, ofport: int) -> None:
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

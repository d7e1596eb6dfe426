"""One Open vSwitch instance (ovsdb-server + ovs-vswitchd) with private files,
optionally inside a network namespace: a simulated host's switch. The one
implementation the simulated cluster, the Mininet hosts, the benchmarks and the
tests all start.

Why a namespace per instance: every userspace (netdev) datapath makes a tap device
named `ovs-netdev`; two ovs-vswitchd in one namespace fight over it and the second
cannot create bridges. Tools (ovs-vsctl, ovs-ofctl, ovs-appctl) talk over unix
sockets in the instance's folder, so they run from anywhere.

An instance made with `rundir=None` owns a temporary folder, and with
`create_netns=True` its namespace; `stop()` then removes them, with the daemons and
the veths `link_to_root()` made. `start()` that fails stops what it started.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def run(*cmd, check=True, netns=None, env=None, timeout=60, input=None) -> subprocess.CompletedProcess:
    """Run a command (inside `netns` when given); RuntimeError with its output when it fails."""
    if netns:
        cmd = ("ip", "netns", "exec", netns) + tuple(cmd)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, input=input)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    return p


def sh(*cmd, check=True, netns=None, env=None, timeout=60, input=None) -> str:
    """run(), its standard output."""
    return run(*cmd, check=check, netns=netns, env=env, timeout=timeout, input=input).stdout


def pid_alive(pid: int) -> bool:
    """Whether pid runs. A zombie does not: a daemon that detached (ovsdb-server,
    ovs-vswitchd) is reaped by PID 1 whenever that gets to it, which here took 1.4-2 s
    after the daemon had exited, and kill(pid, 0) succeeds until then."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def kill_pidfile(path: str, sig=signal.SIGTERM, wait: float = 5.0) -> None:
    try:
        pid = int(open(path).read().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, sig)
    except OSError:
        return
    deadline = time.monotonic() + wait
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


class OvsInstance:
    def __init__(self, rundir: str | None = None, netns: str | None = None, create_netns: bool = False,
                 bridge: str = "br-int"):
        self.netns = netns
        self.create_netns = create_netns and netns is not None
        self.owns_dir = rundir is None
        self.dir = rundir or tempfile.mkdtemp(prefix=f"{netns or 'nwovs'}-")
        self.db = os.path.join(self.dir, "conf.db")
        self.sock = os.path.join(self.dir, "db.sock")
        self.bridge = bridge                   # ofctl's default bridge
        self.env = dict(os.environ, OVS_RUNDIR=self.dir, OVS_LOGDIR=self.dir, OVS_DBDIR=self.dir,
                        OVS_SYSCONFDIR=self.dir)
        self.links: list[str] = []             # root-side veths of link_to_root()
        self._netns_made = False

    @property
    def remote(self) -> str:
        return f"unix:{self.sock}"

    def _sh(self, *cmd, check=True):
        return sh(*cmd, check=check, netns=self.netns, env=self.env)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "OvsInstance":
        try:
            os.makedirs(self.dir, exist_ok=True)
            if self.create_netns and not self._netns_made:
                sh("ip", "netns", "add", self.netns)
                self._netns_made = True
                sh("ip", "link", "set", "lo", "up", netns=self.netns)
            if not os.path.exists(self.db):
                sh("ovsdb-tool", "create", self.db, SCHEMA, env=self.env)
            self.start_db()
            self.vsctl("--no-wait", "init")
            self.start_switch()
        except BaseException:
            self.stop()
            raise
        return self

    def start_db(self) -> None:
        self._sh("ovsdb-server", self.db, f"--remote=punix:{self.sock}", "-vconsole:off",
                 f"--pidfile={self.dir}/ovsdb-server.pid", "--detach",
                 f"--log-file={self.dir}/ovsdb-server.log", f"--unixctl={self.dir}/ovsdb-server.ctl")

    def stop_db(self) -> None:
        kill_pidfile(os.path.join(self.dir, "ovsdb-server.pid"))

    def start_switch(self) -> None:
        self._sh("ovs-vswitchd", self.remote, "-vconsole:off", f"--pidfile={self.dir}/ovs-vswitchd.pid",
                 "--detach", f"--log-file={self.dir}/ovs-vswitchd.log", f"--unixctl={self.dir}/ovs-vswitchd.ctl")

    def kill_switch(self, sig=signal.SIGKILL) -> None:
        """Crash ovs-vswitchd (SIGKILL by default): the userspace datapath loses every flow."""
        path = os.path.join(self.dir, "ovs-vswitchd.pid")
        kill_pidfile(path, sig)
        if sig == signal.SIGKILL:
            try:
                os.unlink(path)
            except OSError:
                pass

    def stop(self) -> None:
        """Stop the daemons; remove the veths, namespace and folder this instance made.
        Safe to call twice or after a failed start; never raises."""
        for name in ("ovs-vswitchd", "ovsdb-server"):
            kill_pidfile(os.path.join(self.dir, f"{name}.pid"))
        for link in self.links:              # gone with the namespace, unless it was not ours
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        self.links = []
        if self._netns_made:
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
            self._netns_made = False
        if self.owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def link_to_root(self, root_if: str, root_ip: str, ns_if: str, ns_ip: str, prefixlen: int) -> None:
        """A veth pair from the root namespace (root_if, root_ip) into the instance's
        namespace (ns_if, ns_ip): how its switch and agents reach a netmaster running
        in the root namespace. stop() removes it."""
        sh("ip", "link", "add", root_if, "type", "veth", "peer", "name", ns_if, "netns", self.netns)
        self.links.append(root_if)
        sh("ip", "addr", "add", f"{root_ip}/{prefixlen}", "dev", root_if)
        sh("ip", "link", "set", root_if, "up")
        sh("ip", "addr", "add", f"{ns_ip}/{prefixlen}", "dev", ns_if, netns=self.netns)
        sh("ip", "link", "set", ns_if, "up", netns=self.netns)

    # ------------------------------------------------------------ tools
    def vsctl(self, *args, check=True) -> str:
        return self._sh("ovs-vsctl", f"--db={self.remote}", "--timeout=30", *args, check=check).strip()

    def ofctl(self, cmd: str, *args, bridge: str | None = None, opts=(), check=True) -> str:
        return self._sh("ovs-ofctl", "-O", "OpenFlow13", *opts, cmd,
                        f"unix:{self.dir}/{bridge or self.bridge}.mgmt", *args, check=check)

    def appctl(self, *args, check=True) -> str:
        return self._sh("ovs-appctl", "-t", f"{self.dir}/ovs-vswitchd.ctl", *args, check=check)

    def ns(self, *cmd, check=True, env=None, input=None) -> subprocess.CompletedProcess:
        """A command inside the instance's namespace."""
        return run(*cmd, check=check, netns=self.netns, env=env, input=input)

    def log(self, which: str = "ovs-vswitchd") -> str:
        try:
            return open(os.path.join(self.dir, which + ".log")).read()
        except OSError:
            return ""

    # ------------------------------------------------------------ an OpenFlow bridge
    def add_bridge(self, dpid: int, controller: str, name: str | None = None) -> None:
        """A netdev OpenFlow 1.3 bridge, fail-secure, connected out of band to `controller`
        (an ovs target such as tcp:IP:PORT)."""
        b = name or self.bridge
        self.vsctl("--", "--may-exist", "add-br", b,
                   "--", "set", "bridge", b, "datapath_type=netdev", "protocols=OpenFlow13",
                   "fail_mode=secure", f"other_config:datapath-id={dpid:016x}",
                   "other_config:disable-in-band=true",
                   "--", "--id=@c", "create", "Controller", f"target=\"{controller}\"",
                   "connection_mode=out-of-band", "max_backoff=1000", "inactivity_probe=5000",
                   "--", "set", "bridge", b, "controller=@c")

    def add_internal_port(self, name: str, ofport: int, bridge: str | None = None) -> None:
        self.vsctl("add-port", bridge or self.bridge, name, "--", "set", "interface", name,
                   "type=internal", f"ofport_request={ofport}")

    def connected(self) -> bool:
        return "true" in self.vsctl("--columns=is_connected", "list", "Controller")

    def dump_flows(self, bridge: str | None = None) -> list[dict]:
        """ovs-ofctl dump-flows, parsed: cookie, table, priority, duration, n_packets,
        match (text) and actions (text)."""
        flows = []
        for line in self.ofctl("dump-flows", bridge=bridge).splitlines():
            line = line.strip()
            if not line.startswith("cookie="):
                continue
            head, actions = line.split(" actions=", 1)
            f = {"actions": actions, "match": ""}
            for part in re.split(r",\s*|\s+", head):
                if not part:
                    continue
                k, _, v = part.partition("=")
                if k == "cookie":
                    f[k] = int(v, 16)
                elif k in ("table", "priority", "n_packets", "n_bytes"):
                    f[k] = int(v)
                elif k == "duration":
                    f[k] = float(v.rstrip("s"))
                elif k not in ("idle_age", "hard_age", "reset_counts", "send_flow_rem"):
                    f["match"] += ("," if f["match"] else "") + part
            f.setdefault("table", 0)
            f.setdefault("priority", 32768)
            flows.append(f)
        return flows

    def dump_groups(self, bridge: str | None = None) -> list[str]:
        return [line.strip() for line in self.ofctl("dump-groups", bridge=bridge).splitlines()
                if line.strip().startswith("group_id=")]

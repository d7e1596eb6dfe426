"""One Open vSwitch instance (ovsdb-server + ovs-vswitchd) with private files,
optionally inside a network namespace: a simulated host's switch."""
from __future__ import annotations

import os
import signal
import subprocess
import time

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def sh(*cmd, check=True, netns=None, env=None, timeout=60, input=None) -> str:
    if netns:
        cmd = ("ip", "netns", "exec", netns) + tuple(cmd)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, input=input)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.strip() or p.stdout.strip()}")
    return p.stdout


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


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
    def __init__(self, rundir: str, netns: str | None = None):
        self.dir = rundir
        self.netns = netns
        self.db = os.path.join(rundir, "conf.db")
        self.sock = os.path.join(rundir, "db.sock")
        self.env = dict(os.environ, OVS_RUNDIR=rundir, OVS_LOGDIR=rundir, OVS_DBDIR=rundir)

    @property
    def remote(self) -> str:
        return f"unix:{self.sock}"

    def _sh(self, *cmd, check=True):
        return sh(*cmd, check=check, netns=self.netns, env=self.env)

    def start(self) -> "OvsInstance":
        os.makedirs(self.dir, exist_ok=True)
        if not os.path.exists(self.db):
            self._sh("ovsdb-tool", "create", self.db, SCHEMA)
        self._sh("ovsdb-server", self.db, f"--remote=punix:{self.sock}", "-vconsole:off",
                 f"--pidfile={self.dir}/ovsdb-server.pid", "--detach",
                 f"--log-file={self.dir}/ovsdb-server.log", f"--unixctl={self.dir}/ovsdb-server.ctl")
        self.vsctl("--no-wait", "init")
        self.start_switch()
        return self

    def start_switch(self) -> None:
        self._sh("ovs-vswitchd", self.remote, "-vconsole:off", f"--pidfile={self.dir}/ovs-vswitchd.pid",
                 "--detach", f"--log-file={self.dir}/ovs-vswitchd.log", f"--unixctl={self.dir}/ovs-vswitchd.ctl")

    def kill_switch(self, sig=signal.SIGKILL) -> None:
        kill_pidfile(os.path.join(self.dir, "ovs-vswitchd.pid"), sig)

    def stop(self) -> None:
        for name in ("ovs-vswitchd", "ovsdb-server"):
            kill_pidfile(os.path.join(self.dir, f"{name}.pid"))

    def vsctl(self, *args, check=True) -> str:
        return self._sh("ovs-vsctl", f"--db={self.remote}", "--timeout=30", *args, check=check)

    def ofctl(self, cmd: str, bridge: str = "br-int", *args, check=True) -> str:
        return self._sh("ovs-ofctl", "-O", "OpenFlow13", cmd, f"unix:{self.dir}/{bridge}.mgmt", *args, check=check)

    def appctl(self, *args, check=True) -> str:
        return self._sh("ovs-appctl", "-t", f"{self.dir}/ovs-vswitchd.ctl", *args, check=check)

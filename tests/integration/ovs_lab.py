"""Private Open vSwitch hosts in network namespaces, for integration tests.

Each Host runs its own ovsdb-server and ovs-vswitchd (userspace datapath)
inside namespace `<prefix>-<label>` with OVS_RUNDIR in a temp folder.
Everything started is recorded and torn down by Lab.close(), which tests
call from a finally/fixture so a failure never leaves daemons behind.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Dict, List

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def run(*cmd, env=None, ns=None, check=True) -> subprocess.CompletedProcess:
    if ns:
        cmd = ("ip", "netns", "exec", ns) + cmd
    return subprocess.run(cmd, env=env, check=check, capture_output=True, text=True, timeout=30)


class OvsHost:
    def __init__(self, lab: "Lab", label: str):
        self.label = label
        self.ns = f"{lab.prefix}-{label}"
        self.rundir = tempfile.mkdtemp(prefix=f"{lab.prefix}-{label}-")
        self.env = dict(os.environ, OVS_RUNDIR=self.rundir, OVS_LOGDIR=self.rundir, OVS_DBDIR=self.rundir)
        self.sock = f"unix:{self.rundir}/db.sock"
        self.lab = lab

    def start(self) -> None:
        self.lab.netns_add(self.ns)
        r = self.rundir
        run("ovsdb-tool", "create", f"{r}/conf.db", SCHEMA, env=self.env)
        run("ovsdb-server", f"{r}/conf.db", f"--remote=punix:{r}/db.sock", f"--pidfile={r}/ovsdb.pid",
            "--detach", f"--log-file={r}/ovsdb.log", f"--unixctl={r}/ovsdb.ctl", env=self.env, ns=self.ns)
        self.vsctl("--no-wait", "init")
        run("ovs-vswitchd", self.sock, f"--pidfile={r}/vswitchd.pid", "--detach",
            f"--log-file={r}/vswitchd.log", f"--unixctl={r}/vswitchd.ctl", env=self.env, ns=self.ns)

    def vsctl(self, *args) -> str:
        return run("ovs-vsctl", f"--db={self.sock}", "--timeout=10", *args, env=self.env).stdout

    def ofctl(self, cmd: str, *args, bridge="br-int", opts=()) -> str:
        return run("ovs-ofctl", "-O", "OpenFlow13", *opts, cmd, f"unix:{self.rundir}/{bridge}.mgmt",
                   *args, env=self.env).stdout

    def appctl(self, *args) -> str:
        return run("ovs-appctl", "-t", f"{self.rundir}/vswitchd.ctl", *args, env=self.env).stdout

    def sh(self, *cmd, check=True) -> subprocess.CompletedProcess:
        return run(*cmd, ns=self.ns, check=check)

    def stop(self) -> None:
        for d in ("vswitchd", "ovsdb"):
            run("ovs-appctl", "-t", f"{self.rundir}/{d}.ctl", "exit", env=self.env, check=False)
            pidfile = f"{self.rundir}/{d}.pid"
            try:
                pid = int(open(pidfile).read().strip())
            except (OSError, ValueError):
                continue
            for _ in range(20):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.rundir, ignore_errors=True)


class Lab:
    def __init__(self, prefix: str | None = None):
        self.prefix = prefix or f"nwsim-{os.getpid()}"
        self.namespaces: List[str] = []
        self.hosts: Dict[str, OvsHost] = {}

    def netns_add(self, name: str) -> str:
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        return name

    def host(self, label: str) -> OvsHost:
        h = self.hosts[label] = OvsHost(self, label)   # registered first: close() stops a half-started host
        h.start()
        return h

    def close(self) -> None:
        for h in self.hosts.values():
            h.stop()
        for ns in reversed(self.namespaces):   # deleting a namespace deletes its veths
            run("ip", "netns", "del", ns, check=False)

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

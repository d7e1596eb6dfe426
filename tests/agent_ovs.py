"""Test helpers: private Open vSwitch instances inside network namespaces.

Each ``OvsHost`` is a simulated compute host: a network namespace ``nwag-<pid>-<n>`` with
its own ovsdb-server and ovs-vswitchd (private DB, socket, pid files, logs, OVS_RUNDIR in a
temp dir). ``stop()`` kills both daemons by pid file, deletes the namespace and the temp dir;
it is safe to call twice and never raises.

Tests may use ovs-vsctl / ovs-ofctl to *look*; product code uses the IDL only.
"""
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
_counter = itertools.count()


def run(cmd, check=True, env=None, timeout=30, input=None):
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                         input=input)
    if check and res.returncode != 0:
        raise RuntimeError("%s failed (%d): %s %s" % (" ".join(cmd), res.returncode,
                                                     res.stdout, res.stderr))
    return res


def unique_name(kind="h"):
    return "nwag-%d-%s%d" % (os.getpid(), kind, next(_counter))


def netns_add(name):
    run(["ip", "netns", "add", name])
    run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"])


def netns_del(name):
    # kill anything still living in it would be too broad; the owner stops its daemons first
    run(["ip", "netns", "del", name], check=False)


class OvsHost:
    def __init__(self, name=None):
        self.name = name or unique_name("h")
        self.dir = tempfile.mkdtemp(prefix=self.name + "-")
        self.db = os.path.join(self.dir, "conf.db")
        self.sock = os.path.join(self.dir, "db.sock")
        self.remote = "unix:" + self.sock
        self.env = dict(os.environ, OVS_RUNDIR=self.dir, OVS_LOGDIR=self.dir,
                        OVS_DBDIR=self.dir)
        self.started = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self):
        netns_add(self.name)
        self.started = True
        ns = ["ip", "netns", "exec", self.name]
        run(["ovsdb-tool", "create", self.db, SCHEMA])
        self.start_ovsdb_server()
        self.vsctl("--no-wait", "init")
        run(ns + ["ovs-vswitchd", self.remote,
                  "--pidfile=" + os.path.join(self.dir, "ovs-vswitchd.pid"), "--detach",
                  "--log-file=" + os.path.join(self.dir, "ovs-vswitchd.log"),
                  "--unixctl=" + os.path.join(self.dir, "ovs-vswitchd.ctl")], env=self.env)
        return self

    def start_ovsdb_server(self):
        run(["ip", "netns", "exec", self.name, "ovsdb-server", self.db,
             "--remote=punix:" + self.sock,
             "--pidfile=" + os.path.join(self.dir, "ovsdb-server.pid"), "--detach",
             "--log-file=" + os.path.join(self.dir, "ovsdb-server.log"),
             "--unixctl=" + os.path.join(self.dir, "ovsdb-server.ctl")], env=self.env)

    def stop_ovsdb_server(self):
        self._kill_pidfile("ovsdb-server.pid")

    def _kill_pidfile(self, name):
        path = os.path.join(self.dir, name)
        try:
            pid = int(open(path).read().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self):
        try:
            self._kill_pidfile("ovs-vswitchd.pid")
            self._kill_pidfile("ovsdb-server.pid")
        finally:
            if self.started:
                netns_del(self.name)
                self.started = False
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- looking ------------------------------------------------------------------------------
    def vsctl(self, *args, check=True):
        return run(["ovs-vsctl", "--db=" + self.remote, "--timeout=10"] + list(args),
                   check=check, env=self.env).stdout.strip()

    def ofctl(self, *args, bridge="br-int", check=True):
        mgmt = "unix:" + os.path.join(self.dir, bridge + ".mgmt")
        args = list(args)
        return run(["ovs-ofctl", "-O", "OpenFlow13"] + args[:1] + [mgmt] + args[1:],
                   check=check, env=self.env).stdout

    def ns(self, *cmd, check=True, env=None):
        return run(["ip", "netns", "exec", self.name] + list(cmd), check=check, env=env)

    def log(self, which="ovs-vswitchd"):
        try:
            return open(os.path.join(self.dir, which + ".log")).read()
        except OSError:
            return ""

"""Mininet node classes that turn Mininet hosts into netweave compute hosts.

* ``ComputeHost``: a Mininet host (a network namespace) that runs its own Open vSwitch
  (ovsdb-server + ovs-vswitchd, userspace datapath, private files) and a netplugin.  Its
  Mininet interface (``nwm1-eth0``) becomes the only port of the host's ``br-phy``, and the
  host's Mininet address moves to ``br-phy``: it is the VTEP address, so the overlay's VXLAN
  packets leave through the Mininet link and are shaped by it (TCLink bw/delay/loss).
  The namespace is also given a name (``ip netns attach NAME PID``) so that
  ``ip netns exec NAME ...`` (OVS tools, the CNI plugin) reaches it like any other host.
* ``NetmasterNode``: a Mininet node in the ROOT namespace (``inNamespace=False``) linked to
  the underlay; netmaster listens on 127.0.0.1 (REST for the machine's shell) and on the
  node's underlay address (REST and OpenFlow for the compute hosts).
* ``NwSwitch``: Mininet's OVSSwitch forced to what the underlay needs here: userspace
  datapath, standalone (a learning switch, no controller), optional STP with short timers,
  TX checksum offload off on its ports.

Everything made carries the run's prefix (hosts ``nwm1``, switches ``nwms1``, endpoint
namespaces ``nwme-NAME``) and lives under ``/var/run/netweave/mininet/PREFIX``, so
``cleanup(prefix)`` removes exactly one run's leftovers and nobody else's.

This module only uses the standard library and Mininet, so it also loads under
``/usr/bin/mn``'s own Python.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

from mininet.log import info
from mininet.node import Host, OVSSwitch

from topologies import launch
from topologies.ovs import OvsInstance, kill_pidfile, pid_alive, sh

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_DIR = "/var/run/netweave/mininet"
PREFIX_RE = re.compile(r"^[a-z]{2,5}$")


def workdir_of(prefix: str) -> str:
    return os.path.join(BASE_DIR, prefix)


def netweave_python() -> str:
    """The interpreter that runs netmaster, netplugin and the CNI plugin: $NETWEAVE_PYTHON,
    this one if it has os-ken, else the repository's .venv."""
    env = os.environ.get("NETWEAVE_PYTHON")
    if env:
        return env
    if importlib.util.find_spec("os_ken") and importlib.util.find_spec("eventlet"):
        return sys.executable
    cand = os.path.join(ROOT, ".venv", "bin", "python")
    if os.path.exists(cand):
        return cand
    return sys.executable


def _spawn(cmd: list[str], log: str, pidfile: str) -> int:
    env = dict(os.environ, PYTHONPATH=ROOT)
    with open(log, "ab") as logf:
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT, env=env,
                             stdin=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    with open(pidfile, "w") as f:
        f.write(str(p.pid))
    return p.pid


def _gone(pid: int) -> bool:
    try:                                  # reap it if it is our child (else it stays a zombie)
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass
    return not pid_alive(pid)


def _stop_pidfile(pidfile: str, wait: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `wait` seconds; reaps our own children."""
    try:
        pid = int(open(pidfile).read().strip())
        os.unlink(pidfile)
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + wait
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not _gone(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        time.sleep(0.05)
        _gone(pid)


def offload_off(intf: str, netns: str | None = None) -> None:
    """The userspace datapath forwards partially checksummed packets as they are: TX checksum
    offload (and with it TSO) must be off on every interface whose packets it carries."""
    sh("ethtool", "-K", intf, "tx", "off", "gro", "off", check=False, netns=netns)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return 200 <= r.status < 300
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return False


def http_json(url: str, timeout: float = 2.0, data: dict | None = None, method: str | None = None):
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": "application/json"} if body else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        text = r.read().decode()
    return json.loads(text) if text.strip() else None


class NwConfig(dict):
    """What every node of one run shares (a dict, so it passes through Mininet's params)."""

    @property
    def prefix(self) -> str:
        return self["prefix"]

    @property
    def workdir(self) -> str:
        return workdir_of(self["prefix"])

    @property
    def rest_url(self) -> str:
        """REST from the machine's shell."""
        return f"http://127.0.0.1:{self['rest_port']}"

    @property
    def hosts_url(self) -> str:
        """REST from the compute hosts, over the Mininet underlay."""
        return f"http://{self['netmaster_ip']}:{self['rest_port']}"

    def save(self) -> None:
        os.makedirs(self.workdir, exist_ok=True)
        tmp = os.path.join(self.workdir, "net.json.tmp")
        with open(tmp, "w") as f:
            json.dump(dict(self), f, indent=1)
        os.replace(tmp, os.path.join(self.workdir, "net.json"))


# ------------------------------------------------------------------ switches
class NwSwitch(OVSSwitch):
    """An underlay switch: OVS userspace datapath, standalone learning switch, no controller,
    no passive OpenFlow listener (it would take a machine-wide TCP port); with ``stp=True``
    802.1D STP with 1 s hello, 6 s max age and 4 s forward delay (802.1D's minimum)."""

    def __init__(self, name, **params):
        params.update(datapath="user", failMode="standalone", batch=False, listenPort=None)
        super().__init__(name, **params)

    def start(self, controllers):
        super().start([])
        if self.stp:
            self.vsctl("set", "bridge", self.name, "other_config:stp-hello-time=1",
                       "other_config:stp-max-age=6", "other_config:stp-forward-delay=4")
        for intf in self.intfList():
            if intf.name != "lo":
                offload_off(intf.name)

    def stp_settled(self) -> bool:
        """Every port of this bridge is forwarding or blocking (none listening or learning)."""
        if not self.stp:
            return True
        ports = sh("ovs-vsctl", "--timeout=5", "list-ports", self.name, check=False).split()
        if not ports:
            return False
        out = sh("ovs-vsctl", "--timeout=5", "--columns=name,status", "list", "Port", *ports, check=False)
        states = re.findall(r"stp_state=(\w+)", out)
        return len(states) == len(ports) and all(s in ("forwarding", "blocking") for s in states)


# ------------------------------------------------------------------ netmaster
class NetmasterNode(Host):
    """A node in the root namespace, linked to the underlay, that runs netmaster."""

    def __init__(self, name, **params):
        params["inNamespace"] = False
        super().__init__(name, **params)

    def config(self, nw=None, **params):
        r = super().config(**params)
        if nw is None:
            return r
        nw = NwConfig(nw)
        self.nw = nw
        os.makedirs(nw.workdir, exist_ok=True)
        for intf in self.intfList():
            if intf.name != "lo":
                offload_off(intf.name)
        nw["netmaster_ip"] = self.IP()
        nw.save()
        port = nw["rest_port"]
        # the compute hosts' switches reach the plain OpenFlow listener over Mininet's links:
        # open it on that address (each switch is admitted by the address it connects from)
        cmd = launch.netmaster_cmd(netweave_python(), [f"127.0.0.1:{port}", f"{nw['netmaster_ip']}:{port}"],
                                   nw["of_port"], f"sqlite://{nw.workdir}/state.db",
                                   extra=["--of-listen", nw["netmaster_ip"]])
        pid = _spawn(cmd, os.path.join(nw.workdir, "netmaster.log"), os.path.join(nw.workdir, "netmaster.pid"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                raise RuntimeError(f"netmaster exited; see {nw.workdir}/netmaster.log")
            if http_ok(nw.rest_url + "/version"):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"netmaster did not answer within 30 s; see {nw.workdir}/netmaster.log")
        info(f"*** netweave: netmaster REST {nw.rest_url} (shell), {nw.hosts_url} (underlay), "
             f"OpenFlow :{nw['of_port']}, files {nw.workdir}\n")
        return r

    def terminate(self):
        nw = getattr(self, "nw", None)
        if nw is not None:
            _stop_pidfile(os.path.join(nw.workdir, "netmaster.pid"), 20)
            try:                          # no longer running (logs stay until cleanup or the next start)
                os.unlink(os.path.join(nw.workdir, "net.json"))
            except OSError:
                pass
        super().terminate()


# ------------------------------------------------------------------ compute hosts
class ComputeHost(Host):
    """A Mininet host with its own OVS instance and netplugin."""

    def config(self, nw=None, **params):
        r = super().config(**params)
        if nw is None:
            return r
        nw = NwConfig(nw)
        self.nw = nw
        intf = self.defaultIntf()
        ip, plen = intf.IP(), intf.prefixLen
        self.vtep = ip
        os.makedirs(self.rundir, exist_ok=True)
        # a name for the namespace, so that `ip netns exec NAME` works (OVS tools, CNI)
        sh("ip", "netns", "delete", self.name, check=False)
        sh("ip", "netns", "attach", self.name, str(self.pid))
        self.cmd("ip link set lo up")
        offload_off(intf.name, self.name)
        port = intf.name
        if nw.get("netem") == "user":
            # br-phy -- ul1==ul0 -- [mininet_netem: delay, loss] -- nwm1-eth0 -- the Mininet link
            self.cmd("ip link add ul0 type veth peer name ul1")
            for dev in ("ul0", "ul1"):
                self.cmd(f"ip link set {dev} up")
                offload_off(dev, self.name)
            self.set_netem(nw.get("user_shaping") or {}, signal_it=False)
            _spawn(["ip", "netns", "exec", self.name, netweave_python(), "-m", "topologies.mininet_netem",
                    intf.name, "ul0", "--params", self.netem_params],
                   os.path.join(self.rundir, "netem.log"), os.path.join(self.rundir, "netem.pid"))
            port = "ul1"
        ovs = self.ovs.start()
        ovs.vsctl("--may-exist", "add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
                  "fail_mode=standalone", "--", "--may-exist", "add-port", "br-phy", port)
        self.cmd(f"ip addr flush dev {intf.name}")
        self.cmd(f"ip addr add {ip}/{plen} dev br-phy")
        self.cmd("ip link set br-phy up")
        offload_off("br-phy", self.name)
        # OVS clears the queueing disciplines of a port it adds: put Mininet's back (TCLink)
        if hasattr(intf, "params") and type(intf).__name__ == "TCIntf":
            intf.config(**intf.params)
        offload_off(intf.name, self.name)
        self.agent_start()
        return r

    @property
    def rundir(self) -> str:
        return os.path.join(self.nw.workdir, self.name)

    @property
    def ovs(self) -> OvsInstance:
        return OvsInstance(self.rundir, netns=self.name)

    @property
    def netem_params(self) -> str:
        return os.path.join(self.rundir, "netem.json")

    def set_netem(self, shaping: dict, signal_it: bool = True) -> None:
        """Delay/loss of the user-space emulator on this host's underlay link (both directions)."""
        tmp = self.netem_params + ".tmp"
        with open(tmp, "w") as f:
            json.dump(shaping, f)
        os.replace(tmp, self.netem_params)
        if signal_it:
            try:
                os.kill(int(open(os.path.join(self.rundir, "netem.pid")).read()), signal.SIGHUP)
            except (OSError, ValueError):
                pass

    def agent_start(self) -> None:
        nw = self.nw
        cmd = launch.netplugin_cmd(netweave_python(), self.name, nw.hosts_url, self.name, self.vtep,
                                   self.ovs.remote, f"tcp:{nw['netmaster_ip']}:{nw['of_port']}",
                                   state_dir=os.path.join(self.rundir, "agent"))
        _spawn(cmd, os.path.join(self.rundir, "netplugin.log"), os.path.join(self.rundir, "netplugin.pid"))

    def agent_stop(self) -> None:
        _stop_pidfile(os.path.join(self.rundir, "netplugin.pid"))

    def switch_connected(self) -> bool:
        out = self.ovs.vsctl("--columns=is_connected", "find", "Controller", check=False)
        return "true" in out

    def terminate(self):
        nw = getattr(self, "nw", None)
        if nw is not None:
            self.agent_stop()
            _stop_pidfile(os.path.join(self.rundir, "netem.pid"), 2)
            for ep in _endpoints_of(nw.workdir, self.name):
                _del_netns(ep["ns"])
            self.ovs.stop()
            sh("ip", "netns", "delete", self.name, check=False)
        super().terminate()


def kernel_has_netem() -> bool:
    """Whether tc can make a netem qdisc here (Mininet's TCLink delay and loss need it)."""
    p = subprocess.run(["unshare", "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                       capture_output=True)
    return p.returncode == 0


def delay_ms(delay) -> float:
    """Mininet's delay notation ('5ms', '100us', '1s', 5) in milliseconds."""
    if delay in (None, "", 0):
        return 0.0
    d = str(delay).strip()
    for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if d.endswith(unit):
            return float(d[:-len(unit)]) * f
    return float(d)


# ------------------------------------------------------------------ leftovers
def _endpoints_of(workdir: str, host: str | None = None) -> list[dict]:
    try:
        with open(os.path.join(workdir, "endpoints.json")) as f:
            eps = json.load(f)
    except (OSError, ValueError):
        return []
    return [e for e in eps.values() if host is None or e["host"] == host]


def _netns_list() -> list[str]:
    return [line.split()[0] for line in sh("ip", "netns", "list", check=False).splitlines() if line.strip()]


def _del_netns(ns: str) -> None:
    for pid in sh("ip", "netns", "pids", ns, check=False).split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass
    sh("ip", "netns", "delete", ns, check=False)


def _procs() -> list[tuple[int, str]]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            out.append((int(pid), cmd))
    return out


def cleanup(prefix: str) -> None:
    """Remove what a run with this prefix left behind (a crash, a killed mn), and only that:
    its netmaster, netplugins and OVS instances (by pid file and by its folder in their command
    lines), the Mininet shells of its nodes, its namespaces, links and underlay bridges."""
    if not PREFIX_RE.match(prefix):
        raise ValueError(f"prefix {prefix!r}: 2 to 5 lower-case letters")
    wd = workdir_of(prefix)
    node_re = re.compile(rf"^{prefix}(\d+|s\d+)$")
    me = os.getpid()
    for pid, cmd in _procs():
        if pid == me:
            continue
        m = re.search(r"mininet:(\S+)\s*$", cmd)
        if (wd + "/") in cmd or wd == cmd.strip() or (m and node_re.match(m.group(1))):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    if os.path.isdir(wd):
        for label in os.listdir(wd):
            d = os.path.join(wd, label)
            if os.path.isdir(d):
                for name in ("ovs-vswitchd", "ovsdb-server", "netplugin", "netem"):
                    kill_pidfile(os.path.join(d, f"{name}.pid"), signal.SIGKILL)
        kill_pidfile(os.path.join(wd, "netmaster.pid"), signal.SIGKILL)
    ns_re = re.compile(rf"^{prefix}(\d+|e-.+)$")
    for ns in _netns_list():
        if ns_re.match(ns):
            _del_netns(ns)
    if shutil.which("ovs-vsctl") and os.path.exists("/var/run/openvswitch/db.sock"):
        for br in sh("ovs-vsctl", "--timeout=5", "list-br", check=False).split():
            if re.match(rf"^{prefix}s\d+$", br):
                sh("ovs-vsctl", "--timeout=5", "--if-exists", "del-br", br, check=False)
    link_re = re.compile(rf"^{prefix}(\d+|s\d+)(-eth\d+)?$")
    for line in sh("ip", "-o", "link", "show", check=False).splitlines():
        if ":" in line:
            name = line.split(":")[1].strip().split("@")[0]
            if link_re.match(name):
                sh("ip", "link", "del", name, check=False)
    shutil.rmtree(wd, ignore_errors=True)

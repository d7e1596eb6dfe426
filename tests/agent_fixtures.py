"""pytest fixtures for the agent's integration tests (real OVS, real netmaster).

Topology: netmaster (tests/procs.Netmaster, the `netmaster` fixture of tests/conftest.py with
NETMASTER_FOR_HOSTS) runs in the root namespace listening on 0.0.0.0:<port>. Each simulated
host is a private OVS in its own namespace with a veth `eth0` to the root namespace
(tests/procs.linked_ovs), so the agent and CNI inside reach netmaster at
http://<host.root_ip>:<port> for REST and tcp:<host.root_ip>:<of-port> for OpenFlow.
Containers are namespaces (tests/procs.add_netns). Every fixture cleans up in its finalizer.
"""
import json
import os
import signal
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tests.procs import add_netns, del_netns, linked_ovs  # noqa: E402
from topologies.common import wait_until  # noqa: E402

# The interpreter running the tests has os-ken and eventlet (make test runs the .venv).
PY = sys.executable

# netmaster as simulated hosts need it: REST and OpenFlow reachable from their namespaces
# (through their veths), a silent host declared down after 2 s, logging what the tests read
NETMASTER_FOR_HOSTS = dict(listen_host="0.0.0.0", extra=["--of-listen", "0.0.0.0", "--tls-listen", "none",
                                                         "--host-timeout", "2", "--log-level", "DEBUG"])


def need_root_tools():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, OVS daemons)")
    for tool in ("ovsdb-server", "ovs-vswitchd", "ip", "nsenter"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            pytest.skip("%s is not installed" % tool)


@pytest.fixture
def netmaster_options():
    """For tests/conftest.py's `netmaster` fixture, in the modules that import this."""
    need_root_tools()
    return NETMASTER_FOR_HOSTS


def _host():
    need_root_tools()
    h = linked_ovs("h")
    try:
        yield h
    finally:
        h.stop()


host = pytest.fixture(_host, name="host")
host2 = pytest.fixture(_host, name="host2")


# -- netplugin ----------------------------------------------------------------------------
class AgentProc:
    def __init__(self, host, netmaster_url, label=None, controller=None, interval=0.5,
                 extra=()):
        self.host = host
        self.label = label or host.netns
        self.args = [PY, "-m", "agent.main", "--ovsdb", host.remote,
                     "--netmaster", netmaster_url, "--host-label", self.label,
                     "--vtep-ip", host.ip, "--datapath", "auto",
                     "--heartbeat-interval", str(interval), "--log-level", "DEBUG",
                     "--docker-plugin-dir", "", "--docker-socket", "",
                     "--state-dir", os.path.join(host.dir, "agent-" + self.label)]
        if controller:
            self.args += ["--controller", controller]
        self.args += list(extra)
        self.log_path = os.path.join(host.dir, "netplugin-%s.log" % self.label)
        self.proc = None

    def start(self, wait_bridge=True):
        self.log = open(self.log_path, "a")
        self.log_offset = self.log.tell()
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.host.netns] + self.args,
                                     cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, PYTHONPATH=REPO))
        if wait_bridge:
            wait_until(lambda: "vxlan0" in self.host.vsctl("list-ports", "br-int", check=False),
                       20, what="netplugin to create br-int and vxlan0", detail=self.log_tail)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "log", None):
            self.log.close()
        return self.proc.returncode if self.proc else None

    def log_text(self):
        try:
            return open(self.log_path).read()
        except OSError:
            return ""

    def log_tail(self, chars=4000):
        return "--- netplugin log (%s), last %d chars:\n%s" % (self.log_path, chars, self.log_text()[-chars:])

    def log_since_start(self):
        """What the current run (the last start()) logged."""
        return self.log_text()[getattr(self, "log_offset", 0):]


@pytest.fixture
def agent_factory():
    started = []

    def make(host, netmaster_url, **kw):
        a = AgentProc(host, netmaster_url, **kw)
        started.append(a)
        return a
    try:
        yield make
    finally:
        for a in started:
            a.stop()


# -- containers and the CNI plugin -------------------------------------------------------
@pytest.fixture
def containers():
    made = []

    def make():
        name = add_netns("c")
        made.append(name)
        return name
    try:
        yield make
    finally:
        for name in made:
            del_netns(name)


def cni(host, command, conf, container_id="", netns="", ifname="eth0", extra_env=None,
        inject=None):
    """Run netweave-cni inside ``host``'s namespace; returns (exit code, parsed stdout,
    stderr), as a runtime would: through netplugin when it listens. ``inject`` is Python run
    after importing agent.cni as ``cni`` and before its main(), which then does the work in
    this process: tests use it to make one step fail, without any hook in product code."""
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns,
           "CNI_IFNAME": ifname, "CNI_PATH": "/opt/cni/bin", "PYTHONPATH": REPO,
           "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    env.update(extra_env or {})
    argv = [PY, "-m", "agent.cni_plugin"]
    if inject:
        argv = [PY, "-c", "import sys\nimport agent.cni as cni\n%s\nsys.exit(cni.main())"
                % inject]
    res = subprocess.run(["ip", "netns", "exec", host.netns] + argv,
                         input=json.dumps(conf) if isinstance(conf, dict) else conf,
                         capture_output=True, text=True, env=env, timeout=60)
    out = res.stdout.strip()
    try:
        parsed = json.loads(out) if out else None
    except ValueError:
        raise AssertionError("netweave-cni wrote non-JSON to stdout: %r (stderr %s)" %
                             (out, res.stderr))
    return res.returncode, parsed, res.stderr


def cni_conf(host, nm, network="contiv-net", tenant="default", group="", **kw):
    conf = {"cniVersion": "1.0.0", "name": "netweave", "type": "netweave",
            "netmaster": nm.url_for(host), "tenant": tenant, "network": network,
            "group": group, "ovsdb": host.remote, "bridge": "br-int"}
    conf.update(kw)
    return conf

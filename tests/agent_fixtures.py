"""pytest fixtures for the agent's integration tests (real OVS, real netmaster).

Topology: netmaster runs in the root namespace listening on 0.0.0.0:<port>. Each simulated
host is a namespace ``nwag-<pid>-hN`` with private OVS daemons and a veth ``eth0`` to the
root namespace (100.<x>.<N>.2/24, root side .1;
100.64.0.0/10 is shared-address space, unlikely to clash with other test rigs' 10/8 nets), so the agent and CNI inside reach netmaster
at http://100.<x>.<N>.1:<port> for REST and tcp:100.<x>.<N>.1:<of-port> for OpenFlow.
Containers are namespaces ``nwag-<pid>-cN``. Every fixture cleans up in its finalizer.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tests.agent_ovs import OvsHost, netns_add, netns_del, run, unique_name  # noqa: E402

# The interpreter running the tests has os-ken and eventlet (make test runs the .venv).
PY = sys.executable
NETMASTER_MAIN = os.path.join(REPO, "controller", "main.py")
SUBNET_X = 64 + os.getpid() % 60      # 100.64.0.0/10


from tests.procs import free_port  # noqa: E402,F401 - one way to pick a port


def need_root_tools():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, OVS daemons)")
    for tool in ("ovsdb-server", "ovs-vswitchd", "ip", "nsenter"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            pytest.skip("%s is not installed" % tool)


class Host(OvsHost):
    """An OvsHost with a link to the root namespace."""
    _n = 0

    def start(self):
        super().start()
        Host._n += 1
        self.idx = Host._n
        self.root_ip = "100.%d.%d.1" % (SUBNET_X, self.idx % 250)
        self.ip = "100.%d.%d.2" % (SUBNET_X, self.idx % 250)
        self.root_if = "nwr%d%s" % (os.getpid() % 100000, self.idx)
        run(["ip", "link", "add", self.root_if, "type", "veth", "peer", "name", "eth0",
             "netns", self.name])
        run(["ip", "addr", "add", self.root_ip + "/24", "dev", self.root_if])
        run(["ip", "link", "set", self.root_if, "up"])
        self.ns("ip", "addr", "add", self.ip + "/24", "dev", "eth0")
        self.ns("ip", "link", "set", "eth0", "up")
        return self

    def stop(self):
        try:
            super().stop()   # deleting the namespace deletes eth0 and so its root peer
        finally:
            run(["ip", "link", "del", self.root_if], check=False)


@pytest.fixture
def host():
    need_root_tools()
    h = Host()
    try:
        h.start()
        yield h
    finally:
        h.stop()


@pytest.fixture
def host2():
    need_root_tools()
    h = Host()
    try:
        h.start()
        yield h
    finally:
        h.stop()


# -- netmaster ---------------------------------------------------------------------------
class Netmaster:
    def __init__(self, host_timeout=2.0, of_tls=False):
        self.dir = tempfile.mkdtemp(prefix="nwag-%d-nm-" % os.getpid())
        self.port = free_port()
        self.of_port = free_port()
        # of_tls: OpenFlow over TLS on a port of its own (agents then move their switch to it)
        self.of_tls_port = free_port() if of_tls else None
        self.log_path = os.path.join(self.dir, "netmaster.log")
        self.host_timeout = host_timeout
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [PY, "-m", "controller.main", "--listen", "0.0.0.0:%d" % self.port, "--tls-listen", "none",
             "--pki-dir", os.path.join(self.dir, "pki"),
             # the hosts' switches reach the plain listener through their veths: open it
             # beyond loopback (each switch is then checked by the address it comes from)
             "--of-listen", "0.0.0.0", "--of-port", str(self.of_port),
             "--of-tls-port", str(self.of_tls_port or "none"),
             "--store", "sqlite:///%s/state.db" % self.dir,
             "--host-timeout", str(self.host_timeout), "--log-level", "DEBUG"],
            cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=REPO))
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("netmaster exited: %s" % open(self.log_path).read()[-3000:])
            try:
                self.get("/api/v1/hosts/")
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("netmaster did not answer: %s" % open(self.log_path).read()[-3000:])

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
        subprocess.run(["rm", "-rf", self.dir])

    def url_for(self, host):
        return "http://%s:%d" % (host.root_ip, self.port)

    def controller_for(self, host):
        return "tcp:%s:%d" % (host.root_ip, self.of_port)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def get(self, path):
        return self.call("GET", path)

    def create_network(self, name="contiv-net", subnet="10.1.2.0/24", gateway="10.1.2.1",
                       tenant="default", encap="vxlan"):
        if tenant != "default":
            self.call("POST", "/api/v1/tenants/%s/" % tenant, {"tenantName": tenant})
        return self.call("POST", "/api/v1/networks/%s:%s/" % (tenant, name),
                         {"tenantName": tenant, "networkName": name, "encap": encap,
                          "subnet": subnet, "gateway": gateway, "nwType": "data"})

    def endpoints(self):
        return self.get("/api/v1/endpoints/") or []

    def hosts(self):
        return {h["hostLabel"]: h for h in (self.get("/api/v1/hosts/") or [])}

    def log_text(self):
        try:
            return open(self.log_path).read()
        except OSError:
            return ""


@pytest.fixture
def netmaster():
    if not os.path.exists(NETMASTER_MAIN):
        pytest.skip("netmaster (controller/main.py) is not in this tree yet: "
                    "git merge main when it lands")
    need_root_tools()
    nm = Netmaster()
    try:
        nm.start()
        yield nm
    finally:
        nm.stop()


# -- netplugin ----------------------------------------------------------------------------
class AgentProc:
    def __init__(self, host, netmaster_url, label=None, controller=None, interval=0.5,
                 extra=()):
        self.host = host
        self.label = label or host.name
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
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.host.name] + self.args,
                                     cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, PYTHONPATH=REPO))
        if wait_bridge:
            wait_for(lambda: "vxlan0" in self.host.vsctl("list-ports", "br-int", check=False),
                     20, "netplugin to create br-int and vxlan0", self)
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

    def log_since_start(self):
        """What the current run (the last start()) logged."""
        return self.log_text()[getattr(self, "log_offset", 0):]


def wait_for(cond, timeout, what, agent=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if cond():
                return
        except Exception:
            pass
        time.sleep(0.1)
    extra = ("\nnetplugin log:\n" + agent.log_text()[-4000:]) if agent else ""
    raise AssertionError("timed out waiting for %s%s" % (what, extra))


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
        name = unique_name("c")
        netns_add(name)
        made.append(name)
        return name
    try:
        yield make
    finally:
        for name in made:
            netns_del(name)


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
    res = subprocess.run(["ip", "netns", "exec", host.name] + argv,
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

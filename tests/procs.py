"""Processes the tests start for real: the one netmaster process wrapper, etcd,
and a private Open vSwitch linked to the root namespace. Each one's cleanup runs
even when a test fails."""
from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import requests

from topologies.common import free_port, wait_until
from topologies.ovs import OvsInstance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_instances = itertools.count(1)


class Netmaster:
    """A real netmaster process on free ports: `start()` returns once /readyz says ready
    (or raises with the end of its log), `stop()`/`kill9()` end it, `cleanup()` also
    removes its folder. `listen_host="0.0.0.0"` lets hosts in namespaces reach it
    through their link to the root namespace (`url_for`, `controller_for`)."""

    def __init__(self, store: str | None = None, of_port: int | None = None, extra=(), workdir=None,
                 listen_host="127.0.0.1", preexec_fn=None):
        self.workdir = workdir or tempfile.mkdtemp(prefix="nwtest-nm-")
        self.store = store or f"sqlite://{self.workdir}/state.db"
        self.port = free_port()
        self.of_port = of_port or free_port()
        self.extra = list(extra)
        self.listen_host = listen_host
        self.preexec_fn = preexec_fn          # run in the child before netmaster (a resource limit)
        self.url = f"http://127.0.0.1:{self.port}"
        # the authenticated HTTPS listener, on loopback so that parallel netmasters never collide
        self.tls_port = free_port()
        self.tls_url = f"https://127.0.0.1:{self.tls_port}"
        self.pki = os.path.join(self.workdir, "pki")
        self.proc = None
        self.log_path = os.path.join(self.workdir, "netmaster.log")

    def start(self, timeout: float = 30.0):
        cmd = [sys.executable, "-m", "controller.main", "--listen", f"{self.listen_host}:{self.port}",
               "--of-port", str(self.of_port), "--store", self.store, "--pki-dir", self.pki, *self.extra]
        if "--tls-listen" not in self.extra:
            cmd += ["--tls-listen", f"127.0.0.1:{self.tls_port}"]
        if "--of-tls-port" not in self.extra:   # tests run netmasters side by side: no fixed port
            cmd += ["--of-tls-port", "none"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=self.preexec_fn)
        try:
            wait_until(self._ready, timeout, what=f"netmaster on {self.url} ready", detail=self.log_tail)
        except BaseException:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise AssertionError(f"netmaster exited with code {self.proc.returncode}:\n{self.log_tail()}")
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            return True                       # exited: start() says why
        return requests.get(self.url + "/readyz", timeout=1).status_code == 200

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill9(self):
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        try:
            return open(self.log_path).read()
        except OSError:
            return ""

    def log_tail(self, chars: int = 4000) -> str:
        return f"--- netmaster log ({self.log_path}), last {chars} chars:\n" + self.log()[-chars:]

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # HTTP helpers: responses
    def get(self, path, **kw):
        return requests.get(self.url + path, timeout=10, **kw)

    def post(self, path, body=None, data=None, **kw):
        if data is None:
            return requests.post(self.url + path, json=body, timeout=10, **kw)
        return requests.post(self.url + path, data=data, timeout=10, **kw)

    def put(self, path, body=None, **kw):
        return requests.put(self.url + path, json=body, timeout=10, **kw)

    def delete(self, path, **kw):
        return requests.delete(self.url + path, timeout=10, **kw)

    # JSON helpers: the answer's body, or an AssertionError naming the refusal
    def call(self, method, path, body=None):
        r = requests.request(method, self.url + path, json=body, timeout=10)
        assert r.ok, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def create_network(self, name="contiv-net", subnet="10.1.2.0/24", gateway="10.1.2.1",
                       tenant="default", encap="vxlan"):
        if tenant != "default":
            self.call("POST", f"/api/v1/tenants/{tenant}/", {"tenantName": tenant})
        return self.call("POST", f"/api/v1/networks/{tenant}:{name}/",
                         {"tenantName": tenant, "networkName": name, "encap": encap,
                          "subnet": subnet, "gateway": gateway, "nwType": "data"})

    def endpoints(self) -> list:
        return self.call("GET", "/api/v1/endpoints/") or []

    def hosts(self) -> dict:
        return {h["hostLabel"]: h for h in (self.call("GET", "/api/v1/hosts/") or [])}

    # how a linked OVS host reaches it (listen_host="0.0.0.0")
    def url_for(self, host: OvsInstance) -> str:
        return f"http://{host.root_ip}:{self.port}"

    def controller_for(self, host: OvsInstance) -> str:
        return f"tcp:{host.root_ip}:{self.of_port}"


def linked_ovs(kind: str = "h", bridge: str = "br-int") -> OvsInstance:
    """A started private Open vSwitch in its own namespace `nwt<pid>-<kind><n>`, with a veth
    to the root namespace: `.root_ip` (root side, where netmaster listens) and `.ip` (the
    namespace's `eth0`), a /24 of 100.64.0.0/10 (shared address space, unlikely to clash
    with other rigs' 10/8 nets) per instance. stop() removes it all."""
    n = next(_instances)
    pid = os.getpid()
    ovs = OvsInstance(netns=f"nwt{pid}-{kind}{n}", create_netns=True, bridge=bridge)
    net = f"100.{64 + pid % 60}.{n % 250}"
    ovs.root_ip, ovs.ip = f"{net}.1", f"{net}.2"
    try:
        ovs.start()
        ovs.link_to_root(f"nwr{pid % 100000}{n}"[:15], ovs.root_ip, "eth0", ovs.ip, 24)
    except BaseException:
        ovs.stop()
        raise
    return ovs


def add_netns(kind: str = "c") -> str:
    """A fresh namespace (a "container") `nwt<pid>-<kind><n>` with lo up; del_netns removes it."""
    name = f"nwt{os.getpid()}-{kind}{next(_instances)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True, capture_output=True)
    return name


def del_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


class Etcd:
    """A real single-member etcd-server on loopback ports."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="nwtest-etcd-")
        self.port = free_port()
        self.peer = free_port()
        self.proc = None

    def start(self):
        exe = shutil.which("etcd") or "/usr/bin/etcd"
        self._log = open(os.path.join(self.dir, "etcd.log"), "ab")
        self.proc = subprocess.Popen(
            [exe, "--name", "nwtest", "--data-dir", os.path.join(self.dir, "data"), *self._client_args(),
             "--listen-peer-urls", f"http://127.0.0.1:{self.peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer}",
             "--initial-cluster", f"nwtest=http://127.0.0.1:{self.peer}"],
            stdout=self._log, stderr=subprocess.STDOUT)
        wait_until(self._ready, 30, what="etcd up")
        assert self.proc.poll() is None, open(os.path.join(self.dir, "etcd.log")).read()[-2000:]
        return self

    def _client_args(self) -> list:
        return ["--listen-client-urls", f"http://127.0.0.1:{self.port}",
                "--advertise-client-urls", f"http://127.0.0.1:{self.port}"]

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            return True                       # exited: start() says why
        return requests.get(f"http://127.0.0.1:{self.port}/health", timeout=1).ok

    @property
    def url(self):
        return f"etcd://127.0.0.1:{self.port}"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Lab:
    """Private OVS hosts (`host(label)`, in namespace `<prefix>-<label>`) and plain
    namespaces (`netns_add`), all removed by close(), which runs even when a test fails
    (`with Lab() as lab:`)."""

    def __init__(self, prefix: str | None = None):
        self.prefix = prefix or f"nwt{os.getpid()}-lab{next(_instances)}"
        self.namespaces: list[str] = []
        self.hosts: dict[str, OvsInstance] = {}

    def netns_add(self, name: str) -> str:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        self.namespaces.append(name)
        return name

    def ns_of(self, label: str) -> str:
        return f"{self.prefix}-{label}"

    def host(self, label: str) -> OvsInstance:
        # registered before start: close() stops a half-started host too
        h = self.hosts[label] = OvsInstance(netns=self.ns_of(label), create_netns=True)
        h.start()
        return h

    def close(self) -> None:
        for h in self.hosts.values():
            h.stop()
        for ns in reversed(self.namespaces):   # deleting a namespace deletes its veths
            del_netns(ns)

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""Processes the tests start for real (netmaster, etcd), and cleanup that
runs even when a test fails."""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    """A port nothing listens on, picked below the kernel's ephemeral range
    (32768-60999): a port the kernel hands out there may be taken by some
    outgoing connection before the server binds it (seen: netmaster's
    listen_failed, Address already in use)."""
    for _ in range(500):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


def wait_until(pred, timeout=20.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except Exception as exc:       # noqa: BLE001 - keep polling until the deadline
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Netmaster:
    """A real netmaster process on free ports."""

    def __init__(self, store: str | None = None, of_port: int | None = None, extra=(), workdir=None,
                 netns: str | None = None, listen_host="127.0.0.1"):
        self.workdir = workdir or tempfile.mkdtemp(prefix="nwtest-nm-")
        self.store = store or f"sqlite://{self.workdir}/state.db"
        self.port = free_port()
        self.of_port = of_port or free_port()
        self.extra = list(extra)
        self.listen_host = listen_host
        self.url = f"http://127.0.0.1:{self.port}"
        # the authenticated HTTPS listener, on loopback so that parallel netmasters never collide
        self.tls_port = free_port()
        self.tls_url = f"https://127.0.0.1:{self.tls_port}"
        self.pki = os.path.join(self.workdir, "pki")
        self.proc = None
        self.log_path = os.path.join(self.workdir, "netmaster.log")

    def start(self):
        cmd = [sys.executable, "-m", "controller.main", "--listen", f"{self.listen_host}:{self.port}",
               "--of-port", str(self.of_port), "--store", self.store, "--pki-dir", self.pki, *self.extra]
        if "--tls-listen" not in self.extra:
            cmd += ["--tls-listen", f"127.0.0.1:{self.tls_port}"]
        if "--of-tls-port" not in self.extra:   # tests run netmasters side by side: no fixed port
            cmd += ["--of-tls-port", "none"]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        wait_until(lambda: requests.get(self.url + "/version", timeout=1).ok, 30, what="netmaster up")
        return self

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

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # HTTP helpers
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

"""netmaster on a real etcd that speaks only TLS and asks for a client
certificate, with certificates from netweave's own PKI (netweave/pki.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from netweave.pki import PKI
from store.base import StoreError
from store.etcd_tls import split, with_flags
from tests.procs import ROOT, Etcd, Netmaster
from topologies.common import free_port


class TlsEtcd(Etcd):
    """etcd-server with https client URLs and --client-cert-auth."""

    def __init__(self, pki: PKI, workdir: str):
        super().__init__()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = workdir
        self.cert, self.key = pki.ensure_cert("etcd-server", ips=["127.0.0.1"], dns=["localhost"])
        self.ca = pki.ca_cert

    def _client_args(self) -> list:
        return ["--listen-client-urls", f"https://127.0.0.1:{self.port}",
                "--advertise-client-urls", f"https://127.0.0.1:{self.port}",
                "--cert-file", self.cert, "--key-file", self.key,
                "--client-cert-auth", "--trusted-ca-file", self.ca]

    def _ready(self) -> bool:
        return (b"ready to serve client requests" in open(os.path.join(self.dir, "etcd.log"), "rb").read()
                or self.proc.poll() is not None)


@pytest.fixture(scope="module")
def tls_etcd():
    work = tempfile.mkdtemp(prefix="nwtest-etcdtls-")
    pki = PKI(os.path.join(work, "pki"))
    pki.ensure_ca()
    client = pki.ensure_cert("netmaster-etcd", cn="netmaster", server=False)
    other = PKI(os.path.join(work, "other-pki"))             # a CA etcd does not trust
    other.ensure_ca()
    etcd = TlsEtcd(pki, work)
    try:
        etcd.start()
        yield etcd, pki, client, other
    finally:
        etcd.stop()
        shutil.rmtree(work, ignore_errors=True)


def _start_fails(store: str, extra=()) -> str:
    """netmaster must stop by itself (exit 1) and say why: its log."""
    work = tempfile.mkdtemp(prefix="nwtest-etcdtls-nm-")
    try:
        run = subprocess.run([sys.executable, "-m", "controller.main", "--no-openflow", "--tls-listen", "none",
                              "--listen", f"127.0.0.1:{free_port()}", "--pki-dir", os.path.join(work, "pki"),
                              "--store", store, *extra], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert run.returncode == 1, run.stdout + run.stderr
        return run.stdout + run.stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_netmaster_keeps_its_state_in_etcd_over_tls(tls_etcd):
    etcd, pki, (cert, key), _ = tls_etcd
    url = f"etcds://127.0.0.1:{etcd.port}/tlsprefix?cacert={pki.ca_cert}&cert={cert}&key={key}"
    nm = Netmaster(store=url, extra=["--no-openflow", "--tls-listen", "none"])
    try:
        nm.start()
        assert "tls=on" in nm.log()
        assert nm.post("/api/v1/tenants/overtls/", {}).status_code == 200
        nm.stop()
        # the same state through the flags instead of the URL's query, after a restart
        nm.store = f"etcds://127.0.0.1:{etcd.port}/tlsprefix"
        nm.extra += ["--etcd-cacert", pki.ca_cert, "--etcd-cert", cert, "--etcd-key", key]
        nm.start()
        assert nm.get("/api/v1/tenants/overtls/").status_code == 200
        ready = nm.get("/readyz").json()
        assert ready["checks"]["store"] == "ok", ready
    finally:
        nm.cleanup()
    # the data really is in that etcd (and nowhere else): etcdctl with the same client certificate
    out = subprocess.run(["etcdctl", f"--endpoints=https://127.0.0.1:{etcd.port}", f"--cacert={pki.ca_cert}",
                          f"--cert={cert}", f"--key={key}", "get", "--prefix", "--keys-only", "/tlsprefix/"],
                         capture_output=True, text=True, timeout=20, env=dict(os.environ, ETCDCTL_API="3"))
    assert "/tlsprefix/obj/tenant/overtls" in out.stdout, out


def test_etcd_refuses_or_is_refused_without_the_right_credentials(tls_etcd):
    etcd, pki, (cert, key), other = tls_etcd
    base = f"127.0.0.1:{etcd.port}/tlsprefix"
    # plain http to a TLS port; no client certificate; a CA that did not sign etcd's certificate
    for store in (f"etcd://{base}", f"etcds://{base}?cacert={pki.ca_cert}",
                  f"etcds://{base}?cacert={other.ca_cert}&cert={cert}&key={key}"):
        log = _start_fails(store)
        assert "event=store_failed" in log and "unreachable" in log, (store, log[-1500:])
    # a client certificate from another CA: etcd refuses it
    ocert, okey = other.ensure_cert("intruder", server=False)
    log = _start_fails(f"etcds://{base}?cacert={pki.ca_cert}&cert={ocert}&key={okey}")
    assert "event=store_failed" in log, log[-1500:]
    # a missing file is named before any connection
    log = _start_fails(f"etcds://{base}", ["--etcd-cacert", "/nonexistent/ca.crt"])
    assert "etcd-cacert /nonexistent/ca.crt is not a readable file" in log, log[-1500:]


def test_url_and_flags():
    assert split("etcd://h:1/p") == ("etcd://h:1/p", None)
    base, tls = split("etcds://h:1,h2:2/p")
    assert base == "etcds://h:1,h2:2/p" and tls.cacert is None and tls.client_kwargs()["session"].verify is True
    assert with_flags("sqlite:///x.db", "/ca", "", "") == "sqlite:///x.db"
    assert with_flags("etcd://h:1/p?cacert=/a", "/b", "", "") == "etcd://h:1/p?cacert=%2Fb"
    with pytest.raises(StoreError, match="unknown option 'cafile'"):
        split("etcds://h:1?cafile=/x")
    with pytest.raises(StoreError, match="etcd-cert and etcd-key go together"):
        split("etcds://h:1?cert=/etc/hostname")

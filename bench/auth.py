"""What authentication costs a REST request: a real netmaster (--no-openflow,
SQLite) answering GET /api/v1/tenants/ on its loopback door (no credential)
and on its HTTPS listener (token, keep-alive session, and a new TLS connection
per request), plus a login (one scrypt check).  Prints medians and ratios.

    python -m bench.auth [-n 300]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import requests

from tests.procs import free_port, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(fn, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.auth")
    p.add_argument("-n", type=int, default=300)
    a = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="nwb-auth-")
    port, tls_port = free_port(), free_port()
    log = open(os.path.join(work, "netmaster.log"), "w")
    nm = subprocess.Popen([sys.executable, "-m", "controller.main", "--listen", f"127.0.0.1:{port}",
                           "--tls-listen", f"127.0.0.1:{tls_port}", "--no-openflow",
                           "--store", f"sqlite://{work}/state.db"], cwd=ROOT, stdout=log, stderr=log)
    try:
        plain = f"http://127.0.0.1:{port}"
        tls = f"https://127.0.0.1:{tls_port}"
        wait_until(lambda: requests.get(plain + "/version", timeout=1).ok, 30, what="netmaster up")
        ca = os.path.join(work, "pki", "ca.crt")
        password = open(os.path.join(work, "pki", "admin.password")).read().strip()
        s_plain, s_tls = requests.Session(), requests.Session()
        s_tls.trust_env = False         # else $REQUESTS_CA_BUNDLE overrides the session's CA
        s_tls.verify = ca
        login = timed(lambda: s_tls.post(tls + "/api/v1/auth_proxy/login/",
                                         json={"username": "admin", "password": password}).raise_for_status(), 20)
        token = s_tls.post(tls + "/api/v1/auth_proxy/login/",
                           json={"username": "admin", "password": password}).json()["token"]
        s_tls.headers["Authorization"] = f"Bearer {token}"
        path = "/api/v1/tenants/"
        for s, base in ((s_plain, plain), (s_tls, tls)):
            for _ in range(20):
                s.get(base + path).raise_for_status()          # warm up
        t_plain = timed(lambda: s_plain.get(plain + path).raise_for_status(), a.n)
        t_tls = timed(lambda: s_tls.get(tls + path).raise_for_status(), a.n)
        t_new = timed(lambda: requests.get(tls + path, verify=ca, headers={"Authorization": f"Bearer {token}"})
                      .raise_for_status(), max(20, a.n // 5))
        # what netplugin's client does: urllib, one cached TLS context, a connection per request
        from agent import netmaster_client as nmc
        c = nmc.NetmasterClient(tls, token=token, cafile=ca)
        t_agent = timed(lambda: c.call("GET", path), max(20, a.n // 5))
        print(f"GET {path}: loopback door {t_plain * 1e3:.2f} ms; HTTPS + token, kept-alive "
              f"{t_tls * 1e3:.2f} ms ({t_tls / t_plain:.2f}x); HTTPS + token, new connection each "
              f"{t_new * 1e3:.2f} ms ({t_new / t_plain:.2f}x, requests builds a TLS context per call); "
              f"netplugin's client (cached context, new connection) {t_agent * 1e3:.2f} ms "
              f"({t_agent / t_plain:.2f}x)")
        print(f"login (scrypt n=2^14 check + token): {login * 1e3:.1f} ms median of 20")
    finally:
        nm.terminate()
        nm.wait(15)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

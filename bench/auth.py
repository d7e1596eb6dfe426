"""What authentication costs a REST request: a real netmaster (--no-openflow,
SQLite) answering GET /api/v1/tenants/ on its loopback door (no credential)
and on its HTTPS listener (token, keep-alive session, and a new TLS connection
per request), plus a login (one scrypt check).  Prints medians and ratios.

    python -m bench.auth [-n 300]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import requests

from tests.procs import Netmaster


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
    nm = Netmaster(extra=["--no-openflow"])      # the loopback door and the HTTPS listener
    try:
        nm.start()
        plain, tls = nm.url, nm.tls_url
        ca = os.path.join(nm.pki, "ca.crt")
        password = open(os.path.join(nm.pki, "admin.password")).read().strip()
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
        nm.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

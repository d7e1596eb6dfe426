"""REST: creates per second and p99 latency for 1,000 networks and 10,000
endpoints, on the embedded SQLite store and on a real etcd.

netmaster runs as a subprocess (`python -m controller.main --no-openflow`),
driven by --clients concurrent clients (16 by default, the issue's goal; 1 is
a sequential client such as the CNI plugin or netctl), each with its own
keep-alive requests.Session.  A phase that runs past
its time budget stops early; the table then says how many were measured and
extrapolates the rest linearly (an underestimate if the cost per create grows).

    python -m bench.rest [--quick] [--stores sqlite,etcd] [--profile]
"""
from __future__ import annotations

import argparse
import io
import logging
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import requests

from bench import common
from topologies.common import free_port, wait_until

log = logging.getLogger("bench.rest")
NETS, EPS = 1000, 10000


class Server:
    """netmaster and, for etcd, an etcd-server: both on free loopback ports, in a temp dir."""

    def __init__(self, store: str, profile: bool = False):
        self.kind = store
        self.dir = tempfile.mkdtemp(prefix="nwb-rest-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.profile = os.path.join(self.dir, "netmaster.prof") if profile else None
        self.etcd = self.nm = None

    def start(self) -> "Server":
        if self.kind == "etcd":
            cp, pp = free_port(), free_port()
            self.etcd = subprocess.Popen(
                [shutil.which("etcd") or "/usr/bin/etcd", "--name", "nwb", "--data-dir", f"{self.dir}/etcd",
                 "--listen-client-urls", f"http://127.0.0.1:{cp}", "--advertise-client-urls", f"http://127.0.0.1:{cp}",
                 "--listen-peer-urls", f"http://127.0.0.1:{pp}", "--initial-advertise-peer-urls",
                 f"http://127.0.0.1:{pp}", "--initial-cluster", f"nwb=http://127.0.0.1:{pp}"],
                stdout=open(f"{self.dir}/etcd.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True)
            wait_until(lambda: requests.get(f"http://127.0.0.1:{cp}/health", timeout=1).ok, 30,
                       interval=0.1, what="etcd")
            store = f"etcd://127.0.0.1:{cp}/nwb"
        else:
            store = f"sqlite://{self.dir}/state.db"
        pre = [sys.executable, "-m", "cProfile", "-o", self.profile] if self.profile else [sys.executable]
        self.nm = subprocess.Popen(pre + ["-m", "controller.main", "--listen", f"127.0.0.1:{self.port}", "--tls-listen", "none",
                                          "--no-openflow", "--store", store, "--log-level", "WARNING",
                                          "--host-timeout", "3600"],
                                   cwd=common.ROOT, stdout=open(f"{self.dir}/netmaster.log", "ab"),
                                   stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: requests.get(self.url + "/version", timeout=1).ok, 30, interval=0.1, what="netmaster")
        return self

    def stop(self) -> str:
        """Stop both; returns the netmaster profile's top functions when profiling."""
        for p in (self.nm, self.etcd):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        text = ""
        if self.profile and os.path.exists(self.profile):
            s = io.StringIO()
            st = pstats.Stats(self.profile, stream=s)
            st.sort_stats("cumulative").print_stats("wt-bench|netweave", 25)   # our code, by inclusive time
            st.sort_stats("tottime").print_stats(15)
            text = s.getvalue()
        shutil.rmtree(self.dir, ignore_errors=True)
        return text


def _phase(s: requests.Session, reqs, budget: float, clients: int = 1) -> dict:
    """POST each (url, body), from `clients` threads each with its own session, until
    done or over budget; latencies in seconds."""
    import threading
    lat, t0 = [], time.perf_counter()
    it, lock, errors = iter(reqs), threading.Lock(), []

    def worker(sess):
        while not errors and time.perf_counter() - t0 <= budget:
            with lock:
                nxt = next(it, None)
            if nxt is None:
                return
            url, body = nxt
            t = time.perf_counter()
            r = sess.post(url, json=body, timeout=60)
            dt = time.perf_counter() - t
            if not r.ok:
                errors.append(f"POST {url}: {r.status_code} {r.text[:200]}")
                return
            with lock:
                lat.append(dt)

    sessions = [s] + [requests.Session() for _ in range(clients - 1)]
    threads = [threading.Thread(target=worker, args=(x,)) for x in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for x in sessions[1:]:
        x.close()
    if errors:
        raise RuntimeError(errors[0])
    wall = time.perf_counter() - t0
    return {"done": len(lat), "wall_s": wall, "per_s": len(lat) / wall, "p50_ms": 1000 * common.percentile(lat, 50),
            "p99_ms": 1000 * common.percentile(lat, 99), "max_ms": 1000 * max(lat),
            # the last tenth: does a create get slower as the store fills?
            "last10pct_mean_ms": 1000 * sum(lat[-max(1, len(lat) // 10):]) / max(1, len(lat) // 10)}


def bench_store(kind: str, nets: int, eps: int, budget: float, profile: bool, clients: int = 16) -> dict:
    srv = Server(kind, profile)
    prof = ""
    try:
        srv.start()
        u = srv.url + "/api/v1"
        with requests.Session() as s:
            s.post(f"{u}/hosts/nwbh1/", json={"hostLabel": "nwbh1", "vtepIP": "10.95.1.1",
                                             "dpid": "00004e0000b00001"}, timeout=10).raise_for_status()
            net_reqs = ((f"{u}/networks/default:nwb{i}/",
                         {"tenantName": "default", "networkName": f"nwb{i}",
                          "subnet": f"10.{100 + i // 250}.{i % 250}.0/24", "gateway": f"10.{100 + i // 250}.{i % 250}.1",
                          "encap": "vxlan"}) for i in range(nets))
            n = _phase(s, net_reqs, budget, clients)
            per_net = max(1, -(-eps // n["done"]))          # endpoints spread over the networks made
            ep_reqs = ((f"{u}/endpoints/nwbep{j}/",
                        {"tenantName": "default", "networkName": f"nwb{j // per_net}", "host": "nwbh1",
                         "intfName": f"nwbv{j}"}) for j in range(eps))
            e = _phase(s, ep_reqs, budget, clients)
        for ph, want in ((n, nets), (e, eps)):
            ph["asked"] = want
            ph["complete"] = ph["done"] >= want
            ph["extrapolated_wall_s"] = ph["wall_s"] * want / ph["done"]
    finally:
        prof = srv.stop()
    n["clients"] = e["clients"] = clients
    log.info("%s: networks %.1f/s p99 %.1f ms (%d); endpoints %.1f/s p99 %.1f ms (%d)", kind, n["per_s"],
             n["p99_ms"], n["done"], e["per_s"], e["p99_ms"], e["done"])
    out = {"networks": n, "endpoints": e}
    if prof:
        out["profile"] = prof
    return out


def run(quick=False, stores=("sqlite", "etcd"), profile=False, clients=16) -> dict:
    nets, eps, budget = (200, 1000, 30) if quick else (NETS, EPS, 60)
    out = {k: bench_store(k, nets, eps, budget, profile, clients) for k in stores}
    out["rows"] = rows(out)
    return out


def rows(out) -> list:
    r = []
    for k in ("sqlite", "etcd"):
        if k not in out:
            continue
        for what in ("networks", "endpoints"):
            p = out[k][what]
            note = "" if p["complete"] else (f" (measured {p['done']} of {p['asked']}; all would take "
                                             f"~{p['extrapolated_wall_s']:.0f} s)")
            goal = 1000 if k == "sqlite" else 300
            r.append((f"REST {k}: create {p['asked']} {what}, {p.get('clients', 1)} clients",
                      f"{p['per_s']:.0f}/s, p99 {p['p99_ms']:.1f} ms, last 10% {p['last10pct_mean_ms']:.1f} ms{note}",
                      f">= {goal}/s, p99 < 50 ms", common.verdict(p["per_s"] >= goal and p["p99_ms"] < 50)))
    return r


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.rest")
    p.add_argument("--quick", action="store_true", help="200 networks, 1,000 endpoints")
    p.add_argument("--stores", default="sqlite,etcd")
    p.add_argument("--profile", action="store_true", help="run netmaster under cProfile and print its top functions")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    a = p.parse_args(argv)
    common.setup_logging()
    out = run(a.quick, tuple(a.stores.split(",")), a.profile, a.clients)
    common.save("rest", out)
    print(common.rows_table(out["rows"]))
    for k in ("sqlite", "etcd"):
        if "profile" in out.get(k, {}):
            print(f"--- netmaster profile ({k})\n{out[k]['profile']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

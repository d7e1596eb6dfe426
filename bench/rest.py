"""REST: creates per second and p99 latency for 1,000 networks and 10,000
endpoints, on the embedded SQLite store and on a real etcd, into an empty
tenant and again once the tenant already holds thousands of objects.

netmaster runs as a subprocess (`python -m controller.main --no-openflow`),
driven by --clients concurrent clients (16 by default, the issue's goal; 1 is
a sequential client such as the CNI plugin or netctl), each with its own
keep-alive requests.Session.  Rounds, in one netmaster:
  empty   NETS networks, then EPS endpoints spread over them, into the empty tenant
  fill    --load-networks and --load-endpoints more (timed, not a goal)
  loaded  NETS networks and EPS endpoints more, into the tenant that now holds them all
A phase that runs past its time budget stops early; the table then says how many
were measured and extrapolates the rest linearly (an underestimate if the cost per
create grows).  Each phase also reports netmaster's own CPU per create (utime+stime
of its process): the clients run on the same cores.

    python -m bench.rest [--quick] [--stores sqlite,etcd] [--profile] [--clients 16]
                         [--load-networks 3000] [--load-endpoints 20000] [--door local|tls]
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
LOAD_NETS, LOAD_EPS = 3000, 20000


class Server:
    """netmaster and, for etcd, an etcd-server: both on free loopback ports, in a temp dir."""

    def __init__(self, store: str, profile: bool = False, door: str = "local"):
        self.kind = store
        self.door = door                     # local: the loopback listener; tls: HTTPS with a token
        self.dir = tempfile.mkdtemp(prefix="nwb-rest-")
        self.port = free_port()
        self.tls_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}" if door == "local" else f"https://127.0.0.1:{self.tls_port}"
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
        tls = ["--tls-listen", "none"] if self.door == "local" else \
            ["--tls-listen", f"127.0.0.1:{self.tls_port}", "--pki-dir", f"{self.dir}/pki"]
        self.nm = subprocess.Popen(pre + ["-m", "controller.main", "--listen", f"127.0.0.1:{self.port}", *tls,
                                          "--no-openflow", "--store", store, "--log-level", "WARNING",
                                          "--host-timeout", "3600"],
                                   cwd=common.ROOT, stdout=open(f"{self.dir}/netmaster.log", "ab"),
                                   stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: requests.get(f"http://127.0.0.1:{self.port}/version", timeout=1).ok, 30,
                   interval=0.1, what="netmaster")
        return self

    host_token = ""                      # the host's credential (tls door): hosts and endpoints are its

    def session(self, as_host: bool = False) -> requests.Session:
        """A client of the door measured: on HTTPS, verifying netmaster's CA, with the admin
        token (networks) or the host's credential (its registration and endpoints)."""
        s = requests.Session()
        if self.door == "tls":
            s.verify = f"{self.dir}/pki/ca.crt"
            s.trust_env = False          # else $REQUESTS_CA_BUNDLE replaces the CA named here
            if as_host:
                token = self.host_token
            else:
                with open(f"{self.dir}/pki/admin.token") as f:
                    token = f.read().strip()
            s.headers["Authorization"] = "Bearer " + token
        return s

    def host_session(self) -> requests.Session:
        return self.session(as_host=True)

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
            st.sort_stats("cumulative").print_stats(r"/(model|store|rest|controller)/", 30)   # our code, by inclusive time
            st.sort_stats("tottime").print_stats(15)
            text = s.getvalue()
        shutil.rmtree(self.dir, ignore_errors=True)
        return text


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _phase(s: requests.Session, reqs, budget: float, clients: int = 1, pid: int | None = None,
           session=requests.Session) -> dict:
    """POST each (url, body), from `clients` threads each with its own session, until
    done or over budget; latencies in seconds."""
    import threading
    cpu0 = _cpu(pid) if pid else 0.0
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

    sessions = [s] + [session() for _ in range(clients - 1)]
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
    cpu = _cpu(pid) - cpu0 if pid else float("nan")
    return {"done": len(lat), "wall_s": wall, "server_cpu_ms_per_create": 1000 * cpu / max(1, len(lat)), "per_s": len(lat) / wall, "p50_ms": 1000 * common.percentile(lat, 50),
            "p99_ms": 1000 * common.percentile(lat, 99), "max_ms": 1000 * max(lat),
            # the last tenth: does a create get slower as the store fills?
            "last10pct_mean_ms": 1000 * sum(lat[-max(1, len(lat) // 10):]) / max(1, len(lat) // 10)}


def _net_reqs(u, first, count):
    return ((f"{u}/networks/default:nwb{i}/",
             {"tenantName": "default", "networkName": f"nwb{i}",
              "subnet": f"10.{100 + i // 250}.{i % 250}.0/24", "gateway": f"10.{100 + i // 250}.{i % 250}.1",
              "encap": "vxlan"}) for i in range(first, first + count))


def _ep_reqs(u, first_net, nets, first, count):
    per_net = max(1, -(-count // max(1, nets)))          # spread over the networks made
    return ((f"{u}/endpoints/nwbep{j}/",
             {"tenantName": "default", "networkName": f"nwb{first_net + (j - first) // per_net}",
              "host": "nwbh1", "intfName": f"nwbv{j}"}) for j in range(first, first + count))


def bench_store(kind: str, nets: int, eps: int, budget: float, profile: bool, clients: int = 16,
                load_nets: int = LOAD_NETS, load_eps: int = LOAD_EPS, door: str = "local") -> dict:
    srv = Server(kind, profile, door)
    prof = ""
    out = {}
    try:
        srv.start()
        u = srv.url + "/api/v1"
        pid = srv.nm.pid
        with srv.session() as s, srv.session() as hs:
            if door == "tls":
                r = s.post(f"{u}/auth_proxy/host_credentials/nwbh1/", json={}, timeout=10)
                r.raise_for_status()
                srv.host_token = r.json()["token"]
                hs.headers["Authorization"] = "Bearer " + srv.host_token
            hs.post(f"{u}/hosts/nwbh1/", json={"hostLabel": "nwbh1", "vtepIP": "10.95.1.1",
                                             "dpid": "00004e0000b00001"}, timeout=10).raise_for_status()
            n_made = e_made = 0
            for rnd, (nn, ne) in (("empty", (nets, eps)), ("fill", (load_nets, load_eps)),
                                  ("loaded", (nets, eps))):
                if not nn and not ne:
                    continue
                n = _phase(s, _net_reqs(u, n_made, nn), budget, clients, pid, srv.session)
                e = _phase(hs, _ep_reqs(u, n_made, n["done"], e_made, ne), budget, clients, pid, srv.host_session)
                for ph in (n, e):
                    ph["door"] = door
                for ph, want, held in ((n, nn, (n_made, e_made)), (e, ne, (n_made + n["done"], e_made))):
                    ph.update(asked=want, complete=ph["done"] >= want, clients=clients,
                              extrapolated_wall_s=ph["wall_s"] * want / max(1, ph["done"]),
                              held_networks=held[0], held_endpoints=held[1])
                n_made += n["done"]
                e_made += e["done"]
                out[rnd] = {"networks": n, "endpoints": e}
                log.info("%s %s (tenant held %d networks, %d endpoints): networks %.1f/s p99 %.1f ms "
                         "cpu %.2f ms (%d); endpoints %.1f/s p99 %.1f ms cpu %.2f ms (%d)", kind, rnd,
                         n["held_networks"], n["held_endpoints"], n["per_s"], n["p99_ms"],
                         n["server_cpu_ms_per_create"], n["done"], e["per_s"], e["p99_ms"],
                         e["server_cpu_ms_per_create"], e["done"])
    finally:
        prof = srv.stop()
    if prof:
        out["profile"] = prof
    return out


def run(quick=False, stores=("sqlite", "etcd"), profile=False, clients=16, load_nets=None,
        load_eps=None, door="local") -> dict:
    nets, eps, budget = (200, 1000, 30) if quick else (NETS, EPS, 60)
    ln = (600 if quick else LOAD_NETS) if load_nets is None else load_nets
    le = (3000 if quick else LOAD_EPS) if load_eps is None else load_eps
    out = {k: bench_store(k, nets, eps, budget, profile, clients, ln, le, door) for k in stores}
    out["rows"] = rows(out)
    return out


def rows(out) -> list:
    r = []
    for k in ("sqlite", "etcd"):
        if k not in out:
            continue
        for rnd in ("empty", "loaded"):
            for what in ("networks", "endpoints"):
                if rnd not in out[k]:
                    continue
                p = out[k][rnd][what]
                note = "" if p["complete"] else (f" (measured {p['done']} of {p['asked']}; all would take "
                                                 f"~{p['extrapolated_wall_s']:.0f} s)")
                goal = 1000 if k == "sqlite" else 300
                held = (f"tenant holding {p['held_networks']} nets + {p['held_endpoints']} eps"
                        if rnd == "loaded" else "empty tenant")
                via = "" if p.get("door", "local") == "local" else ", HTTPS + token"
                r.append((f"REST {k}{via}: create {p['asked']} {what}, {p.get('clients', 1)} clients, {held}",
                          f"{p['per_s']:.0f}/s, p99 {p['p99_ms']:.1f} ms, last 10% {p['last10pct_mean_ms']:.1f} ms, "
                          f"server CPU {p['server_cpu_ms_per_create']:.2f} ms/create{note}",
                          f">= {goal}/s, p99 < 50 ms", common.verdict(p["per_s"] >= goal and p["p99_ms"] < 50)))
    return r


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.rest")
    p.add_argument("--quick", action="store_true", help="200 networks, 1,000 endpoints")
    p.add_argument("--stores", default="sqlite,etcd")
    p.add_argument("--profile", action="store_true", help="run netmaster under cProfile and print its top functions")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    p.add_argument("--load-networks", type=int, default=None,
                   help=f"networks added between the empty and the loaded round (default {LOAD_NETS})")
    p.add_argument("--load-endpoints", type=int, default=None,
                   help=f"endpoints added between the empty and the loaded round (default {LOAD_EPS})")
    p.add_argument("--door", choices=("local", "tls"), default="local",
                   help="local: the loopback HTTP listener (default); tls: the HTTPS listener with the admin token")
    a = p.parse_args(argv)
    common.setup_logging()
    out = run(a.quick, tuple(a.stores.split(",")), a.profile, a.clients, a.load_networks, a.load_endpoints,
              a.door)
    common.save("rest" if a.door == "local" else "rest_tls", out)
    print(common.rows_table(out["rows"]))
    for k in ("sqlite", "etcd"):
        if "profile" in out.get(k, {}):
            print(f"--- netmaster profile ({k})\n{out[k]['profile']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

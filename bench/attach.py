"""Attach to first packet: on a 3-host simulated cluster, the time from the
start of cluster.run() (CNI ADD) on h1 or h3 until an endpoint on h2 gets
its first ICMP echo reply from the new endpoint, over N endpoints.

The prober (bench/pinger.py) is one process with a raw socket in the h2
endpoint's namespace, sending an echo every 5 ms from the moment the attach
starts.  IPAM gives the lowest free address, so the new endpoint's address
is known before its CNI ADD; a static neighbour entry (its MAC derives from
the address) keeps the prober's own ARP retries out of the figure.  The new
endpoint's reply still resolves the prober by ARP (answered by the proxy-ARP
flows on its own host).

With --docker (where docker.io is installed) each host also runs a dockerd whose network
driver is netplugin, and the same is measured for `docker run -d --net NET` beside CNI.

With --populate P (issue 12: "the same with 10k endpoints already in the tenant as with
none") the n attaches are measured twice in one cluster: first in the empty tenant, then
after P more endpoints of the tenant (10 more networks, spread over the 3 hosts: REST
records through the live netmaster, each with a tap link of its name in its host's
namespace so netplugin keeps it) once every switch realized them; the table gives both
and their ratio.

    python -m bench.attach [-n 100] [--docker] [--populate 10000]
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import subprocess
import sys
import time

import requests

from bench import attach_trace, common
from model import ipam
from topologies import docker_host
from topologies.cluster import Cluster
from topologies.common import free_port, wait_until

log = logging.getLogger("bench.attach")
NAME, UNDERLAY = "nwb", "10.95.0.0/24"
SUBNET, GATEWAY = "10.77.0.0/22", "10.77.0.1"


def new_cluster(docker: bool = False) -> Cluster:
    Cluster(NAME).down()                      # whatever a crashed earlier run left
    return Cluster(NAME, underlay=UNDERLAY, rest_port=free_port(), of_port=free_port(),
                   uplinks=False, docker=docker)


def post(c: Cluster, path: str, body: dict) -> dict:
    r = requests.post(c.url + path, json=body, timeout=10)
    if not r.ok:
        raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:200]}")
    return r.json()


def profile_cni(c: Cluster, host: str, ep: str) -> str:
    """One more CNI ADD, run under cProfile (wall-clock, so subprocess waits show)."""
    import io
    import pstats
    import tempfile
    d = tempfile.mkdtemp(prefix="nwb-cni-")
    wrapper = os.path.join(d, "python")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nexec {sys.executable} -m cProfile -o {d}/cni.prof \"$@\"\n")
    os.chmod(wrapper, 0o755)
    real, c.python = c.python, wrapper
    try:
        t = time.monotonic()
        c.run(host, ep, "nwbnet")
        total = time.monotonic() - t
    finally:
        c.python = real
    s = io.StringIO()
    st = pstats.Stats(f"{d}/cni.prof", stream=s)
    st.sort_stats("cumulative").print_stats("agent|subprocess.py:.*\\(run\\)|select|poll", 25)
    subprocess.run(["rm", "-rf", d])
    return f"cluster.run() under the profiler: {total * 1000:.0f} ms\n" + s.getvalue()


def run(n: int = 100, with_profile: bool = False, docker: bool = False, populate: int = 0,
        trace_over_ms: float | None = None, layout: str = "spread") -> dict:
    c = new_cluster(docker)
    prober = capture = None
    traced: list = []
    cni_times = []
    real_cni = c.cni

    def timed_cni(*a, **k):
        t = time.monotonic()
        try:
            return real_cni(*a, **k)
        finally:
            cni_times.append(time.monotonic() - t)

    c.cni = timed_cni
    out = {}
    try:
        c.up(3, wait=90)
        post(c, "/api/v1/networks/default:nwbnet/", {"tenantName": "default", "networkName": "nwbnet",
                                                      "subnet": SUBNET, "gateway": GATEWAY})
        src = c.run("h2", "nwbp", "nwbnet")
        cni_times.clear()
        prober = subprocess.Popen(["ip", "netns", "exec", c.ep_ns("nwbp"), sys.executable,
                                   os.path.join(common.ROOT, "bench", "pinger.py")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert prober.stdout.readline().strip() == "ready"
        nxt = ipaddress.IPv4Address(src["ip"]) + 1
        if trace_over_ms is not None:
            capture = attach_trace.Capture(c, sorted(c.state["hosts"]), TRACE_DIR)
            capture.start()
            time.sleep(1)                       # tcpdump's socket open before the first attach

        def attach_cni(i, host):
            return c.run(host, f"nwb{i}", "nwbnet")["ip"]

        samples, runs = _measure(c, prober, n, nxt, attach_cni, "CNI", traced if trace_over_ms is not None else None)
        out = _summary(samples, runs, cni_times)
        if populate:
            out["populate"] = _populate(c, populate, layout)
            nxt += n
            cni_times.clear()
            s2, r2 = _measure(c, prober, n, nxt, lambda i, h: attach_cni(i + n, h), "CNI (populated)",
                              traced if trace_over_ms is not None else None)
            out["populated"] = dict(_summary(s2, r2, cni_times), population=populate, layout=layout)
            out["ratio_p50"] = out["populated"]["p50_ms"] / out["p50_ms"]
            out["ratio_p99"] = out["populated"]["p99_ms"] / out["p99_ms"]
            nxt += n
        if docker:
            for h in ("h1", "h3"):              # netplugin makes the network on each dockerd
                wait_until(lambda: "nwbnet" in c.docker(h).cli("network", "ls").stdout, 20, interval=0.2)

            def attach_docker(i, host):
                c.docker(host).cli("run", "-d", "--net", "nwbnet", "--name", f"nwbd{i}", docker_host.IMAGE,
                                   "sleep", "100000")
                nets = c.docker(host).inspect("container", f"nwbd{i}")["NetworkSettings"]["Networks"]
                return nets["nwbnet"]["IPAddress"]

            d_samples, d_runs = _measure(c, prober, n, nxt + n, attach_docker, "docker run")
            out.update(docker_first_packet_s=d_samples, docker_run_s=d_runs,
                       docker_p50_ms=1000 * common.percentile(d_samples, 50),
                       docker_p99_ms=1000 * common.percentile(d_samples, 99),
                       docker_run_p50_ms=1000 * common.percentile(d_runs, 50),
                       docker_timeouts=sum(1 for s in d_samples if s == float("inf")))
        prof = profile_cni(c, "h1", "nwbprof") if with_profile else ""
        if capture is not None:
            capture.stop()
            out["traces"] = _traces(c, capture, traced, trace_over_ms)
    finally:
        if capture is not None:
            capture.stop()
        if prober is not None:
            prober.kill()
            prober.wait()
        c.down()
    if prof:
        out["profile_cni"] = prof
    out["rows"] = rows(out)
    return out


def _summary(samples, runs, cni_times) -> dict:
    return {"endpoints": len(samples), "first_packet_s": samples, "run_s": runs, "cni_add_s": list(cni_times),
            "p50_ms": 1000 * common.percentile(samples, 50), "p99_ms": 1000 * common.percentile(samples, 99),
            "cni_p50_ms": 1000 * common.percentile(cni_times, 50),
            "cni_p99_ms": 1000 * common.percentile(cni_times, 99),
            "after_cni_p50_ms": 1000 * common.percentile([s - r for s, r in zip(samples, cni_times)], 50),
            "timeouts": sum(1 for s in samples if s == float("inf"))}


POP_NETS = 10
# Where the population's endpoints live (issue 12's scale is 10k endpoints on 10 hosts):
#   spread  over 10 hosts: the 3 measured ones (h1-h3, a tap link per local endpoint) and 7
#           registered hosts without an agent (h4-h10): 1,000 local links per measured host
#   remote  over the 7 agentless hosts only: the measured hosts carry the whole tenant's flows
#           and no local link of it, so the ratio measures the tenant's size alone
#   local   over the 3 measured hosts only (before 2026-11-30 12:00 the only layout): 3,334
#           local links per host, what a real host with that many local veths pays
LAYOUTS = ("spread", "remote", "local")
EXTRA_HOSTS = 7


def _extra_hosts(c: Cluster) -> list:
    """Registered hosts without an agent: netmaster keeps their endpoints (a host that stops
    heartbeating is only marked down) and every switch of the tenant carries their flows.
    Their VTEPs are unused underlay addresses with a MAC given at registration, so the live
    agents pre-resolve them (tnl/neigh) and no flood packet towards them waits for an ARP."""
    out = []
    for k in range(EXTRA_HOSTS):
        label = f"h{4 + k}"
        post(c, f"/api/v1/hosts/{label}/", {"hostLabel": label, "dpid": f"00000000000095{k:02x}",
                                           "vtepIP": str(c.net.network_address + 100 + k),
                                           "vtepMAC": f"02:95:00:00:00:{k:02x}"})
        out.append(label)
    return out


def _populate(c: Cluster, total: int, layout: str = "spread") -> dict:
    """total endpoint records of the tenant in POP_NETS networks of their own, placed on hosts
    as `layout` says, through the live netmaster (4 clients); then until every live switch
    realized them.  An endpoint on a measured host gets a tap link of its name in that host's
    namespace, since netplugin releases an endpoint whose link is gone."""
    from concurrent.futures import ThreadPoolExecutor
    from topologies.ovs import sh
    measured = sorted(c.state["hosts"])
    extra = _extra_hosts(c) if layout != "local" else []
    homes = {"spread": measured + extra, "remote": extra, "local": measured}[layout]
    t0 = time.monotonic()
    for i in range(POP_NETS):
        post(c, f"/api/v1/networks/default:nwbpop{i}/", {"tenantName": "default", "networkName": f"nwbpop{i}",
                                                         "subnet": f"10.{110 + i}.0.0/16",
                                                         "gateway": f"10.{110 + i}.0.1"})
    taps = {}
    for h in measured:
        links = [f"tuntap add dev nwbq{j} mode tap" for j in range(total) if homes[j % len(homes)] == h]
        taps[h] = len(links)
        if links:
            sh("ip", "-n", c.host_ns(h), "-batch", "-", input="\n".join(links) + "\n")

    def some(js):
        with requests.Session() as s:
            for j in js:
                i, k = j % POP_NETS, j // POP_NETS
                r = s.post(f"{c.url}/api/v1/endpoints/nwbq{j}/", json={
                    "tenantName": "default", "networkName": f"nwbpop{i}", "host": homes[j % len(homes)],
                    "intfName": f"nwbq{j}", "ipAddress": f"10.{110 + i}.{10 + k // 250}.{k % 250 + 2}"}, timeout=120)
                if not r.ok:
                    raise RuntimeError(f"POST endpoints/nwbq{j}/: {r.status_code} {r.text[:300]}")
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(some, [range(k, total, 4) for k in range(4)]))
    t_write = time.monotonic() - t0
    deadline = time.monotonic() + 600
    while True:                            # the agentless hosts count until they are down (6 s)
        r = requests.get(c.url + "/api/v1/realization/?wait=2", timeout=60).json()
        if set(r.get("live", [])) >= set(measured) and not r.get("lagging"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"switches did not realize the population: {r}")
    flows = {h: int(c.ovs(h).ofctl("dump-aggregate").split("flow_count=")[1].split()[0]) for h in measured}
    # netmaster keeps every host's endpoints, agent or not
    kept = {h["hostLabel"]: h["numEndpoints"] for h in requests.get(c.url + "/api/v1/hosts/", timeout=60).json()}
    log.info("event=bench_populated endpoints=%d layout=%s write_s=%.1f settle_s=%.1f flows=%s taps=%s "
             "endpoints_per_host=%s", total, layout, t_write, time.monotonic() - t0 - t_write, flows, taps, kept)
    return {"endpoints": total, "layout": layout, "hosts": len(measured) + len(extra), "write_s": t_write,
            "total_s": time.monotonic() - t0, "flows": flows, "local_links": taps, "endpoints_per_host": kept}


TRACE_DIR = "/tmp/nwb-attach-trace"


def _traces(c, capture, traced, over_ms) -> list:
    """The timeline of every sample slower than over_ms (and the fastest one, to compare)."""
    packets = capture.packets()
    nm = attach_trace.netmaster_lines(os.path.join(c.workdir, "netmaster.log"))
    slow = [s for s in traced if s["ms"] > over_ms]
    picked = slow + ([min(traced, key=lambda s: s["ms"])] if traced else [])
    out = []
    for s in picked:
        rows = attach_trace.timeline(s, packets, nm)
        log.info("event=bench_attach_timeline what=%r ip=%s host=%s ms=%.0f cni_ms=%.0f neigh=%r\n%s", s["what"],
                 s["ip"], s["host"], s["ms"], 1000 * (s["cni"] - s["t0"]), s["neigh"], "\n".join(rows))
        out.append(dict(s, rows=rows))
    return out


def _measure(c, prober, n, first_ip, attach, what, traced=None):
    """Attach n endpoints on h1/h3 with attach(i, host) -> ip; the time from the start of each
    attach until the prober on h2 gets the new endpoint's first echo reply.  With traced (a list),
    each sample's wall-clock marks and the new endpoint's neighbour table are appended to it."""
    samples, runs = [], []
    nxt = first_ip
    for i in range(n):
        host = ("h1", "h3")[i % 2]
        ip = str(nxt)
        c.exec("nwbp", "ip", "neigh", "replace", ip, "lladdr", ipam.mac_for(ip), "dev", "eth0", "nud", "permanent")
        prober.stdin.write(ip + "\n")
        prober.stdin.flush()
        w0, t0 = time.time(), time.monotonic()
        got = attach(i, host)
        t_run = time.monotonic() - t0
        line = prober.stdout.readline().strip()
        if got != ip:
            raise RuntimeError(f"{what}: IPAM gave {got}, expected {ip}")
        if line == "timeout":
            log.warning("%s endpoint %d (%s on %s): no reply within the prober's timeout", what, i, ip, host)
            samples.append(float("inf"))
        else:
            samples.append(float(line) - t0)
        runs.append(t_run)
        if traced is not None:
            ep = next((k for k, e in c.state["endpoints"].items() if e.get("ip") == ip), "")
            neigh = c.exec(ep, "ip", "neigh", "show").stdout.strip() if ep else ""
            traced.append({"what": what, "i": i, "ip": ip, "host": host, "ms": 1000 * samples[-1], "t0": w0,
                           "cni": w0 + t_run, "reply": None if line == "timeout" else w0 + samples[-1],
                           "neigh": neigh})
        nxt += 1
        if (i + 1) % 10 == 0:
            log.info("%s: %d endpoints: last first-packet %.0f ms, attach %.0f ms", what, i + 1,
                     1000 * samples[-1], 1000 * t_run)
    return samples, runs


def rows(o) -> list:
    pop = []
    if "populated" in o:
        q = o["populated"]
        lay = o.get("populate", {})
        links = ", ".join(f"{v}" for v in lay.get("local_links", {}).values())
        flows = ", ".join(f"{v}" for v in lay.get("flows", {}).values())
        pop = [(f"... the same with {q['population']} more endpoints in the tenant ({q.get('layout', 'local')}: "
                f"{lay.get('hosts', 3)} hosts; local links {links}; flows per switch {flows}), p50 / p99",
                f"{q['p50_ms']:.0f} / {q['p99_ms']:.0f} ms (CNI ADD {q['cni_p50_ms']:.0f} / {q['cni_p99_ms']:.0f})",
                "< 150 / < 500 ms", common.verdict(q["p50_ms"] < 150 and q["p99_ms"] < 500)),
               ("... populated / empty tenant, p50 / p99", f"{o['ratio_p50']:.2f} / {o['ratio_p99']:.2f}", "<= 1.2",
                common.verdict(o["ratio_p50"] <= 1.2))]
    return [(f"attach -> first remote ping ({o['endpoints']} endpoints), p50",
             f"{o['p50_ms']:.0f} ms", "< 150 ms", common.verdict(o["p50_ms"] < 150)),
            ("attach -> first remote ping, p99", f"{o['p99_ms']:.0f} ms", "< 500 ms",
             common.verdict(o["p99_ms"] < 500)),
            ("CNI ADD alone, p50 / p99", f"{o['cni_p50_ms']:.0f} / {o['cni_p99_ms']:.0f} ms", "", ""),
            ("first ping after CNI ADD returned, p50", f"{o['after_cni_p50_ms']:.0f} ms", "", "")] + (
           [("docker run -> first remote ping, p50 / p99",
             f"{o['docker_p50_ms']:.0f} / {o['docker_p99_ms']:.0f} ms", "beside CNI", ""),
            ("docker run -d alone, p50", f"{o['docker_run_p50_ms']:.0f} ms", "", "")]
           if "docker_p50_ms" in o else []) + pop


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.attach")
    p.add_argument("-n", type=int, default=100, help="endpoints to attach (default 100)")
    p.add_argument("--profile", action="store_true", help="then cProfile one more CNI ADD")
    p.add_argument("--docker", action="store_true", help="also docker run through netplugin's driver")
    p.add_argument("--populate", type=int, default=0, help="then again with this many more endpoints in the tenant")
    p.add_argument("--trace", type=float, default=None, metavar="MS",
                   help="capture ICMP/ARP in every host (tcpdump) and log the timeline of each attach slower "
                        "than MS (and of the fastest), with netmaster's port and reconcile lines")
    p.add_argument("--layout", choices=LAYOUTS, default="spread",
                   help="where the population lives: spread (10 hosts: the 3 measured and 7 registered without "
                        "an agent), remote (the 7 agentless hosts only), local (the 3 measured hosts only); "
                        "default spread")
    a = p.parse_args(argv)
    common.setup_logging()
    out = run(a.n, a.profile, a.docker and docker_host.available(), a.populate, a.trace, a.layout)
    common.save("attach", out)
    print(common.rows_table(out["rows"]))
    if a.profile:
        print(out["profile_cni"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Experiment: the overlay's TCP throughput and latency as the Mininet underlay's delay and loss grow.

A star of two compute hosts (``nwmx1``, ``nwmx2``: each its own OVS and netplugin, netmaster as
the controller of their br-int), one endpoint on each, so every packet between the endpoints is
VXLAN-encapsulated on the source host, crosses two Mininet links and the underlay switch, and is
decapsulated on the other host.  For each setting the shaping of both underlay links is changed
in place, then ``ping`` (RTT, loss) and ``iperf3`` (TCP, one stream) run between the endpoints.

Shaping is per link and per direction (as TCLink/netem does on each end of a link): a delay of
D ms adds 4*D ms to a round trip (two links, both directions) and a loss of P % is met four
times per round trip.  Where the kernel has no sch_netem, delay and loss come from
``topologies/mininet_netem.py`` (user space) on both compute hosts' links: see MININET.md.

    python -m topologies.mininet_experiment [--baseline] [--delays 0,5,20,50] [--losses 0,1,2,5]
                      [--loss-delay 5] [--seconds 10] [--pings 50] [--bw MBIT] [--cc cubic] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

from topologies.mininet_topos import NetweaveNet, StarTopo


def ping(nw: NetweaveNet, src: str, ip: str, count: int) -> dict:
    p = nw.exec(src, "ping", "-q", "-c", str(count), "-i", "0.2", "-W", "3", ip, timeout=count * 0.2 + 30)
    loss = re.search(r"([\d.]+)% packet loss", p.stdout)
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", p.stdout)
    return {"loss_pct": float(loss.group(1)) if loss else 100.0,
            "rtt_min": float(rtt.group(1)) if rtt else None, "rtt_avg": float(rtt.group(2)) if rtt else None,
            "rtt_max": float(rtt.group(3)) if rtt else None}


def iperf(nw: NetweaveNet, src: str, dst: str, ip: str, seconds: float, port: int = 5201, cc: str | None = None) -> dict:
    srv = nw.popen(dst, "iperf3", "-s", "-1", "-p", str(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        p = nw.exec(src, "iperf3", "-c", ip, "-p", str(port), "-t", str(seconds), "-J", *(["-C", cc] if cc else []),
                    timeout=seconds + 60)
        try:
            d = json.loads(p.stdout)
            end = d["end"]
            return {"mbit_s": end["sum_received"]["bits_per_second"] / 1e6,
                    "retransmits": end["sum_sent"].get("retransmits")}
        except (ValueError, KeyError):
            return {"mbit_s": 0.0, "retransmits": None, "error": (p.stdout + p.stderr)[-300:]}
    finally:
        srv.kill()
        srv.wait()


def machine() -> str:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.node()}: Linux {platform.release()}, {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}"


def run(delays, losses, seconds, pings, bw=None, prefix="nwmx", subnet="10.213.2.0/24", netem="auto",
        loss_delay: float = 5.0, cc: str | None = None) -> dict:
    topo = StarTopo(2, prefix=prefix, subnet=subnet, bw=bw, netem=netem)
    rows = []
    with NetweaveNet(topo) as nw:
        nw.create_network("exp-net", "10.1.2.0/24", "10.1.2.1")
        a = nw.run_endpoint(f"{prefix}1", "x1", "exp-net")
        b = nw.run_endpoint(f"{prefix}2", "x2", "exp-net")
        deadline = time.monotonic() + 20
        while nw.exec("x1", "ping", "-c", "1", "-W", "1", b["ip"]).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the endpoints never reached each other")
        settings = [("delay", d, 0.0) for d in delays] + [("loss", loss_delay, l) for l in losses]
        if topo.nw["netem"] == "kernel" and not delays and not losses:
            settings = [("none", 0.0, 0.0)]
        for kind, d, l in settings:
            nw.set_shaping(bw=bw, delay=f"{d:g}ms" if d else None, loss=l or None)
            nw.exec("x1", "ping", "-c", "2", "-i", "0.2", "-W", "2", b["ip"])        # settle
            pr = ping(nw, "x1", b["ip"], pings)
            tr = iperf(nw, "x1", "x2", b["ip"], seconds, cc=cc)
            row = {"sweep": kind, "delay_ms_per_link": d, "loss_pct_per_link": l, "added_rtt_ms": 4 * d, **pr, **tr}
            rows.append(row)
            print(_row(row), flush=True)
        netem = nw.nw.get("netem")
    return {"machine": machine(), "netem": netem, "seconds": seconds, "pings": pings, "bw": bw, "rows": rows,
            "endpoints": [a["ip"], b["ip"]]}


def _sysctl_cc() -> str:
    try:
        return open("/proc/sys/net/ipv4/tcp_congestion_control").read().strip()
    except OSError:
        return "?"


def _f(v, fmt="{:.1f}"):
    return "-" if v is None else fmt.format(v)


HEADER = ("| sweep | delay/link | loss/link | added RTT | ping RTT min/avg/max (ms) | ping loss | "
          "TCP (iperf3) | TCP retransmits |\n|---|---|---|---|---|---|---|---|")


def _row(r: dict) -> str:
    return (f"| {r['sweep']} | {r['delay_ms_per_link']:g} ms | {r['loss_pct_per_link']:g} % | {r['added_rtt_ms']:g} ms | "
            f"{_f(r['rtt_min'], '{:.2f}')} / {_f(r['rtt_avg'], '{:.2f}')} / {_f(r['rtt_max'], '{:.2f}')} | "
            f"{r['loss_pct']:g} % | {r['mbit_s']:.1f} Mbit/s | {_f(r['retransmits'], '{}')} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m topologies.mininet_experiment", description=__doc__.split("\n")[0])
    p.add_argument("--delays", default="0,5,20,50", help="ms per link, comma-separated")
    p.add_argument("--losses", default="0,1,2,5", help="percent per link, comma-separated")
    p.add_argument("--loss-delay", type=float, default=5.0,
                   help="delay (ms per link) during the loss sweep: loss matters to TCP relative to the RTT")
    p.add_argument("--seconds", type=float, default=10.0, help="iperf3 duration per setting")
    p.add_argument("--pings", type=int, default=50, help="pings per setting (0.2 s apart)")
    p.add_argument("--bw", type=float, default=None, help="also limit every underlay link to this many Mbit/s (tc htb)")
    p.add_argument("--cc", default=None, help="TCP congestion control for iperf3 (-C); default: the system's")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--baseline", action="store_true",
                   help="first one row on links without any delay/loss emulation (no mininet_netem in the path)")
    args = p.parse_args(argv)
    from mininet.log import setLogLevel
    setLogLevel("warning")
    delays = [float(x) for x in args.delays.split(",") if x.strip()]
    losses = [float(x) for x in args.losses.split(",") if x.strip()]
    print(f"# {machine()}\n")
    print(HEADER, flush=True)
    t0 = time.monotonic()
    if args.baseline:
        run([], [], args.seconds, args.pings, args.bw, netem="kernel", cc=args.cc)
    res = run(delays, losses, args.seconds, args.pings, args.bw, loss_delay=args.loss_delay, cc=args.cc)
    print(f"\ndelay/loss by: {'tc netem (kernel)' if res['netem'] == 'kernel' else 'topologies/mininet_netem.py (user space)'}; "
          f"iperf3 {args.seconds:g} s, one stream, congestion control {args.cc or _sysctl_cc()}; "
          f"bw {f'{args.bw:g} Mbit/s per link (htb)' if args.bw else 'not limited'}; {args.pings} pings; "
          f"took {time.monotonic() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

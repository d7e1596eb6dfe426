"""Shared helpers: results file, machine description, statistics, table printing."""
from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results.json")
log = logging.getLogger("bench")


def setup_logging() -> None:
    logging.basicConfig(level=os.environ.get("BENCH_LOG", "INFO"),
                        format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")


def machine() -> dict:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ovs = subprocess.run(["ovs-vswitchd", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    except OSError:
        ovs = "not installed"
    return {"nproc": os.cpu_count(), "cpu": model, "ovs": ovs.strip(), "python": platform.python_version(),
            "kernel": platform.release()}


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def percentile(xs, p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t0


def save(name: str, result: dict) -> None:
    """Merge one benchmark's result into bench/results.json (other sections kept)."""
    try:
        with open(RESULTS) as f:
            data = json.load(f)
    except (OSError, ValueError):
        data = {}
    data["machine"] = machine()
    data.setdefault("benchmarks", {})[name] = dict(result, finished=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                  time.gmtime()))
    tmp = RESULTS + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, RESULTS)


def rows_table(rows: list[tuple]) -> str:
    """rows: (figure, measured, goal, verdict) -> aligned text."""
    head = ("figure", "measured", "goal", "")
    rows = [head] + [tuple(str(c) for c in r) for r in rows]
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    out = []
    for i, r in enumerate(rows):
        out.append("  ".join(c.ljust(w[j]) for j, c in enumerate(r)).rstrip())
        if i == 0:
            out.append("  ".join("-" * x for x in w))
    return "\n".join(out)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("ok" if ok else "MISS")


def controller_link(ns: str, veth_root: str, veth_ns: str, ctrl_ip: str, ns_ip: str) -> None:
    """A namespace joined to the root by a /30 veth (the controller's side in the root), made
    fresh: a crashed earlier run's namespace and veth are removed first."""
    run = lambda *c: subprocess.run(c, check=True, capture_output=True)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    subprocess.run(["ip", "link", "del", veth_root], capture_output=True)
    run("ip", "netns", "add", ns)
    run("ip", "link", "add", veth_root, "type", "veth", "peer", "name", veth_ns, "netns", ns)
    run("ip", "addr", "add", f"{ctrl_ip}/30", "dev", veth_root)
    run("ip", "link", "set", veth_root, "up")
    for c in (["ip", "addr", "add", f"{ns_ip}/30", "dev", veth_ns], ["ip", "link", "set", veth_ns, "up"],
              ["ip", "link", "set", "lo", "up"]):
        run("ip", "netns", "exec", ns, *c)

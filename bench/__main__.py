"""`make bench`: run every benchmark (each in its own process: flow_push needs
eventlet's monkey-patching first, the others must not have it), then print
one table from bench/results.json.

    python -m bench                     # all five, about 10-15 minutes
    python -m bench compile_scale rest  # some of them
    python -m bench --quick             # smaller sizes, a couple of minutes
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from bench import common

ORDER = ["compile_scale", "flow_push", "attach", "datapath", "rest"]
FULL = {"attach": ["--docker"]}      # docker run beside CNI, where docker.io is installed
QUICK = {"compile_scale": ["--quick"], "flow_push": ["--quick"], "attach": ["-n", "20", "--docker"],
         "datapath": ["--rounds", "1", "--seconds", "3"], "rest": ["--quick"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("names", nargs="*", choices=ORDER + [[]], help="benchmarks to run (default: all)")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    common.setup_logging()
    names = a.names or ORDER
    failed = []
    t0 = time.monotonic()
    for name in names:
        t = time.monotonic()
        common.log.info("=== %s", name)
        rc = subprocess.call([sys.executable, "-m", f"bench.{name}", *(QUICK[name] if a.quick else FULL.get(name, []))],
                             cwd=common.ROOT)
        common.log.info("=== %s: exit %d after %.0f s", name, rc, time.monotonic() - t)
        if rc != 0:
            failed.append(name)
    with open(common.RESULTS) as f:
        data = json.load(f)
    rows = []
    for name in ORDER:
        b = data.get("benchmarks", {}).get(name)
        if b and name in names and name not in failed:
            rows += [tuple(r) for r in b["rows"]]
    m = data["machine"]
    print(f"\nnetweave benchmarks, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: nproc={m['nproc']}, "
          f"{m['cpu']}, {m['ovs']}, Python {m['python']}; total {time.monotonic() - t0:.0f} s")
    print(common.rows_table(rows))
    if failed:
        print(f"failed: {', '.join(failed)} (see the log above)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Dual-stack IPAM cost (not in `make bench`): endpoint allocation on a network with a /64
ipv6Subnet beside an IPv4-only one, and the network's oper data, in-process over a SQLite
store. A /64 must cost what is allocated, never what the subnet holds.

    python -m bench.ipam6 [-n 2000]
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time

from model import oper, schema
from model.service import Model
from store.sqlite import SqliteStore


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ipam6")
    p.add_argument("-n", type=int, default=2000, help="endpoints per network")
    a = p.parse_args(argv)
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as d:
        m = Model(SqliteStore(os.path.join(d, "s.db")))
        m.upsert(schema.NETWORK, "default:ds", {"subnet": "10.0.0.0/16", "gateway": "10.0.0.1",
                                                "ipv6Subnet": "fd00:1::/64"})
        m.upsert(schema.NETWORK, "default:v4", {"subnet": "10.1.0.0/16", "gateway": "10.1.0.1"})
        m.register_host("h1", {"vtepIP": "10.99.0.1", "dpid": "00000000000000a1"})
        med, last, op = {}, {}, {}
        for net in ("v4", "ds"):
            ts = []
            for i in range(a.n):
                t = time.perf_counter()
                m.allocate_endpoint(f"{net}{i}", {"tenantName": "default", "networkName": net,
                                                  "host": "h1", "intfName": f"nw{net}{i}"})
                ts.append(time.perf_counter() - t)
            med[net], last[net] = statistics.median(ts), statistics.median(ts[-100:])
        for net in ("v4", "ds"):          # both full: best of 3
            obj = m.get(schema.NETWORK, f"default:{net}")
            op[net] = min(_timed(lambda: oper.network_oper(m, obj)) for _ in range(3))
    print(f"allocation, {a.n} endpoints per network: IPv4-only median {med['v4'] * 1e3:.3f} ms, "
          f"dual-stack /64 {med['ds'] * 1e3:.3f} ms (ratio {med['ds'] / med['v4']:.2f})")
    print(f"last 100 allocations / all (flat = cost does not grow with what is allocated): "
          f"IPv4 {last['v4'] / med['v4']:.2f}, dual-stack {last['ds'] / med['ds']:.2f}")
    print(f"network inspect oper: IPv4-only {op['v4'] * 1e3:.1f} ms, dual-stack {op['ds'] * 1e3:.1f} ms "
          f"(ratio {op['ds'] / op['v4']:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The flow form and codec's own costs, this tree against an older commit, in one run.

Why: entries became canonical when constructed (flows/fields.py) and the
normaliser went; construction now pays what the normaliser paid.  This times,
in a fresh process per tree (same machine, same moment, alternated):
  compile   compile_all of a scale snapshot (every entry constructed)
  desired   ofapp.canonical_desired of one host's set, first call (the old tree
            normalised every entry there, once per compile)
  encode    ofencode.flow_mod of that set (fast path, caches cold then warm)
  decode    ofwire.decode of its flow-stats bytes (fast path)
  recompute the engine's full recompute of the snapshot, construction's caches
            cleared first (as at netmaster's start), GC off as netmaster runs it
and prints old/new ratios (> 1: the new tree is faster).

    python -m bench.codec_speed [--old REF] [--eps 3000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time

from bench import common

ROOT = common.ROOT


def measure(eps: int) -> dict:
    """Runs inside the tree under test (its own modules on sys.path)."""
    import gc
    import struct

    from os_ken.ofproto import ofproto_protocol
    from os_ken.ofproto import ofproto_v1_3 as ofp

    from controller import ofapp, ofencode, ofmsg, ofwire
    from flows.compiler import compile_all
    from tests.unit.scale import scale_snapshot

    snap = scale_snapshot(eps, max(1, eps // 10), max(1, eps // 10), n_hosts=3)
    out = {}
    gc.collect()
    t = time.perf_counter()
    compiled = compile_all(snap)
    out["compile_s"] = time.perf_counter() - t
    flows, groups = compiled["h0"]
    t = time.perf_counter()
    want, _g, bad = ofapp.canonical_desired((flows, groups))
    out["desired_s"] = time.perf_counter() - t
    assert not bad, bad[:3]
    entries = list(want.values())
    out["flows"] = len(entries)
    for label in ("encode_cold_s", "encode_warm_s"):
        t = time.perf_counter()
        for e in entries:
            ofencode.flow_mod(e, ofp.OFPFC_ADD, 1)
        out[label] = time.perf_counter() - t
    dp = ofproto_protocol.ProtocolDesc(ofp.OFP_VERSION)
    fs = struct.Struct(ofp.OFP_FLOW_STATS_0_PACK_STR)
    bufs = []
    for e in entries:
        fm = ofmsg.flow_mod(dp, e)
        fm.xid = 1
        fm.serialize()
        rest = bytes(fm.buf[48:])
        bufs.append(fs.pack(48 + len(rest), fm.table_id, 1, 2, fm.priority, 0, 0, 0, fm.cookie, 3, 4) + rest)
    t = time.perf_counter()
    n = 0
    for b in bufs:
        try:
            ofwire.decode(b)
            n += 1
        except ofwire.Unsupported:
            pass
    out["decode_s"] = time.perf_counter() - t
    out["decoded_fast"] = n
    # the engine's full recompute with construction's caches cold (as at netmaster's
    # start; any module-level *_CACHE dict of flows.fields, whatever the tree names it)
    from flows import fields
    from flows.engine import Engine
    del compiled, flows, groups, want, entries, bufs
    for name, v in vars(fields).items():
        if name.endswith("_CACHE") and type(v) is dict:
            v.clear()
    eng = Engine()
    eng.load(snap)
    gc.collect()
    gc.disable()                        # as netmaster runs it (flows/gcpause.py)
    t = time.perf_counter()
    eng.recompute()
    out["recompute_s"] = time.perf_counter() - t
    gc.enable()
    return out


def _run(tree: str, eps: int) -> dict:
    """measure() in a fresh process whose imports all resolve in `tree`."""
    code = "import json, time\n" + inspect.getsource(measure) + f"\nprint(json.dumps(measure({eps})))\n"
    env = dict(os.environ, PYTHONPATH=tree)
    res = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.codec_speed")
    p.add_argument("--old", default="main", help="git ref to compare with (default: main)")
    p.add_argument("--eps", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    common.setup_logging()
    with tempfile.TemporaryDirectory(prefix="nw-codec-") as old:
        subprocess.run(f"git -C {ROOT} archive {a.old} | tar -x -C {old}", shell=True, check=True)
        best = {"old": {}, "new": {}}
        for _ in range(a.rounds):
            for label, tree in (("old", old), ("new", ROOT)):
                r = _run(tree, a.eps)
                for k, v in r.items():
                    best[label][k] = min(v, best[label].get(k, v)) if k.endswith("_s") else v
    o, n = best["old"], best["new"]
    common.log.info("codec_speed old=%s eps=%d flows=%d (host h0) best of %d rounds, load %s",
                    a.old, a.eps, n["flows"], a.rounds, os.getloadavg()[0])
    for k in ("compile_s", "desired_s", "encode_cold_s", "encode_warm_s", "decode_s", "recompute_s"):
        common.log.info("  %-14s old %8.3f s  new %8.3f s  old/new %.2f", k, o[k], n[k], o[k] / n[k])
    o_total = o["compile_s"] + o["desired_s"]
    n_total = n["compile_s"] + n["desired_s"]
    common.log.info("  %-14s old %8.3f s  new %8.3f s  old/new %.2f", "compile+desired", o_total, n_total,
                    o_total / n_total)
    common.log.info("  decoded by the fast path: old %d new %d of %d", o["decoded_fast"], n["decoded_fast"],
                    n["flows"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Flow counts grow with endpoints + rules, never their product (times are printed; bench/ measures speed).

Counted on the reference compiler (the faster of the two at 10k); the engine's tables, which
switches get, equal it exactly (tests/unit/test_engine_props.py)."""
import time

from flows.compiler import compile_all
from tests.unit.scale import scale_snapshot

C = 8          # flows per (endpoint or rule) per host
BASE = 64      # fixed flows and per-network flows


def test_scale_snapshot_has_unique_addresses():
    snap = scale_snapshot(2000, 40, 10)
    assert len({(e.tenant, e.ip) for e in snap.endpoints}) == 2000


def test_sweep_flow_counts_linear_in_endpoints_plus_rules():
    rows = []
    for e in (40, 200, 800):
        for g in (4, 16):
            for r in (8, 80, 400):
                snap = scale_snapshot(e, g, r, n_hosts=4)
                per_host = max(len(f) for f, _ in compile_all(snap).values())
                rows.append((e, g, r, per_host, per_host / (e + r)))
                assert per_host <= C * (e + r) + BASE * g, (e, g, r, per_host)
    print("\n   E    G    R  flows/host  flows/(E+R)")
    for e, g, r, n, ratio in rows:
        print(f"{e:4d} {g:4d} {r:4d} {n:11d} {ratio:12.2f}")
    # doubling the rules must not scale with the endpoints
    small = {k[:3]: k[3] for k in rows}
    assert small[(800, 16, 400)] - small[(800, 16, 80)] < C * 320
    assert small[(800, 16, 400)] - small[(200, 16, 400)] < C * 600


def test_compile_2k_endpoints_200_rules_10_hosts():
    snap = scale_snapshot(2000, 40, 200, n_hosts=10)
    t = time.perf_counter()
    out = compile_all(snap)
    dt = time.perf_counter() - t
    assert sorted(out) == [f"h{i}" for i in range(10)]
    assert all(5 * 2000 <= len(flows) <= 8 * (2000 + 200) for flows, _ in out.values())
    print(f"\ncompile_all 2k endpoints / 200 rules / 10 hosts: {dt * 1000:.0f} ms (speed: see bench/)")


def test_compile_10k_endpoints_1k_rules_10_hosts():
    snap = scale_snapshot(10000, 100, 1000, n_hosts=10)
    t = time.perf_counter()
    out = compile_all(snap)
    dt = time.perf_counter() - t
    print(f"\ncompile_all 10k endpoints / 1k rules / 10 hosts: {dt:.2f} s, "
          f"{len(out['h0'][0])} flows on h0 (speed: see bench/)")
    assert sorted(out) == [f"h{i}" for i in range(10)]
    # linear in endpoints + rules on every host (bench/README.md: ~5.2 x (E + R))
    assert all(5 * 10000 <= len(flows) <= 8 * (10000 + 1000) for flows, _ in out.values())

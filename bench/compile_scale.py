"""Compile scale: full compile_all time, flows per host, and what one change costs.

"One endpoint added" is measured the way the controller really handles it
(controller/fabric.py): the store event rebuilds the Snapshot from the model
(build_snapshot), drops the Compiler, and every connected switch is
reconciled, each calling Compiler(new_snapshot).switch(label).  We time
  - build_snapshot over a model-shaped fake (dicts, as the store holds them),
  - Compiler(new).switch(h) for the endpoint's own host only (the least a
    from-scratch compiler can do),
  - every host (what fabric.py does: request_reconcile(None)),
  - the OpenFlow app's per-switch preparation of the desired set
    (controller.ofapp.canonical_desired, as SwitchManager._desired does),
and report each as a fraction of a full compile_all.

    python -m bench.compile_scale [--quick] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import time
from dataclasses import replace

from bench import common
from flows.compiler import Compiler, compile_all
from flows.snapshot import Endpoint, Rule
from tests.unit.scale import scale_snapshot

log = logging.getLogger("bench.compile_scale")
HOSTS = 10
# (endpoints, groups, rules)
SIZES = [(100, 4, 10), (1000, 20, 100), (10000, 100, 1000)]


def _best(fn, n):
    """Minimum of n timed calls (the least noisy estimate on a shared machine) and the last result."""
    best, out = float("inf"), None
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _new_endpoint(snap):
    """One more endpoint in the first group's network, on h0, with its port known."""
    g = snap.groups[0]
    j = len(snap.endpoints)
    ip = f"10.{int(g.network[1:])}.240.{j % 250 + 1}"
    mac = "02:03:" + ":".join(f"{int(o):02x}" for o in ip.split("."))
    e = Endpoint(f"epnew{j}", g.tenant, g.network, g.name, ip, mac, "h0", f"portnew{j}")
    ports = {h: dict(p) for h, p in snap.ofports.items()}
    ports["h0"][e.port_name] = 60000
    return replace(snap, endpoints=snap.endpoints + (e,), ofports=ports)


def _new_rule(snap):
    r = Rule(snap.tenants[0].name, snap.groups[0].policies[0], "rnew", "in", 50, "allow",
             from_group=snap.groups[-1].name, protocol="tcp", port=8443, rule_uid=len(snap.rules) + 10_000)
    return replace(snap, rules=snap.rules + (r,))


class _FakeStore:
    def __init__(self, data):
        self.data = data

    def list(self, prefix):
        return {k: v for k, v in self.data.items() if k.startswith(prefix)}

    def get(self, key):
        return self.data.get(key)


class _FakeModel:
    """Just what controller.fabric.build_snapshot reads from model.service.Model."""

    def __init__(self, snap):
        from model import schema
        d = {}
        for t in snap.tenants:
            d[f"obj/{schema.TENANT.name}/{t.name}"] = {"tenantName": t.name}
            d[f"meta/tenant/{t.name}"] = {"id": t.vrf_id}
        for n in snap.networks:
            d[f"obj/{schema.NETWORK.name}/{n.tenant}:{n.name}"] = {
                "tenantName": n.tenant, "networkName": n.name, "encap": n.encap, "subnet": n.subnet,
                "gateway": n.gateway}
            d[f"meta/network/{n.tenant}:{n.name}"] = {"id": n.net_id, "pktTag": n.pkt_tag}
        for g in snap.groups:
            d[f"obj/{schema.ENDPOINT_GROUP.name}/{g.tenant}:{g.name}"] = {
                "tenantName": g.tenant, "groupName": g.name, "networkName": g.network,
                "policies": list(g.policies), "netProfile": ""}
            d[f"meta/endpointGroup/{g.tenant}:{g.name}"] = {"id": g.group_id}
        for r in snap.rules:
            key = f"{r.tenant}:{r.policy}:{r.rule_id}"
            d[f"obj/{schema.RULE.name}/{key}"] = {
                "tenantName": r.tenant, "policyName": r.policy, "ruleId": r.rule_id, "direction": r.direction,
                "priority": r.priority, "action": r.action, "protocol": r.protocol, "port": r.port,
                "fromEndpointGroup": r.from_group, "toEndpointGroup": r.to_group, "fromNetwork": r.from_network,
                "toNetwork": r.to_network, "fromIpAddress": r.from_ip, "toIpAddress": r.to_ip}
            d[f"meta/rule/{key}"] = {"id": r.rule_uid}
        for h in snap.hosts:
            d[f"host/{h.label}"] = {"hostLabel": h.label, "vtepIP": h.vtep_ip, "dpid": f"{h.dpid:016x}",
                                    "uplink": h.uplink_port}
        for e in snap.endpoints:
            d[f"ep/{e.endpoint_id}"] = {"endpointID": e.endpoint_id, "tenantName": e.tenant,
                                        "networkName": e.network, "groupName": e.group, "ipAddress": [e.ip],
                                        "macAddress": e.mac, "homingHost": e.host, "intfName": e.port_name}
        self.store = _FakeStore(d)

    def objects_of(self, kind, tenant=None):
        return list(self.store.list(f"obj/{kind.name}/").values())

    def meta(self, kind, key):
        return self.store.get(f"meta/{kind}/{key}") or {}


def _ofapp_prepare(compiled):
    """What SwitchManager._desired does to a new desired set before diffing (the
    controller's own function, with its per-field and per-actions caches warm)."""
    from controller.ofapp import canonical_desired
    from flows.gcpause import paused
    with paused():                      # as in the controller (SwitchManager._diff)
        return canonical_desired(compiled)


def measure(E, G, R, repeat):
    snap = scale_snapshot(E, G, R, n_hosts=HOSTS)
    full, out = _best(lambda: compile_all(snap), repeat)
    sizes = {h: len(f) for h, (f, _) in out.items()}
    local = {h: sum(1 for e in snap.endpoints if e.host == h) for h in sizes}
    per_host = max(sizes.values())
    h_max = max(sizes, key=sizes.get)
    res = {"endpoints": E, "groups": G, "rules": R, "hosts": HOSTS, "full_compile_s": full,
           "flows_per_host_max": per_host, "flows_per_host_mean": sum(sizes.values()) / len(sizes),
           "groups_per_host_max": max(len(g) for _, g in out.values()),
           "flows_per_host_over_local_plus_rules": per_host / (local[h_max] + R),
           "flows_per_host_over_all_endpoints_plus_rules": per_host / (E + R)}

    snap_ep = _new_endpoint(snap)
    fake = _FakeModel(snap_ep)
    from controller.fabric import build_snapshot
    res["ep_build_snapshot_s"], _ = _best(lambda: build_snapshot(fake, snap_ep.ofports), repeat)
    res["ep_one_host_s"], one = _best(lambda: Compiler(snap_ep).switch("h0"), repeat)
    res["ep_all_hosts_s"], _ = _best(lambda: (lambda c: [c.switch(h) for h in sizes])(Compiler(snap_ep)), repeat)
    _ofapp_prepare(out["h0"])           # the controller's cache holds the previous compile
    res["ep_ofapp_prepare_one_host_s"], _ = _best(lambda: _ofapp_prepare(one), max(1, repeat - 1))
    res["ep_changed_flows_h0"] = len(one[0] ^ out["h0"][0])
    # the controller's whole path for one endpoint: snapshot + every host + ofapp prep per host
    res["ep_controller_path_s"] = (res["ep_build_snapshot_s"] + res["ep_all_hosts_s"]
                                   + HOSTS * res["ep_ofapp_prepare_one_host_s"])
    snap_r = _new_rule(snap)
    res["rule_one_host_s"], _ = _best(lambda: Compiler(snap_r).switch("h0"), repeat)
    res["rule_all_hosts_s"], _ = _best(lambda: (lambda c: [c.switch(h) for h in sizes])(Compiler(snap_r)), repeat)
    for k in ("ep_one_host_s", "ep_all_hosts_s", "ep_controller_path_s", "rule_one_host_s", "rule_all_hosts_s"):
        res[k.replace("_s", "_ratio")] = res[k] / full
    log.info("E=%d G=%d R=%d full=%.3fs flows/host=%d one-ep(one host)=%.3fs (%.1f%%) controller path=%.3fs",
             E, G, R, full, per_host, res["ep_one_host_s"], 100 * res["ep_one_host_ratio"],
             res["ep_controller_path_s"])
    return res


def profile(E=10000, G=100, R=1000) -> str:
    """cProfile of one endpoint added on h0 (the from-scratch recompile of one host)."""
    snap_ep = _new_endpoint(scale_snapshot(E, G, R, n_hosts=HOSTS))
    pr = cProfile.Profile()
    pr.enable()
    Compiler(snap_ep).switch("h0")
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats(18)
    return s.getvalue()


def run(quick=False, with_profile=False) -> dict:
    sizes = SIZES[:2] + [(3000, 30, 300)] if quick else SIZES
    results = [measure(E, G, R, 3 if E <= 1000 else 2) for E, G, R in sizes]
    big = results[-1]
    out = {"sizes": results}
    if with_profile:
        out["profile_one_endpoint"] = profile()
    out["rows"] = rows(out)
    return out


def rows(out) -> list:
    r = []
    for s in out["sizes"]:
        tag = f"compile {s['endpoints']} ep/{s['rules']} rules/{s['hosts']} hosts"
        r.append((f"{tag}: full compile_all", f"{s['full_compile_s']:.3f} s",
                  "< 2 s at 10k/1k" if s["endpoints"] == 10000 else "",
                  common.verdict(s["full_compile_s"] < 2) if s["endpoints"] == 10000 else ""))
        r.append((f"{tag}: flows/host (max)", f"{s['flows_per_host_max']} = "
                  f"{s['flows_per_host_over_local_plus_rules']:.1f} x (local+R), "
                  f"{s['flows_per_host_over_all_endpoints_plus_rules']:.1f} x (E+R)", "small const x (local+R)",
                  common.verdict(s["flows_per_host_over_local_plus_rules"] <= 10)))
        r.append((f"{tag}: +1 endpoint, its host only", f"{s['ep_one_host_s']:.3f} s = "
                  f"{100 * s['ep_one_host_ratio']:.1f}% of full", "< 1%",
                  common.verdict(s["ep_one_host_ratio"] < 0.01)))
        r.append((f"{tag}: +1 endpoint, controller path", f"{s['ep_controller_path_s']:.3f} s = "
                  f"{100 * s['ep_controller_path_ratio']:.0f}% of full", "< 1%",
                  common.verdict(s["ep_controller_path_ratio"] < 0.01)))
        r.append((f"{tag}: +1 rule, its host / all hosts", f"{s['rule_one_host_s']:.3f} s / "
                  f"{s['rule_all_hosts_s']:.3f} s = {100 * s['rule_one_host_ratio']:.1f}% / "
                  f"{100 * s['rule_all_hosts_ratio']:.0f}%", "", ""))
    return r


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compile_scale")
    p.add_argument("--quick", action="store_true", help="3k endpoints instead of 10k")
    p.add_argument("--profile", action="store_true", help="cProfile one endpoint added at the largest size")
    a = p.parse_args(argv)
    common.setup_logging()
    out = run(a.quick, a.profile)
    common.save("compile_scale", out)
    print(common.rows_table(out["rows"]))
    if a.profile:
        print(out["profile_one_endpoint"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

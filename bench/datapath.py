"""Datapath cost: TCP throughput (iperf3) and ping latency between endpoints
on two simulated hosts through netweave's full pipeline (VRF, group policy
with conntrack, VXLAN) against the same endpoints with a minimal flow set that
only tunnels (the limit of this datapath), alternated in one run.

Minimal set: netmaster stopped, br-int's flows on both hosts replaced by
  in_port=<endpoint port>,actions=set_field:VNI->tun_id,set_field:PEER->tun_dst,output:100
  in_port=100,actions=output:<endpoint port>
Back to full: those flows deleted and netmaster started again; it reconciles
every switch (we wait until each holds exactly the desired flows).

    python -m bench.datapath [--rounds 3] [--seconds 4]
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import time

import requests

from bench import common
from topologies.cluster import Cluster
from topologies.common import free_port, wait_until

log = logging.getLogger("bench.datapath")
NAME, UNDERLAY = "nwb", "10.95.0.0/24"
RULES = [  # a few 'in' rules on the group's policy: conntrack and conjunctions on the path
    {"ruleId": "1", "direction": "in", "priority": 10, "action": "allow", "protocol": "tcp", "port": 5201,
     "fromEndpointGroup": "nwbgrp"},
    {"ruleId": "2", "direction": "in", "priority": 10, "action": "allow", "protocol": "icmp",
     "fromEndpointGroup": "nwbgrp"},
    {"ruleId": "3", "direction": "in", "priority": 5, "action": "deny", "protocol": "tcp", "port": 22},
    {"ruleId": "4", "direction": "out", "priority": 5, "action": "deny", "protocol": "udp", "port": 9999},
]


def post(c, path, body):
    r = requests.post(c.url + path, json=body, timeout=10)
    if not r.ok:
        raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:200]}")
    return r.json()


def settled(c: Cluster) -> bool:
    for h in c.state["hosts"]:
        try:
            d = requests.get(f"{c.url}/api/v1/flows/{h}/", timeout=10).json()
        except (requests.RequestException, ValueError):
            return False
        if not d.get("connected") or any(d["diff"][k] for k in ("missing", "extra", "changed")):
            return False
    return True


def ofport(c: Cluster, host: str, port: str) -> int:
    return int(c.ovs(host).vsctl("get", "Interface", port, "ofport").strip())


def endpoint_port(c: Cluster, host: str) -> str:
    ports = [p for p in c.ovs(host).vsctl("list-ports", "br-int").split() if p != "vxlan0"]
    if len(ports) != 1:
        raise RuntimeError(f"{host}: expected one endpoint port on br-int, found {ports}")
    return ports[0]


def measure(c: Cluster, seconds: float, ip_b: str) -> dict:
    p = c.exec("nwba", "iperf3", "-c", ip_b, "-t", str(seconds), "-J", timeout=seconds + 30)
    data = json.loads(p.stdout)
    if "error" in data:
        raise RuntimeError(f"iperf3: {data['error']}")
    bps = data["end"]["sum_received"]["bits_per_second"]
    p = c.exec("nwba", "ping", "-c", "30", "-i", "0.05", "-q", ip_b, timeout=30)
    m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", p.stdout)
    return {"mbit_s": bps / 1e6, "rtt_avg_ms": float(m.group(2)) if m else float("nan"),
            "rtt_p_loss": p.stdout.split("received,")[1].split(",")[0].strip() if "received," in p.stdout else "?"}


def to_minimal(c: Cluster, vni: int, eps: dict) -> None:
    c.netmaster_stop()
    vtep = {h: v["vtep"] for h, v in c.state["hosts"].items()}
    for host, peer in (("h1", "h2"), ("h2", "h1")):
        port = eps[host]
        ovs = c.ovs(host)
        ovs.ofctl("del-flows")
        ovs.ofctl("add-flow", f"in_port={port},actions=set_field:{vni}->tun_id,"
                              f"set_field:{vtep[peer]}->tun_dst,output:100")
        ovs.ofctl("add-flow", f"in_port=100,actions=output:{port}")


def to_full(c: Cluster) -> float:
    t = time.monotonic()
    for host in ("h1", "h2"):
        c.ovs(host).ofctl("del-flows")      # ours carry no netweave cookie: netmaster would keep them
    c.netmaster_start()
    c.wait_ready(60)
    wait_until(lambda: settled(c), 60, interval=0.2, what="switches reconciled")
    return time.monotonic() - t


def rule_flows(c: Cluster, host: str) -> int:
    return sum(1 for line in c.ovs(host).ofctl("dump-flows").splitlines() if "cookie=0x4e07" in line)


def run(rounds: int = 3, seconds: float = 4.0) -> dict:
    Cluster(NAME).down()
    c = Cluster(NAME, underlay=UNDERLAY, rest_port=free_port(), of_port=free_port(), uplinks=False)
    server = None
    full, minimal = [], []
    try:
        c.up(2, wait=90)
        post(c, "/api/v1/networks/default:nwbnet/", {"tenantName": "default", "networkName": "nwbnet",
                                                      "subnet": "10.78.0.0/24", "gateway": "10.78.0.1"})
        post(c, "/api/v1/policys/default:nwbpol/", {"tenantName": "default", "policyName": "nwbpol"})
        post(c, "/api/v1/endpointGroups/default:nwbgrp/", {"tenantName": "default", "groupName": "nwbgrp",
                                                           "networkName": "nwbnet", "policies": ["nwbpol"]})
        for r in RULES:
            post(c, f"/api/v1/rules/default:nwbpol:{r['ruleId']}/", dict(r, tenantName="default", policyName="nwbpol"))
        c.run("h1", "nwba", "nwbnet", group="nwbgrp")
        b = c.run("h2", "nwbb", "nwbnet", group="nwbgrp")
        vni = requests.get(f"{c.url}/api/v1/inspect/networks/default:nwbnet/", timeout=10).json()["Oper"]["pktTag"]
        eps = {h: ofport(c, h, endpoint_port(c, h)) for h in ("h1", "h2")}
        server = subprocess.Popen(["ip", "netns", "exec", c.ep_ns("nwbb"), "iperf3", "-s"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rules_applied = True
        try:
            wait_until(lambda: settled(c), 20, interval=0.2, what="switches settled")
        except RuntimeError:
            # Seen on this tree: with any rule in the model the controller's reconcile raises
            # (controller/fabric.py passes the rule's id into Rule.protocol), so the switches
            # stay empty.  Measure with the policy attached but no rules: conntrack stays on the path.
            log.error("switches never settled with the policy's rules (see %s/netmaster.log); "
                      "deleting the rules and measuring the policy without them", c.workdir)
            for r in RULES:
                requests.delete(f"{c.url}/api/v1/rules/default:nwbpol:{r['ruleId']}/", timeout=10)
            rules_applied = False
            wait_until(lambda: settled(c), 60, interval=0.2, what="switches settled")
        wait_until(lambda: c.exec("nwba", "ping", "-c1", "-W1", b["ip"]).returncode == 0, 30,
                   interval=0.2, what="first ping")
        n_rule_flows = rule_flows(c, "h2")
        if n_rule_flows == 0:
            log.warning("no rule-owned flow (cookie 0x4e07...) on h2: the policy's rules compiled to nothing; "
                        "conntrack (tables 20/50) is on the path all the same")
        restore = []
        for i in range(rounds):
            full.append(measure(c, seconds, b["ip"]))
            to_minimal(c, vni, eps)
            minimal.append(measure(c, seconds, b["ip"]))
            restore.append(to_full(c))
            log.info("round %d: full %.0f Mbit/s %.3f ms, minimal %.0f Mbit/s %.3f ms (restore %.1f s)", i + 1,
                     full[-1]["mbit_s"], full[-1]["rtt_avg_ms"], minimal[-1]["mbit_s"], minimal[-1]["rtt_avg_ms"],
                     restore[-1])
    finally:
        if server is not None:
            server.kill()
            server.wait()
        c.down()
    med = lambda xs, k: common.median([x[k] for x in xs])
    out = {"rounds": rounds, "seconds": seconds, "full": full, "minimal": minimal,
           "full_mbit_s": med(full, "mbit_s"), "minimal_mbit_s": med(minimal, "mbit_s"),
           "full_rtt_ms": med(full, "rtt_avg_ms"), "minimal_rtt_ms": med(minimal, "rtt_avg_ms"),
           "rule_flows_h2": n_rule_flows, "rules_applied": rules_applied, "restore_s": restore}
    out["throughput_ratio"] = out["full_mbit_s"] / out["minimal_mbit_s"]
    out["rtt_ratio"] = out["full_rtt_ms"] / out["minimal_rtt_ms"]
    out["rows"] = rows(out)
    return out


def rows(o) -> list:
    note = "" if o.get("rules_applied", True) else " (policy attached, its rules had to be removed)"
    return [("datapath TCP: full pipeline" + note + " / tunnel-only",
             f"{o['full_mbit_s']:.0f} / {o['minimal_mbit_s']:.0f} Mbit/s = {o['throughput_ratio']:.2f}", ">= 0.9",
             common.verdict(o["throughput_ratio"] >= 0.9)),
            ("datapath ping RTT: full / tunnel-only",
             f"{o['full_rtt_ms']:.3f} / {o['minimal_rtt_ms']:.3f} ms = {o['rtt_ratio']:.2f}x", "", "")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.datapath")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=4.0)
    a = p.parse_args(argv)
    common.setup_logging()
    out = run(a.rounds, a.seconds)
    common.save("datapath", out)
    print(common.rows_table(out["rows"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""netweave beside OVN 23.03 on the same machine and the same kind of simulated hosts (issue 12).

For each system, one after the other in one run, 3 hosts (network namespaces, one userspace OVS
each): netweave as `topologies.cluster` runs it (netmaster + a netplugin per host, CNI ADD for
the measured ports); OVN as bench/ovn_sim.py runs it (NB/SB ovsdb-servers and ovn-northd in the
root namespace, an ovn-controller per host, Geneve). The same logical topology in both:

    netweave                              OVN
    tenant nwo (its VRF)                  logical router nwolr
    10 networks 10.80-89.0.0/16           10 logical switches, each with a router port (.0.1)
    20 groups, each with a policy of      20 port groups, each with 5 ACLs
      5 `in` rules (100 rules)              (to-lport, allow-related / drop; 100 ACLs)
    population endpoints (REST, one of    population logical ports (addresses and port
      the 3 hosts each, no port)            security set, not bound to a chassis)

The population ("ports already present") has no namespace or OVS port behind it; the measured
ports are real namespaces with real packets, in network 0:
  (a) port add -> first remote ping: t0, then (netweave) `cluster.run` = namespace + CNI ADD, or
      (OVN) one `ovn-nbctl` (port, addresses, port security, port group) + namespace, veth and
      `ovs-vsctl add-port ... iface-id`; until the prober on h2 (bench/pinger.py, an echo every
      5 ms from t0, a static neighbour entry) gets the new port's first reply. New ports
      alternate between h1 and h3.
  (b) rule add -> enforced: server on h1 in group srv whose policy denies tcp (priority 1); a
      client on h2 in group cli. t0, then the allow rule (netweave: POST a rule `in tcp 8080
      from cli allow` priority 10; OVN: `acl-add` to-lport 1010 `ip4.src == $nwo_cli_ip4 &&
      tcp.dst == 8080` allow-related), until the first new TCP connection from the client is
      established (bench/ovn_probe.py: a fresh connection attempt every 5 ms). Then the rule is
      deleted and we time until a new connection gets no answer (attempts in sequence, 5 ms
      apart, each given 0.3 s; the first of three failures in a row).
Sizes grow in one cluster per system: population to the first size, measure, grow to the next.

    python -m bench.ovn [--ports 1000,10000] [-n 20] [--rules 10] [--systems netweave,ovn] [--quick]
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from bench import common
from bench.ovn_sim import OvnCluster, missing_binaries
from model import ipam
from topologies import launch
from topologies.cluster import Cluster
from topologies.common import free_port, wait_until
from topologies.ovs import sh

log = logging.getLogger("bench.ovn")
TENANT, NETS, GROUPS_PER_NET, RULES_PER_GROUP = "nwo", 10, 2, 5
NW_NAME, NW_UNDERLAY, OVN_UNDERLAY = "nwo", "10.97.0.0/24", "10.93.0.0/24"
PORT = 8080


def net_name(i: int) -> str:
    return f"nwo{i}"


def subnet(i: int) -> tuple[str, str, int]:
    return f"10.{80 + i}.0.0/16", f"10.{80 + i}.0.1", 16


def pop_group(j: int) -> str:
    return f"nwog{j % NETS}{'ab'[(j // NETS) % GROUPS_PER_NET]}"


def pop_port(j: int) -> tuple[str, str, str]:
    """(network, address, group) of population port j: its network's 10.x.10.0 and up, so the
    measured ports (10.80.0.2 and up) never meet it."""
    i, k = j % NETS, j // NETS
    return net_name(i), f"10.{80 + i}.{10 + k // 250}.{k % 250 + 2}", pop_group(j)


def pop_rules():
    """(group, rule id, peer group, port, action) of the population's 100 rules."""
    for i in range(NETS):
        for g in "ab":
            for r in range(RULES_PER_GROUP):
                yield f"nwog{i}{g}", r + 1, f"nwog{i}{'ba'[g == 'b']}", 1000 + r, ("allow", "deny")[r % 2]


def ms(x: float) -> float:
    return round(1000 * x, 1)


def stats(xs: list[float]) -> dict:
    ok = [x for x in xs if x != float("inf")]
    return {"n": len(xs), "timeouts": len(xs) - len(ok), "p50_ms": ms(common.percentile(ok, 50)),
            "p99_ms": ms(common.percentile(ok, 99)), "samples_ms": [ms(x) if x != float("inf") else None for x in xs]}


class Probes:
    """The two long-lived probe processes in the client's namespace (pinger.py, ovn_probe.py)."""

    def __init__(self, netns: str):
        self.procs = []
        for script in ("pinger.py", "ovn_probe.py"):
            p = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, os.path.join(common.ROOT, "bench", script)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.procs.append(p)
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{script} did not start in {netns}")

    def ask(self, which: int, line: str):
        p = self.procs[which]
        p.stdin.write(line + "\n")
        p.stdin.flush()
        return p

    @staticmethod
    def answer(p) -> float:
        line = p.stdout.readline().strip()
        return float("inf") if line in ("timeout", "") else float(line)

    def close(self):
        for p in self.procs:
            p.kill()
            p.wait()


# ---------------------------------------------------------------- the two systems, one interface
class Netweave:
    name = "netweave"

    def __init__(self):
        Cluster(NW_NAME).down()
        self.c = Cluster(NW_NAME, underlay=NW_UNDERLAY, rest_port=free_port(), of_port=free_port(),
                         uplinks=False)
        self.s = requests.Session()
        self.pop = 0
        self.server = None

    def post(self, path: str, body: dict, session=None):
        r = (session or self.s).post(self.c.url + "/api/v1/" + path, json=body, timeout=120)
        if not r.ok:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:300]}")

    def up(self):
        self.c.up(3, wait=90)
        self.post(f"tenants/{TENANT}/", {"tenantName": TENANT})
        for i in range(NETS):
            sn, gw, _ = subnet(i)
            self.post(f"networks/{TENANT}:{net_name(i)}/", {"tenantName": TENANT, "networkName": net_name(i),
                                                             "subnet": sn, "gateway": gw})
        groups = sorted({g for g, *_ in pop_rules()})
        for g in groups:                     # policies, then the groups using them, then the rules
            self.post(f"policys/{TENANT}:{g}p/", {"tenantName": TENANT, "policyName": f"{g}p"})
            self.post(f"endpointGroups/{TENANT}:{g}/", {"tenantName": TENANT, "groupName": g,
                                                        "networkName": net_name(int(g[4])), "policies": [f"{g}p"]})
        for g, rid, peer, port, action in pop_rules():
            self.post(f"rules/{TENANT}:{g}p:{rid}/", {"tenantName": TENANT, "policyName": f"{g}p", "ruleId": str(rid),
                                                     "direction": "in", "priority": 10, "protocol": "tcp", "port": port,
                                                     "fromEndpointGroup": peer, "action": action})
        # the measured topology: server group with a tcp deny, client group, attach group (open)
        self.post(f"policys/{TENANT}:srvp/", {"tenantName": TENANT, "policyName": "srvp"})
        self.post(f"rules/{TENANT}:srvp:1/", {"tenantName": TENANT, "policyName": "srvp", "ruleId": "1",
                                              "direction": "in", "priority": 1, "protocol": "tcp", "action": "deny"})
        for g, pol in (("srv", ["srvp"]), ("cli", []), ("att", [])):
            self.post(f"endpointGroups/{TENANT}:{g}/", {"tenantName": TENANT, "groupName": g,
                                                        "networkName": net_name(0), "policies": pol})

    def populate(self, total: int):
        """Endpoint records through netweave's REST API, each with a link of its name in its
        host's namespace (a tap device; netplugin releases an endpoint whose link is gone).
        They are written to the cluster's store by a second netmaster without OpenFlow while
        the cluster's is stopped: through the live one, 10k creates took over 6 minutes here
        (each write re-derives the switches' flows; issue 12), more than one lock hold. The
        cluster's netmaster then starts on that store and reconciles every switch, as after
        any restart; settle() waits for that."""
        hosts = sorted(self.c.state["hosts"])
        for i, h in enumerate(hosts):
            links = [f"tuntap add dev nwop{j} mode tap" for j in range(self.pop, total) if j % len(hosts) == i]
            if links:
                sh("ip", "-n", self.c.host_ns(h), "-batch", "-", input="\n".join(links) + "\n")
        self.c.netmaster_stop()
        rest = free_port()
        cmd = launch.netmaster_cmd(self.c.python, [f"127.0.0.1:{rest}"], free_port(),
                                   f"sqlite://{self.c.workdir}/state.db", extra=["--no-openflow"], pki_dir=self.c.pki)
        with open(os.path.join(self.c.workdir, "netmaster-populate.log"), "ab") as logf:
            nm = subprocess.Popen(cmd, cwd=common.ROOT, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{rest}/api/v1/"
        try:
            wait_until(lambda: nm.poll() is not None or requests.get(f"http://127.0.0.1:{rest}/version", timeout=1).ok,
                       30, interval=0.1, what="the populating netmaster")
            if nm.poll() is not None:
                raise RuntimeError(f"the populating netmaster exited with code {nm.returncode}")

            def one(rng):
                with requests.Session() as s:
                    for j in rng:
                        net, ip, g = pop_port(j)
                        r = s.post(f"{url}endpoints/nwop{j}/", json={
                            "tenantName": TENANT, "networkName": net, "groupName": g, "host": hosts[j % len(hosts)],
                            "intfName": f"nwop{j}", "ipAddress": ip}, timeout=120)
                        if not r.ok:
                            raise RuntimeError(f"POST endpoints/nwop{j}/: {r.status_code} {r.text[:300]}")
            for start in range(self.pop, total, 2000):
                todo = list(range(start, min(total, start + 2000)))
                with ThreadPoolExecutor(4) as ex:         # 4 clients: creation is set-up, not measured
                    list(ex.map(one, [todo[k::4] for k in range(4)]))
                log.info("event=bench_populating system=netweave ports=%d", todo[-1] + 1)
        finally:
            nm.terminate()
            try:
                nm.wait(30)
            except subprocess.TimeoutExpired:
                nm.kill()
                nm.wait()
        self.c.netmaster_start()
        self.c.wait_ready(120)
        self.pop = total

    def settle(self, timeout: float = 300) -> str:
        """Until every live host's switch has realized the store's generation (GET
        /api/v1/realization/), or, failing that, holds exactly the flows netmaster wants
        (GET /api/v1/flows/HOST/: no missing, extra or changed entry). The second is there
        because on 2026-11-30 a switch that reconnected after a netmaster restart kept
        realized generation 0 with every flow in place. Returns which said so."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.s.get(self.c.url + "/api/v1/realization/?wait=2", timeout=60)
            r.raise_for_status()
            r = r.json()
            if len(r.get("live", [])) == 3 and not r.get("lagging"):
                return "realization"
            if all(self._flows_equal(h) for h in self.c.state["hosts"]):
                log.warning("event=bench_realization_lags_flows_equal system=netweave lagging=%s hosts=%s",
                            r.get("lagging"), r.get("hosts"))
                return "flows"
            if time.monotonic() > deadline:
                raise RuntimeError(f"netweave: switches did not realize the store within {timeout:.0f} s: {r}")
            log.info("event=bench_settling system=netweave lagging=%s", r.get("lagging"))

    def _flows_equal(self, host: str) -> bool:
        f = self.s.get(f"{self.c.url}/api/v1/flows/{host}/", timeout=60).json()
        d = f.get("diff") or {}
        return bool(f.get("connected")) and len(f.get("desired") or []) > 0 and not any(
            d.get(k) for k in ("missing", "extra", "changed"))

    def endpoint(self, host: str, name: str, group: str) -> str:
        return self.c.run(host, name, net_name(0), TENANT, group)["ip"]

    def attach(self, host: str, name: str, ip: str, mac: str) -> float:
        t = time.monotonic()
        got = self.c.run(host, name, net_name(0), TENANT, "att")["ip"]
        if got != ip:
            raise RuntimeError(f"netweave: IPAM gave {got}, expected {ip}")
        return time.monotonic() - t

    def rule(self, add: bool) -> float:
        t = time.monotonic()
        path = f"{self.c.url}/api/v1/rules/{TENANT}:srvp:2/"
        if add:
            self.post(f"rules/{TENANT}:srvp:2/", {"tenantName": TENANT, "policyName": "srvp", "ruleId": "2",
                                                  "direction": "in", "priority": 10, "protocol": "tcp", "port": PORT,
                                                  "fromEndpointGroup": "cli", "action": "allow"})
        else:
            self.s.delete(path, timeout=120).raise_for_status()
        return time.monotonic() - t

    def ns(self, name: str) -> str:
        return self.c.ep_ns(name)

    def flows(self, host: str) -> int:
        out = self.c.ovs(host).ofctl("dump-aggregate", check=False)
        return next((int(w.split("=")[1]) for w in out.split() if w.startswith("flow_count=")), -1)

    def down(self):
        self.c.down()


class Ovn:
    name = "OVN"

    def __init__(self):
        self.c = OvnCluster("nwoo", OVN_UNDERLAY, free_port())
        self.pop = 0
        self.ports: dict[str, list[str]] = {}

    def up(self):
        self.c.up(3)
        cmds = [["lr-add", "nwolr"]]
        for i in range(NETS):
            n, (sn, gw, plen) = net_name(i), subnet(i)
            rmac = f"02:4e:00:00:00:{i + 1:02x}"
            cmds += [["ls-add", n], ["lrp-add", "nwolr", f"nwolr-{n}", rmac, f"{gw}/{plen}"],
                     ["lsp-add", n, f"{n}-lr"], ["lsp-set-type", f"{n}-lr", "router"],
                     ["lsp-set-addresses", f"{n}-lr", "router"], ["lsp-set-options", f"{n}-lr", f"router-port=nwolr-{n}"]]
        for g in sorted({g for g, *_ in pop_rules()}) + ["nwo_srv", "nwo_cli", "nwo_att"]:
            cmds.append(["pg-add", pg(g)])
        for g, rid, peer, port, action in pop_rules():
            cmds.append(["--type=port-group", "acl-add", pg(g), "to-lport", str(1000 + 10 + rid),
                         f"outport == @{pg(g)} && ip4.src == ${pg(peer)}_ip4 && tcp.dst == {port}",
                         "allow-related" if action == "allow" else "drop"])
        cmds.append(["--type=port-group", "acl-add", "nwo_srv", "to-lport", "1001", "outport == @nwo_srv && ip4 && tcp",
                     "drop"])
        self.c.nb_batch(cmds)
        self.c.nbctl("--wait=hv", "sync")

    def _lsp(self, name: str, net: str, ip: str, mac: str, group: str) -> list[list[str]]:
        a = f'"{mac} {ip}"'
        return [[f"--id=@{name}", "create", "logical_switch_port", f"name={name}", f"addresses={a}",
                 f"port_security={a}"], ["add", "logical_switch", net, "ports", f"@{name}"],
                ["add", "port_group", pg(group), "ports", f"@{name}"]]

    def populate(self, total: int):
        cmds = []
        for j in range(self.pop, total):
            net, ip, g = pop_port(j)
            cmds += self._lsp(f"nwop{j}", net, ip, ipam.mac_for(ip), g)
        self.c.nb_batch(cmds, chunk=1500)            # 500 ports a transaction
        self.pop = total

    def settle(self, timeout: float = 300) -> str:
        self.c.nbctl("--wait=hv", "--timeout=%d" % timeout, "sync", timeout=timeout + 10)
        return "nbctl --wait=hv sync"

    def endpoint(self, host: str, name: str, group: str) -> str:
        ip = self.next_ip()
        mac = ipam.mac_for(ip)
        self.c.nb_batch(self._lsp(name, net_name(0), ip, mac, pg_of(group)))
        self.c.plug(host, name, ip, mac, 16, subnet(0)[1])
        return ip

    def next_ip(self) -> str:
        used = [ipaddress.IPv4Address(e["ip"]) for e in self.c.endpoints.values()]
        return str(max(used) + 1) if used else "10.80.0.2"

    def attach(self, host: str, name: str, ip: str, mac: str) -> float:
        t = time.monotonic()
        self.c.nb_batch(self._lsp(name, net_name(0), ip, mac, "nwo_att"))
        self.c.plug(host, name, ip, mac, 16, subnet(0)[1])
        return time.monotonic() - t

    RULE = ("outport == @nwo_srv && ip4.src == $nwo_cli_ip4 && tcp.dst == %d" % PORT)

    def rule(self, add: bool) -> float:
        t = time.monotonic()
        if add:
            self.c.nbctl("--type=port-group", "acl-add", "nwo_srv", "to-lport", "1010", self.RULE, "allow-related")
        else:
            self.c.nbctl("--type=port-group", "acl-del", "nwo_srv", "to-lport", "1010", self.RULE)
        return time.monotonic() - t

    def ns(self, name: str) -> str:
        return self.c.ep_ns(name)

    def flows(self, host: str) -> int:
        return self.c.flow_count(host)

    def down(self):
        self.c.down()


def pg(group: str) -> str:
    """OVN port group names must be identifiers (they appear in `@pg` and `$pg_ip4`)."""
    return group if group.startswith("nwo_") else f"nwo_{group}"


def pg_of(group: str) -> str:
    return f"nwo_{group}"


# ---------------------------------------------------------------- the measurement
def measure(sysm, sizes: list[int], n: int, rules: int) -> dict:
    out = {}
    probes = server = None
    t = time.monotonic()
    try:
        sysm.up()
        log.info("event=bench_up system=%s seconds=%.1f", sysm.name, time.monotonic() - t)
        srv_ip = sysm.endpoint("h1", "srv", "srv")
        cli_ip = sysm.endpoint("h2", "cli", "cli")
        server = subprocess.Popen(["ip", "netns", "exec", sysm.ns("srv"), sys.executable, "-m", "topologies.tcpecho",
                                   "serve", str(PORT)], cwd=common.ROOT, stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "listening"
        # OVS's tunnel neighbour cache is empty on a new cluster and its first packet to an unknown
        # VTEP is dropped (platform.md): one port on h3 and pings from the client warm h2<->h1, h2<->h3
        warm_ip = sysm.endpoint("h3", "w3", "att")
        for ip in (srv_ip, warm_ip):
            subprocess.run(["ip", "netns", "exec", sysm.ns("cli"), "ping", "-c3", "-i0.2", "-W1", ip],
                           capture_output=True)
        probes = Probes(sysm.ns("cli"))
        nxt = ipaddress.IPv4Address(warm_ip) + 1
        seq = 0
        for size in sizes:
            t = time.monotonic()
            sysm.populate(size)
            t_pop = time.monotonic() - t
            settled_by = sysm.settle()
            t_settle = time.monotonic() - t - t_pop
            log.info("event=bench_populated system=%s ports=%d populate_s=%.1f settle_s=%.1f", sysm.name, size,
                     t_pop, t_settle)
            # (b) first, while the attach ports are not yet more than the population
            if Probes.answer(probes.ask(1, f"closed {srv_ip} {PORT}")) == float("inf"):
                raise RuntimeError(f"{sysm.name}: tcp to the server is not denied before the rule")
            opened, closed, cmd_add, cmd_del = [], [], [], []
            for k in range(rules):
                p = probes.ask(1, f"open {srv_ip} {PORT}")
                t0 = time.monotonic()
                cmd_add.append(sysm.rule(True))
                opened.append(Probes.answer(p) - t0)
                p = probes.ask(1, f"closed {srv_ip} {PORT}")
                t0 = time.monotonic()
                cmd_del.append(sysm.rule(False))
                closed.append(Probes.answer(p) - t0)
                log.info("event=bench_rule system=%s ports=%d sample=%d allow_ms=%.0f deny_ms=%.0f", sysm.name, size,
                         k, 1000 * opened[-1], 1000 * closed[-1])
                # a probe already past its first failed attempt may straddle the add: settle between
                time.sleep(0.2)
            samples, cmds = [], []
            for k in range(n):
                host, ip = ("h1", "h3")[k % 2], str(nxt)
                mac = ipam.mac_for(ip)
                subprocess.run(["ip", "netns", "exec", sysm.ns("cli"), "ip", "neigh", "replace", ip, "lladdr", mac,
                                "dev", "eth0", "nud", "permanent"], check=True)
                p = probes.ask(0, ip)
                t0 = time.monotonic()
                cmds.append(sysm.attach(host, f"a{seq}", ip, mac))
                samples.append(Probes.answer(p) - t0)
                nxt += 1
                seq += 1
                log.info("event=bench_attach system=%s ports=%d sample=%d first_ping_ms=%.0f cmd_ms=%.0f", sysm.name,
                         size, k, 1000 * samples[-1], 1000 * cmds[-1])
            out[str(size)] = {"populate_s": round(t_pop, 1), "settle_s": round(t_settle, 1), "settled_by": settled_by,
                              "flows_per_host": {h: sysm.flows(h) for h in ("h1", "h2", "h3")},
                              "attach_first_ping": stats(samples), "attach_cmd": stats(cmds),
                              "rule_add_enforced": stats(opened), "rule_add_cmd": stats(cmd_add),
                              "rule_del_enforced": stats(closed), "rule_del_cmd": stats(cmd_del)}
    finally:
        if probes:
            probes.close()
        if server:
            server.kill()
            server.wait()
        sysm.down()
    return out


def rows(sizes: dict) -> list:
    """sizes: {"1000": {"netweave": {...}, "OVN": {...}}, ...} -> table rows (figure, netweave, OVN, ratio)."""
    out = []
    for size in sorted(sizes, key=int):
        d = sizes[size]
        nw, ov = d.get("netweave"), d.get("OVN")
        for key, what in (("attach_first_ping", "port add -> first remote ping"),
                          ("rule_add_enforced", "rule add -> enforced (allowed)"),
                          ("rule_del_enforced", "rule delete -> enforced (denied)")):
            for p in ("p50_ms", "p99_ms"):
                a = nw[key][p] if nw else None
                b = ov[key][p] if ov else None
                ratio = f"{a / b:.2f}" if a and b else "-"
                out.append((f"{size} ports: {what}, {p[:3]}", f"{a} ms" if a is not None else "-",
                            f"{b} ms" if b is not None else "-", ratio))
    return out


def table(r: list) -> str:
    head = ("figure", "netweave", "OVN 23.03", "netweave/OVN")
    r = [head] + [tuple(str(c) for c in x) for x in r]
    w = [max(len(x[i]) for x in r) for i in range(4)]
    lines = ["  ".join(c.ljust(w[j]) for j, c in enumerate(x)).rstrip() for x in r]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")          # so every `finally` removes what it made


def main(argv=None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    p = argparse.ArgumentParser(prog="python -m bench.ovn")
    p.add_argument("--ports", default="1000,10000", help="population sizes, grown in one cluster (default 1000,10000)")
    p.add_argument("-n", type=int, default=20, help="ports attached per size (default 20)")
    p.add_argument("--rules", type=int, default=10, help="rule add/delete samples per size (default 10)")
    p.add_argument("--systems", default="netweave,ovn")
    p.add_argument("--quick", action="store_true", help="200 ports, 5 attaches, 3 rule samples")
    a = p.parse_args(argv)
    common.setup_logging()
    if a.quick:
        a.ports, a.n, a.rules = "200", 5, 3
    sizes = [int(x) for x in a.ports.split(",")]
    systems = a.systems.split(",")
    missing = missing_binaries()
    results, errors = {}, {}
    for s in systems:
        if s == "ovn" and missing:
            errors["OVN"] = f"not installed: {', '.join(missing)} (apt-get install ovn-central ovn-host)"
            continue
        sysm = Netweave() if s == "netweave" else Ovn()
        try:
            results[sysm.name] = measure(sysm, sizes, a.n, a.rules)
        except Exception as exc:                     # report it, keep the other system's figures
            log.exception("event=bench_failed system=%s", sysm.name)
            errors[sysm.name] = f"{type(exc).__name__}: {exc}"[:2000]
    # merge into the section: other sizes measured by an earlier run stay, each with its time
    try:
        import json
        with open(common.RESULTS) as f:
            prev = json.load(f).get("benchmarks", {}).get("ovn", {})
    except (OSError, ValueError):
        prev = {}
    by_size = prev.get("sizes", {})
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=common.ROOT, capture_output=True,
                            text=True).stdout.strip()
    for name, per in results.items():
        for size, fig in per.items():
            by_size.setdefault(size, {})[name] = dict(fig, measured=stamp, commit=commit)
    out = {"sizes": by_size, "errors": dict(prev.get("errors", {}), **errors) if errors else {},
           "attaches": a.n, "rule_samples": a.rules}
    out["rows"] = [(f, x, y, z) for f, x, y, z in rows(by_size)]
    common.save("ovn", out)
    print(table(rows({k: v for k, v in by_size.items() if int(k) in sizes})))
    for name, err in errors.items():
        print(f"{name}: FAILED: {err}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())

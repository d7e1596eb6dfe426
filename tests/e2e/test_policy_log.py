"""The denied-traffic log end to end: 3 simulated hosts, real OVS with the
deny-log meter, real TCP and UDP.  A deny rule with enableLogging logs each
denied connection once (SYN retransmits included), with the right host,
tenant, rule, endpoints, protocol and port; REST and netctl show it; the rule's
counter moves; and the meter caps what reaches netmaster per host."""
import json
import subprocess
import sys
import time

import pytest
import requests

from tests.e2e.conftest import TCP, running_cluster
from tests.procs import ROOT
from topologies.common import wait_until

RATE = 10                   # --deny-log-rate: packets/s per host (burst: the same)
N_TCP = 4                   # denied TCP connections opened at once


@pytest.fixture(scope="module")
def cluster():
    with running_cluster("nwl", "10.96.2.0/24", netmaster_args=["--deny-log-rate", str(RATE)]) as e:
        yield e


def netctl(e, *args):
    p = subprocess.run([sys.executable, "-m", "netctl.cli", "--netmaster", e.url, *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p.stdout


def log(e, **params):
    r = requests.get(f"{e.url}/api/v1/policylog/", params=params, timeout=10)
    assert r.ok, r.text
    return r.json()


def rule_packets(e, key):
    return requests.get(f"{e.url}/api/v1/inspect/rules/{key}/", timeout=10).json()["Oper"]["packets"]


def connect_all(e, src, ip, port, n, timeout):
    """n TCP connections at once from src, each its own process (a new source port)."""
    ns = e.c.ep_ns(src)
    procs = [subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, TCP, "connect", ip, str(port),
                               str(timeout)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(n)]
    return [p.wait(timeout + 30) for p in procs]


UDP_BURST = """
import socket, sys, time
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0 = time.monotonic()
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))          # a new source port: a new connection each
    s.sendto(b"x", (ip, port))
    s.close()
    time.sleep(0.001)               # ~1000/s, far above the meter's rate, but not so fast that the
                                    # endpoint's veth queue drops them before the switch sees them
print(time.monotonic() - t0)
"""


def test_denied_connections_logged_once_each(cluster):
    e = cluster
    netctl(e, "net", "create", "--subnet=10.1.2.0/24", "--gateway=10.1.2.1", "contiv-net")
    netctl(e, "policy", "create", "db-policy")
    netctl(e, "policy", "rule-add", "db-policy", "1", "-direction=in", "-protocol=tcp", "-action=deny", "--log")
    netctl(e, "policy", "rule-add", "db-policy", "2", "-direction=in", "-protocol=tcp", "-port=8888",
           "-action=allow", "-priority=10")
    netctl(e, "policy", "rule-add", "db-policy", "3", "-direction=in", "-protocol=udp", "-port=9999",
           "-action=deny", "-priority=10", "--log")
    netctl(e, "policy", "rule-add", "db-policy", "4", "-direction=in", "-protocol=tcp", "-port=2222",
           "-action=deny", "-priority=10")                     # denied, not logged
    netctl(e, "group", "create", "-policy=db-policy", "contiv-net", "db-group")
    db = e.c.run("h2", "db1", "contiv-net", group="db-group")
    e.c.run("h1", "app", "contiv-net")
    e.serve("db1", 8888)
    e.ping_eventually("app", db["ip"])                       # icmp is not covered: warms the tunnel too
    wait_until(e.switches_settled, 30, what="switches settled")
    eps = {x["ipAddress"][0]: x["endpointID"] for x in requests.get(f"{e.url}/api/v1/endpoints/", timeout=10).json()}
    app_ip = e.c.ip("app")
    assert e.tcp("app", db["ip"], 8888)                       # allowed: not logged
    assert not e.tcp("app", db["ip"], 2222, timeout=1.5)      # denied by an unlogged rule: not logged
    before = rule_packets(e, "default:db-policy:1")

    # N connections to a denied port; 2.5 s each: the first SYN and its retransmit 1 s later
    assert connect_all(e, "app", db["ip"], 5432, N_TCP, 2.5) == [1] * N_TCP
    wait_until(lambda: len(log(e, tenant="default")) >= N_TCP, 15, what="the denied connections logged")
    time.sleep(1.5)                                           # any late duplicate would show now
    entries = log(e, tenant="default")
    assert len(entries) == N_TCP, entries
    assert len({x["srcPort"] for x in entries}) == N_TCP      # one entry per connection
    for x in entries:
        assert (x["host"], x["tenant"], x["rule"], x["direction"]) == ("h2", "default", "default:db-policy:1", "in"), x
        assert (x["src"], x["srcEndpoint"], x["dst"], x["dstEndpoint"]) == (app_ip, eps[app_ip], db["ip"],
                                                                            eps[db["ip"]]), x
        assert (x["protocol"], x["port"]) == ("tcp", 5432), x
    # the rule's counter moved by every SYN, retransmits included: more packets than log entries
    after = wait_until(lambda: (lambda p: p if p >= before + 2 * N_TCP else None)(
        rule_packets(e, "default:db-policy:1")), 15, what="rule 1's counter")
    assert after >= before + 2 * N_TCP

    # Prometheus: the denied connections and the rule's packets, as scraped
    from tests.test_operations import metric
    text = requests.get(f"{e.url}/metrics", timeout=30).text
    assert metric(text, "netweave_policy_denied_connections_total", tenant="default",
                  rule="default:db-policy:1", host="h2") == N_TCP
    assert metric(text, "netweave_rule_packets_total", tenant="default", policy="db-policy", rule="1",
                  host="h2") >= after

    # REST with a limit, and netctl
    assert log(e, tenant="default", limit=2) == entries[-2:]
    assert requests.get(f"{e.url}/api/v1/policylog/", params={"limit": "x"}, timeout=10).status_code == 400
    out = netctl(e, "policy", "log").splitlines()
    assert out[0].split() == ["Time", "Host", "Rule", "Source", "Destination", "Protocol", "Port"]
    rows = out[2:]
    assert len(rows) == N_TCP
    for row in rows:
        assert all(w in row for w in ("h2", "db-policy:1", app_ip, db["ip"], "tcp", "5432", eps[db["ip"]])), row
    assert json.loads(netctl(e, "policy", "log", "-j", "--limit", "3")) == entries[-3:]

    # the netmaster's log holds one structured line per connection
    with open(f"{e.c.workdir}/netmaster.log") as f:
        lines = [ln for ln in f if "event=policy_deny " in ln]
    assert len(lines) == N_TCP
    assert all(f"host=h2 tenant=default rule=default:db-policy:1 src={app_ip} src_ep={eps[app_ip]} "
               f"dst={db['ip']} dst_ep={eps[db['ip']]} proto=tcp port=5432" in ln for ln in lines), lines


def test_meter_caps_what_reaches_netmaster(cluster):
    e = cluster
    db_ip = e.c.ip("db1")
    n = 400
    before = rule_packets(e, "default:db-policy:3")
    p = e.c.exec("app", sys.executable, "-c", UDP_BURST, db_ip, "9999", str(n), timeout=60)
    assert p.returncode == 0, p.stderr
    elapsed = float(p.stdout.strip())
    # the datagrams met the rule in h2's datapath (the counter settles)...
    seen = []

    def settled():
        seen.append(rule_packets(e, "default:db-policy:3"))
        return len(seen) > 1 and seen[-1] == seen[-2] > before
    wait_until(settled, 20, interval=0.5, what="rule 3's counter")
    denied = seen[-1] - before
    udp = [x for x in log(e, tenant="default", limit=1000) if x["protocol"] == "udp"]
    # ...but the meter let at most rate x time + burst of them reach netmaster (+1: the
    # token bucket's rounding), each a new connection logged once
    bound = RATE * (elapsed + 0.2) + RATE + 1
    assert 0 < len(udp) <= bound, (len(udp), elapsed, bound, denied)
    assert len({x["srcPort"] for x in udp}) == len(udp)
    assert all((x["rule"], x["port"], x["host"]) == ("default:db-policy:3", 9999, "h2") for x in udp)
    # the rule's own counter says how many were denied: far more than were logged
    assert denied > 2 * bound, (denied, len(udp), n)

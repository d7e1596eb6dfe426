"""Group-based policy end to end: the seed's tutorial on 3 simulated hosts
with real TCP, live rule changes, statefulness, counters and trace."""
import subprocess
import sys

import requests

from tests.e2e.conftest import TCP
from tests.procs import ROOT
from topologies.common import wait_until


def netctl(e, *args):
    p = subprocess.run([sys.executable, "-m", "netctl.cli", "--netmaster", e.url, *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p.stdout


def test_tutorial_policy(cluster):
    e = cluster
    netctl(e, "net", "create", "--subnet=10.1.2.0/24", "--gateway=10.1.2.1", "contiv-net")
    netctl(e, "policy", "create", "db-policy")
    netctl(e, "policy", "rule-add", "db-policy", "1", "-direction=in", "-protocol=tcp", "-action=deny")
    netctl(e, "policy", "rule-add", "db-policy", "2", "-direction=in", "-protocol=tcp", "-port=8888",
           "-action=allow", "-priority=10")
    netctl(e, "group", "create", "-policy=db-policy", "contiv-net", "db-group")
    dbs = [e.c.run(h, f"db{i}", "contiv-net", group="db-group") for i, h in enumerate(("h1", "h2", "h3"), 1)]
    app = e.c.run("h1", "app", "contiv-net")                 # outside the group, on h1 with db1
    for i in (1, 2, 3):
        e.serve(f"db{i}", 8888)
        e.serve(f"db{i}", 5432)
    e.ping_eventually("app", dbs[2]["ip"])                    # icmp is not covered by the tcp rules
    for db in dbs:                                            # same host (db1) and other hosts alike
        assert e.tcp("app", db["ip"], 8888), db
        assert not e.tcp("app", db["ip"], 5432, timeout=1.0), db
    # statefulness: replies of the allowed connection came back through the deny-all-tcp ingress
    # rule of app's side? app has no policy; db's replies to app are established traffic.

    # a rule added while traffic flows takes effect without a restart, and an established
    # connection survives the change
    holder = subprocess.Popen(["ip", "netns", "exec", e.c.ep_ns("app"), sys.executable, TCP, "hold",
                               dbs[1]["ip"], "8888", "6"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "connected"
    netctl(e, "policy", "rule-add", "db-policy", "3", "-direction=in", "-protocol=tcp", "-port=5432",
           "-action=allow", "-priority=10")
    wait_until(lambda: e.tcp("app", dbs[1]["ip"], 5432, timeout=1.0), 15, what="rule 3 opens 5432")
    assert holder.wait(20) == 0, holder.stdout.read()

    # a higher-priority deny on 8888 closes new connections; tie allow/deny at one priority: deny
    netctl(e, "policy", "rule-add", "db-policy", "4", "-direction=in", "-protocol=tcp", "-port=8888",
           "-action=deny", "-priority=10")
    wait_until(lambda: not e.tcp("app", dbs[0]["ip"], 8888, timeout=1.0), 15, what="deny wins the tie")
    netctl(e, "policy", "rule-rm", "db-policy", "4")
    wait_until(lambda: e.tcp("app", dbs[0]["ip"], 8888, timeout=1.0), 15, what="8888 open again")

    # counters moved: rule 1 denied SYNs, rule 2 allowed connections
    r1 = requests.get(f"{e.url}/api/v1/inspect/rules/default:db-policy:1/", timeout=10).json()["Oper"]
    r2 = requests.get(f"{e.url}/api/v1/inspect/rules/default:db-policy:2/", timeout=10).json()["Oper"]
    assert r1["packets"] > 0 and r2["packets"] > 0, (r1, r2)
    assert {h["host"] for h in r2["hosts"]} == {"h1", "h2", "h3"}
    out = netctl(e, "policy", "rule-ls", "db-policy", "--stats")
    assert "Packets" in out.splitlines()[1]


def test_trace_explains_allowed_and_denied(cluster):
    e = cluster
    ep = {x["endpointID"]: x for x in requests.get(f"{e.url}/api/v1/endpoints/", timeout=10).json()}
    app = next(k for k, v in ep.items() if v["ipAddress"][0] == e.c.ip("app"))
    q = {"from": app, "to": e.c.ip("db2"), "protocol": "tcp"}
    ok = requests.get(f"{e.url}/api/v1/trace/", params=dict(q, port=8888), timeout=10).json()
    assert ok["verdict"] == "delivered", ok
    assert ok["decidedBy"]["by"].startswith("rule default:db-policy:2 "), ok["decidedBy"]
    assert [h["host"] for h in ok["hops"]] == ["h1", "h2"]
    bad = requests.get(f"{e.url}/api/v1/trace/", params=dict(q, port=22), timeout=10).json()
    assert bad["verdict"] == "dropped"
    assert bad["decidedBy"]["by"].startswith("rule default:db-policy:1 "), bad["decidedBy"]
    assert bad["decidedBy"]["host"] == "h2"
    out = netctl(e, "trace", app, e.c.ip("db2"), "-protocol=tcp", "-port=22")
    assert "verdict: DROPPED" in out and "rule default:db-policy:1" in out
    # the real switches agree: a TCP connection to port 22 indeed fails
    assert not e.tcp("app", e.c.ip("db2"), 22, timeout=1.0)
    # and so does ofproto/trace on the real source switch (db1 shares app's host h1)
    for port, want in ((8888, "forwarded"), (22, "dropped")):
        t = requests.get(f"{e.url}/api/v1/trace/", params=dict(q, to=e.c.ip("db1"), port=port, live=1),
                         timeout=30).json()
        assert (t["live"]["verdict"], t["live"]["simulated"], t["live"]["agrees"]) == (want, want, True), t["live"]
    t = requests.get(f"{e.url}/api/v1/trace/", params=dict(q, port=22, live=1), timeout=30).json()
    assert t["live"]["agrees"] and t["live"]["verdict"] == "forwarded"   # db2 is remote: h1 sends it on
    out = netctl(e, "trace", app, e.c.ip("db1"), "-port=22", "--live")
    assert "ofproto/trace DROPPED: AGREE" in out
    # a ping to the gateway is answered by the source's own switch, whatever the policy
    net = requests.get(f"{e.url}/api/v1/networks/default:{ep[app]['networkName']}/", timeout=10).json()
    gw = requests.get(f"{e.url}/api/v1/trace/", params={"from": app, "to": net["gateway"], "protocol": "icmp"},
                      timeout=10).json()
    assert gw["verdict"] == "answered", gw
    assert gw["decidedBy"]["by"].startswith("network default:" + ep[app]["networkName"]), gw["decidedBy"]
    assert gw["decidedBy"]["table"] == 1 and [h["host"] for h in gw["hops"]] == [ep[app]["homingHost"]]


def test_wait_returns_when_live_everywhere_and_metrics_move(cluster):
    """`netctl --wait` returns once every switch holds the change: traffic is checked at
    once, with no sleep and no retry, and the switches are read to prove it."""
    from tests.test_operations import metric
    e = cluster
    db2 = e.c.ip("db2")
    e.serve("db2", 7777)
    assert not e.tcp("app", db2, 7777, timeout=1.0)          # rule 1 denies tcp
    p = subprocess.run([sys.executable, "-m", "netctl.cli", "--netmaster", e.url, "--wait", "policy",
                        "rule-add", "db-policy", "5", "-direction=in", "-protocol=tcp", "-port=7777",
                        "-action=allow", "-priority=10", "--timeout", "20"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "live on 3/3 hosts" in p.stdout, (p.stdout, p.stderr)
    for h in ("h1", "h2", "h3"):                               # on every switch already
        assert "tp_dst=7777" in e.flows(h), h
    assert e.tcp("app", db2, 7777, timeout=2.0)                # one try, no wait
    oper = requests.get(f"{e.url}/api/v1/inspect/rules/default:db-policy:5/", timeout=10).json()["Oper"]
    assert oper["realization"]["liveHosts"] == oper["realization"]["hosts"] == 3, oper
    r = requests.delete(f"{e.url}/api/v1/rules/default:db-policy:5/?wait=true&timeout=20", timeout=30)
    assert r.ok and r.headers["X-Netweave-Realized"] == "3/3" and "X-Netweave-Lagging" not in r.headers
    for h in ("h1", "h2", "h3"):
        assert "tp_dst=7777" not in e.flows(h), h
    assert not e.tcp("app", db2, 7777, timeout=1.0)
    real = requests.get(f"{e.url}/api/v1/realization/", timeout=10).json()
    assert real["lagging"] == [] and {h["host"] for h in real["hosts"]} == {"h1", "h2", "h3"}

    # health and metrics of netmaster and of every agent, after that traffic
    assert requests.get(f"{e.url}/readyz", timeout=10).json() == {
        "ready": True, "checks": {"store": "ok", "openflow": "ok", "switches": "ok"}}
    text = requests.get(f"{e.url}/metrics", timeout=30).text
    assert metric(text, "netweave_switches_connected") == 3
    assert metric(text, "netweave_hosts", state="up") == 3
    assert metric(text, "netweave_network_endpoints", tenant="default", network="contiv-net") == 4
    denied = metric(text, "netweave_rule_packets_total", tenant="default", policy="db-policy", rule="1", host="h2")
    assert denied > 0
    assert not e.tcp("app", db2, 5433, timeout=1.0)          # one more denied connection to db2 on h2
    text = requests.get(f"{e.url}/metrics", timeout=30).text
    assert metric(text, "netweave_rule_packets_total", tenant="default", policy="db-policy", rule="1",
                  host="h2") > denied
    for h in ("h1", "h2", "h3"):
        assert metric(text, "netweave_flow_mods_total", host=h, command="add") > 0
        assert metric(text, "netweave_reconciles_total", host=h, outcome="committed") > 0
        assert metric(text, "netweave_switch_realized_generation", host=h) >= real["generation"]
        assert sum(metric(text, "netweave_switch_flows", host=h, table=str(t)) for t in (0, 51)) > 0
    for rec in requests.get(f"{e.url}/api/v1/hosts/", timeout=10).json():
        base = f"https://{rec['vtepIP']}:{rec['agentPort']}"       # the agent's certificate, by netweave's CA
        assert requests.get(base + "/readyz", timeout=10, verify=e.c.ca).json()["ready"] is True, rec["hostLabel"]
        at = requests.get(base + "/metrics", timeout=10, verify=e.c.ca).text
        assert metric(at, "netweave_agent_heartbeats_total", result="ok") > 0
        assert metric(at, "netweave_agent_endpoint_ports") >= 1
        assert metric(at, "netweave_agent_cni_request_duration_seconds_count", command="ADD", result="ok") >= 1

"""Group-based policy end to end: the seed's tutorial on 3 simulated hosts
with real TCP, live rule changes, statefulness, counters and trace."""
import subprocess
import sys

import requests

from tests.e2e.conftest import TCP
from tests.procs import ROOT, wait_until


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

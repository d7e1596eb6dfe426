"""An operator's view of netmaster without switches: health, readiness that
follows the store, Prometheus metrics that move, and write generations."""
import sqlite3

import requests

from store.sqlite import SqliteStore
from tests.procs import Etcd, Netmaster
from topologies.common import wait_until

NET = {"gateway": "10.1.2.1", "subnet": "10.1.2.0/24", "encap": "vxlan"}


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus' text format (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        sname, _, rest = series.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if sname == name and got == want:
            return float(value)
    return 0.0


def test_sqlite_generations_grow_persist_and_migrate(tmp_path):
    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)                        # a file from before generations existed
    db.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO kv VALUES ('obj/x', '{\"v\": 1}')")
    db.commit()
    db.close()
    s = SqliteStore(path)
    assert s.get("obj/x") == {"v": 1} and s.generation == 0 and s.key_generation("obj/x") == 0
    s.commit({"a": {"v": 1}})
    s.commit({"b": {"v": 2}}, ["obj/x"])
    assert s.generation == 2
    assert (s.key_generation("a"), s.key_generation("b"), s.key_generation("obj/x")) == (1, 2, 0)
    s.close()
    s = SqliteStore(path)                             # generations survive a restart and keep growing
    assert s.generation == 2 and s.key_generation("b") == 2
    s.commit({"a": {"v": 3}})
    assert s.generation == 3 and s.key_generation("a") == 3
    s.close()


def test_health_metrics_and_generation_headers(netmaster):
    nm = netmaster
    assert nm.get("/healthz").json() == {"status": "ok"}
    r = nm.get("/readyz")
    assert r.status_code == 200 and r.json() == {"ready": True, "checks": {"store": "ok", "openflow": "ok"}}
    g1 = int(nm.post("/api/v1/networks/default:contiv-net/", NET).headers["X-Netweave-Generation"])
    g2 = int(nm.post("/api/v1/networks/default:n2/", {"subnet": "10.2.0.0/24"}).headers["X-Netweave-Generation"])
    assert g2 > g1 > 0
    assert nm.post("/api/v1/networks/default:bad/", {"subnet": "10.2.0.0/33"}).status_code == 400
    nm.get("/api/v1/networks/default:missing/")
    # without OpenFlow realization is unknown: ?wait answers at once, without the headers
    r = nm.delete("/api/v1/networks/default:n2/?wait=true&timeout=5")
    assert r.ok and "X-Netweave-Realized" not in r.headers and int(r.headers["X-Netweave-Generation"]) > g2
    assert nm.get("/api/v1/realization/").status_code == 409
    r = nm.delete("/api/v1/networks/default:contiv-net/?wait=maybe")
    assert r.status_code == 400 and r.json()["error"].startswith("wait:")
    assert nm.get("/api/v1/networks/default:contiv-net/").ok         # a refused write stores nothing
    assert nm.post("/api/v1/networks/default:n3/?wait=1&timeout=x", NET).json()["error"].startswith("timeout:")
    m = nm.get("/metrics")
    assert m.headers["Content-Type"].startswith("text/plain")
    text = m.text
    route = "/api/v1/networks/{key}"
    assert metric(text, "netweave_rest_requests_total", method="POST", route=route, status="200") == 2
    assert metric(text, "netweave_rest_requests_total", method="POST", route=route, status="400") == 2
    assert metric(text, "netweave_rest_requests_total", method="GET", route=route, status="404") == 1
    assert metric(text, "netweave_rest_request_duration_seconds_count", method="POST", route=route) == 4
    assert metric(text, "netweave_store_commit_duration_seconds_count", backend="sqlite") >= 3
    assert metric(text, "netweave_network_endpoints", tenant="default", network="contiv-net") == 0
    assert metric(text, "netweave_store_generation") >= g2 + 1


def test_readyz_follows_the_store(etcd):
    nm = Netmaster(store=etcd.url, extra=["--no-openflow"])
    try:
        nm.start()
        assert nm.get("/readyz").status_code == 200
        etcd.stop()
        r = nm.get("/readyz")
        assert r.status_code == 503, r.text
        assert r.json()["checks"]["store"].startswith(f"etcd store 127.0.0.1:{etcd.port}: unreachable")
        assert r.reason.startswith("not ready: store: etcd store")
        assert nm.get("/healthz").ok                    # alive all the same
        etcd.start()
        wait_until(lambda: nm.get("/readyz").status_code == 200, 20, what="ready again")
    finally:
        nm.cleanup()

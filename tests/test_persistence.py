"""Desired state survives a netmaster restart and kill -9, on both stores;
two netmasters on one etcd see each other's writes."""
import shutil

import pytest

from tests.procs import Netmaster
from topologies.common import wait_until

NET = {"gateway": "10.1.2.1", "subnet": "10.1.2.0/24", "encap": "vxlan"}


def _populate(nm):
    assert nm.post("/api/v1/networks/default:contiv-net/", NET).ok
    assert nm.post("/api/v1/hosts/h1/", {"vtepIP": "10.99.0.1", "dpid": "00000000000000a1"}).ok
    assert nm.post("/api/v1/endpoints/ep1/", {"tenantName": "default", "networkName": "contiv-net",
                                              "host": "h1", "intfName": "nwep1"}).ok


def _check(nm):
    net = nm.get("/api/v1/inspect/networks/default:contiv-net/").json()
    assert net["Config"]["subnet"] == "10.1.2.0/24"
    assert net["Oper"]["pktTag"] == 1 and net["Oper"]["numEndpoints"] == 1
    # allocations survived too: the next endpoint gets the next address, the next network the next tag
    ep = nm.post("/api/v1/endpoints/ep2/", {"tenantName": "default", "networkName": "contiv-net",
                                            "host": "h1", "intfName": "nwep2"}).json()
    assert ep["ipAddress"][0] == "10.1.2.3"
    assert nm.post("/api/v1/networks/default:n2/", {"subnet": "10.2.0.0/24"}).ok
    assert nm.get("/api/v1/inspect/networks/default:n2/").json()["Oper"]["pktTag"] == 2


@pytest.mark.parametrize("backend", ["sqlite", "etcd"])
@pytest.mark.parametrize("how", ["restart", "kill9"])
def test_state_survives(backend, how, request):
    etcd = request.getfixturevalue("etcd") if backend == "etcd" else None
    nm = Netmaster(store=etcd.url if etcd else None, extra=["--no-openflow"])
    try:
        nm.start()
        _populate(nm)
        nm.kill9() if how == "kill9" else nm.stop()
        nm.start()
        _check(nm)
    finally:
        nm.cleanup()


def test_two_netmasters_share_etcd(etcd):
    a = Netmaster(store=etcd.url, extra=["--no-openflow"])
    b = Netmaster(store=etcd.url, extra=["--no-openflow"])
    try:
        a.start()
        b.start()
        assert a.post("/api/v1/networks/default:contiv-net/", NET).ok
        wait_until(lambda: b.get("/api/v1/networks/default:contiv-net/").ok, 10, what="b sees a's network")
        # the rules hold across netmasters: an overlapping subnet written through b is refused
        r = b.post("/api/v1/networks/default:other/", {"subnet": "10.1.0.0/16"})
        assert r.status_code == 409, r.text
        # and allocations do not collide
        assert b.post("/api/v1/networks/default:n2/", {"subnet": "10.2.0.0/24"}).ok
        wait_until(lambda: a.get("/api/v1/inspect/networks/default:n2/").ok, 10, what="a sees n2")
        assert a.get("/api/v1/inspect/networks/default:n2/").json()["Oper"]["pktTag"] == 2
    finally:
        a.cleanup()
        b.cleanup()


def test_etcd_store_watch_and_atomic_commit(etcd):
    from store.etcd import EtcdStore
    s1 = EtcdStore("127.0.0.1", etcd.port, "/nwtest/")
    s2 = EtcdStore("127.0.0.1", etcd.port, "/nwtest/")
    seen = []
    s2.watch(lambda evs: seen.extend(evs))
    try:
        with s1.write_lock():
            s1.commit({"a": {"v": 1}, "b": {"v": 2}})
        wait_until(lambda: s2.get("a") == {"v": 1} and s2.get("b") == {"v": 2}, 10, what="mirror")
        s1.commit({"c": {"v": 3}}, ["a"])
        wait_until(lambda: s2.get("a") is None and s2.get("c") == {"v": 3}, 10, what="delete seen")
        assert {e.key for e in seen} >= {"a", "b", "c"}
        assert any(e.key == "a" and e.value is None for e in seen)
    finally:
        s1.close()
        s2.close()

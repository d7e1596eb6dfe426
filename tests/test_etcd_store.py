"""The etcd store under failure: a real etcd killed and restarted (and one member
of a real 3-member cluster) while writers go through two netmasters.  Both
netmasters converge to etcd's state, no acknowledged write is lost, nothing
refers to a deleted object, an outage answers 503 naming the store, and a
watch that resumes from a compacted revision re-reads everything."""
from __future__ import annotations

import json
import tempfile
import threading
import time

import pytest
import requests

from tests.procs import Netmaster
from topologies.common import wait_until
from topologies.etcd import EtcdCluster

PREFIX = "/nwtest/"


class Writers:
    """Threads that create and delete networks and endpoints through two
    netmasters, recording each request's outcome: ok, absent (404 on delete),
    refused (other 4xx), or unknown (503, timeout: it may or may not be stored)."""

    def __init__(self, nms, n=4):
        self.nms = nms
        self.n = n
        self.ops: dict[str, list] = {}       # object -> [(op, outcome)]
        self.statuses: list[tuple[int, str]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(n)]
        self.lock = threading.Lock()

    def _req(self, nm, method, path, body=None):
        try:
            r = requests.request(method, nm.url + path, json=body, timeout=20)
        except requests.RequestException:
            return "unknown", 0, ""
        with self.lock:
            self.statuses.append((r.status_code, r.text))
        if r.ok:
            return "ok", r.status_code, r.text
        if r.status_code == 404 and method == "DELETE":
            return "absent", 404, r.text
        if r.status_code < 500:
            return "refused", r.status_code, r.text
        return "unknown", r.status_code, r.text

    def _record(self, obj, op, outcome):
        with self.lock:
            self.ops.setdefault(obj, []).append((op, outcome))

    def _run(self, w):
        i = 0
        while not self.stop.is_set():
            nm_a, nm_b = self.nms[i % 2], self.nms[(i + 1) % 2]
            net = f"w{w}n{i}"
            ep = f"w{w}e{i}"
            out, _, _ = self._req(nm_a, "POST", f"/api/v1/networks/default:{net}/",
                                  {"subnet": f"10.{100 + w}.{i % 250}.0/24", "encap": "vxlan"})
            self._record(("network", f"default:{net}"), "create", out)
            out, _, _ = self._req(nm_b, "POST", f"/api/v1/endpoints/{ep}/",
                                  {"tenantName": "default", "networkName": net, "host": "h1",
                                   "intfName": f"nw{ep}"})
            self._record(("endpoint", ep), "create", out)
            if i % 3:                        # two in three: take both away again, the other way round
                out, _, _ = self._req(nm_a, "DELETE", f"/api/v1/endpoints/{ep}/")
                self._record(("endpoint", ep), "delete", out)
                out, _, _ = self._req(nm_b, "DELETE", f"/api/v1/networks/default:{net}/")
                self._record(("network", f"default:{net}"), "delete", out)
            i += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def expected(self):
        """object -> True (must exist) / False (must not), for objects whose fate is known.
        A write answered 503 may still land later (its transaction reached a member that
        commits it once the cluster has a leader again), as long as nothing else was
        committed since: only a later successful write (which moves the guard) settles the
        object then; a 404 read in between does not."""
        out = {}
        for obj, ops in self.ops.items():
            if any(o == "unknown" for _, o in ops):
                last_unknown = max(i for i, (_, o) in enumerate(ops) if o == "unknown")
                if any(o == "ok" for _, o in ops[last_unknown + 1:]):
                    ops = ops[last_unknown + 1:]
                    first_ok = next(i for i, (_, o) in enumerate(ops) if o == "ok")
                    ops = ops[first_ok:]
                else:
                    continue
            definite = [(op, o) for op, o in ops if o in ("ok", "absent")]
            if definite:
                op, o = definite[-1]
                out[obj] = op == "create" and o == "ok"
        return out


def etcd_state(url_base: str) -> dict:
    """The prefix as etcd holds it (read with curl's equivalent, not netweave's client)."""
    import base64
    b = lambda s: base64.b64encode(s.encode()).decode()
    end = PREFIX[:-1] + chr(ord(PREFIX[-1]) + 1)
    r = requests.post(url_base + "/v3/kv/range", json={"key": b(PREFIX), "range_end": b(end)}, timeout=5)
    r.raise_for_status()
    return {base64.b64decode(kv["key"]).decode()[len(PREFIX):]: json.loads(base64.b64decode(kv["value"]))
            for kv in r.json().get("kvs", [])}


def check_integrity(state: dict):
    """Nothing refers to a deleted object; every allocation has its owner and back."""
    for k, v in state.items():
        if k.startswith("ep/"):
            assert f"obj/network/{v['network']}" in state, f"endpoint {k} refers to deleted network {v['network']}"
            assert state.get(f"ip/{v['network']}/{v['ipAddress'][0]}") == {"endpoint": v["endpointID"]}, k
        elif k.startswith("ip/"):
            assert f"ep/{v['endpoint']}" in state, f"address {k} refers to deleted endpoint"
        elif k.startswith("tag/"):
            assert f"obj/network/{v['network']}" in state, f"tag {k} refers to deleted network"
        elif k.startswith("obj/network/"):
            meta = state.get(f"meta/network/{k[len('obj/network/'):]}") or {}
            assert f"tag/vxlan/{meta.get('pktTag')}" in state, f"network {k} lost its tag"


def check_converged(nms, base_url, writers):
    state = etcd_state(base_url)
    nets = {k[len("obj/network/"):] for k in state if k.startswith("obj/network/")}
    eps = {k[len("ep/"):] for k in state if k.startswith("ep/")}

    def same(nm):
        got_n = {n["key"] for n in nm.get("/api/v1/networks/").json()}
        got_e = {e["endpointID"] for e in nm.get("/api/v1/endpoints/").json()}
        return got_n == nets and got_e == eps
    for nm in nms:
        wait_until(lambda: same(nm), 15, what=f"netmaster {nm.url} equal to etcd")
    check_integrity(state)
    lost = []
    for (kind, key), must in writers.expected().items():
        have = key in (nets if kind == "network" else eps)
        if have != must:
            lost.append((kind, key, "missing" if must else "still there"))
    assert not lost, f"acknowledged writes not in etcd: {lost[:10]}"
    return state


def _netmasters(url):
    a = Netmaster(store=url, extra=["--no-openflow"])
    b = Netmaster(store=url, extra=["--no-openflow"])
    a.start()
    b.start()
    assert a.post("/api/v1/hosts/h1/", {"vtepIP": "10.99.0.1", "dpid": "00000000000000a1"}).ok
    return a, b


def _first_write_after(nm, t0, what):
    """Seconds from t0 until a write through nm succeeds."""
    def ok():
        return nm.post("/api/v1/tenants/probe/", {"tenantName": "probe"}).ok
    wait_until(ok, 15, interval=0.02, what=what)
    return time.monotonic() - t0


def test_single_etcd_killed_and_restarted_under_writes():
    ec = EtcdCluster(tempfile.mkdtemp(prefix="nwtest-etcd1-"), members=1)
    nms = []
    try:
        ec.start()
        url = ec.url(PREFIX)
        nms = list(_netmasters(url))
        with Writers(nms) as w:
            wait_until(lambda: sum(1 for s, _ in w.statuses if s == 200) >= 20, 20, what="writes flowing")
            ec.kill(0)
            # the outage answers 503 naming the store, in bounded time (the requests' 20 s timeout)
            wait_until(lambda: any(s == 503 for s, _ in w.statuses), 20, what="a 503 during the outage")
            t503 = next(t for s, t in w.statuses if s == 503)
            assert f"etcd store {ec.host}:{ec.ports[0][0]}: unreachable" in t503, t503
            time.sleep(1.0)
            ec.start_member(0)
            t0 = time.monotonic()
            back = [_first_write_after(nm, t0, "a write after etcd's return") for nm in nms]
            print(f"first write after etcd healthy: {max(back):.2f} s")
            n = len(w.statuses)
            wait_until(lambda: sum(1 for s, _ in w.statuses[n:] if s == 200) >= 20, 20, what="writes flowing again")
        assert not [t for s, t in w.statuses if s == 500], "a 500 answered"
        state = check_converged(nms, ec.client_url(0), w)
        print(f"objects: {sum(1 for k in state if k.startswith('obj/network/'))} networks, "
              f"{sum(1 for k in state if k.startswith('ep/'))} endpoints; "
              f"503s: {sum(1 for s, _ in w.statuses if s == 503)} of {len(w.statuses)} requests")
        # the watch came back: a write through one is seen by the other
        assert nms[0].post("/api/v1/networks/default:after/", {"subnet": "10.200.0.0/24"}).ok
        wait_until(lambda: nms[1].get("/api/v1/networks/default:after/").ok, 10, what="b sees a's write")
        assert nms[1].delete("/api/v1/networks/default:after/").ok
        wait_until(lambda: nms[0].get("/api/v1/networks/default:after/").status_code == 404, 10,
                   what="a sees b's deletion")
    finally:
        for nm in nms:
            nm.cleanup()
        ec.cleanup()


def test_one_member_of_three_killed_under_writes():
    ec = EtcdCluster(tempfile.mkdtemp(prefix="nwtest-etcd3-"), members=3)
    nms = []
    try:
        ec.start()
        nms = list(_netmasters(ec.url(PREFIX)))
        with Writers(nms) as w:
            wait_until(lambda: sum(1 for s, _ in w.statuses if s == 200) >= 20, 20, what="writes flowing")
            ec.kill(0)                 # the member both netmasters talk to first
            n = len(w.statuses)
            wait_until(lambda: sum(1 for s, _ in w.statuses[n:] if s == 200) >= 30, 30,
                       what="writes flowing without member 0")
            ec.start_member(0)
            n = len(w.statuses)
            wait_until(lambda: sum(1 for s, _ in w.statuses[n:] if s == 200) >= 20, 30,
                       what="writes flowing after member 0 is back")
        fails = [(s, t) for s, t in w.statuses if s >= 500]
        assert not fails, f"a member's loss was visible: {fails[:3]}"
        check_converged(nms, ec.client_url(1), w)
    finally:
        for nm in nms:
            nm.cleanup()
        ec.cleanup()


def test_watch_resumes_from_compacted_revision():
    """A mirror whose watch was away while its revision was compacted re-reads
    everything, deletions included."""
    from store.etcd import EtcdStore
    ec = EtcdCluster(tempfile.mkdtemp(prefix="nwtest-etcdc-"), members=1)
    s1 = s2 = None
    try:
        ec.start()
        s1 = EtcdStore("127.0.0.1", ec.ports[0][0], PREFIX)
        s2 = EtcdStore("127.0.0.1", ec.ports[0][0], PREFIX)
        s1.commit({"a": {"v": 1}, "b": {"v": 2}})
        wait_until(lambda: s2.get("b") == {"v": 2}, 10, what="s2 sees b")
        seen = []
        s2.watch(lambda evs: seen.extend(evs))
        s2.close()                                   # s2's watch goes away...
        assert not s2._watch_thread.is_alive()
        start = s2.generation + 1
        s1.commit({"c": {"v": 3}}, ["a"])            # ...while a is deleted and c written
        s1.commit({"d": {"v": 4}})
        rev = s1.generation
        r = requests.post(ec.client_url(0) + "/v3/kv/compaction", json={"revision": rev, "physical": True}, timeout=5)
        assert r.ok, r.text
        s2._stopped = False                          # the watch comes back from where it was
        s2._watch_thread = threading.Thread(target=s2._watch_loop, args=(start,), daemon=True)
        s2._watch_thread.start()
        wait_until(lambda: s2.get("a") is None and s2.get("c") == {"v": 3} and s2.get("d") == {"v": 4},
                   10, what="s2 re-read after compaction")
        assert any(e.key == "a" and e.value is None for e in seen), seen
        # and it follows on from there
        s1.commit({}, ["b"])
        wait_until(lambda: s2.get("b") is None, 10, what="s2 follows after the re-read")
    finally:
        for s in (s1, s2):
            if s is not None:
                s.close()
        ec.cleanup()


def test_blind_and_guarded_commits_from_two_mirrors():
    """Two mirrors writing the same keys: a guarded read-modify-write never loses
    an increment (each commit sees the other's)."""
    from store.base import retry_stale
    from store.etcd import EtcdStore
    ec = EtcdCluster(tempfile.mkdtemp(prefix="nwtest-etcdg-"), members=1)
    stores = []
    try:
        ec.start()
        stores = [EtcdStore("127.0.0.1", ec.ports[0][0], PREFIX) for _ in range(2)]

        @retry_stale
        def incr(s):
            with s.write_lock():
                n = (s.get("counter") or {"n": 0})["n"]
                s.commit({"counter": {"n": n + 1}})

        def work(s):
            for _ in range(40):
                incr(s)
        ts = [threading.Thread(target=work, args=(s,)) for s in stores]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        assert etcd_state(ec.client_url(0))["counter"] == {"n": 80}
        for s in stores:
            wait_until(lambda: s.get("counter") == {"n": 80}, 10, what="mirror has 80")
    finally:
        for s in stores:
            s.close()
        ec.cleanup()


@pytest.mark.parametrize("url,endpoints,prefix", [
    ("etcd://10.0.0.1:2379", [("10.0.0.1", 2379)], "/netweave/"),
    ("etcd://a:1,b:2,c:3/x", [("a", 1), ("b", 2), ("c", 3)], "/x/"),
    ("etcd://h/p/q/", [("h", 2379)], "/p/q/"),
])
def test_parse_url(url, endpoints, prefix):
    from store.etcd import parse_url
    assert parse_url(url) == (endpoints, prefix)


def test_two_models_race_creates_through_group_commit():
    """Two netmasters' models on one etcd, eight writer threads each side, creating
    networks (subnets that overlap in pairs, tags and ids picked by each side's
    index) and endpoints: the guarded batches make every accepted create unique
    (tag, id, address, non-overlapping subnet), a refused one stores nothing,
    and both mirrors end equal to etcd."""
    from model import ipam, schema
    from model.service import Model
    from model.validate import ModelError
    from store.etcd import EtcdStore
    ec = EtcdCluster(tempfile.mkdtemp(prefix="nwtest-etcdr-"), members=1)
    stores = []
    try:
        ec.start()
        stores = [EtcdStore("127.0.0.1", ec.ports[0][0], PREFIX) for _ in range(2)]
        models = [Model(s) for s in stores]
        models[0].register_host("h1", {"hostLabel": "h1", "vtepIP": "10.9.0.1", "dpid": "0000000000000001"})
        wait_until(lambda: stores[1].get("host/h1") is not None, 10, what="second mirror sees the host")
        accepted, refused = [], []
        lock = threading.Lock()

        def writer(w):
            m = models[w % 2]
            for i in range(6):
                n = (w // 2) * 6 + i            # writers 2k and 2k+1 (one per model) ask for each /24
                body = {"tenantName": "default", "networkName": f"r{w}x{i}", "encap": "vxlan",
                        "subnet": f"10.77.{n}.0/24", "gateway": f"10.77.{n}.1"}
                try:
                    m.upsert(schema.NETWORK, f"default:r{w}x{i}", body)
                    with lock:
                        accepted.append(f"default:r{w}x{i}")
                except ModelError:
                    with lock:
                        refused.append(f"default:r{w}x{i}")
                    continue
                for j in range(3):
                    m.allocate_endpoint(f"e{w}x{i}x{j}", {"tenantName": "default", "networkName": f"r{w}x{i}",
                                                           "host": "h1", "intfName": f"v{w}x{i}x{j}"})
        ts = [threading.Thread(target=writer, args=(w,)) for w in range(16)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        state = etcd_state(ec.client_url(0))
        nets = {k[len("obj/network/"):]: v for k, v in state.items() if k.startswith("obj/network/default:r")}
        assert sorted(nets) == sorted(accepted) and len(accepted) == 48 and not set(refused) & set(nets)
        subs = sorted(ipam.parse_subnet(v["subnet"]).network for v in nets.values())
        assert all(not a.overlaps(b) for a, b in zip(subs, subs[1:])), subs
        metas = [state[f"meta/network/{k}"] for k in nets]
        assert len({m["pktTag"] for m in metas}) == len(metas) and len({m["id"] for m in metas}) == len(metas)
        assert all(state[f"tag/vxlan/{m['pktTag']}"] == {"network": k} for k, m in zip(nets, metas))
        eps = {k: v for k, v in state.items() if k.startswith("ep/")}
        assert len(eps) == 3 * len(nets)
        addrs = [(v["network"], v["ipAddress"][0]) for v in eps.values()]
        assert len(set(addrs)) == len(addrs)
        assert all(state[f"ip/{n}/{a}"]["endpoint"] == e["endpointID"] for (n, a), e in zip(addrs, eps.values()))
        check_integrity(state)
        for s in stores:
            wait_until(lambda: {k: v for k, v in s.list("").items()} == {k: v for k, v in state.items()
                                                                         if k != "_guard"},
                       10, what="mirror equals etcd")
    finally:
        for s in stores:
            s.close()
        ec.cleanup()


def test_increments_exact_across_member_kills_mid_batch():
    """Two mirrors, eight writer threads each, read-modify-write increments of three
    shared counters through the group commit while the etcd member both talk to is
    killed (SIGKILL) mid-batch, twice.  A kill leaves a batch's outcome unknown to
    its sender (the transaction may have been applied, its reply lost): every
    increment answered ok must be in etcd exactly once, and one that failed may
    be there only if its failure said the outcome is unknown.  Both mirrors end
    equal to etcd (a mirror that kept its own value of a key another wrote right
    after loses the next increment)."""
    from store.base import Stale, StoreError, retry_stale
    from store.etcd import EtcdStore
    ec = EtcdCluster(tempfile.mkdtemp(prefix="nwtest-etcdk-"), members=3)
    stores = []
    try:
        ec.start()
        stores = [EtcdStore([("127.0.0.1", c) for c, _ in ec.ports], prefix=PREFIX) for _ in range(2)]
        keys = ["c0", "c1", "c2"]
        acked = {k: 0 for k in keys}
        unknown = {k: 0 for k in keys}
        lock = threading.Lock()
        stop = threading.Event()

        @retry_stale
        def incr(s, k):
            with s.write_lock():
                n = (s.get(k) or {"n": 0})["n"]
                s.commit({k: {"n": n + 1}})

        def work(w):
            s, i = stores[w % 2], 0
            while not stop.is_set():
                k = keys[(w + i) % len(keys)]
                i += 1
                try:
                    incr(s, k)
                except Stale:               # every attempt was refused: not applied
                    continue
                except StoreError:
                    with lock:
                        unknown[k] += 1
                    continue
                with lock:
                    acked[k] += 1

        def total():
            with lock:
                return sum(acked.values())

        ts = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(16)]
        for t in ts:
            t.start()
        try:
            for victim in (0, 1):
                n = total()
                wait_until(lambda: total() >= n + 100, 30, what="increments flowing")
                ec.kill(victim)
                n = total()
                wait_until(lambda: total() >= n + 100, 30, what=f"increments flowing without member {victim}")
                ec.start_member(victim)
                ec.wait_healthy(30)
        finally:
            stop.set()
            for t in ts:
                t.join(60)
        state = etcd_state(ec.client_url(2))
        for k in keys:
            got = state[k]["n"]
            assert acked[k] <= got <= acked[k] + unknown[k], (k, got, acked[k], unknown[k])
        for s in stores:
            wait_until(lambda: all(s.get(k) == state[k] for k in keys), 10, what="mirror equals etcd")
    finally:
        for s in stores:
            s.close()
        ec.cleanup()

"""controller.fabric: a switch that connects right after its host registered,
before the store's change notification was handled, is named by its host."""
from controller.fabric import Fabric
from model.service import Model
from store.base import Event
from store.sqlite import SqliteStore


def store_events(store, key):
    return [Event(key, store.get(key))]


def test_switch_up_names_a_host_registered_a_moment_ago(tmp_path):
    store = SqliteStore(str(tmp_path / "state.db"))
    try:
        model = Model(store)
        model.bootstrap()
        fabric = Fabric(model)
        fabric._watching = True            # as under watch(), without its green threads
        fabric.version()                   # the engine loaded before the host exists
        model.register_host("h1", {"hostLabel": "h1", "vtepIP": "192.168.100.1", "dpid": "00000000000000a1"})
        asked = []
        fabric.request_reconcile = asked.append
        fabric.switch_up(0xA1, {"vxlan0": 100})
        assert fabric.connected == {0xA1: "h1"}
        # the host's event was not handled yet: once it is, its switch reconciles
        fabric._queue.extend(store_events(store, "host/h1"))
        fabric.flush()
        assert asked and set(asked) == {0xA1}
    finally:
        store.close()


def test_a_reconcile_that_ends_after_a_newer_one_still_counts(tmp_path):
    """Two switches connect together: h2's reconcile starts later (a newer
    version) and ends first; h1's, started from the older version, must still
    realize that version's generation, not read as nothing realized."""
    store = SqliteStore(str(tmp_path / "state.db"))
    try:
        model = Model(store)
        model.bootstrap()
        fabric = Fabric(model)
        fabric._watching = True
        fabric.request_reconcile = lambda dpid=None: None
        model.register_host("h1", {"hostLabel": "h1", "vtepIP": "192.168.100.1", "dpid": "00000000000000a1"})
        fabric.switch_up(0xA1, {"vxlan0": 100})
        v1 = fabric.version()
        gen1 = store.generation
        model.register_host("h2", {"hostLabel": "h2", "vtepIP": "192.168.100.2", "dpid": "00000000000000a2"})
        fabric._queue.extend(store_events(store, "host/h2"))
        fabric.flush()
        fabric.switch_up(0xA2, {"vxlan0": 100})
        v2 = fabric.version()
        assert v2 > v1
        fabric.realized(0xA2, v2)
        fabric._prune_versions()
        fabric.realized(0xA1, v1)
        assert fabric.realized_generation(0xA1) >= gen1 > 0
        assert fabric.realized_generation(0xA2) >= fabric.realized_generation(0xA1)
    finally:
        store.close()



def test_start_recompute_in_the_background_serves_everyone_after_it(tmp_path):
    """watch(background=True), as netmaster starts: the first recompute runs in its own
    green thread, yielding; desired() asked meanwhile waits for it and a write made
    meanwhile is applied after it, so the switch gets the same table as a fabric
    that loaded the whole model at once."""
    import eventlet

    from flows.pipeline import endpoint_cookie
    from model import schema
    store = SqliteStore(str(tmp_path / "state.db"))
    try:
        model = Model(store)
        model.bootstrap()
        for h in (1, 2):
            model.register_host(f"h{h}", {"hostLabel": f"h{h}", "vtepIP": f"192.168.100.{h}",
                                          "dpid": f"00000000000000a{h}"})
        model.upsert(schema.NETWORK, "default:n1", {"tenantName": "default", "networkName": "n1",
                                                    "subnet": "10.1.0.0/16", "gateway": "10.1.0.1"})

        def endpoint(name, host):
            return {"tenantName": "default", "networkName": "n1", "host": host, "intfName": name}
        for i in range(40):
            model.allocate_endpoint(f"e{i}", endpoint(f"p{i}", f"h{i % 2 + 1}"))
        fab = Fabric(model)
        fab.request_reconcile = lambda dpid=None: None
        fab.load_slice = 5
        fab.switch_up(0xA1, {"vxlan0": 100})
        pauses = []
        real_sleep = eventlet.sleep
        fab._pause = lambda: (pauses.append(1), real_sleep(0))
        # nothing else may touch the engine while the recompute runs, nor run another
        runs = []
        for name in ("recompute", "apply"):
            def spy(*a, _real=getattr(fab.engine, name), _name=name, **k):
                runs.append((_name, fab._loading is not None and _name == "apply"))
                return _real(*a, **k)
            setattr(fab.engine, name, spy)
        fab.watch(background=True)
        assert not fab._loaded                         # it runs only when this thread yields
        got = {}
        eventlet.spawn(lambda: got.setdefault("desired", fab.desired(0xA1)))
        late = eventlet.spawn(model.allocate_endpoint, "late", endpoint("plate", "h1"))   # meanwhile
        fab.wait_loaded()
        late.wait()
        while fab._queue or fab._scheduled or "desired" not in got:
            eventlet.sleep(0.01)
        assert len(pauses) >= 40 // 5
        assert [r for r in runs if r[0] == "recompute"] == [("recompute", False)]
        assert ("apply", False) in runs and ("apply", True) not in runs
        ref = Fabric(model)                            # the whole model at once, after the write
        ref.switch_up(0xA1, {"vxlan0": 100})
        flows, groups = fab.desired(0xA1)
        assert (flows, groups) == ref.desired(0xA1)
        late_id = model.endpoint("late")["endpointID"]
        assert any(e.cookie == endpoint_cookie(late_id) for e in flows.values())
        fab.stop()
    finally:
        store.close()

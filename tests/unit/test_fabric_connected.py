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

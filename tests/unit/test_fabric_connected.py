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

"""The netmaster process's parts, wired together: the store, the model with
its rules, the REST app, the host monitor and the OpenFlow controller."""
from __future__ import annotations

import logging

import eventlet

from model.service import Model
from rest.app import RestApp
from store.base import open_store

log = logging.getLogger(__name__)


class Netmaster:
    def __init__(self, store_url: str, host_timeout: float = 6.0, underlay_mtu: int = 1500,
                 openflow: tuple | None = ("0.0.0.0", 6653)):
        self.store = open_store(store_url)
        self.model = Model(self.store, host_timeout=host_timeout, underlay_mtu=underlay_mtu)
        self.openflow = openflow
        self.rest = RestApp(self.model)
        self._threads = []
        self._host_states: dict[str, str] = {}

    def start(self):
        self._threads.append(eventlet.spawn(self._monitor_hosts))

    def stop(self):
        for t in self._threads:
            t.kill()
        self.store.close()

    def _monitor_hosts(self):
        """Log one line when a host goes down (heartbeats stopped) or comes back."""
        period = max(0.5, self.model.host_timeout / 4)
        while True:
            for rec in self.store.list("host/").values():
                label, state = rec["hostLabel"], self.model.host_state(rec)
                if self._host_states.get(label) != state:
                    if label in self._host_states or state == "down":
                        log.info("event=host_%s host=%s vtep=%s", state, label, rec["vtepIP"])
                    self._host_states[label] = state
            eventlet.sleep(period)

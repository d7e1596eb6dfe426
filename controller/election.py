"""Leader election among the netmasters that share one etcd: a lease and a
transaction, nothing home-made.

Each member holds a lease (TTL `ttl` seconds, kept alive every ttl/4) and puts
its record under `<prefix>.cluster/members/<id>` with it.  The leader is whoever
created `<prefix>.cluster/leader` (a create-if-absent transaction, attached to
the same lease).  The election **generation** is that key's create_revision:
etcd's revisions only grow, so every new leadership has a higher one, and it is
what the leader sends switches as OpenFlow's generation_id.

A member that cannot renew its lease stops being leader on its own, `ttl * 0.75`
after the last renewal it sent: before etcd lets the lease (and the leader key)
expire, so two members never both believe they lead.  A kill -9'd leader's key
goes with its lease, at most `ttl` later; the others see it gone on their next
round (every ttl/8) and one of them wins the next transaction.
"""
from __future__ import annotations

import base64
import json
import logging
import threading
import time
from typing import Callable

from store.base import StoreError

log = logging.getLogger(__name__)


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _unb64(s: str) -> str:
    return base64.b64decode(s).decode()


class Election:
    def __init__(self, store, member_id: str, record: dict, ttl: int = 3,
                 on_change: Callable[[bool, int], None] | None = None):
        self.store = store                   # an EtcdStore: its members, failover and timeouts
        self.id = member_id
        self.record = dict(record, id=member_id)
        self.ttl = ttl
        self.on_change = on_change
        base = store.prefix[:-1] + ".cluster/"          # outside the mirrored prefix
        self.leader_key = base + "leader"
        self.members_prefix = base + "members/"
        self.lease = 0
        self.leader = False
        self.generation = 0                  # the current leadership's generation (anyone's)
        self.leader_record: dict = {}
        self.members: dict[str, dict] = {}
        self._valid_until = 0.0              # leadership is trusted until then (monotonic)
        self._stopped = threading.Event()
        self._thread = None
        self._watchdog = None

    # ------------------------------------------------------------ public
    def start(self) -> "Election":
        self._thread = threading.Thread(target=self._loop, daemon=True, name="election")
        self._thread.start()
        self._watchdog = threading.Thread(target=self._watch_expiry, daemon=True, name="election-expiry")
        self._watchdog.start()
        return self

    def stop(self) -> None:
        """Leave: give up leadership now (revoke the lease) so another member
        takes over without waiting for it to expire."""
        self._stopped.set()
        lease, self.lease = self.lease, 0
        if self.leader:
            self._set(False, self.generation, "stopping")
        if lease:
            try:
                self.store.call("/lease/revoke", {"ID": lease}, timeout=1.0, outage=0)
            except StoreError:
                pass

    def is_leader(self) -> bool:
        return self.leader and time.monotonic() < self._valid_until

    def status(self) -> dict:
        return {"id": self.id, "state": "leader" if self.is_leader() else "follower",
                "leader": self.leader_record.get("id", ""), "leaderRecord": dict(self.leader_record),
                "generation": self.generation,
                "members": [self.members[k] for k in sorted(self.members)]}

    # ------------------------------------------------------------ the loop
    def _call(self, path: str, payload: dict) -> dict:
        return self.store.call(path, payload, timeout=max(0.25, self.ttl / 4), outage=0)

    def _loop(self):
        period = self.ttl / 8
        while not self._stopped.is_set():
            try:
                self._round()
            except StoreError as exc:
                if self.lease:
                    log.warning("event=election_store_unreachable member=%s error=%r", self.id, str(exc)[:200])
            except Exception:          # noqa: BLE001 - the loop must outlive a bug in one round
                log.exception("event=election_error member=%s", self.id)
            self._stopped.wait(period)

    def _round(self):
        sent = time.monotonic()
        if not self.lease:
            res = self._call("/lease/grant", {"TTL": self.ttl, "ID": 0})
            self.lease = int(res["ID"])
            sent = time.monotonic()
            self._call("/kv/put", {"key": _b64(self.members_prefix + self.id),
                                   "value": _b64(json.dumps(self.record)), "lease": self.lease})
            log.info("event=election_joined member=%s lease=%x ttl=%d", self.id, self.lease, self.ttl)
        else:
            res = self._call("/lease/keepalive", {"ID": self.lease})
            if int(res.get("result", {}).get("TTL", 0) or 0) <= 0:
                log.warning("event=election_lease_lost member=%s lease=%x", self.id, self.lease)
                self.lease = 0
                if self.leader:
                    self._set(False, self.generation, "lease_expired")
                return
        # campaign: create the leader key if nobody holds it, else read who does
        key = _b64(self.leader_key)
        txn = {"compare": [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": 0}],
               "success": [{"request_put": {"key": key, "value": _b64(json.dumps(self.record)),
                                            "lease": self.lease}}],
               "failure": [{"request_range": {"key": key}}]}
        res = self._call("/kv/txn", txn)
        if res.get("succeeded"):
            gen = int(res["header"]["revision"])
            holder = dict(self.record)
        else:
            kvs = ((res.get("responses") or [{}])[0].get("response_range") or {}).get("kvs") or []
            if not kvs:
                return                          # it just went: the next round campaigns again
            gen = int(kvs[0]["create_revision"])
            holder = json.loads(_unb64(kvs[0]["value"]))
            if holder.get("id") == self.id and int(kvs[0].get("lease", 0) or 0) != self.lease:
                # our own key from a lease we lost: not ours any more; let it expire
                holder = dict(holder, id=holder["id"] + " (previous lease)")
        mine = holder.get("id") == self.id
        self.leader_record = holder
        if mine:
            self._valid_until = sent + self.ttl * 0.75
        if mine != self.leader or gen != self.generation:
            self.generation = gen
            self._set(mine, gen, "elected" if mine else "follower")
        self._read_members()

    def _read_members(self):
        p = self.members_prefix
        res = self._call("/kv/range", {"key": _b64(p), "range_end": _b64(p[:-1] + chr(ord(p[-1]) + 1))})
        self.members = {_unb64(kv["key"])[len(p):]: json.loads(_unb64(kv["value"]))
                        for kv in res.get("kvs", [])}

    def _watch_expiry(self):
        """Step down as soon as the lease could not be renewed in time, even while
        the loop is stuck talking to an unreachable store."""
        while not self._stopped.is_set():
            if self.leader and time.monotonic() >= self._valid_until:
                self._set(False, self.generation, "lease_not_renewed")
            self._stopped.wait(0.05)

    def _set(self, leader: bool, gen: int, why: str):
        was, self.leader = self.leader, leader
        if not leader:
            self._valid_until = 0.0
        if was != leader or leader:
            log.info("event=election_%s member=%s generation=%d reason=%s",
                     "leader" if leader else "follower", self.id, gen, why)
        if self.on_change is not None:
            try:
                self.on_change(leader, gen)
            except Exception:      # noqa: BLE001
                log.exception("event=election_callback_failed member=%s", self.id)

"""The etcd store, for several netmasters sharing one cluster.

etcd3gw speaks etcd's JSON gateway over HTTP, so it works under eventlet
(grpc-based clients do not mix with monkey-patching, and python-etcd3 no
longer imports with current protobuf).  Keys live under a prefix; a commit is
one etcd transaction; a prefix watch keeps the in-memory mirror current and
tells netmaster about changes made by any netmaster.
"""
from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
from urllib.parse import urlparse

from etcd3gw.client import Etcd3Client

from store.base import COMMIT_SECONDS, Event, Store, StoreError

log = logging.getLogger(__name__)


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _unb64(s: str) -> str:
    return base64.b64decode(s).decode()


def _prefix_end(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class EtcdStore(Store):
    backend = "etcd"

    def __init__(self, host: str, port: int, prefix: str = "/netweave/", lock_ttl: int = 15):
        super().__init__()
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.client = Etcd3Client(host=host, port=port)
        self.lock_ttl = lock_ttl
        self._revs: dict[str, int] = {}
        self._max_rev = 0
        self._wlock_local = threading.RLock()
        self._stopped = False
        rev = self._load()
        self._cancel = None
        self._watch_thread = threading.Thread(target=self._watch_loop, args=(rev + 1,), daemon=True)
        self._watch_thread.start()
        log.info("event=store_opened backend=etcd endpoint=%s:%s prefix=%s keys=%d",
                 host, port, self.prefix, len(self._data))

    @classmethod
    def from_url(cls, url: str) -> "EtcdStore":
        u = urlparse(url)
        return cls(u.hostname or "127.0.0.1", u.port or 2379, (u.path or "/netweave/") if u.path not in ("", "/") else "/netweave/")

    # -- reading ------------------------------------------------------------
    def _range(self, min_mod_revision: int | None = None) -> tuple[int, list]:
        payload = {"key": _b64(self.prefix), "range_end": _b64(_prefix_end(self.prefix))}
        if min_mod_revision:
            payload["min_mod_revision"] = min_mod_revision
        try:
            res = self.client.post(self.client.get_url("/kv/range"), json=payload)
        except Exception as exc:
            raise StoreError(f"etcd unreachable: {exc}") from exc
        return int(res["header"]["revision"]), res.get("kvs", [])

    def _load(self) -> int:
        rev, kvs = self._range()
        self._apply_kvs(kvs, notify=False)
        self._max_rev = max(self._max_rev, rev)
        self.generation = max(self.generation, rev)     # etcd's revision is the generation
        return rev

    def _apply_kvs(self, kvs, notify=True):
        events = []
        for kv in kvs:
            key = _unb64(kv["key"])[len(self.prefix):]
            rev = int(kv.get("mod_revision", 0))
            if rev <= self._revs.get(key, 0):
                continue
            self._revs[key] = rev
            events.append(Event(key, json.loads(_unb64(kv["value"]))))
        if notify:
            self._apply(events, max((self._revs[e.key] for e in events), default=None))
        else:
            for ev in events:
                self._put(ev.key, ev.value)
                self._gens[ev.key] = self._revs[ev.key]

    def ping(self):
        try:
            self.client.session.post(self.client.get_url("/maintenance/status"), json={},
                                     timeout=2).raise_for_status()
        except Exception as exc:
            raise StoreError(f"etcd store {self.client.host}:{self.client.port}: unreachable ({exc})") from exc

    def _watch_loop(self, start_rev: int):
        while not self._stopped:
            try:
                events, cancel = self.client.watch_prefix(self.prefix, start_revision=start_rev)
                self._cancel = cancel
                for ev in events:
                    kv = ev["kv"]
                    key = kv["key"].decode() if isinstance(kv["key"], bytes) else kv["key"]
                    key = key[len(self.prefix):]
                    rev = int(kv.get("mod_revision", 0))
                    start_rev = max(start_rev, rev + 1)
                    if rev <= self._revs.get(key, 0):
                        continue
                    self._revs[key] = rev
                    if ev.get("type") == "DELETE":
                        self._apply([Event(key, None)], rev)
                    else:
                        val = kv.get("value", b"")
                        self._apply([Event(key, json.loads(val.decode() if isinstance(val, bytes) else val))], rev)
            except Exception as exc:        # etcd restarted or unreachable: resubscribe
                if self._stopped:
                    return
                log.warning("event=etcd_watch_lost error=%s", exc)
                time.sleep(0.5)

    # -- writing ------------------------------------------------------------
    @contextlib.contextmanager
    def write_lock(self):
        """An etcd lock shared by every netmaster on this prefix, then a catch-up
        read of whatever changed since our mirror's newest revision."""
        with self._wlock_local:
            lock = self.client.lock("netweave" + self.prefix.replace("/", "-"), ttl=self.lock_ttl)
            deadline = time.monotonic() + 30
            while not lock.acquire():
                if time.monotonic() > deadline:
                    raise StoreError("timed out waiting for the etcd write lock")
                time.sleep(0.02)
            try:
                rev, kvs = self._range(min_mod_revision=self._max_rev + 1)
                self._apply_kvs(kvs)
                self._max_rev = max(self._max_rev, rev)
                yield
            finally:
                try:
                    lock.release()
                except Exception:
                    log.warning("event=etcd_lock_release_failed")

    def commit(self, puts=None, deletes=()):
        puts = dict(puts or {})
        deletes = [k for k in deletes if k not in puts]
        if not puts and not deletes:
            return
        ops = [{"request_put": {"key": _b64(self.prefix + k), "value": _b64(json.dumps(v, sort_keys=True))}}
               for k, v in puts.items()]
        ops += [{"request_delete_range": {"key": _b64(self.prefix + k)}} for k in deletes]
        t0 = time.perf_counter()
        try:
            res = self.client.transaction({"compare": [], "success": ops, "failure": []})
        except Exception as exc:
            raise StoreError(f"etcd transaction failed: {exc}") from exc
        COMMIT_SECONDS.labels(self.backend).observe(time.perf_counter() - t0)
        rev = int(res["header"]["revision"])
        for k in list(puts) + deletes:
            self._revs[k] = rev
        self._max_rev = max(self._max_rev, rev)
        self._apply([Event(k, v) for k, v in puts.items()] + [Event(k, None) for k in deletes], rev)

    def close(self):
        self._stopped = True
        if self._cancel:
            try:
                self._cancel()
            except Exception:
                pass

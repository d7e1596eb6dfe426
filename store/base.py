"""The state store interface: a key-value mirror with atomic multi-key commits
and change notification.

Every backend keeps the whole (small) desired state mirrored in memory, so
reads never touch disk or the network; writes go through `commit`, which is
atomic (all puts and deletes apply, or none), and every committed change is
announced to watchers as a list of Events.  Writers serialise through
`write_lock()`, which is process-local; with etcd a commit is also guarded by
a revision comparison and raises Stale when another netmaster wrote first, so
read-validate-commit methods are wrapped in `retry_stale`.
"""
from __future__ import annotations

import bisect
import contextlib
import functools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from prometheus_client import Histogram

log = logging.getLogger(__name__)

COMMIT_SECONDS = Histogram("netweave_store_commit_duration_seconds",
                           "Time to commit one atomic write to the state store", ["backend"],
                           buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))


@dataclass(frozen=True)
class Event:
    key: str
    value: Optional[dict]      # None: deleted


class StoreError(Exception):
    """The store cannot be used now (REST answers 503 with this message)."""


class Stale(StoreError):
    """A guarded commit found that another writer changed the store after the
    mirror was read: read again (the mirror is current now) and retry."""


STALE_RETRIES = 50


def retry_stale(fn):
    """Run a read-validate-commit method again while its commit is Stale."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for _ in range(STALE_RETRIES - 1):
            try:
                return fn(*args, **kwargs)
            except Stale:
                continue
        return fn(*args, **kwargs)
    return wrapper


class Store:
    """Base class: the mirror and the watchers. Backends implement _commit.

    Every commit gets a generation, a number that only grows (SQLite counts
    commits in the file; etcd's revision is its generation): the controller
    reports which generation each switch has realized, so a writer can wait
    for its change to be live."""

    backend = "memory"

    def __init__(self):
        self.generation = 0                    # newest generation in the mirror
        self._gens: dict[str, int] = {}        # key -> generation that last wrote it
        self._data: dict[str, dict] = {}
        # The same values by "directory" (the key up to its last '/'), so that
        # listing a kind costs what it returns, not a scan of the whole state.
        self._dirs: dict[str, dict[str, dict]] = {}
        self._dirnames: list[str] = []         # the keys of _dirs, sorted: a prefix's are a slice
        self._watchers: list[Callable[[list[Event]], None]] = []
        self._mirror_lock = threading.RLock()

    # -- reads (from the mirror) ------------------------------------------------
    def get(self, key: str) -> Optional[dict]:
        return self._data.get(key)

    def list(self, prefix: str) -> dict[str, dict]:
        with self._mirror_lock:
            if prefix.endswith("/"):
                names = self._dirnames           # the directories under prefix: one sorted slice
                i = bisect.bisect_left(names, prefix)
                out: dict[str, dict] = {}
                while i < len(names) and names[i].startswith(prefix):
                    out.update(self._dirs[names[i]])
                    i += 1
                return out
            return {k: v for k, v in self._data.items() if k.startswith(prefix)}

    def keys(self, prefix: str) -> list[str]:
        return list(self.list(prefix))

    def key_generation(self, key: str) -> int:
        """The generation that last wrote `key` (0: before this process read the store)."""
        return self._gens.get(key, 0)

    def ping(self) -> None:
        """Raise StoreError when the backend cannot be reached (for readiness)."""

    def _put(self, key: str, value: dict) -> None:
        self._data[key] = value
        d = key[:key.rfind("/") + 1]
        entries = self._dirs.get(d)
        if entries is None:
            entries = self._dirs[d] = {}
            bisect.insort(self._dirnames, d)
        entries[key] = value

    def _del(self, key: str) -> None:
        del self._data[key]
        d = key[:key.rfind("/") + 1]
        entries = self._dirs.get(d)
        if entries is not None:
            entries.pop(key, None)
            if not entries:
                del self._dirs[d]
                i = bisect.bisect_left(self._dirnames, d)
                if i < len(self._dirnames) and self._dirnames[i] == d:
                    del self._dirnames[i]

    # -- writes -----------------------------------------------------------------
    def commit(self, puts: dict[str, dict] | None = None, deletes: Iterable[str] = ()) -> None:
        """Apply puts and deletes atomically, then tell the watchers."""
        puts = dict(puts or {})
        deletes = [k for k in deletes if k not in puts]
        if not puts and not deletes:
            return
        t0 = time.perf_counter()
        gen = self._commit(puts, deletes)
        COMMIT_SECONDS.labels(self.backend).observe(time.perf_counter() - t0)
        self._apply([Event(k, v) for k, v in puts.items()] + [Event(k, None) for k in deletes], gen)

    @contextlib.contextmanager
    def write_lock(self):
        """Serialise read-validate-commit sequences across writers."""
        with self._local_write_lock():
            yield

    def watch(self, callback: Callable[[list[Event]], None]) -> None:
        self._watchers.append(callback)

    def close(self) -> None:
        pass

    # -- for backends -----------------------------------------------------------
    _wlock = None

    def _local_write_lock(self):
        if self._wlock is None:
            self._wlock = threading.RLock()
        return self._wlock

    def _commit(self, puts: dict[str, dict], deletes: list[str]) -> int:
        """Store atomically; return the commit's generation."""
        raise NotImplementedError

    def _apply(self, events: list[Event], gen: int | None = None) -> None:
        """Update the mirror and notify; events that change nothing are dropped.
        The generation moves before the watchers run, so they see it."""
        changed = []
        with self._mirror_lock:
            if gen is not None:
                self.generation = max(self.generation, gen)
                for ev in events:
                    if ev.value is None:
                        self._gens.pop(ev.key, None)
                    else:
                        self._gens[ev.key] = gen
            for ev in events:
                old = self._data.get(ev.key)
                if ev.value is None:
                    if old is not None:
                        self._del(ev.key)
                        changed.append(ev)
                elif old != ev.value:
                    self._put(ev.key, ev.value)
                    changed.append(ev)
        if changed:
            for cb in list(self._watchers):
                try:
                    cb(changed)
                except Exception:       # a watcher's bug must not undo a commit
                    log.exception("event=watch_callback_failed")


def open_store(url: str) -> Store:
    """`sqlite:///path/state.db` (or a bare path), `etcd://host:port[/prefix]`, or
    `etcds://...[?cacert=F&cert=F&key=F]` over TLS (store/etcd_tls.py)."""
    if url.startswith(("etcd://", "etcds://")):
        from store.etcd import EtcdStore
        return EtcdStore.from_url(url)
    from store.sqlite import SqliteStore
    path = url[len("sqlite://"):] if url.startswith("sqlite://") else url
    return SqliteStore(path)

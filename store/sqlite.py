"""The embedded store: one SQLite file in WAL mode.

SQLite is in the standard library, needs no server, and a transaction is
atomic and durable across kill -9 (WAL with synchronous=FULL).

Group commit (under eventlet, as in netmaster): a writer's commit goes into
the in-memory mirror at once (so the next writer validates against it), and
into a batch that one flusher writes as a single SQLite transaction in a
native thread (eventlet.tpool), so the hub serves other requests during the
fsync.  The writer is answered only once its batch is durable: leaving
write_lock() (after the lock is released, so others proceed) waits for it.
Without eventlet, each commit is its own transaction, as before.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time

from store.base import COMMIT_SECONDS, Event, Store, StoreError

log = logging.getLogger(__name__)


class SqliteStore(Store):
    backend = "sqlite"

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        # The generation counter and each key's generation; files from before
        # generations existed gain the column (every old key: generation 0).
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        if "gen" not in {r[1] for r in self._db.execute("PRAGMA table_info(kv)")}:
            self._db.execute("ALTER TABLE kv ADD COLUMN gen INTEGER NOT NULL DEFAULT 0")
        self._lock = threading.Lock()
        row = self._db.execute("SELECT value FROM meta WHERE name = 'generation'").fetchone()
        self.generation = row[0] if row else 0
        for key, value, gen in self._db.execute("SELECT key, value, gen FROM kv"):
            self._put(key, json.loads(value))
            self._gens[key] = gen
        self._grouped = _green()
        self._batch: list = []                   # (gen, puts, deletes) not yet durable
        self._durable = self.generation          # newest generation on disk
        self._flushing = None                    # eventlet Event of the flush in flight
        self._failed = None                      # the last flush's error, raised to its writers
        self._owed: dict = {}                    # green thread -> generation it waits for
        self._depth: dict = {}                   # green thread -> write_lock nesting
        self.flushes = 0                         # transactions written by group commit
        log.info("event=store_opened backend=sqlite path=%s keys=%d group_commit=%s", path,
                 len(self._data), self._grouped)

    # -- group commit ------------------------------------------------------
    def commit(self, puts=None, deletes=()):
        if not self._grouped:
            return super().commit(puts, deletes)
        puts = dict(puts or {})
        deletes = [k for k in deletes if k not in puts]
        if not puts and not deletes:
            return
        gen = max(self.generation, self._durable, self._batch[-1][0] if self._batch else 0) + 1
        self._batch.append((gen, puts, deletes))
        self._apply([Event(k, v) for k, v in puts.items()] + [Event(k, None) for k in deletes], gen)
        me = _me()
        if me in self._depth:
            self._owed[me] = gen                 # write_lock()'s exit waits, unlocked
        else:
            self._wait(gen)

    @contextlib.contextmanager
    def write_lock(self):
        if not self._grouped:
            with super().write_lock():
                yield
            return
        me = _me()
        depth = self._depth.get(me, 0)
        self._depth[me] = depth + 1
        try:
            with self._local_write_lock():
                yield
        finally:
            if depth:
                self._depth[me] = depth
            else:
                del self._depth[me]
                owed = self._owed.pop(me, 0)
                if owed:
                    self._wait(owed)

    def _wait(self, gen: int) -> None:
        """Until generation gen is on disk; the first waiter becomes the flusher."""
        t0 = time.perf_counter()
        while self._durable < gen:
            if self._flushing is not None:
                self._flushing.wait()
            else:
                self._flush()
        f = self._failed
        if f is not None and f[0] <= gen <= f[1]:
            raise StoreError(f"sqlite store {self.path}: {f[2]}")
        COMMIT_SECONDS.labels(self.backend).observe(time.perf_counter() - t0)

    def _flush(self) -> None:
        from eventlet import event, tpool
        batch, self._batch = self._batch, []
        if not batch:
            return
        done = self._flushing = event.Event()
        try:
            tpool.execute(self._write_batch, batch)
            self.flushes += 1
            self._durable = batch[-1][0]
        except Exception as exc:                 # noqa: BLE001 - every writer of the batch hears it
            log.error("event=store_commit_failed backend=sqlite commits=%d error=%r", len(batch), exc)
            self._failed = (batch[0][0], batch[-1][0], repr(exc))
            self._durable = batch[-1][0]         # not on disk: the waiters raise, nothing retries
            self._reload()
        finally:
            self._flushing = None
            done.send()

    def _write_batch(self, batch: list) -> None:
        """In a native thread: one transaction for every commit of the batch."""
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for gen, puts, deletes in batch:
                cur.executemany("INSERT OR REPLACE INTO kv (key, value, gen) VALUES (?, ?, ?)",
                                [(k, json.dumps(v, sort_keys=True), gen) for k, v in puts.items()])
                cur.executemany("DELETE FROM kv WHERE key = ?", [(k,) for k in deletes])
            cur.execute("INSERT INTO meta (name, value) VALUES ('generation', ?) "
                        "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (batch[-1][0],))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def _reload(self) -> None:
        """A batch failed to reach the disk: the mirror takes the file's state back."""
        try:
            rows = {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM kv")}
        except sqlite3.Error:
            log.exception("event=store_reload_failed backend=sqlite")
            return
        events = [Event(k, None) for k in self._data if k not in rows]
        events += [Event(k, v) for k, v in rows.items() if self._data.get(k) != v]
        self._apply(events)

    def _commit(self, puts, deletes):
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.execute("INSERT INTO meta (name, value) VALUES ('generation', 1) "
                            "ON CONFLICT(name) DO UPDATE SET value = value + 1")
                gen = cur.execute("SELECT value FROM meta WHERE name = 'generation'").fetchone()[0]
                cur.executemany("INSERT OR REPLACE INTO kv (key, value, gen) VALUES (?, ?, ?)",
                                [(k, json.dumps(v, sort_keys=True), gen) for k, v in puts.items()])
                cur.executemany("DELETE FROM kv WHERE key = ?", [(k,) for k in deletes])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return gen

    def ping(self):
        """The file is still there and readable (someone may have removed its folder)."""
        if not os.path.exists(self.path):
            raise StoreError(f"sqlite store {self.path}: the file is gone")
        try:
            # its own connection: the flusher may be using the main one in a native thread
            db = sqlite3.connect(self.path, timeout=5)
            try:
                db.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite store {self.path}: {exc}") from exc

    def close(self):
        if self._grouped and (self._batch or self._flushing is not None):
            with contextlib.suppress(StoreError):
                self._wait(max([self._durable] + [g for g, _, _ in self._batch]))
        with self._lock:
            self._db.close()


def _green() -> bool:
    """Running under eventlet's monkey-patching (netmaster): commits are grouped."""
    try:
        from eventlet import patcher
    except ImportError:
        return False
    return patcher.is_monkey_patched("thread")


def _me():
    import greenlet
    return greenlet.getcurrent()

"""The embedded store: one SQLite file in WAL mode.

SQLite is in the standard library, needs no server, and a transaction is
atomic and durable across kill -9 (WAL with synchronous=FULL).
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading

from store.base import Store, StoreError

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
        log.info("event=store_opened backend=sqlite path=%s keys=%d", path, len(self._data))

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
            with self._lock:
                self._db.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite store {self.path}: {exc}") from exc

    def close(self):
        with self._lock:
            self._db.close()

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

from store.base import Store

log = logging.getLogger(__name__)


class SqliteStore(Store):
    def __init__(self, path: str):
        super().__init__()
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._lock = threading.Lock()
        for key, value in self._db.execute("SELECT key, value FROM kv"):
            self._put(key, json.loads(value))
        log.info("event=store_opened backend=sqlite path=%s keys=%d", path, len(self._data))

    def _commit(self, puts, deletes):
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
                                [(k, json.dumps(v, sort_keys=True)) for k, v in puts.items()])
                cur.executemany("DELETE FROM kv WHERE key = ?", [(k,) for k in deletes])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def close(self):
        with self._lock:
            self._db.close()

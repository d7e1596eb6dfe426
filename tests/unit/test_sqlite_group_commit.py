"""store/sqlite.py group commit: concurrent writers under eventlet (as in
netmaster) share transactions, each is answered only once its write is on
disk, and the file holds every answered write with its generation.  Run in a
child process: monkey-patching must not leak into the other unit tests."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = r"""
import eventlet
eventlet.monkey_patch()
import json, sqlite3, sys
from store.sqlite import SqliteStore
path = sys.argv[1]
s = SqliteStore(path)
answered = []
def writer(i):
    with s.write_lock():
        assert s.get(f"k/{i}") is None
        s.commit({f"k/{i}": {"v": i}})
    # answered: it must be in the file already, read through another connection
    db = sqlite3.connect(path)
    row = db.execute("SELECT value FROM kv WHERE key = ?", (f"k/{i}",)).fetchone()
    db.close()
    answered.append(row is not None)
pool = eventlet.GreenPool(16)
list(pool.imap(writer, range(400)))
print(json.dumps({"grouped": s._grouped, "flushes": s.flushes, "generation": s.generation,
                  "answered_durable": all(answered), "n": len(answered)}))
s.close()
"""


def test_concurrent_writers_share_durable_transactions(tmp_path):
    path = str(tmp_path / "state.db")
    out = subprocess.run([sys.executable, "-c", CHILD, path], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["grouped"] and r["n"] == 400 and r["answered_durable"]
    assert r["generation"] == 400
    assert r["flushes"] < 400                  # grouped: fewer transactions than commits
    from store.sqlite import SqliteStore      # reopened: everything answered is there
    s = SqliteStore(path)
    try:
        assert len(s.list("k/")) == 400 and s.generation == 400
        assert {s.key_generation(f"k/{i}") for i in range(400)} == set(range(1, 401))
        s.commit({"k/extra": {"v": 1}})
        assert s.generation == 401
    finally:
        s.close()

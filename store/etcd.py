"""The etcd store, for several netmasters sharing one etcd cluster.

etcd3gw speaks etcd's JSON gateway over HTTP, so it works under eventlet
(grpc-based clients do not mix with monkey-patching, and python-etcd3 no
longer imports with current protobuf).  Keys live under a prefix.

Correctness rests on three things:
- **Guarded commits, no lock.**  Every commit is one etcd transaction that also
  writes a guard key and compares the guard's mod_revision with the one this
  mirror last saw.  Since every write moves the guard, the transaction succeeds
  only when the mirror held everything written before it: a read-validate-commit
  done on a stale mirror fails and is retried (`Stale`) on a fresh one.  No
  lease, nothing left behind by a writer that dies.
- **A watch that never silently ends.**  The prefix watch runs in its own loop
  and resumes from the revision after the last event it applied, on any break
  (etcd restarted, member gone, stream idle); when that revision was compacted
  it re-reads the whole prefix and derives the deletions from what vanished.
- **Bounded outages.**  Every request has a timeout and tries the cluster's
  members in turn; a store that cannot be reached is a StoreError naming it,
  which REST answers with 503.
"""
from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import threading
import time

import requests
from etcd3gw.client import Etcd3Client

from store import etcd_tls
from store.base import COMMIT_SECONDS, Event, Stale, Store, StoreError
from store.etcd_tls import EtcdTLS

log = logging.getLogger(__name__)

GUARD = "_guard"             # under the prefix; every commit writes it; never in the mirror
REQUEST_TIMEOUT = 2.0        # seconds for one request to one member
OUTAGE = 4.0                 # seconds of trying the members before a request fails (503)
WATCH_IDLE = 10.0            # a silent watch stream is re-opened (catches half-open connections)
CATCH_UP_WAIT = 1.0          # seconds to wait for the watch after a failed guard, then re-read


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _unb64(s: str) -> str:
    return base64.b64decode(s).decode()


def prefix_end(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def parse_url(url: str) -> tuple[list[tuple[str, int]], str]:
    """`etcd://HOST:PORT[,HOST:PORT...][/prefix]` -> ([(host, port)...], '/prefix/')."""
    rest = url.split("://", 1)[1] if "://" in url else url
    hosts, _, path = rest.partition("/")
    endpoints = []
    for item in filter(None, hosts.split(",")):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
        try:
            endpoints.append((host or "127.0.0.1", int(port or 2379)))
        except ValueError:
            raise StoreError(f"store: {item!r} in {url!r} is not HOST:PORT") from None
    prefix = "/" + path.strip("/") + "/" if path.strip("/") else "/netweave/"
    return endpoints or [("127.0.0.1", 2379)], prefix


class EtcdStore(Store):
    backend = "etcd"

    def __init__(self, host: str | list = "127.0.0.1", port: int = 2379, prefix: str = "/netweave/",
                 timeout: float = REQUEST_TIMEOUT, outage: float = OUTAGE, tls: EtcdTLS | None = None):
        super().__init__()
        self.tls = tls
        self.endpoints = list(host) if isinstance(host, list) else [(host, port)]
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.timeout = timeout
        self.outage = outage
        self.clients = [self._client(h, p) for h, p in self.endpoints]
        self._cur = 0                          # the member in use; moves on failure
        self._revs: dict[str, int] = {}        # key -> mod revision last applied (deletions kept)
        self._guard_rev = 0                    # the guard's mod_revision as the mirror knows it
        self._synced = threading.Condition(self._mirror_lock)
        self._wlock_local = threading.RLock()
        self._guarded = 0                      # depth of write_lock() in the holding thread
        self._floor = 0                        # revision of the last full read
        self._commits = 0                      # successful commits, to see a lock body commit
        self._stopped = False
        self._resp = None                      # the watch's open stream, closed by close()
        rev = self.resync()
        self._watch_thread = threading.Thread(target=self._watch_loop, args=(rev + 1,), daemon=True,
                                              name="etcd-watch")
        self._watch_thread.start()
        log.info("event=store_opened backend=etcd endpoints=%s prefix=%s keys=%d revision=%d tls=%s",
                 self.where, self.prefix, len(self._data), rev, "on" if tls else "off")

    @classmethod
    def from_url(cls, url: str) -> "EtcdStore":
        base, tls = etcd_tls.split(url)
        endpoints, prefix = parse_url(base)
        return cls(endpoints, prefix=prefix, tls=tls)

    def _client(self, host: str, port: int) -> Etcd3Client:
        """The one place a member's client is made (transport options go here).
        The environment (proxies, a CA bundle) is read once here: requests re-reads
        all of os.environ on every request otherwise (a third of a write's CPU)."""
        tls = self.tls.client_kwargs() if self.tls else {}
        c = Etcd3Client(host=host, port=port, timeout=self.timeout, api_path="/v3/", **tls)
        s = c.session
        if s.trust_env:
            s.proxies.update(requests.utils.get_environ_proxies(c.get_url("/")))
            if s.verify is True:
                s.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            s.trust_env = False
        return c

    @property
    def where(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self.endpoints)

    # -- requests -----------------------------------------------------------
    def call(self, path: str, payload: dict, timeout: float | None = None,
             outage: float | None = None) -> dict:
        """POST to the v3 gateway through the member in use, moving to the next on
        failure (a dead member, one cut off from the quorum, an election) for at
        most `outage` seconds; then StoreError, naming the store."""
        errors: dict[str, str] = {}
        deadline = time.monotonic() + (self.outage if outage is None else outage)
        while True:
            for i in range(len(self.clients)):
                n = (self._cur + i) % len(self.clients)
                c = self.clients[n]
                where = f"{c.host}:{c.port}"
                try:
                    r = c.session.post(c.get_url(path), json=payload, timeout=timeout or self.timeout)
                except requests.RequestException as exc:
                    errors[where] = type(exc).__name__
                    continue
                if r.status_code != 200:           # e.g. 503 no leader on a cut-off member
                    errors[where] = f"HTTP {r.status_code} {r.text[:100].strip()}"
                    continue
                if n != self._cur:
                    log.info("event=etcd_member_switched to=%s", where)
                    self._cur = n
                return r.json()
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        raise StoreError(f"etcd store {self.where}: unreachable ("
                         + "; ".join(f"{k}: {v}" for k, v in errors.items()) + ")")

    def ping(self):
        """Readiness: some member answers, each tried once."""
        self.call("/maintenance/status", {}, outage=0)

    # -- reading ------------------------------------------------------------
    def _kv(self, kv) -> tuple[str, int, dict | None]:
        key = _unb64(kv["key"])[len(self.prefix):]
        value = json.loads(_unb64(kv["value"])) if kv.get("value") else None
        return key, int(kv.get("mod_revision", 0)), value

    def resync(self) -> int:
        """Read the whole prefix and make the mirror equal to it: puts for what
        changed, deletions for what vanished.  Returns etcd's revision."""
        res = self.call("/kv/range", {"key": _b64(self.prefix), "range_end": _b64(prefix_end(self.prefix))})
        rev = int(res["header"]["revision"])
        seen, events = set(), []
        with self._mirror_lock:
            guard = 0
            for kv in res.get("kvs", []):
                key, mod, value = self._kv(kv)
                if key == GUARD:
                    guard = mod
                    continue
                seen.add(key)
                if self._data.get(key) != value:
                    events.append(Event(key, value))
                self._revs[key] = mod
            for key in list(self._data):
                if key not in seen:
                    events.append(Event(key, None))
            # the watch may still replay events up to rev: they are in this read already
            self._floor = max(self._floor, rev)
            self._revs = {k: v for k, v in self._revs.items() if k in seen}
            self._guard_rev = max(self._guard_rev, guard)
            self._apply(events, rev)
            self.generation = max(self.generation, rev)
            self._synced.notify_all()
        if events:
            log.info("event=etcd_resync revision=%d changed=%d", rev, len(events))
        return rev

    def _watch_loop(self, start: int):
        """Follow the prefix from `start`, forever: any break resumes from the
        revision after the last applied event; a compacted start re-reads all."""
        self._next = start
        failures = 0
        while not self._stopped:
            try:
                self._watch_once()
                failures = 0
            except _Compacted as exc:
                log.warning("event=etcd_watch_compacted from=%d compact_revision=%d", self._next, exc.revision)
                try:
                    self._next = self.resync() + 1
                except StoreError as err:
                    log.warning("event=etcd_watch_lost error=%r", str(err))
                    time.sleep(0.2)
            except Exception as exc:       # noqa: BLE001 - stream broke: resume, never give up
                if self._stopped:
                    return
                if failures == 0:
                    log.warning("event=etcd_watch_lost from=%d error=%r", self._next, str(exc)[:200])
                failures += 1
                self._cur = (self._cur + 1) % len(self.clients) if failures % 3 == 0 else self._cur
                time.sleep(0.1 if failures < 5 else 0.3)

    def _watch_once(self) -> None:
        c = self.clients[self._cur]
        start = self._next
        body = {"create_request": {"key": _b64(self.prefix), "range_end": _b64(prefix_end(self.prefix)),
                                   "start_revision": start}}
        with c.session.post(c.get_url("/watch"), json=body, stream=True,
                            timeout=(self.timeout, WATCH_IDLE)) as r:
            if r.status_code != 200:
                raise StoreError(f"watch refused: HTTP {r.status_code}")
            self._resp = r
            try:
                for line in r.iter_lines(chunk_size=None):
                    if self._stopped:
                        return
                    if not line.strip():
                        continue
                    msg = json.loads(line)
                    if "error" in msg:
                        raise StoreError(f"watch error: {msg['error']}")
                    res = msg.get("result", {})
                    if int(res.get("compact_revision", 0) or 0):
                        raise _Compacted(int(res["compact_revision"]))
                    if res.get("canceled"):
                        raise StoreError(f"watch canceled: {res.get('cancel_reason', '')}")
                    if res.get("created"):
                        log.info("event=etcd_watch_started from=%d member=%s:%s", start, c.host, c.port)
                    evs = res.get("events") or []
                    if evs:
                        self._next = self._apply_watch(evs) + 1
            finally:
                self._resp = None
        raise StoreError("watch stream ended")

    def _apply_watch(self, evs) -> int:
        """Apply one watch response (its events share revisions in order)."""
        last = 0
        with self._mirror_lock:
            batch, batch_rev = [], 0
            for ev in evs:
                key, mod, value = self._kv(ev["kv"])
                if ev.get("type") == "DELETE":
                    value = None
                last = max(last, mod)
                if key == GUARD:
                    self._guard_rev = max(self._guard_rev, mod)
                    continue
                if mod <= self._revs.get(key, 0) or mod <= self._floor:
                    continue               # our own commit, or in a full read already
                self._revs[key] = mod
                if batch and mod != batch_rev:
                    self._apply(batch, batch_rev)
                    batch = []
                batch.append(Event(key, value))
                batch_rev = mod
            if batch:
                self._apply(batch, batch_rev)
            self.generation = max(self.generation, last)
            self._synced.notify_all()
        return last

    # -- writing ------------------------------------------------------------
    @contextlib.contextmanager
    def write_lock(self):
        """Serialise this process's writers; a commit inside raises Stale when
        another netmaster wrote since the mirror was read (the caller retries,
        see store.base.retry_stale).  A body that ends without committing (a
        refusal, or a re-applied identical object) decided on the mirror alone:
        the guard is read once to make sure the mirror was current, else Stale."""
        with self._wlock_local:
            self._guarded += 1
            committed = self._commits
            try:
                yield
            except StoreError:
                raise
            except Exception as exc:
                if self._commits == committed and self._mirror_behind():
                    raise Stale(f"etcd store {self.where}: refused on a stale mirror, retrying") from exc
                raise
            else:
                if self._commits == committed and self._mirror_behind():
                    raise Stale(f"etcd store {self.where}: no-op on a stale mirror, retrying")
            finally:
                self._guarded -= 1

    def _mirror_behind(self) -> bool:
        """Read the guard: True (after catching up) when someone wrote since the mirror's view."""
        res = self.call("/kv/range", {"key": _b64(self.prefix + GUARD)})
        kvs = res.get("kvs") or []
        now = int(kvs[0].get("mod_revision", 0)) if kvs else 0
        if now > self._guard_rev:
            self._catch_up(now)
            return True
        return False

    def commit(self, puts=None, deletes=()):
        puts = dict(puts or {})
        deletes = [k for k in deletes if k not in puts]
        if not puts and not deletes:
            return
        with self._wlock_local:
            while True:
                try:
                    return self._commit_guarded(puts, deletes)
                except Stale:
                    if self._guarded:
                        raise              # the caller validated a stale mirror: it retries
                    # a blind write (no read before it): send it again on the fresh mirror

    def _commit_guarded(self, puts, deletes):
        ops = [{"request_put": {"key": _b64(self.prefix + k), "value": _b64(json.dumps(v, sort_keys=True))}}
               for k, v in puts.items()]
        ops += [{"request_delete_range": {"key": _b64(self.prefix + k)}} for k in deletes]
        guard = self.prefix + GUARD
        ops.append({"request_put": {"key": _b64(guard), "value": _b64("{}")}})
        seen = self._guard_rev
        txn = {"compare": [{"key": _b64(guard), "target": "MOD", "result": "EQUAL", "mod_revision": seen}],
               "success": ops,
               "failure": [{"request_range": {"key": _b64(guard)}}]}
        t0 = time.perf_counter()
        res = self.call("/kv/txn", txn)
        rev = int(res["header"]["revision"])
        if not res.get("succeeded"):
            kvs = ((res.get("responses") or [{}])[0].get("response_range") or {}).get("kvs") or []
            now = int(kvs[0].get("mod_revision", 0)) if kvs else rev
            self._catch_up(now)
            raise Stale(f"etcd store {self.where}: another netmaster wrote at revision {now}")
        COMMIT_SECONDS.labels(self.backend).observe(time.perf_counter() - t0)
        self._commits += 1
        with self._mirror_lock:
            self._guard_rev = max(self._guard_rev, rev)
            for k in list(puts) + deletes:
                self._revs[k] = rev
            self._apply([Event(k, v) for k, v in puts.items()] + [Event(k, None) for k in deletes], rev)

    def _catch_up(self, guard_rev: int) -> None:
        """Wait until the watch brought the mirror to the guard's revision; when it
        does not within CATCH_UP_WAIT (the watch is re-connecting), read everything."""
        deadline = time.monotonic() + CATCH_UP_WAIT
        with self._mirror_lock:
            while self._guard_rev < guard_rev:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._synced.wait(min(left, 0.05))
            if self._guard_rev >= guard_rev:
                return
        log.info("event=etcd_catch_up_by_read guard_revision=%d mirror_guard=%d", guard_rev, self._guard_rev)
        self.resync()

    def close(self):
        """Stop the watch: its stream's socket is shut down, which wakes the
        reading thread at once (closing the response from here would not)."""
        self._stopped = True
        r = self._resp
        if r is not None:
            try:
                sock = r.raw.connection.sock
                sock.shutdown(socket.SHUT_RDWR)
            except Exception:      # noqa: BLE001 - already closed or never opened
                pass
        self._watch_thread.join(5)


class _Compacted(Exception):
    def __init__(self, revision: int):
        super().__init__(revision)
        self.revision = revision

"""The etcd store, for several netmasters sharing one etcd cluster.

etcd3gw speaks etcd's JSON gateway over HTTP, so it works under eventlet
(grpc-based clients do not mix with monkey-patching, and python-etcd3 no
longer imports with current protobuf).  Keys live under a prefix.

Correctness rests on four things:
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
- **Group commit, answered only once etcd has it.**  A guarded write goes into
  the mirror at once (the next writer validates against it) and into a batch;
  one flusher sends the batch as one transaction that compares the guard with
  the revision the chain of batches started from (or the previous batch's), so
  many writers pay one round trip.  A writer is answered after that transaction
  returned.  A reply lost on the way (a member killed mid-request) is never
  guessed: the transaction also writes this store's marker key with the batch's
  number, and a retry, or a fence that moves the guard when it is still where the
  batch expected it, reads the marker back.  When a batch fails (another
  netmaster wrote, or it was fenced) every write validated on top of it fails
  with it: the mirror undoes them and re-reads etcd, and their writers retry
  (Stale) or answer 503 (StoreError).  What the watch brings for a key with a
  write pending here is held back, and applied if it is newer than the batch.
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
import uuid

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
        self._depth: dict[int, int] = {}       # thread -> its write_lock() nesting (a refusal
                                               # waiting for the flusher lets others in)
        self._floor = 0                        # revision of the last full read
        # group commit (see the module's docstring)
        self._batch: list[_Pending] = []       # guarded writes in the mirror, not yet sent
        self._inflight: list[_Pending] = []    # the batch being sent
        self._chain: int | None = None         # guard revision the next batch compares with
        self._pending_keys: dict[str, int] = {}   # key -> pending writes to it (the watch holds back)
        self._held: dict[str, tuple[int, dict | None]] = {}   # pending key -> newest (revision, value)
                                               # etcd showed for it, applied if newer than the batch
        self._seq = 0                          # number of the last batch sent
        # this store's marker, outside the mirrored prefix: every batch writes its number
        # there, so a batch whose reply was lost is known applied or not by reading it
        self._marker = f"{self.prefix[:-1]}.writers/{uuid.uuid4().hex}"
        self._entry_guard: dict[int, int] = {}   # thread -> the guard when its write_lock began
        self._owed: dict[int, _Pending] = {}   # thread -> its last write, waited for on leaving
        self._flush_cv = threading.Condition()
        self._flushing = False
        self._must_resync = False              # a failed batch could not re-read: read first
        self.flushes = 0                       # transactions sent by group commit
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
        changed, deletions for what vanished.  Returns etcd's revision.  The watch
        goes on while the read is on its way: a key it brought at a revision after
        the read's keeps the watch's value (else the mirror would go back in time
        under a guard revision that says it is current, and the next guarded write
        would overwrite what it never saw)."""
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
                if key in self._pending_keys:      # written here, not answered yet: held back
                    self._hold(key, mod, value)
                    continue
                if self._revs.get(key, 0) > mod:
                    continue                       # the watch brought a newer one meanwhile
                if self._data.get(key) != value:
                    events.append(Event(key, value))
                self._revs[key] = mod
            for key in list(self._data):
                if key not in seen:
                    if key in self._pending_keys:
                        self._hold(key, rev, None)     # gone at this revision at the latest
                    elif self._revs.get(key, 0) <= rev:     # else written after the read
                        events.append(Event(key, None))
            # the watch may still replay events up to rev: they are in this read already
            self._floor = max(self._floor, rev)
            self._revs = {k: v for k, v in self._revs.items() if k in seen or v > rev}
            self._guard_rev = max(self._guard_rev, guard)
            self._apply(events, rev)
            self.generation = max(self.generation, rev)
            self._synced.notify_all()
        if events:
            log.info("event=etcd_resync revision=%d changed=%d", rev, len(events))
        return rev

    def _hold(self, key: str, mod: int, value) -> None:
        """etcd's newer value of a key with a write pending here: kept aside, not
        dropped (a batch that succeeded before it must not hide it)."""
        if mod > self._held.get(key, (0, None))[0]:
            self._held[key] = (mod, value)

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
                kv = ev["kv"]
                key = _unb64(kv["key"])[len(self.prefix):]
                mod = int(kv.get("mod_revision", 0))
                last = max(last, mod)
                if key == GUARD:
                    self._guard_rev = max(self._guard_rev, mod)
                    continue
                if mod <= self._revs.get(key, 0) or mod <= self._floor:
                    continue               # our own commit, or in a full read already (not decoded)
                value = None if ev.get("type") == "DELETE" else self._kv(kv)[2]
                if key in self._pending_keys:
                    self._hold(key, mod, value)    # the batch's answer decides (_release_keys)
                    continue
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
        """Serialise this process's writers.  The body's commits go into the mirror
        and the batch at once and are answered when the outermost lock is left, after
        the transaction carrying them returned (group commit): Stale when another
        netmaster wrote first (the caller retries, see store.base.retry_stale),
        StoreError when etcd could not be reached.  That wait happens even when the
        body raised after writing.  A body that ends without committing (a refusal,
        or a re-applied identical object) decided on the mirror alone: it waits for
        the writes it saw pending, and reads the guard once to make sure the mirror
        was current, else Stale."""
        me = threading.get_ident()
        owed = None
        try:
            with self._wlock_local:
                depth = self._depth.get(me, 0)
                if depth == 0:
                    if self._must_resync:
                        self.resync()
                        self._must_resync = False
                    self._entry_guard[me] = self._guard_rev
                self._depth[me] = depth + 1
                seen = self._last_pending()
                try:
                    yield
                except StoreError:
                    raise
                except Exception as exc:
                    if depth == 0 and me not in self._owed:
                        self._check_unwritten(seen, exc)
                    raise
                else:
                    if depth == 0 and me not in self._owed:
                        self._check_unwritten(seen, None)
                finally:
                    if depth == 0:
                        del self._depth[me]
                        self._entry_guard.pop(me, None)
                        owed = self._owed.pop(me, None)
                    else:
                        self._depth[me] = depth
        finally:
            if owed is not None:           # answered only once etcd has it (or surely not)
                self._wait(owed)

    def _last_pending(self) -> "_Pending | None":
        if self._batch:
            return self._batch[-1]
        return self._inflight[-1] if self._inflight else None

    def _check_unwritten(self, seen, exc) -> None:
        """A body decided without writing: on writes that then failed, or on a mirror
        behind etcd, it decided on a state that was not etcd's: Stale."""
        last = self._last_pending() or seen
        if last is not None and not last.done:
            self._wlock_local.release()          # let the flusher finish the writes it saw
            try:
                self._wait(last, raise_error=False)
            finally:
                self._wlock_local.acquire()
        if last is not None and last.error is not None:
            raise Stale(f"etcd store {self.where}: decided on writes that failed, retrying") from exc
        if self._mirror_behind():
            what = "refused" if exc is not None else "no-op"
            raise Stale(f"etcd store {self.where}: {what} on a stale mirror, retrying") from exc

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
        me = threading.get_ident()
        with self._wlock_local:
            if self._depth.get(me):
                self._owed[me] = self._enqueue(puts, deletes, self._entry_guard[me])
                return
        while True:                        # a blind write (no read before it): until it lands
            with self._wlock_local:
                if self._must_resync:
                    self.resync()
                    self._must_resync = False
                entry = self._enqueue(puts, deletes, self._guard_rev)
            try:
                return self._wait(entry)
            except Stale:
                continue

    # -- group commit -------------------------------------------------------
    def _enqueue(self, puts, deletes, start: int) -> "_Pending":
        """Into the mirror now, into the batch for the flusher (write lock held).
        `start`: the guard the writer's reads were made at, where a new chain starts."""
        keys = list(puts) + deletes
        entry = _Pending(puts, deletes, {k: self._data.get(k) for k in keys})
        if self._chain is None:                  # nothing pending: start from what the body saw
            self._chain = start
        self._batch.append(entry)
        for k in keys:
            self._pending_keys[k] = self._pending_keys.get(k, 0) + 1
        self._apply([Event(k, v) for k, v in puts.items()] + [Event(k, None) for k in deletes])
        return entry

    def _wait(self, entry: "_Pending", raise_error: bool = True) -> None:
        """Until the entry's batch is answered; the first waiter becomes the flusher."""
        while not entry.done:
            with self._flush_cv:
                if entry.done:
                    break
                if self._flushing or not self._batch:
                    self._flush_cv.wait(0.5)
                    continue
                self._flushing = True
            try:
                self._flush()
            finally:
                with self._flush_cv:
                    self._flushing = False
                    self._flush_cv.notify_all()
        if raise_error and entry.error is not None:
            raise entry.error

    def _flush(self) -> None:
        """Send the batch as one guarded transaction (etcd refuses a key twice in one
        transaction: the batch's writes are merged in order) that also writes this
        store's marker with the batch's number, so that an outcome the reply did not
        bring is read back (see _outcome), never guessed."""
        with self._wlock_local:
            batch, self._batch = self._batch, []
            self._inflight = batch
            expect = self._chain
        if not batch:
            return
        self._seq += 1
        merged: dict[str, dict | None] = {}
        for e in batch:
            merged.update(e.puts)
            merged.update({k: None for k in e.deletes})
        ops = [{"request_put": {"key": _b64(self.prefix + k), "value": _b64(json.dumps(v, sort_keys=True))}}
               if v is not None else {"request_delete_range": {"key": _b64(self.prefix + k)}}
               for k, v in merged.items()]
        ops.append({"request_put": {"key": _b64(self.prefix + GUARD), "value": _b64("{}")}})
        ops.append({"request_put": {"key": _b64(self._marker), "value": _b64(json.dumps({"batch": self._seq}))}})
        t0 = time.perf_counter()
        rev, error = self._outcome(self._guarded_txn(expect, ops), expect)
        if error is not None:
            self._fail(batch, error, getattr(error, "guard_now", 0))
            return
        COMMIT_SECONDS.labels(self.backend).observe(time.perf_counter() - t0)
        self.flushes += 1
        with self._wlock_local:
            with self._mirror_lock:
                self._guard_rev = max(self._guard_rev, rev)
                self.generation = max(self.generation, rev)
                for k, v in merged.items():
                    self._revs[k] = rev
                    if v is None:
                        self._gens.pop(k, None)
                    else:
                        self._gens[k] = rev
                self._release_keys(batch, rev)
                self._synced.notify_all()
            self._chain = rev if self._batch else None
            self._inflight = []
        self._answer(batch, None)

    def _guarded_txn(self, expect: int, ops: list) -> dict:
        """A transaction that applies `ops` when the guard is still at `expect`, and
        otherwise reads the guard and this store's marker."""
        guard = _b64(self.prefix + GUARD)
        return {"compare": [{"key": guard, "target": "MOD", "result": "EQUAL", "mod_revision": expect}],
                "success": ops,
                "failure": [{"request_range": {"key": guard}}, {"request_range": {"key": _b64(self._marker)}}]}

    def _outcome(self, txn: dict, expect: int) -> tuple[int, StoreError | None]:
        """Send the batch's transaction: (revision, None) when etcd applied it, else
        (0, the error).  `call` may send it to several members (a reply lost to a
        dying member): the guard lets it apply at most once, and the marker tells
        whether an earlier attempt did.  When no attempt got a reply, a fence settles
        it: a transaction that moves the guard if it is still at `expect` (then the
        batch can never apply) and otherwise reads the marker."""
        try:
            res = self.call("/kv/txn", txn)
        except StoreError as exc:
            log.warning("event=etcd_batch_unknown batch=%d error=%r", self._seq, str(exc)[:200])
            fence = self._guarded_txn(expect, [{"request_put": {"key": _b64(self.prefix + GUARD),
                                                                "value": _b64("{}")}}])
            try:
                res = self.call("/kv/txn", fence)
            except StoreError as exc2:
                return 0, StoreError(f"{exc2}; the outcome of the last write is unknown")
            if res.get("succeeded"):       # fenced: the batch was not applied and never will be
                log.info("event=etcd_batch_fenced batch=%d", self._seq)
                return 0, StoreError(f"{exc}; not applied")
            return self._read_marker(res)
        if res.get("succeeded"):
            return int(res["header"]["revision"]), None
        return self._read_marker(res)

    def _read_marker(self, res: dict) -> tuple[int, StoreError | None]:
        """The failure branch of a guarded transaction: applied by an earlier attempt
        when the marker holds this batch's number, else refused (the guard moved)."""
        ranges = [((r.get("response_range") or {}).get("kvs") or [None])[0] for r in res.get("responses") or []]
        guard, marker = (ranges + [None, None])[:2]
        if marker and json.loads(_unb64(marker["value"])).get("batch") == self._seq:
            log.info("event=etcd_batch_found_applied batch=%d revision=%s", self._seq, marker["mod_revision"])
            return int(marker["mod_revision"]), None
        now = int(guard.get("mod_revision", 0)) if guard else int(res["header"]["revision"])
        err = Stale(f"etcd store {self.where}: another netmaster wrote at revision {now}")
        err.guard_now = now
        return 0, err

    def _release_keys(self, entries, rev: int = 0) -> None:
        """The entries are answered: their keys follow etcd again.  What the watch held
        back for a key and is newer than `rev` goes into the mirror now: after a
        success at `rev`, another netmaster's write right after; after a failure
        (rev 0, the writes undone), whatever etcd showed meanwhile."""
        later = []
        for e in entries:
            for k in list(e.puts) + e.deletes:
                n = self._pending_keys.get(k, 0) - 1
                if n > 0:
                    self._pending_keys[k] = n
                    continue
                self._pending_keys.pop(k, None)
                held = self._held.pop(k, None)
                if held is not None and held[0] > rev and held[0] > self._revs.get(k, 0):
                    self._revs[k] = held[0]
                    later.append((held[0], Event(k, held[1])))
        for mod, ev in sorted(later, key=lambda x: x[0]):
            self._apply([ev], mod)

    def _fail(self, batch, error: StoreError, guard_now: int = 0) -> None:
        """The batch was not applied: so is every write validated on top of it.  The
        mirror undoes them (newest first) and takes what the watch held back for
        their keys; then it catches up with the guard another netmaster moved
        (`guard_now`), or, when etcd could not say, re-reads everything."""
        with self._wlock_local:
            rest, self._batch = self._batch, []
            doomed = batch + rest
            with self._mirror_lock:
                for e in reversed(doomed):
                    self._apply([Event(k, v) for k, v in e.undo.items()])
                self._release_keys(doomed)
            self._chain = None
            self._inflight = []
            log.info("event=etcd_batch_failed writes=%d error=%r", len(doomed), str(error)[:200])
            try:
                if guard_now:
                    self._catch_up(guard_now)
                else:
                    self.resync()
            except StoreError:
                self._must_resync = True        # the next writer reads first (or answers 503)
        self._answer(doomed, error)

    def _answer(self, entries, error) -> None:
        with self._flush_cv:
            for e in entries:
                e.error = error
                e.done = True
            self._flush_cv.notify_all()

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
        try:                       # the marker is this store's alone; a killed one leaves a small key
            self.call("/kv/deleterange", {"key": _b64(self._marker)}, timeout=0.5, outage=0)
        except StoreError:
            pass
        r = self._resp
        if r is not None:
            try:
                sock = r.raw.connection.sock
                sock.shutdown(socket.SHUT_RDWR)
            except Exception:      # noqa: BLE001 - already closed or never opened
                pass
        self._watch_thread.join(5)


class _Pending:
    """One guarded write of the group commit: what it wrote, what the mirror held
    before (to undo it), and its answer."""
    __slots__ = ("puts", "deletes", "undo", "done", "error")

    def __init__(self, puts, deletes, undo):
        self.puts, self.deletes, self.undo = puts, deletes, undo
        self.done = False
        self.error: StoreError | None = None


class _Compacted(Exception):
    def __init__(self, revision: int):
        super().__init__(revision)
        self.revision = revision

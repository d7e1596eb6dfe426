"""One switch as netweave knows it, and the bundle that changes it.

A `Switch` holds what the controller believes about one datapath connection:
the table it committed last (flows by key, groups by id; None = unknown, read
the switch), the change in flight (what that table becomes if the bundle
commits), the OpenFlow errors collected while a bundle or meter mod awaits its
barrier, the last reconcile's result, its scheduling (whether a reconcile is
asked for, the worker green thread draining those requests, the timer of a
retry), and, with clustered netmasters, the role it gave us.  One object lives per connection: `close()` on disconnect ends its
worker and timer, and a reconnect gets a fresh object.  `Switch.bundle()` is the one place that opens,
fills, checks and commits (or discards) an OpenFlow bundle, so a change is all
or nothing: OVS rejects a bad message when it is added yet would commit the
rest, so errors are collected behind a barrier before choosing COMMIT or DISCARD.
"""
from __future__ import annotations

import itertools
import logging
import time
from contextlib import contextmanager
from typing import Callable, Optional

from os_ken.app.ofctl import exception as ofctl_exc
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import ofcodec

LOG = logging.getLogger(__name__)

BUNDLE_FLAGS = ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED
# Bundle-adds per socket write on the fast path: one blob of ~SEND_BATCH
# messages instead of a queue item and a sendall each (OVS reads them in order).
SEND_BATCH = 512

_bundle_ids = itertools.count(1)      # unique per process, so per connection too


def _dpid(dpid) -> str:
    return f"{dpid:016x}" if isinstance(dpid, int) else str(dpid)


def err_code(err) -> int | None:
    """OFPErrorMsg code; experimenter errors (bundle failures) carry exp_type."""
    return err.code if err.code is not None else getattr(err, "exp_type", None)


def send_raw(dp, batch: list) -> None:
    """Queue pre-encoded messages on the datapath's send queue as one write."""
    if batch:
        if not dp.send(b"".join(batch)):
            raise ofctl_exc.InvalidDatapath(result=dp.id)
        batch.clear()


def _phase(res, name: str, since: float) -> float:
    """Record in res.phases how long the bundle phase `name` took (ms); returns now."""
    now = time.perf_counter()
    res.phases[name] = (now - since) * 1000
    return now


class Bundle:
    """The open bundle handed out by `Switch.bundle()`: `add()` queues one message."""

    def __init__(self, dp, bid: int):
        self.dp, self.bid = dp, bid
        self.sent: dict = {}            # xid -> description (or Encoded, described only if rejected)
        self._batch: list = []          # pre-encoded bundle-adds, sent as one blob

    def add(self, desc, msg) -> None:
        dp = self.dp
        if isinstance(msg, ofcodec.Encoded):
            # Speed: raw bytes, no os-ken objects; xids come from the
            # datapath's own counter so they never clash with os-ken's.
            dp.xid = xid = (dp.xid + 1) & ofp.MAX_XID
            self._batch.append(msg.bundle_add(self.bid, BUNDLE_FLAGS, xid))
            self.sent[xid] = msg
            if len(self._batch) >= SEND_BATCH:
                send_raw(dp, self._batch)
            return
        send_raw(dp, self._batch)       # keep the order: earlier adds go first
        add = parser.ONFBundleAddMsg(dp, self.bid, BUNDLE_FLAGS, msg, [])
        if not dp.send_msg(add):
            raise ofctl_exc.InvalidDatapath(result=dp.id)
        self.sent[add.xid] = desc

    def flush(self) -> None:
        send_raw(self.dp, self._batch)


class Switch:
    """One datapath connection's state.  talk(msg, reply_cls=..., reply_multi=...)
    talks to the switch with a timeout; flush() waits until every OpenFlow event
    queued so far (errors sent before a barrier reply) has been handled; dp is the
    os-ken Datapath of the connection."""

    def __init__(self, dpid: int, talk: Callable, flush: Callable[[], None], dp=None):
        self.dpid, self.dp = dpid, dp
        self._talk, self._flush = talk, flush
        # What the switch holds after our last successful reconcile (flows by key,
        # groups by id).  A model change is diffed against it, so the switch is not
        # read each time; None (read it again) on connect, after any failure, and at
        # the periodic audit (which also catches flows changed behind our back).
        self.held: Optional[tuple[dict, dict]] = None
        # What `held` becomes if the bundle in flight commits: (flows, groups) after a
        # full diff, or ("delta", {key: entry|None}, {gid: group|None}).
        self.pending: Optional[tuple] = None
        self.errors: Optional[dict] = None      # {xid: OFPErrorMsg} while awaiting a barrier
        self.last_result = None                 # ReconcileResult of the last reconcile
        self.meter_ok = False                   # the deny-log meter is in place on this connection
        self.desired_memo: Optional[tuple] = None   # (desired object, its canonical form)
        # Scheduling: bursts of requests coalesce into one reconcile because one
        # worker drains them; `asked` is when the oldest undrained request came
        # (None: none pending), for the queued-time metric.
        self.asked: Optional[float] = None
        self.worker = None                      # green thread running reconciles, while one runs
        self.retry = None                       # timer of the retry after a failed talk, while armed
        self.closed = False                     # the connection is gone: nothing more runs
        # Clustered netmasters (controller/roles.py): what the switch last answered to our
        # role request, and the election generation it made us master at (None: not master)
        self.role: Optional[str] = None
        self.master_generation: Optional[int] = None

    # -- scheduling (driven by SwitchManager in the app's hub)
    @property
    def dirty(self) -> bool:
        return self.asked is not None

    def request(self, now: float) -> bool:
        """A reconcile is wanted.  True when no worker runs: the caller starts one
        and sets `worker`; otherwise the running worker will take it."""
        if self.closed:
            return False
        if self.asked is None:
            self.asked = now
        return self.worker is None

    def take_request(self) -> Optional[float]:
        """For the worker: when the pending request was asked, clearing it; None when
        nothing is pending or the switch is closed (the worker ends)."""
        asked, self.asked = self.asked, None
        return None if self.closed else asked

    def arm_retry(self, spawn_after: Callable) -> bool:
        """Arm one retry timer with spawn_after() unless one is armed or the switch is closed."""
        if self.closed or self.retry is not None:
            return False
        self.retry = spawn_after()
        return True

    def close(self) -> None:
        """The connection is gone (or replaced): kill the worker and the retry timer,
        drop the pending request, trust nothing.  Called from another green thread
        than the worker (the app's event loop, or stop()); idempotent."""
        self.closed = True
        self.asked = None
        self.forget()
        threads, self.worker, self.retry = (self.worker, self.retry), None, None
        for t in threads:
            if t is not None:
                t.kill()         # eventlet: GreenletExit where it waits (a bundle discards itself)

    def forget(self) -> None:
        """Trust nothing cached: read the switch and check the meter at the next reconcile."""
        self.held = None
        self.meter_ok = False

    def error(self, msg) -> None:
        """An OpenFlow error from this switch (kept only while collecting)."""
        if self.errors is not None:
            self.errors[msg.xid] = msg

    @contextmanager
    def collecting(self):
        """Collect this switch's errors by xid for the duration."""
        errors = self.errors = {}
        try:
            yield errors
        finally:
            self.errors = None

    def commit_pending(self) -> bool:
        """The bundle committed: what the switch holds now.  False if nothing was pending."""
        pending, self.pending = self.pending, None
        if pending is None:
            return False
        if pending[0] == "delta":
            held, groups_held = self.held
            for table, upd in ((held, pending[1]), (groups_held, pending[2])):
                for k, v in upd.items():
                    if v is None:
                        table.pop(k, None)
                    else:
                        table[k] = v
        else:
            # a copy: deltas change it in place, and the desired memo must not move
            self.held = (dict(pending[0]), dict(pending[1]))
        return True

    def _ctrl(self, dp, bid: int, kind: int):
        return self._talk(parser.ONFBundleCtrlMsg(dp, bid, kind, BUNDLE_FLAGS, []),
                          reply_cls=parser.ONFBundleCtrlMsg)

    @contextmanager
    def bundle(self, dp, res):
        """Open a bundle and yield it; on leaving: barrier, then COMMIT when no added
        message was refused, else DISCARD with the refusals in res.rejected.  Sets
        res.outcome to "committed" or "discarded", and res.phases (ms) to the time spent
        opening, adding + barrier, flushing our own queue, committing.  Some checks
        (e.g. a missing group) only fail the COMMIT itself, which OVS then rolls back.
        An exception inside discards the bundle (best effort: the connection may be
        gone) and propagates."""
        bid = next(_bundle_ids) & 0xFFFFFFFF
        t = time.perf_counter()
        rep = self._ctrl(dp, bid, ofp.ONF_BCT_OPEN_REQUEST)
        t = _phase(res, "open", t)
        if rep is None or rep.type != ofp.ONF_BCT_OPEN_REPLY:
            raise ofctl_exc.InvalidMessage(result=rep)
        b = Bundle(dp, bid)
        with self.collecting() as errors:
            try:
                yield b
                b.flush()
                self._talk(parser.OFPBarrierRequest(dp))
                t = _phase(res, "barrier", t)
                self._flush()
                t = _phase(res, "flush", t)
            except BaseException:
                res.outcome = "discarded"
                try:            # no reply awaited: the connection may be the thing that failed
                    dp.send_msg(parser.ONFBundleCtrlMsg(dp, bid, ofp.ONF_BCT_DISCARD_REQUEST,
                                                        BUNDLE_FLAGS, []))
                except Exception:
                    pass
                raise
            if any(x in b.sent for x in errors):
                self._ctrl(dp, bid, ofp.ONF_BCT_DISCARD_REQUEST)
                self._rejected(dp, b, errors, res)
                return
            try:
                rep = self._ctrl(dp, bid, ofp.ONF_BCT_COMMIT_REQUEST)
                _phase(res, "commit", t)
            except ofctl_exc.OFError as e:
                self._flush()
                if not any(x in b.sent for x in errors):   # no message named: blame the commit
                    for err in e.result or []:
                        errors[err.xid], b.sent[err.xid] = err, "commit"
                self._rejected(dp, b, errors, res)
                return
        if rep is None or rep.type != ofp.ONF_BCT_COMMIT_REPLY:
            raise ofctl_exc.InvalidMessage(result=rep)
        res.outcome = "committed"

    def ensure_meter(self, meter_id: int, rate: int, burst: int) -> None:
        """Put a drop meter of `rate` packets/s and `burst` packets on the switch (the
        deny log's).  A flow naming a meter the switch lacks is refused, and an
        OpenFlow bundle cannot carry meter mods: so this runs before the first diff
        on each connection, and at each audit (deleting a meter deletes the flows
        that use it).  The meter's config is read first: ADD when it is missing,
        MODIFY when it differs (a restarted controller with another rate), nothing
        when it is right.  Errors are collected behind a barrier, as in bundle();
        raises ofctl_exc.OFError when the switch refuses."""
        dp = self.dp
        flags = ofp.OFPMF_PKTPS | ofp.OFPMF_BURST
        want = (flags, ((ofp.OFPMBT_DROP, rate, burst),))
        # all meters: asking for one that does not exist is an error (UNKNOWN_METER)
        req = parser.OFPMeterConfigStatsRequest(dp, 0, ofp.OFPM_ALL)
        held = None
        for rep in self._talk(req, reply_cls=parser.OFPMeterConfigStatsReply, reply_multi=True) or []:
            for m in rep.body:
                if m.meter_id == meter_id:
                    held = (m.flags, tuple((b.type, b.rate, b.burst_size) for b in m.bands))
        if held == want:
            return
        command = ofp.OFPMC_ADD if held is None else ofp.OFPMC_MODIFY
        mod = parser.OFPMeterMod(dp, command=command, flags=flags, meter_id=meter_id,
                                 bands=[parser.OFPMeterBandDrop(rate=rate, burst_size=burst)])
        with self.collecting() as errors:
            if not dp.send_msg(mod):
                raise ofctl_exc.InvalidDatapath(result=dp.id)
            self._talk(parser.OFPBarrierRequest(dp))
            self._flush()
            err = errors.get(mod.xid)
        what = "add" if command == ofp.OFPMC_ADD else "modify"
        if err is not None:
            LOG.error("event=meter_failed dpid=%s meter=%d command=%s type=%s code=%s", _dpid(dp.id),
                      meter_id, what, err.type, err_code(err))
            raise ofctl_exc.OFError(result=err)
        LOG.info("event=meter_set dpid=%s meter=%d pktps=%d burst=%d command=%s", _dpid(dp.id),
                 meter_id, rate, burst, what)

    @staticmethod
    def _rejected(dp, b: Bundle, errors: dict, res) -> None:
        res.outcome = "discarded"
        for xid, err in sorted(errors.items()):
            if xid not in b.sent:
                continue
            desc = b.sent[xid]
            if isinstance(desc, ofcodec.Encoded):
                desc = desc.describe()
            res.rejected.append((desc, err.type, err_code(err)))
            LOG.error("event=bundle_rejected dpid=%s bundle=%d xid=%d type=%d code=%s entry=%s",
                      _dpid(dp.id), b.bid, xid, err.type, err_code(err), desc)

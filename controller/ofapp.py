"""The OpenFlow side of netweave: one os-ken app that keeps switches equal to
what the fabric (netmaster core) wants.

Runs in the eventlet hub: the process entry point must do
    os.environ['OSKEN_HUB_TYPE'] = 'eventlet'; import eventlet; eventlet.monkey_patch()
before any other import.  controller/ofserver.py's `start(fabric, host, port)`
runs the OpenFlow listeners and `SwitchManager` in-process and returns a `Handle`.

Event handlers are thin: they update a dict, call the fabric and mark a switch
dirty.  Fabric callbacks (switch_up, port_changed, switch_down) run in the
app's event loop and must return quickly (hand slow work to a greenthread);
fabric.desired() and fabric.delta() run in the reconcile worker.  The work
happens in `reconcile()`, run by one worker greenthread per switch (each
connection's `Switch` object, controller/switch.py, holds its worker, its retry
timer and what it committed; a disconnect closes it, a reconnect makes a new one).  On
connect, after a failure and at each audit it diffs the fabric's whole
desired set against the switch's own (cookie-marked) flows and its groups;
otherwise it takes the fabric's delta (the flows and groups whose desired
entry changed since) and compares only those with what it last committed.
Either way the difference goes in one atomic OpenFlow bundle.  Conversions
go through controller/ofcodec.py.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Optional, Protocol

from os_ken.app.ofctl import api as ofctl_api
from os_ken.app.ofctl import exception as ofctl_exc
from os_ken.base import app_manager
from os_ken.controller import event as osken_event
from os_ken.controller import ofp_event
from os_ken.controller.handler import (CONFIG_DISPATCHER, DEAD_DISPATCHER,
                                       HANDSHAKE_DISPATCHER, MAIN_DISPATCHER,
                                       set_ev_cls)
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import metrics, ofcodec
from controller.switch import BUNDLE_FLAGS, SEND_BATCH, Switch, err_code as _err_code  # noqa: F401
from flows.entry import COOKIE_MARK, COOKIE_MARK_MASK, FlowEntry, GroupEntry
from flows.pipeline import DENY_LOG_METER, group_owned

LOG = logging.getLogger(__name__)

REQUEST_TIMEOUT = 30.0     # seconds for one request/reply with the switch
RETRY_DELAY = 5.0          # seconds before retrying a reconcile that failed to talk
AUDIT_INTERVAL = 60.0      # seconds between full reads of every switch's flows
DENY_LOG_RATE = 100        # packets/s per switch sent to the controller by logged deny rules

# Speed: os-ken keeps each flow-stats entry as its bytes (match/instructions
# parsed only if read) and _read_switch decodes them straight to FlowEntry.
# Other readers of flow stats see an ordinary OFPFlowStats. See controller/ofcodec.py.
ofcodec.install()


class Fabric(Protocol):
    """What netmaster's core gives the OpenFlow app."""

    def desired(self, dpid: int) -> Optional[tuple]:
        """Flows and groups the switch should hold, as two sets, or as dicts of flows by
        key and groups by id; None = unknown switch, touch nothing."""

    def delta(self, dpid: int) -> Optional[tuple[list, list]]:
        """Optional. ([(old, new)] flows, [(old, new)] groups) whose desired entry changed since
        the last desired()/delta() of this switch (None: absent); None = take desired()."""

    def switch_up(self, dpid: int, ports: dict[str, int]) -> None: ...

    def port_changed(self, dpid: int, name: str, ofport: Optional[int]) -> None:
        """ofport None = the port is gone."""

    def switch_down(self, dpid: int) -> None: ...

    def version(self) -> int:
        """A token of the desired state desired() answers from (realization)."""

    def realized(self, dpid: int, version: int) -> None:
        """The switch holds exactly what desired() gave at that version."""


@dataclass
class ReconcileResult:
    dpid: int
    outcome: str = "noop"          # noop | committed | discarded | failed | skipped
    added: int = 0                 # flows added (new key, or same key with another cookie)
    modified: int = 0              # same key and cookie, other actions: MODIFY_STRICT keeps counters
    deleted: int = 0
    unchanged: int = 0
    groups_added: int = 0
    groups_modified: int = 0
    groups_deleted: int = 0
    rejected: list = field(default_factory=list)   # (entry text, err type, err code)
    read: str = ""                 # where the held state came from: switch | cache
    started: float = 0.0           # perf_counter() at the start, for the latency metric
    # where a reconcile's time went, in ms: waiting behind the worker (queued), then the
    # bundle's phases against the switch (open, adds + barrier, own-queue flush, commit)
    phases: dict = field(default_factory=dict)

    @property
    def changes(self) -> int:
        return (self.added + self.modified + self.deleted + self.groups_added
                + self.groups_modified + self.groups_deleted)


class _Flush(osken_event.EventBase):
    """Posted to our own queue: once handled, every earlier event was too."""

    def __init__(self):
        super().__init__()
        self.done = hub.Event()


def _dpid(dpid) -> str:
    return f"{dpid:016x}" if isinstance(dpid, int) else str(dpid)


def _port_name(name) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


class SwitchManager(app_manager.OSKenApp):
    OFP_VERSIONS = [ofp.OFP_VERSION]

    def __init__(self, *args, fabric: Optional[Fabric] = None, deny_log_rate: int = DENY_LOG_RATE,
                 deny_log_burst: Optional[int] = None, packet_in=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fabric = fabric
        # The deny-log meter (flows.pipeline.DENY_LOG_METER): packets/s and burst (packets).
        self.deny_log_rate = deny_log_rate
        self.deny_log_burst = deny_log_rate if deny_log_burst is None else deny_log_burst
        # packet_in(dpid, cookie, table_id, match dict, data): a packet a flow sent
        # to the controller (a logged deny; see controller/denylog.py)
        self.packet_in = packet_in
        # Groups carry no cookie in OF1.3: group ids carry the owner instead
        # (flows/pipeline.py), and a group netweave did not make is never deleted.
        self.group_owned = group_owned
        self.datapaths: dict[int, object] = {}     # dpid -> Datapath in MAIN state
        # dpid -> Switch of the connected datapath: its committed table, change in
        # flight, errors, last result, reconcile worker and retry timer (one object
        # per connection: made at connect, closed at disconnect)
        self.switches: dict[int, Switch] = {}
        self._conns: set = set()                    # every live connection, for stop()
        self.audit_interval = AUDIT_INTERVAL
        # Clustered netmasters (controller/roles.py): None = the only controller, always writes.
        self.roles = None
        self._auditor = hub.spawn(self._audit_loop)
        self._stopping = False

    # ------------------------------------------------------------ handlers

    @set_ev_cls(ofp_event.EventOFPStateChange,
                [HANDSHAKE_DISPATCHER, CONFIG_DISPATCHER, MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev):
        dp = ev.datapath
        if ev.state != DEAD_DISPATCHER:
            self._conns.add(dp)
        if ev.state == MAIN_DISPATCHER and not self._admit(dp):
            return
        if ev.state == MAIN_DISPATCHER:
            # ofp_handler enters MAIN after the port-desc reply: dp.ports is filled.
            self.datapaths[dp.id] = dp
            old = self.switches.get(dp.id)
            if old is not None:                   # a reconnect seen before the old one's death
                old.close()
            self.switches[dp.id] = Switch(dp.id, self._request, self._flush_events, dp)
            ports = {_port_name(p.name): p.port_no for p in dp.ports.values()}
            LOG.info("event=switch_up dpid=%s addr=%s ports=%d", _dpid(dp.id),
                     dp.address, len(ports))
            self._tell("switch_up", dp.id, ports)
            if self.roles is not None:
                self.roles.switch_up(dp)          # MASTER or SLAVE first; a master audits
            else:
                self.request_reconcile(dp.id)
        elif ev.state == DEAD_DISPATCHER:
            self._conns.discard(dp)
            if dp.id is not None and self.datapaths.get(dp.id) is dp:   # (not a refused stranger)
                del self.datapaths[dp.id]
                self.switches.pop(dp.id).close()  # its worker and retry timer end with it
                LOG.info("event=switch_down dpid=%s", _dpid(dp.id))
                self._tell("switch_down", dp.id)
                if self.roles is not None:
                    self.roles.switch_down(dp.id)

    def _admit(self, dp) -> bool:
        """A switch claiming a registered host's datapath id must be that host: over
        TLS by its certificate (CN host:<label>), over tcp by the address it connects
        from; otherwise it is refused (closed) before it gets any flow."""
        address, identity = dp.address[0] if dp.address else "", tls_identity(dp)
        admit = getattr(self.fabric, "admit", None)
        ok, why = admit(dp.id, address, identity) if admit else (True, "")
        if not ok:                  # (a refused switch must not move the address of the admitted one)
            LOG.warning("event=switch_refused dpid=%s addr=%s identity=%s reason=%s", _dpid(dp.id),
                        address, who(identity), why)
            self._conns.discard(dp)
            dp.close()
        elif hasattr(self.fabric, "switch_address"):
            self.fabric.switch_address(dp.id, address, identity)
        return ok

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev):
        msg = ev.msg
        name = _port_name(msg.desc.name)
        ofport = None if msg.reason == ofp.OFPPR_DELETE else msg.desc.port_no
        LOG.info("event=port_status dpid=%s port=%s ofport=%s reason=%d",
                 _dpid(msg.datapath.id), name, ofport, msg.reason)
        self._tell("port_changed", msg.datapath.id, name, ofport)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev):
        msg = ev.msg
        if self.packet_in is None or self._stopping:
            return
        try:
            self.packet_in(msg.datapath.id, msg.cookie, msg.table_id, dict(msg.match.items()), msg.data)
        except Exception:
            LOG.exception("event=packet_in_error dpid=%s cookie=%#x", _dpid(msg.datapath.id), msg.cookie)

    @set_ev_cls(ofp_event.EventOFPErrorMsg,
                [HANDSHAKE_DISPATCHER, CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _error(self, ev):
        msg = ev.msg
        dpid = msg.datapath.id
        LOG.warning("event=of_error dpid=%s xid=%s type=%s code=%s",
                    _dpid(dpid), msg.xid, msg.type, _err_code(msg))
        metrics.OF_ERRORS.labels(self._host(dpid), str(msg.type)).inc()
        sw = self.switches.get(dpid)
        if sw is not None:
            sw.error(msg)

    @set_ev_cls(_Flush)
    def _flush(self, ev):
        ev.done.set()

    def _tell(self, method: str, *args) -> None:
        if self.fabric is None or self._stopping:
            return
        fn = getattr(self.fabric, method, None)     # realization hooks are optional
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            LOG.exception("event=fabric_error call=%s dpid=%s", method, _dpid(args[0]))

    # ------------------------------------------------------------ reconcile scheduling

    def request_reconcile(self, dpid: Optional[int] = None) -> None:
        """Ask for a reconcile of one switch (or every connected one); bursts
        coalesce into one reconcile per switch because one worker drains them."""
        for d in (list(self.switches) if dpid is None else [dpid]):
            sw = self.switches.get(d)
            if sw is not None:
                self._ask(sw)

    def _ask(self, sw: Switch) -> None:
        """sw wants a reconcile: its worker takes it, or one is started."""
        if not self._stopping and sw.request(time.perf_counter()):
            sw.worker = hub.spawn(self._worker, sw)

    def _worker(self, sw: Switch) -> None:
        try:
            while (asked := sw.take_request()) is not None:
                try:
                    self._reconcile(sw, asked)
                except Exception:
                    LOG.exception("event=reconcile_error dpid=%s", _dpid(sw.dpid))
        finally:
            sw.worker = None

    def switch(self, dpid: int) -> Optional[Switch]:
        """The Switch object of the connected datapath dpid (None when not connected)."""
        return self.switches.get(dpid)

    def result(self, dpid: int) -> Optional[ReconcileResult]:
        """The last reconcile's result for dpid, if any."""
        sw = self.switches.get(dpid)
        return None if sw is None else sw.last_result

    def idle(self) -> bool:
        """No reconcile running or pending (for tests and shutdown)."""
        return not any(sw.worker is not None or sw.dirty for sw in self.switches.values())

    # ------------------------------------------------------------ reconcile

    def _host(self, dpid) -> str:
        """The switch's host label for metrics (its dpid while it has none)."""
        connected = getattr(self.fabric, "connected", None) or {}
        return connected.get(dpid) or _dpid(dpid)

    def reconcile(self, dpid: int, asked: Optional[float] = None) -> Optional[ReconcileResult]:
        """Reconcile the connected switch dpid now, in this green thread (None: not connected)."""
        sw = self.switches.get(dpid)
        return None if sw is None else self._reconcile(sw, asked)

    def _reconcile(self, sw: Switch, asked: Optional[float] = None) -> Optional[ReconcileResult]:
        dpid, dp = sw.dpid, sw.dp
        if self.roles is not None and not self.roles.may_write(dpid):
            # a standby never writes; it keeps no change log (it audits when it becomes master)
            sw.held = None
            drain = getattr(self.fabric, "delta", None)
            if drain is not None:
                drain(dpid)
            return None
        res = ReconcileResult(dpid)
        res.started = time.perf_counter()
        if asked is not None:
            res.phases["queued"] = (res.started - asked) * 1000
        # A full read goes out before desired() is asked: the switch dumps its flows (its
        # own work, on another core) while netmaster's start recompute may still run.
        reading = hub.spawn(self._read_ahead, dp, res) if sw.held is None and self.fabric is not None else None
        try:
            return self._reconcile_with(sw, res, reading)
        finally:
            if reading is not None:
                hub.kill(reading)          # (done already unless the reconcile ended early)

    def _reconcile_with(self, sw: Switch, res: ReconcileResult, reading) -> Optional[ReconcileResult]:
        dpid, dp = sw.dpid, sw.dp
        t0 = time.perf_counter()
        # taken before desired(): what the switch holds after this reconcile is that version
        # (at netmaster's start this waits for the first recompute)
        version = getattr(self.fabric, "version", lambda: None)()
        delta = None
        if sw.held is not None and sw.meter_ok:
            # the switch holds what we last committed: only what changed since goes out
            delta_of = getattr(self.fabric, "delta", None)
            delta = delta_of(dpid) if delta_of is not None else None
        desired = None
        if delta is None:
            desired = self.fabric.desired(dpid) if self.fabric is not None else None
            if desired is None:
                res.outcome = "skipped"
                LOG.info("event=reconcile dpid=%s outcome=skipped reason=unknown_switch", _dpid(dpid))
                return self._done(sw, res)
        res.phases["compile_wait"] = (time.perf_counter() - t0) * 1000
        try:
            if not sw.meter_ok:
                sw.ensure_meter(DENY_LOG_METER, self.deny_log_rate, self.deny_log_burst)
                sw.meter_ok = True
            msgs = None
            if delta is not None:
                msgs = self._delta_msgs(sw, delta, res)
                if msgs is None:             # an entry it cannot send: the full path says which
                    sw.held = None
                    res = ReconcileResult(dpid, started=res.started)
                    desired = self.fabric.desired(dpid)
                    if desired is None:
                        res.outcome = "skipped"
                        return self._done(sw, res)
            if msgs is None:
                msgs = self._diff(sw, desired, res, reading)
            if msgs:
                with sw.bundle(dp, res) as bundle:
                    for desc, m in msgs:
                        bundle.add(desc, m)
            if res.outcome in ("noop", "committed") and sw.commit_pending():
                self._tell("realized", dpid, version)
            else:
                sw.held = sw.pending = None
        except (ofctl_exc.OFError, ofctl_exc.InvalidDatapath, hub.Timeout,
                ofctl_exc.InvalidMessage) as e:
            sw.held = None
            res.outcome = "failed"
            LOG.error("event=reconcile dpid=%s outcome=failed error=%s retry_in=%.0fs",
                      _dpid(dpid), type(e).__name__, RETRY_DELAY)
            self._schedule_retry(sw)
            return self._done(sw, res)
        LOG.info("event=reconcile dpid=%s outcome=%s added=%d modified=%d deleted=%d "
                 "unchanged=%d groups_added=%d groups_modified=%d groups_deleted=%d "
                 "rejected=%d read=%s ms=%.1f%s", _dpid(dpid), res.outcome, res.added, res.modified,
                 res.deleted, res.unchanged,
                 res.groups_added, res.groups_modified, res.groups_deleted, len(res.rejected), res.read,
                 (time.perf_counter() - res.started) * 1000,
                 "".join(f" {k}_ms={v:.1f}" for k, v in res.phases.items()))
        return self._done(sw, res)

    def _schedule_retry(self, sw: Switch) -> None:
        """Talking to the switch failed (timeout, lost connection): try again later,
        unless the connection is gone (a reconnect reconciles anyway).  A discarded
        bundle is not retried: the same desired set would fail again."""
        def fire():
            sw.retry = None
            self._ask(sw)               # a closed switch (disconnected meanwhile) ignores it
        if not self._stopping:
            sw.arm_retry(lambda: hub.spawn_after(RETRY_DELAY, fire))

    def _done(self, sw: Switch, res: ReconcileResult) -> ReconcileResult:
        sw.last_result = res
        metrics.reconciled(self._host(res.dpid), res, time.perf_counter() - res.started)
        return res

    def _request(self, msg, reply_cls=None, reply_multi=False):
        with hub.Timeout(REQUEST_TIMEOUT):
            return ofctl_api.send_msg(self, msg, reply_cls=reply_cls, reply_multi=reply_multi)

    def _desired(self, sw: Switch, desired, res: ReconcileResult):
        """Canonical desired flows by key and groups by id, or None when any
        entry is unusable: like a rejected bundle, a bad desired set changes nothing.
        The fabric hands out the same object until the model changes, so the
        canonical form is computed once per compile, not once per reconcile."""
        memo = sw.desired_memo
        if memo is not None and memo[0] is desired:
            return memo[1]
        checked = self._check_desired(sw.dp, desired, res)
        if checked is not None:
            sw.desired_memo = (desired, checked)
        return checked

    def _check_desired(self, dp, desired, res: ReconcileResult):
        want, groups, bad = canonical_desired(desired)
        self._report_bad(dp, bad, res)
        return None if bad else (want, groups)

    @staticmethod
    def _report_bad(dp, bad: list, res: ReconcileResult) -> None:
        for entry, reason in sorted(bad, key=repr):      # a stable report
            text = _entry_text(entry)
            res.rejected.append((text, None, reason))
            LOG.error("event=bad_entry dpid=%s reason=%r entry=%s", _dpid(dp.id), reason, text)

    def _diff(self, sw: Switch, desired, res: ReconcileResult, reading=None) -> list:
        """Messages that turn what the switch holds into `desired`, in bundle order.
        reading: the green thread of a read started earlier (_read_ahead), if any."""
        with ofcodec.gc_paused():       # speed: see flows/gcpause.py
            return self._diff_msgs(sw, desired, res, reading)

    def _diff_msgs(self, sw: Switch, desired, res: ReconcileResult, reading=None) -> list:
        dp = sw.dp
        t0 = time.perf_counter()
        checked = self._desired(sw, desired, res)
        res.phases["desired"] = (time.perf_counter() - t0) * 1000
        if checked is None:
            res.outcome = "discarded"
            return []
        want, groups_want = checked
        sw.pending = (want, groups_want)
        stale_raw = []                               # our flows we cannot even parse
        if sw.held is not None:
            held, groups_held = sw.held
            res.read = "cache"
        else:
            if reading is not None:
                t1 = time.perf_counter()
                got, err = reading.wait()
                res.phases["read_wait"] = (time.perf_counter() - t1) * 1000
                if err is not None:
                    raise err
            else:
                got = self._read_switch(dp)
            held, groups_held, stale_raw = got
            res.read = "switch"
        t2 = time.perf_counter()

        first, flows, last = [], [], []              # (description, message)
        for gid, g in sorted(groups_want.items()):
            if gid not in groups_held:
                first.append((g.to_ofctl(), ofcodec.encode_group(dp, g, ofp.OFPGC_ADD)))
                res.groups_added += 1
            elif groups_held[gid] != g:
                first.append((g.to_ofctl(), ofcodec.encode_group(dp, g, ofp.OFPGC_MODIFY)))
                res.groups_modified += 1
        unsendable = []
        gone, differ = flow_diff(want, held)
        res.unchanged = len(want) - len(differ)
        for e, h in differ:
            cmd = (ofp.OFPFC_MODIFY_STRICT if h is not None and h.cookie == e.cookie
                   else ofp.OFPFC_ADD)      # ADD also replaces a flow whose cookie differs
            try:
                flows.append(_flow_msg(dp, e, cmd))
            except ofcodec.ConversionError as x:
                unsendable.append((e, str(x)))
                continue
            if cmd == ofp.OFPFC_ADD:
                res.added += 1
            else:
                res.modified += 1
        if unsendable:            # like a rejected bundle: a desired set we cannot send changes nothing
            self._report_bad(dp, unsendable, res)
            sw.pending = None
            res.outcome = "discarded"
            return []
        # (only what goes is sorted, for a stable order: sorting all by repr took 0.4 s at 50k)
        for e in sorted(gone, key=repr):
            flows.append(_flow_msg(dp, e, ofp.OFPFC_DELETE_STRICT))
            res.deleted += 1
        for st in stale_raw:
            flows.append((f"delete unparsed table={st.table_id} priority={st.priority}",
                          parser.OFPFlowMod(dp, table_id=st.table_id,
                                            command=ofp.OFPFC_DELETE_STRICT,
                                            priority=st.priority, out_port=ofp.OFPP_ANY,
                                            out_group=ofp.OFPG_ANY, match=st.match)))
            res.deleted += 1
        for gid, g in sorted(groups_held.items()):
            if gid not in groups_want and self.group_owned(gid):
                last.append((f"delete group_id={gid}", ofcodec.delete_group(dp, gid)))
                res.groups_deleted += 1
        res.phases["diff"] = (time.perf_counter() - t2) * 1000
        return first + flows + last

    def _read_ahead(self, dp, res: ReconcileResult):
        """_read_switch in its own green thread: (its result, None) or (None, the
        exception), which the reconcile waiting for it raises in its own thread."""
        t0 = time.perf_counter()
        try:
            return self._read_switch(dp), None
        except (ofctl_exc.OFError, ofctl_exc.InvalidDatapath, hub.Timeout, ofctl_exc.InvalidMessage) as e:
            return None, e
        finally:
            res.phases["read"] = (time.perf_counter() - t0) * 1000

    def _delta_msgs(self, sw: Switch, delta, res: ReconcileResult):
        """Messages for what changed in the desired table since the last reconcile
        (delta: [(old, new)] of flows and of groups), against what we committed;
        None when an entry cannot be sent (the full path then reports it)."""
        flow_changes, group_changes = delta
        dp = sw.dp
        held, groups_held = sw.held
        res.read = "delta"
        upd_flows, upd_groups = {}, {}
        first, flows, last = [], [], []
        try:
            for old, new in group_changes:
                if new is None:
                    gid = old.group_id
                    if gid in groups_held and self.group_owned(gid):
                        last.append((f"delete group_id={gid}", ofcodec.delete_group(dp, gid)))
                        upd_groups[gid] = None
                        res.groups_deleted += 1
                    continue
                g = new
                h = groups_held.get(g.group_id)
                if h == g:
                    continue
                cmd = ofp.OFPGC_ADD if g.group_id not in groups_held else ofp.OFPGC_MODIFY
                first.append((g.to_ofctl(), ofcodec.encode_group(dp, g, cmd)))
                upd_groups[g.group_id] = g
                if cmd == ofp.OFPGC_ADD:
                    res.groups_added += 1
                else:
                    res.groups_modified += 1
            for old, new in flow_changes:
                if new is None:
                    k = old.key
                    h = held.get(k)
                    if h is not None:
                        flows.append(_flow_msg(dp, h, ofp.OFPFC_DELETE_STRICT))
                        upd_flows[k] = None
                        res.deleted += 1
                    continue
                e = new
                if e.cookie & COOKIE_MARK_MASK != COOKIE_MARK:
                    return None
                h = held.get(e.key)
                if h == e:
                    continue
                if h is not None and h.cookie == e.cookie:
                    flows.append(_flow_msg(dp, e, ofp.OFPFC_MODIFY_STRICT))
                    res.modified += 1
                else:
                    flows.append(_flow_msg(dp, e, ofp.OFPFC_ADD))
                    res.added += 1
                upd_flows[e.key] = e
        except ofcodec.ConversionError as x:
            LOG.warning("event=delta_unsendable dpid=%s error=%s action=full_reconcile", _dpid(dp.id), x)
            return None
        sw.pending = ("delta", upd_flows, upd_groups)
        return first + flows + last

    def _read_switch(self, dp):
        """Our flows (by the cookie mark) and all groups, as the switch holds them."""
        held: dict[tuple, FlowEntry] = {}
        stale_raw = []
        req = parser.OFPFlowStatsRequest(dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                         COOKIE_MARK, COOKIE_MARK_MASK, parser.OFPMatch())
        with ofcodec.gc_paused():           # speed: see flows/gcpause.py
            n = 0
            for rep in self._request(req, parser.OFPFlowStatsReply, True) or []:
                for st in rep.body:
                    try:
                        e = ofcodec.decode_flow(st)
                        held[e.key] = e
                    except ofcodec.ConversionError:
                        stale_raw.append(st)
                    n += 1
                    if not n % 4096:
                        hub.sleep(0)            # let other switches' deltas and REST run meanwhile
        groups_held = {}
        req = parser.OFPGroupDescStatsRequest(dp, 0)
        for rep in self._request(req, parser.OFPGroupDescStatsReply, True) or []:
            for d in rep.body:
                try:
                    groups_held[d.group_id] = ofcodec.decode_group(d)
                except ofcodec.ConversionError:
                    groups_held[d.group_id] = None      # unreadable: replace it
        return held, groups_held, stale_raw

    def audit(self, dpid: Optional[int] = None) -> None:
        """Read the switch (or every switch) again at the next reconcile, and reconcile."""
        for d in list(self.switches) if dpid is None else [dpid]:
            sw = self.switches.get(d)
            if sw is not None:
                sw.forget()
        self.request_reconcile(dpid)

    def _audit_loop(self) -> None:
        """Each switch is read again once per audit_interval, one at a time, spread
        over the interval: a full read of a 50k-flow switch holds the event loop for
        about half a second, and all switches at once held every other change (an
        attach's flows, REST) back for seconds at 10k endpoints."""
        while not self._stopping:
            dpids = sorted(self.datapaths)
            if not dpids:
                hub.sleep(self.audit_interval)
                continue
            for d in dpids:
                hub.sleep(self.audit_interval / len(dpids))
                if self._stopping:
                    return
                if d in self.datapaths:
                    self.audit(d)

    def _flush_events(self) -> None:
        """Wait until our event loop has handled every event queued so far
        (error messages the switch sent before a barrier reply)."""
        flush = _Flush()
        self.send_event(self.name, flush)
        with hub.Timeout(REQUEST_TIMEOUT):
            flush.done.wait()


def flow_diff(want: dict, held: dict) -> tuple[list, list]:
    """(held entries nobody wants, [(wanted entry, held entry or None)] that differ),
    of two dicts by flow key.  Speed: a key's hash is not cached (a tuple of tuples),
    and hashing it is most of a lookup: one pass over `held` hashes each of its keys
    once, and `want` is walked only when some of its keys are missing from it."""
    if len(held) == len(want) and held == want:
        # the common case (a restart, an audit): dict equality runs in C with the stored
        # hashes, no key hashed again (~1/3 less than the loop below at 50k flows)
        return [], []
    gone, differ = [], []
    found = 0
    for key, h in held.items():
        e = want.get(key)
        if e is None:
            gone.append(h)
            continue
        found += 1
        # same key: table, priority and match are equal already
        if e is not h and (e.actions != h.actions or e.cookie != h.cookie):
            differ.append((e, h))
    if found < len(want):
        differ += [(e, None) for k, e in want.items() if k not in held]
    return gone, differ


def canonical_desired(desired) -> tuple[dict, dict, list]:
    """A compiled (flows, groups) by key and by id (entries are canonical as made:
    flows/fields.py), and [(entry, why it cannot be installed)].  Flows given as a
    dict are by key already (the engine's table: one entry per key), and only
    their cookies are checked."""
    want_flows, want_groups = desired
    if isinstance(want_flows, dict):
        bad = [(e, "cookie lacks COOKIE_MARK") for e in want_flows.values()
               if e.cookie & COOKIE_MARK_MASK != COOKIE_MARK]
        return want_flows, dict(want_groups), bad
    want: dict[tuple, FlowEntry] = {}
    groups: dict[int, GroupEntry] = {}
    bad = []
    for e in want_flows:
        if e.cookie & COOKIE_MARK_MASK != COOKIE_MARK:
            bad.append((e, "cookie lacks COOKIE_MARK"))
        elif e.key in want and want[e.key] != e:
            bad.append((e, "two entries with one table/priority/match"))
        else:
            want[e.key] = e
    for g in sorted(want_groups, key=repr):
        if g.group_id in groups and groups[g.group_id] != g:
            bad.append((g, "two groups with one id"))
        groups[g.group_id] = g
    return want, groups, bad


def _flow_msg(dp, e: FlowEntry, command: int) -> tuple:
    """(description, message) for a bundle.  Speed: the description of an encoded
    flow mod is built only if the switch rejects it."""
    m = ofcodec.encode_flow(dp, e, command)
    return (None if isinstance(m, ofcodec.Encoded) else ofcodec.describe(e, command)), m


def _entry_text(entry) -> str:
    try:
        return entry.to_ofctl()
    except Exception:           # the entry is bad enough not to print: show it raw
        return repr(entry)


# (peer address, port) of each OpenFlow-over-TLS connection -> (CN, SHA-256) of the
# certificate it showed: os-ken's Datapath keeps the address, not the socket's certificate
TLS_PEERS: dict = {}


def tls_identity(dp) -> Optional[tuple]:
    """(CN, SHA-256) of the certificate a switch showed over TLS, or None for a
    plain tcp connection."""
    return TLS_PEERS.get(tuple(dp.address)) if dp.address else None


def who(identity: Optional[tuple]) -> str:
    return "-" if identity is None else (identity[0] or "nameless")

"""What to send a switch so that it holds its desired table: pure, no I/O.

The OpenFlow app (controller/ofapp.py) decides when and talks to the switch;
this module turns (what the switch holds, what it should hold) into bundle
messages in a safe order (groups added first, flows, groups deleted last), the
counts of a ReconcileResult, and the Switch's `pending` (what it holds if the
bundle commits).  Two paths: `full_diff` against a whole desired set (connect,
audit, after a failure) and `delta_diff` against the engine's changes since the
last reconcile.  A desired set with an entry that cannot be installed changes
nothing, like a rejected bundle.  As Faucet's valve is to its Ryu app.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Optional

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import ofcodec
from controller.switch import Switch
from flows.entry import COOKIE_MARK, COOKIE_MARK_MASK, FlowEntry, GroupEntry

LOG = logging.getLogger(__name__)


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
    read: str = ""                 # where the held state came from: switch | cache | delta
    started: float = 0.0           # perf_counter() at the start, for the latency metric
    # where a reconcile's time went, in ms: waiting behind the worker (queued), then the
    # bundle's phases against the switch (open, adds + barrier, own-queue flush, commit)
    phases: dict = field(default_factory=dict)

    @property
    def changes(self) -> int:
        return (self.added + self.modified + self.deleted + self.groups_added
                + self.groups_modified + self.groups_deleted)


def _dpid(dpid) -> str:
    return f"{dpid:016x}" if isinstance(dpid, int) else str(dpid)


def canonical_desired(desired) -> tuple[dict, dict, list]:
    """A compiled (flows, groups) by key and by id (entries are canonical as made:
    flows/fields.py), and [(entry, why it cannot be installed)]."""
    want_flows, want_groups = desired
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


def checked_desired(sw: Switch, desired, res: ReconcileResult) -> Optional[tuple[dict, dict]]:
    """Canonical desired flows by key and groups by id, or None when any entry is
    unusable (reported in res).  The fabric hands out the same object until the
    model changes, so the canonical form is computed once per compile, not once
    per reconcile (memo in the Switch)."""
    memo = sw.desired_memo
    if memo is not None and memo[0] is desired:
        return memo[1]
    want, groups, bad = canonical_desired(desired)
    report_bad(sw.dpid, bad, res)
    if bad:
        return None
    sw.desired_memo = (desired, (want, groups))
    return want, groups


def report_bad(dpid, bad: list, res: ReconcileResult) -> None:
    for entry, reason in sorted(bad, key=repr):      # a stable report
        text = entry_text(entry)
        res.rejected.append((text, None, reason))
        LOG.error("event=bad_entry dpid=%s reason=%r entry=%s", _dpid(dpid), reason, text)


def full_diff(sw: Switch, checked: tuple[dict, dict], held: dict, groups_held: dict, stale_raw: list,
              res: ReconcileResult, group_owned: Callable[[int], bool]) -> list:
    """Messages that turn what the switch holds (held flows by key, groups by id,
    our flows it holds that we cannot parse) into `checked` (checked_desired()), in
    bundle order; sets sw.pending.  [] with res.outcome "discarded" when an entry
    cannot be encoded."""
    dp = sw.dp
    want, groups_want = checked
    first, flows, last = [], [], []              # (description, message)
    for gid, g in sorted(groups_want.items()):
        if gid not in groups_held:
            first.append((g.to_ofctl(), ofcodec.encode_group(dp, g, ofp.OFPGC_ADD)))
            res.groups_added += 1
        elif groups_held[gid] != g:
            first.append((g.to_ofctl(), ofcodec.encode_group(dp, g, ofp.OFPGC_MODIFY)))
            res.groups_modified += 1
    unsendable = []
    for key, e in want.items():
        h = held.get(key)
        if h == e:
            res.unchanged += 1
            continue
        cmd = (ofp.OFPFC_MODIFY_STRICT if h is not None and h.cookie == e.cookie
               else ofp.OFPFC_ADD)      # ADD also replaces a flow whose cookie differs
        try:
            flows.append(flow_msg(dp, e, cmd))
        except ofcodec.ConversionError as x:
            unsendable.append((e, str(x)))
            continue
        if cmd == ofp.OFPFC_ADD:
            res.added += 1
        else:
            res.modified += 1
    if unsendable:            # like a rejected bundle: a desired set we cannot send changes nothing
        report_bad(sw.dpid, unsendable, res)
        sw.pending = None
        res.outcome = "discarded"
        return []
    # (only what goes is sorted, for a stable order: sorting all by repr took 0.4 s at 50k)
    for key, e in sorted(((k, e) for k, e in held.items() if k not in want), key=repr):
        flows.append(flow_msg(dp, e, ofp.OFPFC_DELETE_STRICT))
        res.deleted += 1
    for st in stale_raw:
        flows.append((f"delete unparsed table={st.table_id} priority={st.priority}",
                      parser.OFPFlowMod(dp, table_id=st.table_id,
                                        command=ofp.OFPFC_DELETE_STRICT,
                                        priority=st.priority, out_port=ofp.OFPP_ANY,
                                        out_group=ofp.OFPG_ANY, match=st.match)))
        res.deleted += 1
    for gid, g in sorted(groups_held.items()):
        if gid not in groups_want and group_owned(gid):
            last.append((f"delete group_id={gid}", ofcodec.delete_group(dp, gid)))
            res.groups_deleted += 1
    sw.pending = (want, groups_want)
    return first + flows + last


def delta_diff(sw: Switch, delta, res: ReconcileResult, group_owned: Callable[[int], bool]) -> Optional[list]:
    """Messages for what changed in the desired table since the last reconcile
    (delta: [(old, new)] of flows and of groups), against what the switch holds
    after our last commit (sw.held); sets sw.pending.  None when an entry cannot
    be sent (the full path then reports it)."""
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
                if gid in groups_held and group_owned(gid):
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
                    flows.append(flow_msg(dp, h, ofp.OFPFC_DELETE_STRICT))
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
                flows.append(flow_msg(dp, e, ofp.OFPFC_MODIFY_STRICT))
                res.modified += 1
            else:
                flows.append(flow_msg(dp, e, ofp.OFPFC_ADD))
                res.added += 1
            upd_flows[e.key] = e
    except ofcodec.ConversionError as x:
        LOG.warning("event=delta_unsendable dpid=%s error=%s action=full_reconcile", _dpid(sw.dpid), x)
        return None
    sw.pending = ("delta", upd_flows, upd_groups)
    return first + flows + last


def flow_msg(dp, e: FlowEntry, command: int) -> tuple:
    """(description, message) for a bundle.  Speed: the description of an encoded
    flow mod is built only if the switch rejects it."""
    m = ofcodec.encode_flow(dp, e, command)
    return (None if isinstance(m, ofcodec.Encoded) else ofcodec.describe(e, command)), m


def entry_text(entry) -> str:
    try:
        return entry.to_ofctl()
    except Exception:           # the entry is bad enough not to print: show it raw
        return repr(entry)

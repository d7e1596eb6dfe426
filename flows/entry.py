"""Flow and group entries as plain, hashable data.

This is the contract between the compiler (which produces entries), the
simulator (which executes them) and the controller (which turns them into
OpenFlow messages and compares them with what a switch holds).  Nothing here
knows about os-ken or OVS: an entry is just values.

Entries are canonical when constructed (flows/fields.py: the one table of
fields and the canonical form), so two entries that mean the same flow are
equal, and the entry a switch reports back equals the one the compiler made:
- match fields use OVS's names (ovs-fields(7)), declared in fields.FIELDS;
- values are ints, except MAC addresses ("aa:bb:cc:dd:ee:ff", lower case),
  IPv4/IPv6 addresses ("10.1.2.3", "2001:db8::1") and ct_state ("+trk+new");
  a mask, when there is one, has the same type as the value; an exact match
  has mask None;
- actions are tuples whose first element names them (see ACTIONS); the
  instruction-level ones (meter, goto, write_metadata) are actions too, kept
  in their OpenFlow order: meter first (as OVS prints it), then the
  apply-actions, write_metadata, goto.
Constructing an entry with an unknown field or action, or a value that does
not fit its field, raises fields.EntryError (a ValueError).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple, Union

from flows.fields import ACTIONS, EntryError, canon_actions, canon_match  # noqa: F401 (re-exported)

Value = Union[int, str]
MatchField = Tuple[str, Value, Optional[Value]]

# Every flow netweave installs carries this mark in the top byte of its cookie, so
# the controller can read and delete its own flows and leave anyone else's alone.
# The remaining 56 bits name the owner; flows/pipeline.py declares their layout.
COOKIE_MARK = 0x4E << 56
COOKIE_MARK_MASK = 0xFF << 56



@dataclass(frozen=True, order=True, init=False)
class FlowEntry:
    table: int
    priority: int
    match: Tuple[MatchField, ...]
    actions: Tuple[tuple, ...]
    cookie: int = 0

    def __init__(self, table: int, priority: int, match, actions, cookie: int = 0):
        # written out (not the dataclass's): one dict update instead of five frozen
        # object.__setattr__ calls and a __post_init__; a start builds ~125k of these
        self.__dict__.update(table=table, priority=priority, match=canon_match(match),
                             actions=canon_actions(actions), cookie=cookie)

    @classmethod
    def trusted(cls, table, priority, match, actions, cookie) -> "FlowEntry":
        """An entry from parts already canonical, without checking them: for a
        decoder whose output tests prove canonical (controller/ofwire)."""
        e = object.__new__(cls)
        e.__dict__.update(table=table, priority=priority, match=match, actions=actions,
                          cookie=cookie)
        return e

    @staticmethod
    def make(table: int, priority: int, match: dict | None = None,
             actions: list | tuple = (), cookie: int = 0) -> "FlowEntry":
        """Build an entry from a dict of match fields.

        A match value may be a (value, mask) pair; anything else is exact.
        """
        fields = []
        for name, v in (match or {}).items():
            if isinstance(v, tuple):
                fields.append((name, v[0], v[1]))
            else:
                fields.append((name, v, None))
        return FlowEntry(table, priority, tuple(fields), tuple(actions), cookie)

    def match_dict(self) -> dict:
        return {n: (v if m is None else (v, m)) for n, v, m in self.match}

    @property
    def key(self) -> tuple:
        """What OpenFlow uses to identify a flow: table, priority, match."""
        return (self.table, self.priority, self.match)

    def to_ofctl(self) -> str:
        """The flow in ovs-ofctl add-flow syntax (used by tests, benches, netctl)."""
        parts = [f"cookie={self.cookie:#x}", f"table={self.table}",
                 f"priority={self.priority}"]
        for n, v, m in self.match:
            # ovs-ofctl reads port numbers in decimal only ("in_port=0x1" is rejected)
            val = str(v) if n == "in_port" else _fmt(v)
            parts.append(f"{n}={val}" + ("" if m is None else f"/{_fmt(m)}"))
        return ",".join(parts) + ",actions=" + (",".join(_action_ofctl(a) for a in self.actions) or "drop")


GROUP_TYPES = ("all", "select", "indirect", "ff")


@dataclass(frozen=True, order=True)
class GroupEntry:
    """An ALL group (flooding); buckets are tuples of actions."""
    group_id: int
    buckets: Tuple[Tuple[tuple, ...], ...]
    group_type: str = "all"
    cookie: int = field(default=0, compare=False)

    def __post_init__(self):
        if self.group_type not in GROUP_TYPES:
            raise EntryError(f"unknown group type {self.group_type!r}")
        b = tuple(canon_actions(bk) for bk in self.buckets)
        if b != self.buckets or type(self.buckets) is not tuple:
            object.__setattr__(self, "buckets", b)

    def to_ofctl(self) -> str:
        b = ",".join("bucket=" + ",".join(_action_ofctl(a) for a in bk) for bk in self.buckets)
        return f"group_id={self.group_id},type={self.group_type}" + ("," + b if b else "")


def _fmt(v: Value) -> str:
    return f"{v:#x}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def _action_ofctl(a: tuple) -> str:
    kind = a[0]
    if kind == "output":
        return f"output:{a[1]}"
    if kind == "in_port":
        return "in_port"
    if kind == "group":
        return f"group:{a[1]}"
    if kind == "set_field":
        return f"set_field:{_fmt(a[2])}->{a[1]}"
    if kind == "move":
        return f"move:{a[1]}[]->{a[2]}[]"
    if kind == "dec_ttl":
        return "dec_ttl"
    if kind == "push_vlan":
        return f"push_vlan:{a[1]:#x}"
    if kind == "pop_vlan":
        return "pop_vlan"
    if kind == "ct":
        opts = dict(a[1])
        inner = []
        if opts.get("commit"):
            inner.append("commit")
        if "zone" in opts:
            inner.append(f"zone={opts['zone']}")
        if "zone_reg" in opts:
            inner.append(f"zone={opts['zone_reg']}[0..15]")
        if "table" in opts:
            inner.append(f"table={opts['table']}")
        if "nat" in opts:
            inner.append(f"nat({opts['nat']})" if opts["nat"] else "nat")
        return "ct(" + ",".join(inner) + ")"
    if kind == "conjunction":
        return f"conjunction({a[1]},{a[2]}/{a[3]})"
    if kind == "goto":
        return f"goto_table:{a[1]}"
    if kind == "write_metadata":
        return f"write_metadata:{a[1]:#x}/{a[2]:#x}"
    if kind == "controller":
        return f"controller:{a[1]}"
    if kind == "meter":
        return f"meter:{a[1]}"
    raise ValueError(f"unknown action {a!r}")

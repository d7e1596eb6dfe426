"""Incremental desired state: a change costs what it changes.

Modelled on OVN's incremental processing engine (lib/inc-proc-eng.h: inputs,
change handlers, full recompute as the fallback) and its ofctrl (a desired
flow linked to the set of owners that want it):

    typed change (kind, key, object)  --State-->  refs that changed
        (base objects, and derived sets: a tenant's hosts, a network's hosts, ...)
    ref --dependency index-->  owners that read it while producing
        (recorded by View as the producer reads; no hand-kept dependency lists)
    owner --its producer (flows/producers.py)-->  entries per host
    old vs new entries per host  -->  Table: flow key -> {owner: entry}
    Table  -->  the final entry of each key, and the keys changed since last taken

An owner is (kind name, key): one producer per kind, registered with the
kind of object whose existence spawns it (its anchor).  A flow leaves a
switch's table only with its last owner; conjunction members wanted by
several rules are one flow carrying every rule's conjunction actions.

`recompute()` runs every producer over every owner and diffs against what is
held: the reference for tests and the fallback for anything the deltas do
not cover.  Pure: no I/O, no clock.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Tuple

from flows import gcpause
from flows.entry import FlowEntry, GroupEntry
from flows.pipeline import NET_ID_MAX
from flows.snapshot import Endpoint, Group, Host, Network, Rule, Snapshot, Tenant

log = logging.getLogger(__name__)

Ref = Tuple[str, object]          # (kind, key) of something a producer read
OwnerId = Tuple[str, object]      # (kind name, key)


# ---------------------------------------------------------------- producers' output

class Out:
    """What one owner produces: chunks of entries per host label, and chunks
    for every host that carries a tenant ('scoped'): those follow the tenant
    to a host joining it without the producer running again.  A chunk given
    to several hosts is one frozenset, shared."""
    __slots__ = ("hosts", "scoped")

    def __init__(self):
        self.hosts: Dict[str, list] = {}
        self.scoped: list = []               # (tenant, hosts excluded, chunk)

    def add(self, hosts: Iterable[str], entries) -> None:
        chunk = tuple(entries)
        if chunk:
            for h in hosts:
                self.hosts.setdefault(h, []).append(chunk)

    def add_scoped(self, tenant: str, entries, exclude: Iterable[str] = ()) -> None:
        """entries go on every host that carries the tenant (but those excluded)."""
        chunk = frozenset(entries)
        if chunk:
            self.scoped.append((tenant, frozenset(exclude), chunk))

    def frozen(self, st: "State") -> Dict[str, FrozenSet]:
        hosts = {h: list(c) for h, c in self.hosts.items()}
        for tenant, exclude, chunk in self.scoped:
            for h in st.tenant_hosts.get(tenant, ()):
                if h not in exclude:
                    hosts.setdefault(h, []).append(chunk)
        # Hosts given the same chunks share one frozenset (an endpoint's: one for
        # its own host, one for all the others), so the engine diffs and splits
        # it once, not once per host.
        memo: dict = {}
        out = {}
        for h, chunks in hosts.items():
            ids = tuple(map(id, chunks))
            fs = memo.get(ids)
            if fs is None:
                if len(chunks) == 1 and type(chunks[0]) is frozenset:
                    fs = chunks[0]
                else:
                    fs = frozenset().union(*chunks)
                memo[ids] = fs
            out[h] = fs
        return out


@dataclass(frozen=True)
class OwnerKind:
    """A producer plugged into the engine.

    name:    the owner kind ('ep', 'rule', ...);
    anchor:  the ref kind whose keys are this kind's owner keys: a change of
             ('endpoint', X) (re)runs owner ('ep', X); State.anchor_keys
             lists them for a full recompute;
    produce: (View, key) -> Out, or None when the owner has nothing to say.
             It must read the model only through the View, which records
             what it read (its dependencies)."""
    name: str
    anchor: str
    produce: Callable[["View", object], Optional[Out]]


# ---------------------------------------------------------------- the model, indexed

def _claims(e: Endpoint) -> list:
    c = [("ip", e.tenant, e.ip), ("mac", e.tenant, e.network, e.mac.lower())]
    if e.ip6:
        c.append(("ip", e.tenant, e.ip6))
    if e.port_name:
        c.append(("port", e.host, e.port_name))
    return c


class State:
    """The compiler's input as mutable, indexed dicts, and the refs each
    change touched (including derived sets: which hosts carry a tenant, ...).

    Endpoints are accepted as flows.index.Index accepts them: their tenant and
    network exist and no endpoint with a smaller id claimed their address, MAC
    or port first."""

    def __init__(self):
        self.objects: Dict[str, dict] = defaultdict(dict)   # kind -> key -> object (any kind)
        self.ofports: Dict[str, Dict[str, int]] = {}
        self.pvt_subnet = "172.19.0.0/16"
        # accepted endpoints and the sets derived from them
        self.eps: Dict[str, Endpoint] = {}
        self.host_tenants: Dict[Tuple[str, str], int] = defaultdict(int)    # (tenant, host) -> count
        self.tenant_hosts: Dict[str, set] = defaultdict(set)
        self.net_host_count: Dict[tuple, int] = defaultdict(int)            # (t, n, host) -> count
        self.net_hosts: Dict[tuple, set] = defaultdict(set)
        self.eps_on: Dict[tuple, Dict[str, Endpoint]] = defaultdict(dict)   # (t, n, host) -> eps
        self.ep_hosts: Dict[str, int] = defaultdict(int)                    # host -> accepted eps
        # indexes of what is stored
        self.groups_by_policy: Dict[tuple, Dict[tuple, Group]] = defaultdict(dict)
        self.rules_by_tenant: Dict[str, Dict[tuple, Rule]] = defaultdict(dict)
        self.rules_by_policy: Dict[tuple, int] = defaultdict(int)         # (t, policy) -> rules
        self.services_by_tenant: Dict[str, Dict[tuple, object]] = defaultdict(dict)
        self.rule_uids: Dict[int, Rule] = {}                               # rule_uid -> rule (cookies)
        self.tenant_eps: Dict[str, Dict[str, Endpoint]] = defaultdict(dict)  # accepted, per tenant
        self.raw_by_net: Dict[tuple, set] = defaultdict(set)               # (t, n) -> endpoint ids
        self.claims: Dict[tuple, set] = defaultdict(set)                   # claim -> endpoint ids
        self.contested: set = set()                                        # claims with 2+ endpoints
        self._was_contested: set = set()                                   # endpoint ids, last settle
        self.changed: set = set()                                          # refs
        self._recheck: set = set()                                         # endpoint ids

    # -- what producers see (through View) --------------------------------
    def labels(self) -> FrozenSet[str]:
        """Every switch with a table: registered hosts, and any host endpoints name."""
        return frozenset(self.objects["host"]) | frozenset(h for h, n in self.ep_hosts.items() if n)

    def anchor_keys(self, anchor: str) -> Iterable:
        if anchor == "labels":
            return [None]
        if anchor == "endpoint":
            return list(self.eps)
        if anchor == "net_eps_on":
            return [k for k, v in self.eps_on.items() if v]
        return list(self.objects.get(anchor, ()))

    def anchor_exists(self, anchor: str, key) -> bool:
        if anchor == "labels":
            return True
        if anchor == "endpoint":
            return key in self.eps
        if anchor == "net_eps_on":
            return bool(self.eps_on.get(key))
        return key in self.objects.get(anchor, ())

    # -- changes -------------------------------------------------------------
    def put(self, kind: str, key, obj) -> None:
        """Store obj (None: delete) under (kind, key) and note what that touches."""
        objs = self.objects[kind]
        old = objs.get(key)
        if old == obj:
            return
        if obj is None:
            del objs[key]
        else:
            objs[key] = obj
        if kind == "host" and (old is None) != (obj is None):
            self.changed.add(("labels", None))
        if kind == "endpoint":
            self._raw_endpoint(key, old, obj)
            return
        self.changed.add((kind, key))
        if kind == "tenant" and (old is None) != (obj is None):
            self._recheck |= {i for (t, _n), ids in self.raw_by_net.items() if t == key for i in ids}
        elif kind == "network" and (old is None) != (obj is None):
            self._recheck |= self.raw_by_net.get(key, set())
        elif kind == "group":
            for g in (old, obj):
                if g is not None:
                    for p in g.policies:
                        self.changed.add(("policy_groups", (g.tenant, p)))
            if old is not None:
                for p in old.policies:
                    self.groups_by_policy[(old.tenant, p)].pop(key, None)
            if obj is not None:
                for p in obj.policies:
                    self.groups_by_policy[(obj.tenant, p)][key] = obj
        elif kind == "service":
            for sv in (old, obj):
                if sv is not None:
                    self.changed.add(("tenant_services", sv.tenant))
            if old is not None:
                self.services_by_tenant[old.tenant].pop(key, None)
            if obj is not None:
                self.services_by_tenant[obj.tenant][key] = obj
        elif kind == "rule":
            for r in (old, obj):
                if r is not None:
                    self.changed.add(("tenant_rules", r.tenant))
                    self.changed.add(("policy_rules", (r.tenant, r.policy)))
            if old is not None:
                if self.rule_uids.get(old.rule_uid) is old:
                    del self.rule_uids[old.rule_uid]
                self.rules_by_tenant[old.tenant].pop(key, None)
                self.rules_by_policy[(old.tenant, old.policy)] -= 1
                if not self.rules_by_policy[(old.tenant, old.policy)]:
                    del self.rules_by_policy[(old.tenant, old.policy)]
            if obj is not None:
                if obj.rule_uid:
                    self.rule_uids[obj.rule_uid] = obj
                self.rules_by_tenant[obj.tenant][key] = obj
                self.rules_by_policy[(obj.tenant, obj.policy)] += 1

    def set_pvt_subnet(self, subnet: str) -> None:
        if subnet != self.pvt_subnet:
            self.pvt_subnet = subnet
            self.changed.add(("pvt", None))

    def set_ports(self, host: str, ports: Dict[str, int]) -> None:
        old = self.ofports.get(host, {})
        for name in set(old) | set(ports):
            if old.get(name) != ports.get(name):
                self.changed.add(("ofport", (host, name)))
        if ports:
            self.ofports[host] = dict(ports)
        else:
            self.ofports.pop(host, None)

    def _raw_endpoint(self, eid: str, old: Optional[Endpoint], new: Optional[Endpoint]) -> None:
        if old is not None:
            self.raw_by_net[(old.tenant, old.network)].discard(eid)
            for c in _claims(old):
                ids = self.claims[c]
                ids.discard(eid)
                if len(ids) < 2:
                    self.contested.discard(c)
                if not ids:
                    del self.claims[c]
        if new is not None:
            self.raw_by_net[(new.tenant, new.network)].add(eid)
            for c in _claims(new):
                ids = self.claims[c]
                ids.add(eid)
                if len(ids) > 1:
                    self.contested.add(c)
        self._recheck.add(eid)

    def settle(self) -> set:
        """Accept or reject the endpoints the changes concern; return and clear
        every ref touched since the last settle."""
        if self._recheck:
            ids, self._recheck = self._recheck, set()
            contested = {i for c in self.contested for i in self.claims[c]}
            # endpoints that were contested may be free now, or the reverse
            ids |= contested | self._was_contested
            self._was_contested = contested
            won = set()
            if contested:
                # Index.build's order: by id, first claimant wins (a rejected one claims nothing)
                raw = self.objects["endpoint"]
                seen = set()
                for i in sorted(contested):
                    e = raw[i]
                    if not self._valid(e):
                        continue
                    cl = _claims(e)
                    if any(c in seen for c in cl):
                        continue
                    seen.update(cl)
                    won.add(i)
            for i in ids:
                e = self.objects["endpoint"].get(i)
                ok = e is not None and self._valid(e) and (i not in contested or i in won)
                self._accept(i, e if ok else None)
        out, self.changed = self.changed, set()
        return out

    def _valid(self, e: Endpoint) -> bool:
        return e.tenant in self.objects["tenant"] and (e.tenant, e.network) in self.objects["network"]

    def _accept(self, eid: str, new: Optional[Endpoint]) -> None:
        old = self.eps.get(eid)
        if old == new:
            return
        self.changed.add(("endpoint", eid))
        if old is not None:
            del self.eps[eid]
            self._count(old, -1)
            self.tenant_eps[old.tenant].pop(eid, None)
            self.changed.add(("tenant_eps", old.tenant))
        if new is not None:
            self.eps[eid] = new
            self._count(new, +1)
            self.tenant_eps[new.tenant][eid] = new
            self.changed.add(("tenant_eps", new.tenant))

    def _count(self, e: Endpoint, d: int) -> None:
        th = (e.tenant, e.host)
        nh = on = (e.tenant, e.network, e.host)
        self.changed.add(("net_eps_on", on))
        if d > 0:
            self.eps_on[on][e.endpoint_id] = e
        else:
            self.eps_on[on].pop(e.endpoint_id, None)
            if not self.eps_on[on]:
                del self.eps_on[on]
        before = self.ep_hosts[e.host]
        self.ep_hosts[e.host] = before + d
        if (before == 0) != (before + d == 0):
            self.changed.add(("labels", None))
        if not self.ep_hosts[e.host]:
            del self.ep_hosts[e.host]
        self.host_tenants[th] += d
        if self.host_tenants[th] == (1 if d > 0 else 0):
            self.changed.add(("tenant_hosts", e.tenant))
            (self.tenant_hosts[e.tenant].add if d > 0 else self.tenant_hosts[e.tenant].discard)(e.host)
        if not self.host_tenants[th]:
            del self.host_tenants[th]
        self.net_host_count[nh] += d
        if self.net_host_count[nh] == (1 if d > 0 else 0):
            self.changed.add(("net_hosts", (e.tenant, e.network)))
            (self.net_hosts[(e.tenant, e.network)].add if d > 0
             else self.net_hosts[(e.tenant, e.network)].discard)(e.host)
        if not self.net_host_count[nh]:
            del self.net_host_count[nh]


class _Tracked:
    """A read-only mapping whose reads are dependencies (for code written
    against flows.index.Index, such as flows.policy)."""
    __slots__ = ("_view", "_kind", "_get")

    def __init__(self, view: "View", kind: str, get):
        self._view, self._kind, self._get = view, kind, get

    def get(self, key, default=None):
        self._view.deps.add((self._kind, key))
        v = self._get(key)
        return default if v is None else v


class View:
    """The State as a producer reads it; every read is recorded in deps."""

    def __init__(self, st: State):
        self.st = st
        self.deps: set = set()
        # Index-shaped attributes for flows.policy's functions
        self.groups = _Tracked(self, "group", st.objects["group"].get)
        self.networks = _Tracked(self, "network", st.objects["network"].get)
        self.groups_by_policy = _Tracked(
            self, "policy_groups", lambda k: list(st.groups_by_policy[k].values()) if st.groups_by_policy.get(k) else None)
        self.rules_by_tenant = _Tracked(
            self, "tenant_rules", lambda t: list(st.rules_by_tenant[t].values()) if st.rules_by_tenant.get(t) else None)

    def get(self, kind: str, key):
        self.deps.add((kind, key))
        return self.st.objects.get(kind, {}).get(key)

    def tenant(self, name: str) -> Optional[Tenant]:
        return self.get("tenant", name)

    def network(self, tenant: str, name: str) -> Optional[Network]:
        return self.get("network", (tenant, name))

    def group(self, tenant: str, name: str) -> Optional[Group]:
        return self.get("group", (tenant, name)) if name else None

    def host(self, label: str) -> Optional[Host]:
        return self.get("host", label)

    def endpoint(self, eid: str) -> Optional[Endpoint]:
        self.deps.add(("endpoint", eid))
        return self.st.eps.get(eid)

    def ofport(self, host: str, port_name: str) -> Optional[int]:
        if not port_name:
            return None
        self.deps.add(("ofport", (host, port_name)))
        return self.st.ofports.get(host, {}).get(port_name)

    def uplink(self, host: str) -> Optional[int]:
        h = self.host(host)
        return self.ofport(host, h.uplink_port) if h else None

    def tenant_hosts(self, tenant: str) -> FrozenSet[str]:
        self.deps.add(("tenant_hosts", tenant))
        return frozenset(self.st.tenant_hosts.get(tenant, ()))

    def net_hosts(self, tenant: str, network: str) -> FrozenSet[str]:
        self.deps.add(("net_hosts", (tenant, network)))
        return frozenset(self.st.net_hosts.get((tenant, network), ()))

    def local_eps(self, tenant: str, network: str, host: str) -> List[Endpoint]:
        self.deps.add(("net_eps_on", (tenant, network, host)))
        eps = self.st.eps_on.get((tenant, network, host))
        return [eps[i] for i in sorted(eps)] if eps else []

    def pvt_subnet(self) -> str:
        self.deps.add(("pvt", None))
        return self.st.pvt_subnet

    def tenant_services(self, tenant: str) -> list:
        """The tenant's services, by key (flows/service.py)."""
        self.deps.add(("tenant_services", tenant))
        svcs = self.st.services_by_tenant.get(tenant)
        return [svcs[k] for k in sorted(svcs)] if svcs else []

    def tenant_eps(self, tenant: str) -> List[Endpoint]:
        """The tenant's accepted endpoints, by id (a service's providers are among them)."""
        self.deps.add(("tenant_eps", tenant))
        eps = self.st.tenant_eps.get(tenant)
        return [eps[i] for i in sorted(eps)] if eps else []

    def policy_has_rules(self, tenant: str, policy: str) -> bool:
        self.deps.add(("policy_rules", (tenant, policy)))
        return self.st.rules_by_policy.get((tenant, policy), 0) > 0

    def labels(self) -> FrozenSet[str]:
        self.deps.add(("labels", None))
        return self.st.labels()


# ---------------------------------------------------------------- per-switch desired table

def merge(entries: List[FlowEntry]) -> FlowEntry:
    """One flow from the entries several owners want under one key: equal
    entries are one; conjunction members carry every owner's conjunction
    actions, with the smallest cookie (as flows.policy.merge_members does)."""
    first = entries[0]
    if all(e == first for e in entries):
        return first
    acts = {a for e in entries for a in e.actions}
    if any(a[0] != "conjunction" for a in acts):
        # two owners disagree: deterministic choice, and say so
        pick = min(entries, key=lambda e: (e.cookie, repr(e.actions)))
        log.warning("event=flow_conflict table=%d priority=%d owners=%d chosen_cookie=%#x",
                    first.table, first.priority, len(entries), pick.cookie)
        return pick
    return FlowEntry(first.table, first.priority, first.match, tuple(sorted(acts)),
                     min(e.cookie for e in entries))


class Table:
    """One switch's desired flows and groups, each with the owners that want
    it, and what changed since the changes were last taken.

    contrib[key] is the one owner that wants the flow (its entry is flows[key]:
    no dict per flow, the common case) or {owner: entry} when several do."""

    def __init__(self):
        self.contrib: Dict[tuple, object] = {}
        self.flows: Dict[tuple, FlowEntry] = {}
        self.group_contrib: Dict[int, Dict[OwnerId, GroupEntry]] = {}
        self.groups: Dict[int, GroupEntry] = {}
        self.changes: Dict[tuple, Optional[FlowEntry]] = {}       # key -> final entry before
        self.group_changes: Dict[int, Optional[GroupEntry]] = {}
        # Changes are logged only once someone took the table (forget_changes/take_changes):
        # before that its first reader takes it whole, and a full load logs nothing.
        self.tracking = False
        # keys wanted by several owners, merged once at settle() (not at every owner's add)
        self._unsettled: set = set()

    def add(self, owner: OwnerId, entries) -> None:
        flows, groups = split(entries)
        self.add_split(owner, flows, groups)

    def add_split(self, owner: OwnerId, flows: Dict[tuple, FlowEntry], groups: list) -> None:
        """add() of entries already split (flows by key, groups): one split serves every host."""
        for g in groups:
            self.group_contrib.setdefault(g.group_id, {})[owner] = g
            self._settle_group(g.group_id)
        if not flows:
            return
        contrib = self.contrib
        if contrib.keys().isdisjoint(flows):
            # Speed: keys nobody wants yet (nearly all of a full load) go in by bulk
            # updates that reuse the dict's stored hashes, no Python loop per flow.
            if self.tracking:
                ch = self.changes
                ch.update(dict.fromkeys([k for k in flows if k not in ch]))
            contrib.update(dict.fromkeys(flows, owner))
            self.flows.update(flows)
            return
        for k, e in flows.items():
            c = contrib.get(k)
            if c is None:
                contrib[k] = owner
                self._set(k, e)
            elif type(c) is dict:
                c[owner] = e
                self._unsettled.add(k)
            elif c == owner:                    # one owner, two entries for one key: the last wins
                self._set(k, e)
            else:
                contrib[k] = {c: self.flows[k], owner: e}
                self._unsettled.add(k)

    def remove(self, owner: OwnerId, entries) -> None:
        flows, groups = split(entries)
        self.remove_split(owner, flows, groups)

    def remove_split(self, owner: OwnerId, flows: Dict[tuple, FlowEntry], groups: list) -> None:
        for e in groups:
            c = self.group_contrib.get(e.group_id)
            if c is not None and c.get(owner) == e:
                del c[owner]
                if not c:
                    del self.group_contrib[e.group_id]
                self._settle_group(e.group_id)
        contrib = self.contrib
        for k, e in flows.items():
            c = contrib.get(k)
            if c is None:
                continue
            if type(c) is dict:
                if c.get(owner) == e:
                    del c[owner]
                    self._unsettled.add(k)
            elif c == owner and k not in self._unsettled and self.flows[k] == e:
                del contrib[k]
                self._set(k, None)

    def _set(self, k: tuple, new: Optional[FlowEntry]) -> None:
        old = self.flows.get(k)
        if old == new:
            return
        if self.tracking and k not in self.changes:
            self.changes[k] = old
        if new is None:
            del self.flows[k]
        else:
            self.flows[k] = new

    def settle(self) -> None:
        """Merge the flows several owners want whose owners changed (the engine
        calls it after each run)."""
        keys, self._unsettled = self._unsettled, set()
        contrib = self.contrib
        for k in keys:
            c = contrib.get(k)
            if type(c) is not dict:
                continue
            if len(c) > 1:
                self._set(k, merge(list(c.values())))
            elif c:
                (o, e), = c.items()
                contrib[k] = o
                self._set(k, e)
            else:
                del contrib[k]
                self._set(k, None)

    def _settle_group(self, gid: int) -> None:
        c = self.group_contrib.get(gid)
        new = None
        if c:
            vals = list(c.values())
            new = vals[0] if len(vals) == 1 else min(vals, key=repr)
        old = self.groups.get(gid)
        if old == new and (old is None or old.cookie == new.cookie):
            return
        if self.tracking and gid not in self.group_changes:
            self.group_changes[gid] = old
        if new is None:
            del self.groups[gid]
        else:
            self.groups[gid] = new

    def take_changes(self) -> Optional[Tuple[list, list]]:
        """[(old, new)] of flows and of groups changed since the last call
        (None: absent), dropping keys that came back to what they were; None
        when nobody took the table before (take it whole: flows, groups)."""
        if not self.tracking:
            self.tracking = True
            return None
        flows = [(o, self.flows.get(k)) for k, o in self.changes.items() if o != self.flows.get(k)]
        groups = [(o, self.groups.get(g)) for g, o in self.group_changes.items() if o != self.groups.get(g)]
        self.changes, self.group_changes = {}, {}
        return flows, groups

    def forget_changes(self) -> None:
        self.changes, self.group_changes = {}, {}
        self.tracking = True

    def compiled(self) -> Tuple[set, set]:
        return set(self.flows.values()), set(self.groups.values())

    def by_key(self) -> Tuple[Dict[tuple, FlowEntry], Dict[int, GroupEntry]]:
        """Copies of the flows by key and the groups by id (a dict copy reuses the
        stored hashes: no entry or key is hashed again)."""
        return dict(self.flows), dict(self.groups)


def split(entries) -> Tuple[Dict[tuple, FlowEntry], list]:
    """Entries as (flows by key, groups)."""
    flows, groups = {}, []
    for e in entries:
        if type(e) is GroupEntry:
            groups.append(e)
        else:
            flows[(e.table, e.priority, e.match)] = e
    return flows, groups


# ---------------------------------------------------------------- the engine

class Engine:
    """Owners' outputs, the dependency index, and one Table per switch label."""

    def __init__(self, kinds: Optional[Iterable[OwnerKind]] = None):
        if kinds is None:
            from flows import producers
            kinds = producers.KINDS
        self.kinds: Dict[str, OwnerKind] = {k.name: k for k in kinds}
        self._by_anchor: Dict[str, List[OwnerKind]] = defaultdict(list)
        for k in self.kinds.values():
            self._by_anchor[k.anchor].append(k)
        self.st = State()
        self.outputs: Dict[OwnerId, Dict[str, FrozenSet]] = {}
        self.deps: Dict[OwnerId, frozenset] = {}
        self.rdeps: Dict[Ref, set] = defaultdict(set)
        self.tables: Dict[str, Table] = {}
        self.scoped: Dict[OwnerId, list] = {}               # owner -> its Out.scoped
        self.scope_index: Dict[str, set] = defaultdict(set)  # tenant -> owners with scoped chunks
        self._scope_hosts: Dict[str, frozenset] = {}         # tenant -> its hosts, as expanded
        self.last_run = 0            # owners produced by the last apply/recompute

    # -- input -----------------------------------------------------------------
    def put(self, kind: str, key, obj) -> None:
        """A typed change: obj is the new object of (kind, key), None when deleted."""
        self.st.put(kind, key, obj if obj is None or usable(kind, obj) else None)

    def set_ports(self, host: str, ports: Dict[str, int]) -> None:
        self.st.set_ports(host, ports)

    def set_pvt_subnet(self, subnet: str) -> None:
        self.st.set_pvt_subnet(subnet)

    def load(self, snap: Snapshot) -> None:
        """Make the state equal to a Snapshot (puts and deletes only for what differs)."""
        want = snapshot_objects(snap)
        for kind in set(want) | {k for k, v in self.st.objects.items() if v}:
            have = self.st.objects.get(kind, {})
            new = want.get(kind, {})
            for key in [k for k in have if k not in new]:
                self.st.put(kind, key, None)
            for key, obj in new.items():
                self.st.put(kind, key, obj)
        for h in set(self.st.ofports) | set(snap.ofports):
            self.st.set_ports(h, dict(snap.ofports.get(h, {})))
        self.st.set_pvt_subnet(snap.pvt_subnet)

    # -- processing --------------------------------------------------------------
    def apply(self) -> set:
        """Run the owners the pending changes concern; the labels whose table changed."""
        with gcpause.paused():
            refs = self.st.settle()
            owners = set()
            for ref in refs:
                owners.update(self.rdeps.get(ref, ()))
                for k in self._by_anchor.get(ref[0], ()):
                    owners.add((k.name, ref[1]))
            touched: set = set()
            for ref in refs:
                if ref[0] == "tenant_hosts":
                    self._rescope(ref[1], owners, touched)
            for o in owners:
                self._run(o, touched)
            self._settle(touched)
            self.last_run = len(owners)
            return touched

    def _settle(self, touched: set) -> None:
        for h in touched:
            self.tables[h].settle()

    def _rescope(self, tenant: str, owners: set, touched: set) -> None:
        """A tenant's hosts changed.  A host that joined gets the scoped chunks of
        every owner that is not running anyway, without running it; a host that
        left makes them run (rare, and their per-host parts may overlap)."""
        now = frozenset(self.st.tenant_hosts.get(tenant, ()))
        before = self._scope_hosts.get(tenant, frozenset())
        self._scope_hosts[tenant] = now
        members = self.scope_index.get(tenant, set())
        if before - now:
            owners |= members
            return
        for o in members - owners:
            out = self.outputs.setdefault(o, {})
            for h in now - before:
                add = [c for t, ex, c in self.scoped[o] if t == tenant and h not in ex]
                if not add:
                    continue
                old = out.get(h)
                new = add[0] if len(add) == 1 and not old else frozenset().union(old or (), *add)
                came = new - old if old else new
                out[h] = new
                if came:
                    self.table(h).add(o, came)
                    touched.add(h)

    def recompute(self, pause: Optional[Callable[[], None]] = None, every: int = 256) -> set:
        """Every producer over every owner, diffed against what is held: the
        reference the increments must equal, and the fallback.  pause: called
        after each `every` owners (netmaster's start passes eventlet.sleep, so
        that a switch's handshake and read run meanwhile; the caller keeps
        every other change of the engine out until it returns)."""
        with gcpause.paused():
            self.st.settle()
            owners = {(k.name, key) for k in self.kinds.values() for key in self.st.anchor_keys(k.anchor)}
            owners |= set(self.outputs)
            touched: set = set()
            self._scope_hosts = {t: frozenset(h) for t, h in self.st.tenant_hosts.items()}
            for i, o in enumerate(owners, 1):
                self._run(o, touched)
                if pause is not None and not i % every:
                    pause()
            self._settle(touched)
            self.last_run = len(owners)
            return touched

    def _run(self, owner: OwnerId, touched: set) -> None:
        kind = self.kinds[owner[0]]
        v = View(self.st)
        out = kind.produce(v, owner[1])
        new = out.frozen(self.st) if out is not None else {}
        old_scoped = self.scoped.get(owner, ())
        new_scoped = out.scoped if out is not None else []
        if old_scoped or new_scoped:
            for t in {x[0] for x in old_scoped} - {x[0] for x in new_scoped}:
                self.scope_index[t].discard(owner)
            for t in {x[0] for x in new_scoped}:
                self.scope_index[t].add(owner)
            if new_scoped:
                self.scoped[owner] = new_scoped
            else:
                self.scoped.pop(owner, None)
        old_deps = self.deps.get(owner, frozenset())
        alive = self.st.anchor_exists(kind.anchor, owner[1])
        new_deps = frozenset(v.deps) if alive else frozenset()
        if new_deps != old_deps:
            for r in old_deps - new_deps:
                s = self.rdeps.get(r)
                if s is not None:
                    s.discard(owner)
                    if not s:
                        del self.rdeps[r]
            for r in new_deps - old_deps:
                self.rdeps[r].add(owner)
            if new_deps:
                self.deps[owner] = new_deps
            else:
                self.deps.pop(owner, None)
        old = self.outputs.get(owner, {})
        if new:
            self.outputs[owner] = new
        else:
            self.outputs.pop(owner, None)
        diffs: dict = {}            # hosts mostly share one frozenset: diff and split each pair once
        for h in set(old) | set(new):
            o, n = old.get(h), new.get(h)
            if o is n:
                continue
            d = diffs.get((id(o), id(n)))
            if d is None:
                gone, came = (o - n, n - o) if o and n else (o, n)
                d = diffs[(id(o), id(n))] = (split(gone) if gone else None, split(came) if came else None)
            gone, came = d
            if gone is None and came is None:
                continue
            t = self.tables.get(h)
            if t is None:
                t = self.tables[h] = Table()
            if gone is not None:
                t.remove_split(owner, *gone)
            if came is not None:
                t.add_split(owner, *came)
            touched.add(h)

    # -- reading ---------------------------------------------------------------
    def table(self, label: str) -> Table:
        t = self.tables.get(label)
        if t is None:
            t = self.tables[label] = Table()
        return t

    def compiled(self, label: str) -> Tuple[set, set]:
        return self.table(label).compiled()

    def rule_by_uid(self, uid: int) -> Optional[Rule]:
        """The rule a flow's cookie names (Owner.RULE, its rule_uid), if it is held."""
        return self.st.rule_uids.get(uid)

    def endpoint_at(self, tenant: str, ip: str) -> str:
        """The id of the accepted endpoint with address ip in tenant ('' for none)."""
        for eid in self.st.claims.get(("ip", tenant, ip), ()):
            if eid in self.st.eps:
                return eid
        return ""


def compile_snapshot(snap: Snapshot) -> Dict[str, Tuple[set, set]]:
    """Every switch's table after a full recompute of a Snapshot: the (flows,
    groups) netmaster installs for it, per host label.  For tests and tools that
    want a whole fabric's flows; flows.compiler.compile_all stays only as the
    independent reference the engine is checked against."""
    eng = Engine()
    eng.load(snap)
    eng.recompute()
    return {label: eng.compiled(label) for label in sorted(eng.st.labels())}


def usable(kind: str, obj) -> bool:
    """Ids the pipeline cannot carry make an object absent (flows.index.Index refuses them)."""
    if kind == "tenant":
        ok = 0 < obj.vrf_id <= 0xFFFF
    elif kind == "network":
        ok = 0 < obj.net_id <= NET_ID_MAX and obj.encap in ("vxlan", "vlan")
    else:
        return True
    if not ok:
        log.warning("event=object_skipped kind=%s key=%s reason=id_or_encap_out_of_range",
                    kind, object_key(kind, obj))
    return ok


SNAPSHOT_KINDS = (("tenant", "tenants"), ("network", "networks"), ("group", "groups"),
                  ("rule", "rules"), ("host", "hosts"), ("endpoint", "endpoints"),
                  ("service", "services"))


def snapshot_objects(snap: Snapshot) -> Dict[str, dict]:
    """A Snapshot's objects as the engine's (kind -> key -> object)."""
    return {kind: {object_key(kind, o): o for o in getattr(snap, attr) if usable(kind, o)}
            for kind, attr in SNAPSHOT_KINDS}


def object_key(kind: str, obj) -> object:
    """The engine's key of a snapshot object of `kind`."""
    if kind == "tenant":
        return obj.name
    if kind in ("network", "group", "service"):
        return (obj.tenant, obj.name)
    if kind == "rule":
        return (obj.tenant, obj.policy, obj.rule_id)
    if kind == "host":
        return obj.label
    if kind == "endpoint":
        return obj.endpoint_id
    raise ValueError(f"unknown kind {kind}")

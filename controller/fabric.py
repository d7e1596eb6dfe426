"""The bridge between the desired state and the switches: it turns the model
into a flows.Snapshot, answers the OpenFlow app's `desired(dpid)`, keeps
each switch's port numbers, and asks for reconciliation when the store says
something changed.  It computes nothing about forwarding itself: that is
flows.compiler's job.
"""
from __future__ import annotations

import logging
import time

import eventlet
from typing import Callable, Optional

from flows import snapshot as snap
from flows.compiler import Compiler
from flows.entry import FlowEntry, GroupEntry
from model import ipam, schema
from model.service import Model
from store.base import Event

log = logging.getLogger(__name__)


def build_snapshot(model: Model, ofports: dict[str, dict[str, int]]) -> snap.Snapshot:
    """The model's objects as the compiler's frozen input (ids from netmaster's allocations)."""
    st = model.store
    tenants = tuple(snap.Tenant(t["tenantName"], model.meta("tenant", t["tenantName"]).get("id", 0))
                    for t in model.objects_of(schema.TENANT))
    networks = []
    for n in model.objects_of(schema.NETWORK):
        m = model.meta("network", f"{n['tenantName']}:{n['networkName']}")
        networks.append(snap.Network(n["tenantName"], n["networkName"], n["encap"], m.get("pktTag", 0),
                                     str(ipam.parse_subnet(n["subnet"]).network),
                                     n["gateway"], m.get("id", 0)))
    profiles = {f"{p['tenantName']}:{p['profileName']}": p for p in model.objects_of(schema.NETPROFILE)}
    groups = []
    for g in model.objects_of(schema.ENDPOINT_GROUP):
        key = f"{g['tenantName']}:{g['groupName']}"
        prof = profiles.get(f"{g['tenantName']}:{g['netProfile']}") if g["netProfile"] else None
        groups.append(snap.Group(g["tenantName"], g["groupName"], g["networkName"],
                                 model.meta("endpointGroup", key).get("id", 0), tuple(g["policies"]),
                                 prof["DSCP"] if prof else 0))
    rules = []
    for r in model.objects_of(schema.RULE):
        key = f"{r['tenantName']}:{r['policyName']}:{r['ruleId']}"
        rules.append(snap.Rule(
            tenant=r["tenantName"], policy=r["policyName"], rule_id=r["ruleId"], direction=r["direction"],
            priority=r["priority"], action=r["action"], protocol=r["protocol"], port=r["port"],
            from_group=r["fromEndpointGroup"], to_group=r["toEndpointGroup"], from_network=r["fromNetwork"],
            to_network=r["toNetwork"], from_ip=r["fromIpAddress"], to_ip=r["toIpAddress"],
            rule_uid=model.meta("rule", key).get("id", 0),
            log=bool(r.get("enableLogging", False))))          # absent in records made before the field
    hosts = tuple(snap.Host(h["hostLabel"], h["vtepIP"], int(h["dpid"], 16), h.get("uplink", ""))
                  for h in st.list("host/").values())
    endpoints = tuple(snap.Endpoint(e["endpointID"], e["tenantName"], e["networkName"], e["groupName"],
                                    e["ipAddress"][0], e["macAddress"], e["homingHost"], e["intfName"])
                      for e in st.list("ep/").values())
    return snap.Snapshot(tuple(sorted(tenants, key=lambda t: t.name)),
                         tuple(sorted(networks, key=lambda n: (n.tenant, n.name))),
                         tuple(sorted(endpoints, key=lambda e: e.endpoint_id)),
                         tuple(sorted(hosts, key=lambda h: h.label)),
                         tuple(sorted(groups, key=lambda g: (g.tenant, g.name))),
                         tuple(sorted(rules, key=lambda r: (r.tenant, r.policy, r.rule_id))),
                         {h: dict(p) for h, p in ofports.items()})


HOST_FIELDS = ("vtepIP", "dpid", "uplink")
REFRESH_DELAY = 0.02      # seconds: a burst of writes becomes one rebuild


def _relevant(ev: Event, hosts: dict) -> bool:
    """Allocation records never matter to a switch, and heartbeats rewrite host
    records every second or two: only a change of what a switch sees counts."""
    if ev.key.startswith(("id/", "tag/", "ip/", "auth/")):      # auth/: users, tokens
        return False
    if ev.key.startswith("host/"):
        sig = None if ev.value is None else tuple(ev.value.get(f) for f in HOST_FIELDS)
        return hosts.get(ev.key) != sig
    return True


class Fabric:
    """Implements controller.ofapp.Fabric over the model."""

    def __init__(self, model: Model):
        self.model = model
        # Ports are kept by datapath id: a switch may connect before its host
        # registers, and its ports must not be lost meanwhile.
        self.ports: dict[int, dict[str, int]] = {}      # dpid -> port name -> ofport
        self.connected: dict[int, str] = {}             # dpid -> host label ('' = not registered)
        self._snapshot: Optional[snap.Snapshot] = None
        self._compiled: dict[str, tuple] = {}            # host label -> (flows, groups) for _snapshot
        self._compiler: Optional[Compiler] = None
        self._last: dict[str, tuple] = {}                # host label -> last compile, across snapshots
        self.request_reconcile: Callable[[Optional[int]], None] = lambda dpid=None: None
        self._host_sigs: dict[str, tuple] = {}
        self._refresh_pending = False
        self._watching = False
        # Realization. `_version` counts distinct snapshots; `_version_gen[v]` is the
        # newest store generation snapshot v is known to include (it grows while
        # writes that change no switch arrive). A switch that committed version v
        # has realized every write up to _version_gen[v].
        self._version = 0
        self._version_gen: dict[int, int] = {0: 0}
        self._switch_version: dict[int, int] = {}        # dpid -> version it holds

    def watch(self) -> None:
        """Follow the store: from now on every relevant change reaches the switches."""
        self._watching = True
        self.model.store.watch(self._on_events)

    # -- the model side ---------------------------------------------------
    def _build(self) -> snap.Snapshot:
        hosts = self.model.store.list("host/")
        self._host_sigs = {k: tuple(h.get(f) for f in HOST_FIELDS) for k, h in hosts.items()}
        by_dpid = {int(h["dpid"], 16): h["hostLabel"] for h in hosts.values()}
        ofports = {by_dpid[d]: p for d, p in self.ports.items() if d in by_dpid}
        return build_snapshot(self.model, ofports)

    def snapshot(self) -> snap.Snapshot:
        if self._snapshot is None or not self._watching:      # unwatched: always fresh
            self._invalidate()
        return self._snapshot

    def _invalidate(self) -> bool:
        """Rebuild the snapshot; True when it differs from the last one."""
        old = self._snapshot
        gen = self.model.store.generation       # the rebuild below reads no later write
        self._snapshot = self._build()
        changed = self._snapshot != old
        if changed:
            self._compiled.clear()
            self._compiler = None
            self._version += 1
            self._prune_versions()
        self._version_gen[self._version] = max(gen, self._version_gen.get(self._version, 0))
        return changed

    def _on_events(self, events: list[Event]) -> None:
        """Called in the writer's green thread: defer the work, so that a burst
        of commits (a script creating many objects) costs one rebuild."""
        if self._refresh_pending:
            return
        if not any(_relevant(e, self._host_sigs) for e in events):
            # nothing a switch sees changed: the current snapshot includes these writes
            if self._snapshot is not None:
                self._version_gen[self._version] = self.model.store.generation
            return
        self._refresh_pending = True
        eventlet.spawn_after(REFRESH_DELAY, self._refresh)

    # -- realization -------------------------------------------------------
    def version(self) -> int:
        self.snapshot()
        return self._version

    def realized(self, dpid: int, version: int) -> None:
        self._switch_version[dpid] = version

    def realized_generation(self, dpid: int) -> int:
        """The newest store generation the switch holds everything of (0: nothing yet)."""
        v = self._switch_version.get(dpid)
        return 0 if v is None else self._version_gen.get(v, 0)

    def _prune_versions(self) -> None:
        oldest = min(self._switch_version.values(), default=self._version)
        for v in [v for v in self._version_gen if v < oldest]:
            del self._version_gen[v]

    def _refresh(self) -> None:
        self._refresh_pending = False
        if self._invalidate():
            for dpid in self.connected:
                self.connected[dpid] = self.host_of(dpid) or ""
            self.request_reconcile(None)

    def host_of(self, dpid: int) -> Optional[str]:
        for h in self.snapshot().hosts:
            if h.dpid == dpid:
                return h.label
        return None

    def compiled(self, label: str) -> tuple[set[FlowEntry], set[GroupEntry]]:
        if label not in self._compiled:
            t0 = time.perf_counter()
            if self._compiler is None:
                self._compiler = Compiler(self.snapshot())
            flows, groups = self._compiler.switch(label)
            new = (set(flows), set(groups))
            old = self._last.get(label)
            # An unchanged result keeps its identity: the OpenFlow app has its
            # canonical form already and need not recompute it.
            self._compiled[label] = self._last[label] = old if old == new else new
            log.debug("event=compiled host=%s flows=%d groups=%d ms=%.1f", label, len(flows),
                      len(groups), (time.perf_counter() - t0) * 1000)
        return self._compiled[label]

    # -- the OpenFlow app's interface -------------------------------------
    def desired(self, dpid: int):
        label = self.host_of(dpid)
        if label is None:
            log.warning("event=unknown_switch dpid=%016x action=left_untouched", dpid)
            return None
        return self.compiled(label)

    def switch_up(self, dpid: int, ports: dict[str, int]) -> None:
        changed = False
        if self.ports.get(dpid) != ports:
            self.ports[dpid] = dict(ports)
            changed = self._invalidate()
        # The label is read from the snapshot just rebuilt: a host registered
        # a moment ago (its store event not yet handled) is named, not "".
        label = self.host_of(dpid)
        log.info("event=switch_connected dpid=%016x host=%s ports=%d", dpid, label or "-", len(ports))
        self.connected[dpid] = label or ""
        if changed:
            self.request_reconcile(None)

    def port_changed(self, dpid: int, name: str, ofport: Optional[int]) -> None:
        ports = self.ports.setdefault(dpid, {})
        if ofport is None:
            if ports.pop(name, None) is None:
                return
        elif ports.get(name) == ofport:
            return
        else:
            ports[name] = ofport
        log.info("event=port_%s dpid=%016x host=%s port=%s ofport=%s", "gone" if ofport is None else "up",
                 dpid, self.connected.get(dpid) or "-", name, ofport)
        if self._invalidate():
            self.request_reconcile(None)

    def switch_down(self, dpid: int) -> None:
        self._switch_version.pop(dpid, None)
        label = self.connected.pop(dpid, None)
        log.info("event=switch_disconnected dpid=%016x host=%s", dpid, label or "-")

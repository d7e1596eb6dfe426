"""The bridge between the desired state and the switches: it turns store
and port events into typed changes of the incremental engine
(flows/engine.py), answers the OpenFlow app's `desired(dpid)` (everything,
for a full reconcile) and `delta(dpid)` (what changed since), keeps each
switch's port numbers, and asks the switches whose table changed to
reconcile.  It computes nothing about forwarding itself: that is flows/'s job.
"""
from __future__ import annotations

import gc
import ipaddress
import logging
import time

import eventlet
from typing import Callable, Optional

from flows import gcpause
from flows import snapshot as snap
from flows.engine import Engine
from flows.entry import FlowEntry, GroupEntry
from model import ipam, schema
from model.service import Model, okey, parse_service_port
from store.base import Event

log = logging.getLogger(__name__)


def tenant_of(model: Model, name: str) -> Optional[snap.Tenant]:
    rec = model.store.get(okey("tenant", name))
    return None if rec is None else snap.Tenant(name, model.meta("tenant", name).get("id", 0))


def network_of(model: Model, key: str) -> Optional[snap.Network]:
    n = model.store.get(okey("network", key))
    if n is None:
        return None
    m = model.meta("network", key)
    return snap.Network(n["tenantName"], n["networkName"], n["encap"], m.get("pktTag", 0),
                        str(ipam.parse_subnet(n["subnet"]).network), n["gateway"], m.get("id", 0),
                        _v6_net(n.get("ipv6Subnet")), _v6_addr(n.get("ipv6Gateway")))


def _v6_net(text) -> str:
    """A network's ipv6Subnet in the snapshot's canonical compressed form, '' for none."""
    return str(ipaddress.IPv6Network(text, strict=False)) if text else ""


def _v6_addr(text) -> str:
    """An IPv6 address in canonical compressed form ('' for none; a '/len' is dropped)."""
    return str(ipaddress.IPv6Address(text.split("/")[0])) if text else ""


def group_of(model: Model, key: str) -> Optional[snap.Group]:
    g = model.store.get(okey("endpointGroup", key))
    if g is None:
        return None
    prof = model.store.get(okey("netprofile", f"{g['tenantName']}:{g['netProfile']}")) if g["netProfile"] else None
    return snap.Group(g["tenantName"], g["groupName"], g["networkName"],
                      model.meta("endpointGroup", key).get("id", 0), tuple(g["policies"]),
                      prof["DSCP"] if prof else 0)


def rule_of(model: Model, key: str) -> Optional[snap.Rule]:
    r = model.store.get(okey("rule", key))
    if r is None:
        return None
    return snap.Rule(
        tenant=r["tenantName"], policy=r["policyName"], rule_id=r["ruleId"], direction=r["direction"],
        priority=r["priority"], action=r["action"], protocol=r["protocol"], port=r["port"],
        from_group=r["fromEndpointGroup"], to_group=r["toEndpointGroup"], from_network=r["fromNetwork"],
        to_network=r["toNetwork"], from_ip=r["fromIpAddress"], to_ip=r["toIpAddress"],
        rule_uid=model.meta("rule", key).get("id", 0),
        log=bool(r.get("enableLogging", False)))          # absent in records made before the field


def host_of_record(h: dict) -> snap.Host:
    return snap.Host(h["hostLabel"], h["vtepIP"], int(h["dpid"], 16), h.get("uplink", ""))


def endpoint_of_record(e: dict) -> snap.Endpoint:
    addrs = e["ipAddress"]
    return snap.Endpoint(e["endpointID"], e["tenantName"], e["networkName"], e["groupName"],
                         addrs[0], e["macAddress"], e["homingHost"], e["intfName"],
                         tuple(sorted(e.get("labels") or ())),
                         _v6_addr(addrs[1]) if len(addrs) > 1 else "")   # Contiv's [v4, v6]


def service_of(model: Model, key: str) -> Optional[snap.Service]:
    s = model.store.get(okey("serviceLB", key))
    if s is None:
        return None
    m = model.meta("serviceLB", key)
    return snap.Service(s["tenantName"], s["serviceName"], s["networkName"], m.get("vip", ""),
                        tuple(parse_service_port(p) for p in s["ports"]),
                        tuple(sorted(s["selectors"])), m.get("id", 0))


def build_snapshot(model: Model, ofports: dict[str, dict[str, int]]) -> snap.Snapshot:
    """The model's objects as the compiler's frozen input (ids from netmaster's allocations)."""
    st = model.store
    tenants = [tenant_of(model, t["tenantName"]) for t in model.objects_of(schema.TENANT)]
    networks = [network_of(model, f"{n['tenantName']}:{n['networkName']}")
                for n in model.objects_of(schema.NETWORK)]
    groups = [group_of(model, f"{g['tenantName']}:{g['groupName']}")
              for g in model.objects_of(schema.ENDPOINT_GROUP)]
    rules = [rule_of(model, f"{r['tenantName']}:{r['policyName']}:{r['ruleId']}")
             for r in model.objects_of(schema.RULE)]
    hosts = [host_of_record(h) for h in st.list("host/").values()]
    endpoints = [endpoint_of_record(e) for e in st.list("ep/").values()]
    services = [service_of(model, f"{s['tenantName']}:{s['serviceName']}")
                for s in model.objects_of(schema.SERVICE_LB)]
    g = model.store.get(okey("global", "global")) or {}
    return snap.Snapshot(tuple(sorted(tenants, key=lambda t: t.name)),
                         tuple(sorted(networks, key=lambda n: (n.tenant, n.name))),
                         tuple(sorted(endpoints, key=lambda e: e.endpoint_id)),
                         tuple(sorted(hosts, key=lambda h: h.label)),
                         tuple(sorted(groups, key=lambda g: (g.tenant, g.name))),
                         tuple(sorted(rules, key=lambda r: (r.tenant, r.policy, r.rule_id))),
                         {h: dict(p) for h, p in ofports.items()},
                         tuple(sorted(services, key=lambda s: (s.tenant, s.name))),
                         g.get("pvtSubnet") or "172.19.0.0/16")


ENGINE_AUDIT_INTERVAL = 600.0     # seconds between full recomputes that check the increments

# store key prefix -> (engine kind, converter of the key); see model/service.py's layout
_OBJ_KINDS = {"tenant": ("tenant", tenant_of), "network": ("network", network_of),
              "endpointGroup": ("group", group_of), "rule": ("rule", rule_of),
              "serviceLB": ("service", service_of)}
# what no switch sees: allocations, users and tokens (auth/), objects the snapshot does not carry
_IGNORED = ("id/", "tag/", "ip/", "ip6/", "auth/", "obj/global/", "obj/policy/", "obj/appProfile/",
            "meta/global/", "meta/policy/", "meta/appProfile/", "meta/netprofile/")


def _engine_key(kind: str, key: str):
    """The engine's key of a store key's object ('t:n' -> ('t', 'n'))."""
    if kind == "tenant":
        return key
    if kind == "rule":
        return tuple(key.split(":", 2))
    return tuple(key.split(":", 1))


VERSIONS_KEPT = 1024     # realization: desired-state versions remembered for reconciles in flight

class Fabric:
    """Implements controller.ofapp.Fabric over the model, through the
    incremental engine (flows/engine.py): store events and port events become
    typed changes, handled in a green thread of their own after the write that
    caused them returned; each switch whose table changed is asked to reconcile,
    and takes its delta."""

    def __init__(self, model: Model, engine: Optional[Engine] = None):
        self.model = model
        self.engine = engine or Engine()
        # Ports are kept by datapath id: a switch may connect before its host
        # registers, and its ports must not be lost meanwhile.
        self.ports: dict[int, dict[str, int]] = {}      # dpid -> port name -> ofport
        self.connected: dict[int, str] = {}             # dpid -> host label ('' = not registered)
        self.addresses: dict[int, str] = {}             # dpid -> address its OpenFlow connection came from
        # dpid -> (CN, SHA-256) of the certificate its OpenFlow-over-TLS connection showed (absent: tcp)
        self.identities: dict[int, tuple] = {}
        self.request_reconcile: Callable[[Optional[int]], None] = lambda dpid=None: None
        self._watching = False
        self._loaded = False
        # set while the start's recompute runs in its own green thread (watch()): every
        # other use of the engine waits for it (wait_loaded)
        self._loading: Optional[eventlet.event.Event] = None
        self._queue: list = []                           # store events, ('ports', dpid) markers
        self._scheduled = False
        self._label_dpid: dict[str, int] = {}            # host label -> dpid, as the engine has it
        self._snap_cache: tuple = (None, None)           # (token, Snapshot) for trace and deny log
        self._ports_version = 0
        self._auditor = None
        # Realization. `_version` counts distinct desired states; `_version_gen[v]` is the
        # newest store generation version v is known to include (it grows while
        # writes that change no switch arrive). A switch that committed version v
        # has realized every write up to _version_gen[v].
        self._version = 0
        self._version_gen: dict[int, int] = {0: 0}
        self._switch_version: dict[int, int] = {}        # dpid -> version it holds

    def watch(self, background: bool = False) -> None:
        """Follow the store: from now on every change reaches the switches.
        background: the first recompute runs in a green thread that yields to the
        hub every few hundred owners, so that a switch connecting meanwhile gets its
        handshake done and its flows read while it runs (netmaster's start: the
        read is the switch's work on another core); desired(), delta() and the
        store's changes wait for it."""
        self._watching = True
        self.model.store.watch(self._on_events)
        if background:
            self._loading = eventlet.event.Event()
            eventlet.spawn(self._first_load)
        else:
            self._load()
        self._auditor = eventlet.spawn(self._audit_loop)

    load_slice = 256               # owners the start's recompute runs between two yields
    _pause = staticmethod(eventlet.sleep)

    def _first_load(self) -> None:
        done = self._loading
        try:
            self._load(pause=self._pause)
        except Exception:                    # the engine's state is unknown: the next use recomputes
            log.exception("event=recompute_failed action=retry_on_next_use")
        finally:
            self._loading = None
            done.send()

    def wait_loaded(self) -> None:
        """Return once the start's recompute, if one runs (watch(background=True)), is done."""
        loading = self._loading
        if loading is not None:
            loading.wait()

    def stop(self) -> None:
        if self._auditor is not None:
            self._auditor.kill()

    # -- the model side ---------------------------------------------------
    def _ports_of(self, label: str) -> dict[str, int]:
        d = self._label_dpid.get(label)
        return dict(self.ports.get(d, {})) if d is not None else {}

    def _load(self, pause=None) -> set:
        """Full recompute from the model: at start, when unwatched, on audit and
        for any change the increments do not handle.  pause: see watch()."""
        gen = self.model.store.generation
        t0 = time.perf_counter()
        s = build_snapshot(self.model, {})
        self.engine.load(s)
        self._label_dpid = {h.label: h.dpid for h in s.hosts}
        for label in self._label_dpid:
            self.engine.set_ports(label, self._ports_of(label))
        with gcpause.paused():
            touched = self.engine.recompute(pause=pause, every=self.load_slice)
            # The tables are a large, long-lived, acyclic heap: keep the cyclic GC from
            # rescanning it after every change (a full collection cost ~0.7 s at 10k endpoints).
            gc.freeze()
        self._loaded = True
        log.info("event=recompute owners=%d switches_changed=%d ms=%.1f", self.engine.last_run,
                 len(touched), (time.perf_counter() - t0) * 1000)
        self._realize(touched, gen)
        return touched

    def _on_events(self, events: list[Event]) -> None:
        """Called in the writer's green thread, right after its commit: queue
        the events and return, so the writer answers without waiting for any
        compile; one green thread handles what queued meanwhile, in order."""
        if not self._watching:
            return
        self._queue.extend(events)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            eventlet.spawn(self._process)

    def _process(self) -> None:
        try:
            self.wait_loaded()
            while self._queue:
                self.flush()
        finally:
            self._scheduled = False

    def flush(self) -> set:
        """Handle every queued change now; the labels whose table changed."""
        self.wait_loaded()
        events, self._queue = self._queue, []
        if not events:
            return set()
        gen = self.model.store.generation
        t0 = time.perf_counter()
        full = False
        hosts_changed = False
        for ev in events:
            try:
                handled = self._translate(ev)
            except Exception:                          # a record the converters cannot read
                log.exception("event=delta_failed key=%s action=recompute", getattr(ev, "key", ev))
                handled = False
            if handled == "host":
                hosts_changed = True
            elif not handled:
                full = True
        if full:
            touched = self._load()
        else:
            touched = self.engine.apply()
            self._realize(touched, gen)
        if hosts_changed:
            self._relabel()
        if touched:
            log.debug("event=delta changes=%d owners=%d switches=%d ms=%.2f", len(events),
                      self.engine.last_run, len(touched), (time.perf_counter() - t0) * 1000)
        for dpid, label in list(self.connected.items()):
            if label in touched:
                self.request_reconcile(dpid)
        return touched

    def _translate(self, ev):
        """One store event or port marker as typed changes to the engine.
        True: handled; 'host': handled, a host changed; False: not understood."""
        if isinstance(ev, tuple):                      # ('ports', dpid)
            for label, d in self._label_dpid.items():
                if d == ev[1]:
                    self.engine.set_ports(label, self._ports_of(label))
            return True
        key = ev.key
        if key == "obj/global/global":
            # pvtSubnet: the tenants' egress addresses (it cannot change while networks exist)
            self.engine.set_pvt_subnet((ev.value or {}).get("pvtSubnet") or "172.19.0.0/16")
            return True
        if key.startswith(_IGNORED):
            return True
        if key.startswith("ep/"):
            eid = key[3:]
            self.engine.put("endpoint", eid, None if ev.value is None else endpoint_of_record(ev.value))
            return True
        if key.startswith("host/"):
            label = key[5:]
            h = None if ev.value is None else host_of_record(ev.value)
            self.engine.put("host", label, h)
            if h is None:
                self._label_dpid.pop(label, None)
            else:
                self._label_dpid[label] = h.dpid
            self.engine.set_ports(label, self._ports_of(label))
            return "host"
        parts = key.split("/", 2)
        if len(parts) == 3 and parts[0] in ("obj", "meta"):
            _, kind, okey_ = parts
            if kind in _OBJ_KINDS:
                ekind, conv = _OBJ_KINDS[kind]
                self.engine.put(ekind, _engine_key(ekind, okey_), conv(self.model, okey_))
                return True
            if kind == "netprofile" and parts[0] == "obj":
                # a profile's DSCP is its groups' (and so their endpoints')
                tenant, name = okey_.split(":", 1)
                for g in self.model.objects_of(schema.ENDPOINT_GROUP, tenant):
                    if g["netProfile"] == name:
                        gk = f"{tenant}:{g['groupName']}"
                        self.engine.put("group", _engine_key("group", gk), group_of(self.model, gk))
                return True
        return False

    def _relabel(self) -> None:
        """Hosts changed: a connected switch may be named (or renamed) now."""
        for dpid in list(self.connected):
            label = self.host_of(dpid) or ""
            if self.connected[dpid] != label:
                self.connected[dpid] = label
                self.request_reconcile(dpid)

    def snapshot(self) -> snap.Snapshot:
        """The model as a Snapshot, for trace (its packets and owner names; the flows it
        simulates are the engine's tables), rebuilt only after a change."""
        token = (self.model.store.generation, self._ports_version)
        if self._snap_cache[0] != token or not self._watching:
            by_dpid = {h.dpid: h.label for h in (host_of_record(r) for r in self.model.store.list("host/").values())}
            ofports = {by_dpid[d]: p for d, p in self.ports.items() if d in by_dpid}
            self._snap_cache = (token, build_snapshot(self.model, ofports))
        return self._snap_cache[1]

    def _audit_loop(self) -> None:
        while True:
            eventlet.sleep(ENGINE_AUDIT_INTERVAL)
            self.audit()

    def audit(self) -> int:
        """Recompute everything and count the switches whose table it changed:
        0 unless an increment was missed (which the recompute then repairs)."""
        self.flush()
        touched = self._load()
        level = logging.WARNING if touched else logging.INFO
        log.log(level, "event=engine_audit switches_changed=%d", len(touched))
        for dpid, label in list(self.connected.items()):
            if label in touched:
                self.request_reconcile(dpid)
        return len(touched)

    # -- realization -------------------------------------------------------
    def _realize(self, touched: set, gen: int) -> None:
        if touched:
            prev = self._version
            self._version += 1
            # switches the change did not touch hold the new version already
            for dpid, label in self.connected.items():
                if label not in touched and self._switch_version.get(dpid) == prev:
                    self._switch_version[dpid] = self._version
            self._prune_versions()
        self._version_gen[self._version] = max(gen, self._version_gen.get(self._version, 0))

    def version(self) -> int:
        self._ensure()
        return self._version

    def realized(self, dpid: int, version: int) -> None:
        self._switch_version[dpid] = version

    def realized_generation(self, dpid: int) -> int:
        """The newest store generation the switch holds everything of (0: nothing yet)."""
        v = self._switch_version.get(dpid)
        return 0 if v is None else self._version_gen.get(v, 0)

    def _prune_versions(self) -> None:
        # A reconcile in flight reports the version it started from, which may be
        # older than every version switches hold now (a switch that connected beside
        # another): keep the last VERSIONS_KEPT too, or its realization reads as 0.
        recent = self._version - VERSIONS_KEPT
        oldest = min(min(self._switch_version.values(), default=recent), recent)
        for v in [v for v in self._version_gen if v < oldest]:
            del self._version_gen[v]

    def host_of(self, dpid: int) -> Optional[str]:
        """The host a connected switch is: the one registered with its datapath id,
        if the switch connected from that host's address (see admit)."""
        for h in self.model.store.list("host/").values():
            if int(h["dpid"], 16) == dpid:
                return h["hostLabel"] if self.admit(dpid)[0] else None
        return None

    def switch_address(self, dpid: int, address: str, identity: Optional[tuple] = None) -> None:
        """Where an admitted switch's OpenFlow connection comes from (ofapp tells, at
        connect), and over TLS the (CN, SHA-256) of the certificate it showed (None:
        plain tcp)."""
        self.addresses[dpid] = address
        if identity is None:
            self.identities.pop(dpid, None)
        else:
            self.identities[dpid] = identity

    def admit(self, dpid: int, address: Optional[str] = None,
              identity: Optional[tuple] = None) -> tuple[bool, str]:
        """May the switch be the host registered with `dpid`? A datapath id is no
        secret, and a switch taken for a host receives that host's flows, its
        tenants' addresses and their traffic. Over TLS (`identity`: the CN and
        SHA-256 of the certificate the switch showed, signed by netweave's CA) only
        the certificate netmaster issued last with host h's credential (CN host:h)
        is host h, wherever it connects from: a revoked or replaced one is not. Over
        plain tcp only a switch connecting from the address h's agent registered
        from, or from h's VTEP, is. Without `address`, what the switch showed at connect."""
        if address is None:
            address, identity = self.addresses.get(dpid), self.identities.get(dpid)
        for h in self.model.store.list("host/").values():
            if int(h["dpid"], 16) != dpid:
                continue
            label = h["hostLabel"]
            if identity is not None:
                cn, sha = identity
                if cn != f"host:{label}":
                    return False, (f"dpid {dpid:016x} is host {label}, whose switch shows certificate "
                                   f"host:{label}, not {cn or 'one without a name'}")
                cred = self.model.store.get(f"auth/host/{label}")
                if cred is None or cred.get("certSha256", sha) != sha:
                    return False, (f"the certificate host:{label} is not host {label}'s current one "
                                   f"(revoked or reissued)")
                return True, label
            allowed = {h["vtepIP"], h.get("registeredFrom", "")} - {""}
            if address is None or address in allowed:
                return True, label
            return False, (f"dpid {dpid:016x} is host {label}, whose switch connects from "
                           f"{' or '.join(sorted(allowed))}, not {address}")
        return True, ""                          # no host claims it: an unnamed switch, no host's flows

    def _ensure(self) -> None:
        """Unwatched (no OpenFlow, tests): every answer is computed afresh."""
        self.wait_loaded()
        if not self._watching or not self._loaded:
            self._load()
        elif self._queue:
            self.flush()

    def compiled(self, label: str) -> tuple[set[FlowEntry], set[GroupEntry]]:
        self._ensure()
        return self.engine.compiled(label)

    # -- the OpenFlow app's interface -------------------------------------
    def desired(self, dpid: int):
        """Everything the switch should hold (a full reconcile), as (flows by key, groups
        by id); its change log restarts here."""
        self._ensure()
        label = self.connected.get(dpid) or self.host_of(dpid)
        if label is None:
            log.warning("event=unknown_switch dpid=%016x action=left_untouched", dpid)
            return None
        t = self.engine.table(label)
        t.forget_changes()
        return t.by_key()

    def delta(self, dpid: int):
        """([(old, new) flows], [(old, new) groups]) since the last desired() or delta()
        of this switch; None for an unknown switch, or when it must take desired()."""
        self._ensure()
        label = self.connected.get(dpid) or self.host_of(dpid)
        if label is None:
            return None
        return self.engine.table(label).take_changes()

    def switch_up(self, dpid: int, ports: dict[str, int]) -> None:
        # The label is read from the store: a host registered a moment ago (its
        # store event not yet handled) is named, not "".
        label = self.host_of(dpid)
        log.info("event=switch_connected dpid=%016x host=%s ports=%d", dpid, label or "-", len(ports))
        self.connected[dpid] = label or ""
        if self.ports.get(dpid) != ports:
            self.ports[dpid] = dict(ports)
            self._port_event(dpid)

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
        self._port_event(dpid)

    def _port_event(self, dpid: int) -> None:
        """In the OpenFlow app's event loop: queue, never compute here."""
        self._ports_version += 1
        self._queue.append(("ports", dpid))
        if self._watching:
            self._schedule()

    def switch_down(self, dpid: int) -> None:
        self._switch_version.pop(dpid, None)
        label = self.connected.pop(dpid, None)
        log.info("event=switch_disconnected dpid=%016x host=%s", dpid, label or "-")

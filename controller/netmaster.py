"""The netmaster process's parts, wired together: the store, the model with
its rules, the REST app, the host monitor, and the OpenFlow controller fed
by the fabric (model -> compiler -> reconciler)."""
from __future__ import annotations

import logging
import time

import eventlet

from controller import metrics
from controller.denylog import DenyLog
from controller.fabric import Fabric
from model import schema
from model.service import Model, okey
from rest import auth
from rest.app import HTTPError, RestApp
from store.base import StoreError, open_store

log = logging.getLogger(__name__)


class Netmaster:
    def __init__(self, store_url: str, host_timeout: float = 6.0, underlay_mtu: int = 1500,
                 openflow: tuple | None = ("0.0.0.0", 6653), deny_log_rate: int = 100,
                 pki=None, token_ttl: float = auth.TOKEN_TTL, member: dict | None = None,
                 election_ttl: int = 3, of_tls_port: int | None = None, of_tls_listen: str | None = None,
                 of_sock=None):
        self.store = open_store(store_url)
        # Several netmasters on one etcd elect a leader (controller/election.py); only it
        # writes switches. member: this one's record (id, address, rest, of ports).
        self.member = dict(member or {})
        self.election_ttl = election_ttl
        self.election = None
        self.model = Model(self.store, host_timeout=host_timeout, underlay_mtu=underlay_mtu)
        self.auth = auth.Auth(self.store, token_ttl=token_ttl)
        self.pki = pki
        self.openflow = openflow
        self.of_tls_port = of_tls_port        # OpenFlow over TLS with the PKI (None: off)
        self.of_tls_listen = of_tls_listen    # its address (None: the plain listener's)
        self.of_sock = of_sock                # the OpenFlow tcp listener, if bound already (ofserver.listen)
        self.fabric = Fabric(self.model)
        self.deny_log_rate = deny_log_rate
        self.denylog = DenyLog(self.fabric.engine, self._host_label)
        self.of = None
        self.rest = RestApp(self.model, extensions={"switches": self._switches, "flows": self._flows,
                                                    "trace": self._trace, "policylog": self._policylog,
                                                    "realization": self._realization},
                            extra_oper=self._extra_oper, ready=self.ready, realize=self.realize,
                            auth=self.auth, pki=pki, info=self._cluster_info)
        self._threads = []
        self._host_states: dict[str, str] = {}

    def start(self):
        if self.openflow is not None:
            from controller import ofserver
            host, port = self.openflow
            tls = None
            if self.of_tls_port and self.pki is not None:
                crt, key = self.pki.cert_paths("netmaster")
                tls = (crt, key, self.pki.ca_cert)
            self.of = ofserver.start(self.fabric, host, port, deny_log_rate=self.deny_log_rate,
                                     packet_in=self.denylog.packet_in, roles=self.clustered,
                                     tls_port=self.of_tls_port if tls else None, tls=tls,
                                     tls_host=self.of_tls_listen, sock=self.of_sock)
            self.fabric.request_reconcile = self.of.app.request_reconcile
            # the first recompute yields to the hub: switches connect and are read meanwhile
            self.fabric.watch(background=True)
        if self.clustered:
            from controller.election import Election
            self.election = Election(self.store, self.member.get("id") or "netmaster", self.member,
                                     ttl=self.election_ttl, on_change=self._leadership).start()
        self._threads.append(eventlet.spawn(self._monitor_hosts))
        metrics.COLLECTOR.netmaster = self

    def stop(self):
        if metrics.COLLECTOR.netmaster is self:
            metrics.COLLECTOR.netmaster = None
        if self.election is not None:
            self.election.stop()          # the next leader need not wait for our lease
        for t in self._threads:
            t.kill()
        self.fabric.stop()
        if self.of is not None:
            self.of.stop()
        self.store.close()

    # ------------------------------------------------------------ cluster
    @property
    def clustered(self) -> bool:
        """On etcd, netmasters may be several: they elect the one that writes switches."""
        return getattr(self.store, "backend", "") == "etcd"

    def _leadership(self, leader: bool, generation: int) -> None:
        if self.of is not None and self.of.app.roles is not None:
            self.of.app.roles.set(leader, generation)

    def cluster_status(self) -> dict:
        """Leader, generation and live members (a standalone netmaster leads alone)."""
        if self.election is None:
            me = dict(self.member, id=self.member.get("id") or "netmaster")
            return {"id": me["id"], "state": "leader", "leader": me["id"], "leaderRecord": me,
                    "generation": 0, "members": [me]}
        return self.election.status()

    def _cluster_info(self) -> dict:
        """GET /info: Contiv's fields from the election, and the whole of it under "cluster"."""
        st = self.cluster_status()
        out = {"current-state": st["state"], "cluster": st}
        # where agents point their switches: OpenFlow over TLS when offered (agent/main.py)
        out["ofTlsPort"] = self.of_tls_port if self.openflow is not None and self.pki is not None \
            and self.of_tls_port else 0
        lead = st.get("leaderRecord") or {}
        if lead.get("address"):
            out["leader-ip"] = lead["address"]
        elif not st.get("leader"):
            out["leader-ip"] = ""
        if self.member.get("address"):
            out["local-ip"] = self.member["address"]
        addrs = [m.get("address") for m in st["members"] if m.get("address")]
        if addrs:
            out["netmaster-nodes"] = addrs
        return out

    # ------------------------------------------------------------ health and realization
    def ready(self) -> tuple[bool, dict]:
        """Readiness: the store answers, OpenFlow listens, every live host's switch is here."""
        checks = {}
        try:
            self.store.ping()
            checks["store"] = "ok"
        except StoreError as exc:
            checks["store"] = str(exc)
        if self.openflow is None:
            checks["openflow"] = "ok"            # REST-only by choice (--no-openflow)
        elif self.of is None:
            checks["openflow"] = "the OpenFlow controller is not running"
        else:
            checks["openflow"] = "ok"
            missing = sorted(set(self._hosts_up()) - set(self.fabric.connected.values()))
            checks["switches"] = "ok" if not missing else \
                "hosts up without a connected switch: " + ", ".join(missing)
        return all(v == "ok" for v in checks.values()), checks

    def _hosts_up(self) -> dict:
        """label -> dpid of every host whose agent heartbeats."""
        return {h["hostLabel"]: int(h["dpid"], 16) for h in self.store.list("host/").values()
                if self.model.host_state(h) == "up"}

    def realization(self, generation: int) -> dict | None:
        """Which live hosts' switches hold everything up to `generation`."""
        if self.of is None:
            return None
        live, lagging, hosts = [], [], []
        for label, dpid in sorted(self._hosts_up().items()):
            g = self.fabric.realized_generation(dpid) if self.fabric.connected.get(dpid) == label else 0
            (live if g >= generation else lagging).append(label)
            hosts.append({"host": label, "generation": g, "live": g >= generation})
        return {"generation": generation, "live": live, "lagging": lagging, "hosts": hosts}

    def realize(self, generation: int, timeout: float) -> dict | None:
        """Wait until `generation` is live on every live host, at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.realization(generation)
            if r is None or not r["lagging"] or time.monotonic() >= deadline:
                return r
            eventlet.sleep(0.01)

    def _realization(self, req, parts):
        """GET /api/v1/realization/?generation=G&wait=S"""
        if parts:
            raise HTTPError(404, "the realization path is /api/v1/realization/")
        q = req.GET
        try:
            gen = int(q.get("generation") or self.store.generation)
        except ValueError:
            raise HTTPError(400, f"generation: {q.get('generation')!r} is not a number")
        try:
            wait = float(q.get("wait") or 0)
        except ValueError:
            raise HTTPError(400, f"wait: {q.get('wait')!r} is not a number of seconds")
        if not 0 <= wait <= 300:
            raise HTTPError(400, f"wait: {q.get('wait')} is outside 0-300 seconds")
        r = self.realize(gen, wait)
        if r is None:
            raise HTTPError(409, "openflow: this netmaster runs without its OpenFlow controller")
        return {**r, "storeGeneration": self.store.generation}

    def _object_realization(self, kind, key) -> dict | None:
        skey = (f"ep/{key}" if kind is schema.ENDPOINT else f"host/{key}" if kind is schema.HOST
                else okey(kind.name, key))
        r = self.realization(self.store.key_generation(skey))
        if r is None:
            return None
        return {"generation": r["generation"], "liveHosts": len(r["live"]),
                "hosts": len(r["live"]) + len(r["lagging"]), "lagging": r["lagging"]}

    # ------------------------------------------------------------ REST extensions
    def _app(self):
        if self.of is None:
            raise HTTPError(409, "openflow: this netmaster runs without its OpenFlow controller")
        return self.of.app

    def _switches(self, req, parts):
        """GET /api/v1/switches/: connected switches and their last reconcile."""
        app = self._app()
        out = []
        for dpid in sorted(app.datapaths):
            r = app.result(dpid)
            out.append({"dpid": f"{dpid:016x}", "host": self.fabric.connected.get(dpid, ""),
                        "generation": self.fabric.realized_generation(dpid),
                        "lastReconcile": None if r is None else {
                            "outcome": r.outcome, "added": r.added, "modified": r.modified,
                            "deleted": r.deleted, "unchanged": r.unchanged}})
        return out

    def _flows(self, req, parts):
        """GET /api/v1/flows/<host>/: the flows netmaster wants on a host next to
        what the host's switch holds."""
        from controller import switch_stats
        if len(parts) != 1:
            raise HTTPError(404, "flows paths are /api/v1/flows/<host>/")
        label = parts[0]
        self.model.host(label)                       # 404 for an unknown host
        want_flows, want_groups = self.fabric.compiled(label)
        dpid = next((d for d, h in self.fabric.connected.items() if h == label), None)
        held = switch_stats.read_flows(self._app(), dpid) if dpid is not None else None
        out = {"host": label, "connected": held is not None,
               "desired": sorted(f.to_ofctl() for f in want_flows),
               "groups": sorted(g.to_ofctl() for g in want_groups)}
        if held is not None:
            out["held"] = sorted(e.to_ofctl() + f"  # n_packets={p}" for e, p, _ in held)
            out["diff"] = switch_stats.diff(want_flows, held)
        return out

    def _trace(self, req, parts):
        """GET /api/v1/trace/?from=EP&to=IP|EP&protocol=tcp&port=N"""
        from controller import trace
        q = req.GET
        if not q.get("from") or not q.get("to"):
            raise HTTPError(400, "from, to: both are required (an endpoint id, and an address or endpoint id)")
        try:
            port = int(q.get("port", "0") or 0)
        except ValueError:
            raise HTTPError(400, f"port: {q.get('port')!r} is not a number")
        t = trace.trace(self.fabric, self.model, q["from"], q["to"], q.get("protocol", "tcp") or "tcp", port)
        if q.get("live") in ("1", "true", "yes"):
            from controller import livetrace
            snap = self.fabric.snapshot()
            in_port = snap.ofports[t["from"]["host"]][next(
                e.port_name for e in snap.endpoints if e.endpoint_id == t["from"]["endpoint"])]
            t["live"] = livetrace.trace(self.model, t["from"], t["packet"], in_port, pki=self.pki)
            # the simulator's verdict at the same place: did the source switch send it anywhere?
            first = t["hops"][0] if t["hops"] else {"outputs": []}
            t["live"]["simulated"] = "forwarded" if first["outputs"] else "dropped"
            t["live"]["agrees"] = t["live"]["simulated"] == t["live"]["verdict"]
        return t

    def _host_label(self, dpid: int) -> str | None:
        return self.fabric.connected.get(dpid) or self.fabric.host_of(dpid)

    def _policylog(self, req, parts):
        """GET /api/v1/policylog/?tenant=T&limit=N: the last N denied connections
        (of logged deny rules) of a tenant, or of all tenants, oldest first."""
        if parts:
            raise HTTPError(404, "the policy log is /api/v1/policylog/?tenant=T&limit=N")
        raw = req.GET.get("limit", "100")
        try:
            limit = int(raw)
        except ValueError:
            raise HTTPError(400, f"limit: {raw!r} is not a number")
        if not 1 <= limit <= self.denylog.keep:
            raise HTTPError(400, f"limit: {limit} is not between 1 and {self.denylog.keep}")
        tenant = req.GET.get("tenant") or None
        if tenant is not None:
            self.model.get(schema.TENANT, tenant)       # 404 for an unknown tenant
        return self.denylog.recent(tenant, limit)

    def _extra_oper(self, kind, key):
        """How far the object's last write is live; for rules, their packet and
        byte counters, read from each switch's flow stats."""
        out = {}
        if kind is schema.GLOBAL:
            out["cluster"] = self.cluster_status()
        r = self._object_realization(kind, key)
        if r is not None:
            out["realization"] = r
        if kind is schema.RULE and self.of is not None:
            out.update(self._rule_counters(key) or {})
        return out

    def _rule_counters(self, key):
        if self.of is None:
            return None
        from controller import switch_stats
        from flows.pipeline import COOKIE_OWNER_MASK, Owner, cookie
        uid = self.model.meta("rule", key).get("id")
        if not uid:
            return None
        c = cookie(Owner.RULE, uid)
        hosts, total_p, total_b = [], 0, 0
        for dpid, label in sorted(self.fabric.connected.items(), key=lambda x: x[1]):
            held = switch_stats.read_flows(self.of.app, dpid, c, COOKIE_OWNER_MASK) or []
            # member flows of a conjunction keep no useful counts: the conj_id flow does
            p = sum(n for e, n, _ in held if any(f[0] == "conj_id" for f in e.match))
            b = sum(n for e, _, n in held if any(f[0] == "conj_id" for f in e.match))
            hosts.append({"host": label, "packets": p, "bytes": b})
            total_p, total_b = total_p + p, total_b + b
        return {"packets": total_p, "bytes": total_b, "hosts": hosts}

    # ------------------------------------------------------------ hosts
    def _monitor_hosts(self):
        """Log one line when a host goes down (heartbeats stopped) or comes back."""
        period = max(0.5, self.model.host_timeout / 4)
        while True:
            for rec in self.store.list("host/").values():
                label, state = rec["hostLabel"], self.model.host_state(rec)
                if self._host_states.get(label) != state:
                    if label in self._host_states or state == "down":
                        log.info("event=host_%s host=%s vtep=%s", state, label, rec["vtepIP"])
                    self._host_states[label] = state
            eventlet.sleep(period)

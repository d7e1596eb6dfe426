"""netmaster's Prometheus metrics.

Counters and histograms that code updates as things happen live here as
module globals (one process, one registry); what is cheaper to read when
scraped than to keep up to date (flows per table, hosts, endpoints, rule
counters from the switches' flow stats) comes from `NetmasterCollector`,
which reads the running netmaster at scrape time.
"""
from __future__ import annotations

import logging
from collections import Counter as Tally

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger(__name__)

RECONCILE_SECONDS = Histogram(
    "netweave_reconcile_duration_seconds", "Time to reconcile one switch (diff and bundle)",
    ["host"], buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
RECONCILES = Counter("netweave_reconciles_total", "Switch reconciles by outcome", ["host", "outcome"])
FLOW_MODS = Counter("netweave_flow_mods_total", "Flow mods sent to switches",
                    ["host", "command"])
GROUP_MODS = Counter("netweave_group_mods_total", "Group mods sent to switches",
                     ["host", "command"])
BUNDLE_DISCARDS = Counter("netweave_bundle_discards_total",
                          "Bundles discarded because the switch rejected a message", ["host"])
OF_ERRORS = Counter("netweave_openflow_errors_total", "OpenFlow error messages received",
                    ["host", "type"])


def reconciled(host: str, res, seconds: float) -> None:
    """Count one reconcile (controller.ofapp.ReconcileResult)."""
    RECONCILES.labels(host, res.outcome).inc()
    if res.outcome not in ("committed", "noop", "discarded"):
        return
    RECONCILE_SECONDS.labels(host).observe(seconds)
    if res.outcome == "discarded":
        BUNDLE_DISCARDS.labels(host).inc()
        return
    for cmd, n in (("add", res.added), ("modify", res.modified), ("delete", res.deleted)):
        if n:
            FLOW_MODS.labels(host, cmd).inc(n)
    for cmd, n in (("add", res.groups_added), ("modify", res.groups_modified),
                   ("delete", res.groups_deleted)):
        if n:
            GROUP_MODS.labels(host, cmd).inc(n)


class NetmasterCollector:
    """Gauges and switch counters read from a running Netmaster when scraped."""

    def __init__(self):
        self.netmaster = None

    def collect(self):
        nm = self.netmaster
        if nm is None:
            return
        from model import schema
        store, model = nm.store, nm.model
        gen = GaugeMetricFamily("netweave_store_generation", "Newest generation in the store")
        gen.add_metric([], store.generation)
        yield gen
        hosts = GaugeMetricFamily("netweave_hosts", "Registered hosts by state", labels=["state"])
        states = Tally(model.host_state(h) for h in store.list("host/").values())
        for st in ("up", "down"):
            hosts.add_metric([st], states.get(st, 0))
        yield hosts
        eps = GaugeMetricFamily("netweave_network_endpoints", "Endpoints per network",
                                labels=["tenant", "network"])
        per_net = Tally((e["tenantName"], e["networkName"]) for e in store.list("ep/").values())
        for n in model.objects_of(schema.NETWORK):
            key = (n["tenantName"], n["networkName"])
            eps.add_metric(list(key), per_net.get(key, 0))
        yield eps
        if nm.of is None:
            return
        app, fabric = nm.of.app, nm.fabric
        conn = GaugeMetricFamily("netweave_switches_connected", "Switches connected over OpenFlow")
        conn.add_metric([], len(app.datapaths))
        yield conn
        flows = GaugeMetricFamily("netweave_switch_flows",
                                  "Flows netweave holds on a switch, by table (last reconcile)",
                                  labels=["host", "table"])
        realized = GaugeMetricFamily("netweave_switch_realized_generation",
                                     "Store generation a switch has realized", labels=["host"])
        for dpid in sorted(app.datapaths):
            host = app._host(dpid)
            sw = app.switches.get(dpid)
            held = None if sw is None else sw.held
            if held is not None:
                for table, n in sorted(Tally(k[0] for k in held[0]).items()):
                    flows.add_metric([host, str(table)], n)
            realized.add_metric([host], fabric.realized_generation(dpid))
        yield flows
        yield realized
        yield from self._rule_counters(nm)

    @staticmethod
    def _rule_counters(nm):
        """Per-rule packets and bytes: one flow-stats read per switch, by cookie kind."""
        from controller import switch_stats
        from flows.pipeline import COOKIE_KIND_MASK, Owner, cookie, parse_cookie
        pk = CounterMetricFamily("netweave_rule_packets", "Packets decided by a policy rule",
                                 labels=["tenant", "policy", "rule", "host"])
        by = CounterMetricFamily("netweave_rule_bytes", "Bytes of packets decided by a policy rule",
                                 labels=["tenant", "policy", "rule", "host"])
        rules = {m["id"]: k[len("meta/rule/"):] for k, m in nm.store.list("meta/rule/").items()
                 if m.get("id")}
        for dpid in sorted(nm.of.app.datapaths):
            host = nm.of.app._host(dpid)
            try:
                held = switch_stats.read_flows(nm.of.app, dpid, cookie(Owner.RULE), COOKIE_KIND_MASK)
            except Exception as exc:        # noqa: BLE001 - a slow switch must not fail the scrape
                log.warning("event=metrics_rule_read_failed host=%s error=%r", host, exc)
                continue
            totals: dict = {}
            for e, p, b in held or []:
                if not any(f[0] == "conj_id" for f in e.match):
                    continue            # conjunction members keep no useful counts
                uid = parse_cookie(e.cookie)[1]
                tp, tb = totals.get(uid, (0, 0))
                totals[uid] = (tp + p, tb + b)
            for uid, (p, b) in sorted(totals.items()):
                key = rules.get(uid)
                if key is None:
                    continue
                labels = key.split(":", 2) + [host]
                pk.add_metric(labels, p)
                by.add_metric(labels, b)
        yield pk
        yield by


COLLECTOR = NetmasterCollector()
REGISTRY.register(COLLECTOR)

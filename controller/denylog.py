"""The denied-traffic log: connections dropped by deny rules that ask for it
(rule field enableLogging), one structured line each, the last N per tenant
in memory, and Prometheus counters.

How a denied packet gets here: the rule's verdict flow drops it in the
datapath and sends a copy (first DENY_LOG_MAX_LEN bytes) to the controller
through the switch's deny-log meter, which caps packet-ins per host whatever
the traffic (flows/policy.py, controller/ofapp.py).  SwitchManager hands each
packet-in over as (dpid, cookie, table_id, match, data); the cookie names the
rule (flows.pipeline.parse_cookie -> Owner.RULE, rule_uid), the dpid the host,
and the packet its addresses, protocol and ports.

Only +new packets meet the rules, and a denied packet is never committed to
conntrack, so every packet of a denied connection is "new" again and reaches
the controller: a TCP client retransmits its SYN (1 s, 3 s, 7 s, ... later on
Linux), a ping sends an echo request every second.  One connection must still
be one log line, so entries are deduplicated per (host, rule, protocol,
source, source port, destination, destination port or ICMP id) for WINDOW
seconds of silence: each repeat restarts the window, so a connection that keeps
retrying (Linux gives up on a SYN after ~63 s, longer than WINDOW) stays one line.

All of this runs in netmaster's eventlet hub (one OS thread): no locks.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from datetime import datetime, timezone
from typing import Callable, Optional

from os_ken.lib.packet import ethernet, icmp, icmpv6, ipv4, ipv6, packet, tcp, udp
from prometheus_client import Counter

from flows.pipeline import Owner, parse_cookie

log = logging.getLogger(__name__)

KEEP = 1000             # entries kept per tenant
WINDOW = 60.0           # seconds of silence before the same connection is logged again
MAX_TRACKED = 65536     # connections remembered for dedup (oldest forgotten first)

DENIED = Counter("netweave_policy_denied_connections",
                 "Connections denied by logged deny rules, counted once per connection",
                 ["tenant", "rule", "host"])
UNATTRIBUTED = Counter("netweave_policy_log_unattributed_packet_ins",
                       "Packet-ins the denied-traffic log could not attribute to a rule or parse",
                       ["reason"])

_PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp"}     # icmp rules cover ICMPv6


class DenyLog:
    """model: the engine the switches' flows come from (flows.engine.Engine): a
    packet-in's cookie names a rule it holds (rule_by_uid), and its addresses name
    the endpoints it accepted (endpoint_at).  Looked up, never rebuilt: a
    packet-in costs the same at 10k endpoints as at 10."""

    def __init__(self, model, host_of: Callable[[int], Optional[str]],
                 keep: int = KEEP, window: float = WINDOW, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self._model = model
        self._host_of = host_of
        self.keep = keep
        self.window = window
        self._clock = clock
        self._mono = monotonic
        self._by_tenant: dict[str, deque] = {}
        self._seen: OrderedDict = OrderedDict()       # connection key -> last seen (monotonic)

    # ------------------------------------------------------------ input
    def packet_in(self, dpid: int, cookie: int, table_id: int, match: dict, data: bytes) -> Optional[dict]:
        """Log the denied connection this packet belongs to, unless it was logged
        within the window.  Returns the new entry, or None (repeat or not ours)."""
        owner = parse_cookie(cookie)
        if owner is None or owner[0] != Owner.RULE:
            return self._unattributed("cookie", dpid, cookie)
        rule = self._model.rule_by_uid(owner[1])
        if rule is None:
            return self._unattributed("rule", dpid, cookie)
        pkt = parse_packet(data)
        if pkt is None:
            return self._unattributed("packet", dpid, cookie)
        host = self._host_of(dpid) or f"{dpid:016x}"
        key = (host, rule.rule_uid, pkt["protocol"], pkt["src"], pkt["srcPort"], pkt["dst"], pkt["port"])
        now = self._mono()
        last = self._seen.pop(key, None)
        self._seen[key] = now                        # newest at the end
        self._forget(now)
        if last is not None and now - last < self.window:
            return None
        rule_key = f"{rule.tenant}:{rule.policy}:{rule.rule_id}"
        e = {"time": datetime.fromtimestamp(self._clock(), timezone.utc).isoformat(timespec="milliseconds")
                     .replace("+00:00", "Z"),
             "host": host, "tenant": rule.tenant, "rule": rule_key, "policy": rule.policy,
             "ruleId": rule.rule_id, "direction": rule.direction,
             "src": pkt["src"], "srcEndpoint": self._model.endpoint_at(rule.tenant, pkt["src"]),
             "dst": pkt["dst"], "dstEndpoint": self._model.endpoint_at(rule.tenant, pkt["dst"]),
             "protocol": pkt["protocol"], "srcPort": pkt["srcPort"], "port": pkt["port"]}
        self._by_tenant.setdefault(rule.tenant, deque(maxlen=self.keep)).append(e)
        DENIED.labels(tenant=rule.tenant, rule=rule_key, host=host).inc()
        log.info("event=policy_deny time=%s host=%s tenant=%s rule=%s src=%s src_ep=%s dst=%s dst_ep=%s "
                 "proto=%s port=%s", e["time"], host, rule.tenant, rule_key, e["src"], e["srcEndpoint"] or "-",
                 e["dst"], e["dstEndpoint"] or "-", e["protocol"], e["port"])
        return e

    def _unattributed(self, reason: str, dpid: int, cookie: int) -> None:
        UNATTRIBUTED.labels(reason=reason).inc()
        log.debug("event=packet_in_unattributed reason=%s dpid=%016x cookie=%#x", reason, dpid, cookie)
        return None

    def _forget(self, now: float) -> None:
        seen = self._seen
        while seen:
            k, t = next(iter(seen.items()))
            if now - t < self.window and len(seen) <= MAX_TRACKED:
                break
            del seen[k]

    # ------------------------------------------------------------ output
    def recent(self, tenant: Optional[str] = None, limit: int = 100) -> list[dict]:
        """The last `limit` entries of a tenant (or of all tenants), oldest first."""
        if tenant is not None:
            items = list(self._by_tenant.get(tenant, ()))
        else:
            items = sorted((e for d in self._by_tenant.values() for e in d), key=lambda e: e["time"])
        return items[-limit:] if limit > 0 else []


def parse_packet(data: bytes) -> Optional[dict]:
    """IP (v4 or v6) addresses, protocol and ports of a (possibly truncated) Ethernet frame:
    {"src", "dst", "protocol", "srcPort", "port"}; port is the destination port,
    for ICMP the echo id stands in for the source port and the type for the port."""
    try:
        pkt = packet.Packet(data)
    except Exception:                    # noqa: BLE001 - a truncated or odd frame
        return None
    ip = pkt.get_protocol(ipv4.ipv4)
    ip6 = pkt.get_protocol(ipv6.ipv6) if ip is None else None
    if (ip is None and ip6 is None) or pkt.get_protocol(ethernet.ethernet) is None:
        return None
    if ip6 is not None:
        out = {"src": ip6.src, "dst": ip6.dst, "protocol": _PROTO_NAMES.get(ip6.nxt, str(ip6.nxt)),
               "srcPort": 0, "port": 0}
    else:
        out = {"src": ip.src, "dst": ip.dst, "protocol": _PROTO_NAMES.get(ip.proto, str(ip.proto)),
               "srcPort": 0, "port": 0}
    l4 = pkt.get_protocol(tcp.tcp) or pkt.get_protocol(udp.udp)
    if l4 is not None:
        out["srcPort"], out["port"] = l4.src_port, l4.dst_port
    else:
        ic = pkt.get_protocol(icmp.icmp) or pkt.get_protocol(icmpv6.icmpv6)
        if ic is not None:
            out["port"] = ic.type_ if isinstance(ic, icmpv6.icmpv6) else ic.type
            if isinstance(ic.data, (icmp.echo, icmpv6.echo)):
                out["srcPort"] = ic.data.id
    return out

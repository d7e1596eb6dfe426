"""`netctl trace`: why a packet from an endpoint is delivered or dropped.

The packet is built from the model (the endpoint's port, MAC and address; the
destination's MAC when it is on the same network, the router MAC when it is
not) and run through the compiled pipelines of every host with the simulator,
following it through the tunnel.  Each table hit is named by the owner its
cookie encodes (which endpoint, network, tenant or policy rule put it there),
so the answer reads "rule default:db-policy:1 (in tcp deny) dropped it at
table 51 on h2", not a cookie number.
"""
from __future__ import annotations

from flows import pipeline
from flows.fabric import Fabric as SimFabric
from flows.pipeline import ROUTER_MAC, Owner
from flows.service import vip_mac
from model.validate import NotFound, ValidationError


def owners(model, snapshot) -> dict:
    """cookie -> a readable owner name, for the objects in the snapshot."""
    names = {pipeline.cookie(Owner.BASE): "pipeline"}
    for t in snapshot.tenants:
        names[pipeline.cookie(Owner.TENANT, t.vrf_id)] = f"tenant {t.name}"
    for n in snapshot.networks:
        names[pipeline.cookie(Owner.NETWORK, n.net_id)] = f"network {n.tenant}:{n.name}"
    for e in snapshot.endpoints:
        names[pipeline.endpoint_cookie(e.endpoint_id)] = f"endpoint {e.endpoint_id} ({e.ip})"
    for g in snapshot.groups:
        names[pipeline.cookie(Owner.GROUP, g.group_id)] = f"group {g.tenant}:{g.name}"
    for h in snapshot.hosts:
        names[pipeline.cookie(Owner.HOST, pipeline.name_owner_id(h.label))] = f"host {h.label}"
    for sv in snapshot.services:
        names[pipeline.cookie(Owner.SERVICE, sv.service_id)] = f"service {sv.tenant}:{sv.name} ({sv.vip})"
    for r in snapshot.rules:
        desc = " ".join(x for x in (r.direction, r.protocol or "any", str(r.port) if r.port else "", r.action) if x)
        names[pipeline.cookie(Owner.RULE, r.rule_uid)] = f"rule {r.tenant}:{r.policy}:{r.rule_id} ({desc})"
    return names


def build_packet(snapshot, src, dst_ip: str, proto: str, port: int) -> dict:
    """The first packet of a connection from src to dst_ip (IPv6 when dst_ip is, from src's ip6)."""
    v6 = ":" in dst_ip
    if v6 and not src.ip6:
        raise ValidationError(f"to: {dst_ip} is IPv6 and endpoint {src.endpoint_id} has no IPv6 address")
    same_net = {e.ip6 if v6 else e.ip: e for e in snapshot.endpoints
                if e.tenant == src.tenant and e.network == src.network}
    vips = {sv.vip: sv for sv in snapshot.services if sv.tenant == src.tenant and sv.network == src.network}
    if dst_ip in same_net:
        eth_dst = same_net[dst_ip].mac
    elif dst_ip in vips:
        eth_dst = vip_mac(dst_ip)          # what the switch answers an ARP for the VIP with
    else:
        eth_dst = ROUTER_MAC
    if v6:
        pkt = {"eth_src": src.mac, "eth_dst": eth_dst, "eth_type": pipeline.ETH_IP6, "ipv6_src": src.ip6,
               "ipv6_dst": dst_ip, "nw_ttl": 64}
    else:
        pkt = {"eth_src": src.mac, "eth_dst": eth_dst, "eth_type": 0x0800, "ip_src": src.ip, "ip_dst": dst_ip,
               "nw_ttl": 64}
    if proto in ("tcp", "udp"):
        pkt["ip_proto"] = pipeline.IP_PROTO[proto]
        pkt[f"{proto}_src"] = 40000
        pkt[f"{proto}_dst"] = port
    elif proto == "icmp" and v6:
        pkt.update(ip_proto=pipeline.IPPROTO_ICMPV6, icmpv6_type=pipeline.ICMP6_ECHO_REQUEST, icmpv6_code=0)
    elif proto == "icmp":
        pkt.update(ip_proto=1, icmp_type=8, icmp_code=0)
    else:
        raise ValidationError(f"protocol: {proto} is not tcp, udp or icmp")
    return pkt


def trace(fabric, model, src_ep: str, dst: str, proto: str = "tcp", port: int = 0) -> dict:
    """Trace a new connection from endpoint src_ep to dst (an address or an endpoint id)."""
    snap = fabric.snapshot()
    eps = {e.endpoint_id: e for e in snap.endpoints}
    src = eps.get(src_ep) or next((e for e in snap.endpoints if src_ep in (e.ip, e.ip6)), None)
    if src is None:
        raise NotFound(f"from: endpoint {src_ep} not found")
    dst_ep = eps.get(dst)
    dst_ip = dst_ep.ip if dst_ep else dst
    if proto in ("tcp", "udp") and not 0 < port < 65536:
        raise ValidationError(f"port: {port} is not a port number (1-65535) for {proto}")
    if src.port_name not in snap.ofports.get(src.host, {}):
        raise ValidationError(f"from: endpoint {src.endpoint_id}'s port {src.port_name} is not on "
                              f"{src.host}'s switch yet")
    compiled = {h.label: fabric.compiled(h.label) for h in snap.hosts}
    sim = SimFabric.build(snap, compiled)
    pkt = build_packet(snap, src, dst_ip, proto, port)
    ft = sim.send(src.host, src.port_name, pkt)
    names = owners(model, snap)
    hops, decided = [], None
    for host, tr in ft.hops:
        steps = []
        for hit in tr.path:
            owner = names.get(hit.cookie, f"cookie {hit.cookie:#x}")
            steps.append({"table": hit.table, "tableName": _table_name(hit.table), "priority": hit.priority,
                          "owner": owner, "flow": hit.text})
            if owner.startswith("rule ") or (owner.startswith("tenant ") and hit.table in (
                    pipeline.T.EGRESS_POLICY, pipeline.T.INGRESS_POLICY)):
                decided = {"host": host, "table": hit.table, "by": owner,
                           "why": "no rule matched: allowed" if owner.startswith("tenant ") else "rule matched"}
        hops.append({"host": host, "steps": steps, "outputs": [p for p, _ in tr.outputs], "drops": tr.drops,
                     "toController": len(tr.to_controller)})     # a logged deny's copy (controller/denylog.py)
    by_port = {(h, e.port_name): e for e in snap.endpoints for h in [e.host]}
    delivered = [{"host": h, "port": n, "endpoint": by_port[(h, n)].endpoint_id if (h, n) in by_port else None}
                 for h, n, _ in ft.delivered]
    target = dst_ep.endpoint_id if dst_ep else next((e.endpoint_id for e in snap.endpoints
                                                     if dst_ip in (e.ip, e.ip6) and e.tenant == src.tenant), None)
    reached = any(d["endpoint"] == target for d in delivered) if target else bool(delivered)
    verdict = "delivered" if reached else "dropped"
    if target is None and dst_ip != src.ip and [d["endpoint"] for d in delivered] == [src.endpoint_id]:
        # nobody holds the address and the packet came back to its sender: a switch answered
        # it (the router's echo reply for a gateway)
        verdict = "answered"
        hit = hops[0]["steps"][-1] if hops and hops[0]["steps"] else {}
        decided = {"host": src.host, "table": hit.get("table"), "by": hit.get("owner", ""),
                   "why": "answered by the switch of %s, out of the sender's port" % src.host}
    elif not reached:
        last = next((h for h in reversed(hops) if h["drops"]), None)
        why = last["drops"][-1] if last else "no output"
        if decided is None or decided.get("why") != "rule matched":
            decided = {"host": last["host"] if last else src.host, "by": _drop_owner(last, names), "why": why}
    to = {"ip": dst_ip, "endpoint": target}
    svc = next((sv for sv in snap.services if sv.vip == dst_ip and sv.tenant == src.tenant), None)
    if svc is not None:
        # a service: delivered means one provider got it (the one the select group chose)
        to["service"] = f"{svc.tenant}:{svc.name}"
    return {"from": {"endpoint": src.endpoint_id, "host": src.host, "ip": src.ip},
            "to": to, "packet": pkt, "verdict": verdict,
            "decidedBy": decided, "delivered": delivered, "hops": hops, "problems": ft.problems}


def _drop_owner(hop, names) -> str:
    if not hop or not hop["steps"]:
        return "pipeline"
    return hop["steps"][-1]["owner"]


def _table_name(t: int) -> str:
    try:
        return pipeline.T(t).name
    except ValueError:
        return str(t)

"""`netctl trace --live`: the same packet traced by the real source switch
(`ofproto/trace`, run by that host's agent), so the simulator's verdict can be
checked against Open vSwitch's own."""
from __future__ import annotations

import re

import requests

from model.validate import ModelError

_FIELDS = {"eth_src": "dl_src", "eth_dst": "dl_dst", "ip_src": "nw_src", "ip_dst": "nw_dst", "nw_ttl": "nw_ttl",
           "tcp_src": "tcp_src", "tcp_dst": "tcp_dst", "udp_src": "udp_src", "udp_dst": "udp_dst",
           "icmp_type": "icmp_type", "icmp_code": "icmp_code"}
_PROTO = {6: "tcp", 17: "udp", 1: "icmp"}


def flow_text(pkt: dict, in_port: int) -> str:
    """The packet in ofproto/trace's flow syntax."""
    parts = [f"in_port={in_port}", _PROTO.get(pkt.get("ip_proto"), "ip")]
    parts += [f"{_FIELDS[k]}={v}" for k, v in pkt.items() if k in _FIELDS]
    return ",".join(parts)


def verdict(output: str) -> tuple[str, list[str]]:
    """'forwarded' or 'dropped', from the 'Datapath actions:' line, and the lines worth showing."""
    lines = output.splitlines()
    dp = next((l for l in reversed(lines) if l.startswith("Datapath actions:")), "")
    acts = dp.split(":", 1)[1].strip() if dp else ""
    # conntrack and recirculation are bookkeeping, not a destination
    rest = re.sub(r"(ct|recirc)\((?:[^()]|\([^()]*\))*\)", "", acts).replace(",", "").strip()
    v = "dropped" if rest in ("", "drop") else "forwarded"
    return v, [l for l in lines if l.startswith("Datapath actions:") or "Final flow:" in l]


def trace(model, src: dict, pkt: dict, in_port: int, ct_lookups: int = 2, timeout: float = 10.0) -> dict:
    host = model.host(src["host"])
    if not host.get("agentPort"):
        raise ModelError(f"live: the agent on {src['host']} offers no local API (agentPort is 0)", 409)
    url = f"http://{host['vtepIP']}:{host['agentPort']}/trace"
    params = {"flow": flow_text(pkt, in_port), "ct": ";".join(["trk,new"] * ct_lookups)}
    try:
        r = requests.get(url, params=params, timeout=timeout)
    except requests.RequestException as exc:
        raise ModelError(f"live: cannot reach the agent on {src['host']} at {url}: {exc}", 502)
    if not r.ok:
        raise ModelError(f"live: the agent on {src['host']} answered {r.status_code}: {r.text.strip()[:300]}", 502)
    out = r.json().get("output", "")
    v, summary = verdict(out)
    return {"host": src["host"], "flow": params["flow"], "verdict": v, "summary": summary, "output": out}

"""`netctl trace --live`: the same packet traced by the real source switch
(`ofproto/trace`, run by that host's agent), so the simulator's verdict can be
checked against Open vSwitch's own."""
from __future__ import annotations

import http.client
import json
import re
import ssl
import urllib.parse

from flows import fields as F
from model.validate import ModelError
from netweave import pki as pki_mod

# the packet fields a trace carries, in ovs-ofctl's spelling (flows/fields.py)
_FIELDS = {n: F.ofctl_name(n) for n in ("eth_src", "eth_dst", "ip_src", "ip_dst", "nw_ttl", "tcp_src", "tcp_dst",
                                         "udp_src", "udp_dst", "icmp_type", "icmp_code")}
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


def trace(model, src: dict, pkt: dict, in_port: int, ct_lookups: int = 2, timeout: float = 10.0,
          pki=None) -> dict:
    """Ask the source host's agent over HTTPS, as netmaster (its client certificate);
    the agent must present host:<label>'s certificate signed by netweave's CA."""
    host = model.host(src["host"])
    if not host.get("agentPort"):
        raise ModelError(f"live: the agent on {src['host']} offers no local API (agentPort is 0)", 409)
    if pki is None:
        raise ModelError("live: this netmaster has no PKI to reach agents with", 409)
    params = {"flow": flow_text(pkt, in_port), "ct": ";".join(["trk,new"] * ct_lookups)}
    url = f"https://{host['vtepIP']}:{host['agentPort']}/trace"
    crt, key = pki.cert_paths("netmaster-client")
    # the agent is named by its certificate's CN, not by an address it may change
    ctx = pki_mod.client_context(pki.ca_cert, crt, key, check_hostname=False)
    conn = http.client.HTTPSConnection(host["vtepIP"], host["agentPort"], timeout=timeout, context=ctx)
    try:
        conn.connect()
        cn = pki_mod.common_name(conn.sock.getpeercert())
        if cn != f"host:{src['host']}":
            raise ModelError(f"live: the agent at {url} presents {cn or 'no name'}, not host:{src['host']}", 502)
        conn.request("GET", "/trace?" + urllib.parse.urlencode(params))
        r = conn.getresponse()
        body = r.read().decode(errors="replace")
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        raise ModelError(f"live: cannot reach the agent on {src['host']} at {url}: {exc}", 502)
    finally:
        conn.close()
    if r.status != 200:
        raise ModelError(f"live: the agent on {src['host']} answered {r.status}: {body.strip()[:300]}", 502)
    try:
        out = json.loads(body).get("output", "")
    except (ValueError, AttributeError):
        raise ModelError(f"live: the agent on {src['host']} answered no JSON", 502)
    v, summary = verdict(out)
    return {"host": src["host"], "flow": params["flow"], "verdict": v, "summary": summary, "output": out}

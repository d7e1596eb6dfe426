"""Several simulated switches joined by the tunnel and the uplink VLAN wire."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from flows.pipeline import TUNNEL_PORT
from flows.simulator import PIPELINE_ONLY, Switch, Trace
from flows.snapshot import Snapshot

MAX_HOPS = 32


@dataclass
class FabricTrace:
    hops: List[Tuple[str, Trace]] = field(default_factory=list)
    delivered: List[Tuple[str, str, dict]] = field(default_factory=list)   # host, port name, packet
    wire: List[Tuple[str, int, dict]] = field(default_factory=list)        # host, fabric port, packet
    problems: List[str] = field(default_factory=list)
    controller: List[Tuple[str, dict]] = field(default_factory=list)      # host, packet sent to it

    def at(self, host: str, port_name: str) -> List[dict]:
        return [p for h, n, p in self.delivered if (h, n) == (host, port_name)]

    def endpoints(self) -> List[Tuple[str, str]]:
        return sorted((h, n) for h, n, _ in self.delivered)

    def __str__(self) -> str:
        return "\n".join(f"{h}:\n{t}" for h, t in self.hops)


class Fabric:
    def __init__(self, switches: Dict[str, Switch], vteps: Mapping[str, str],
                 ofports: Mapping[str, Mapping[str, int]], uplinks: Mapping[str, Optional[int]]):
        self.switches = switches
        self.by_vtep = {ip: h for h, ip in vteps.items()}
        self.vteps = dict(vteps)
        self.port_names = {h: {p: n for n, p in ports.items()} for h, ports in ofports.items()}
        self.ofports = ofports
        self.uplinks = {h: p for h, p in uplinks.items() if p is not None}

    @classmethod
    def build(cls, snap: Snapshot,
              compiled: Mapping[str, Tuple[set, set]]) -> "Fabric":
        switches = {h: Switch(f, g) for h, (f, g) in compiled.items()}
        uplinks = {h.label: snap.ofports.get(h.label, {}).get(h.uplink_port) for h in snap.hosts
                   if h.uplink_port}
        return cls(switches, {h.label: h.vtep_ip for h in snap.hosts}, snap.ofports, uplinks)

    def send(self, host: str, port_name: str, pkt: dict, ct_state: Optional[str] = None) -> FabricTrace:
        """Inject pkt as sent by the endpoint on host's port_name; follow it everywhere."""
        ft = FabricTrace()
        queue = [(host, dict(pkt, in_port=self.ofports[host][port_name]))]
        hops = 0
        while queue:
            hops += 1
            if hops > MAX_HOPS:
                ft.problems.append("hop limit: loop?")
                break
            h, p = queue.pop(0)
            tr = self.switches[h].trace(p, ct_state)
            ft.hops.append((h, tr))
            ft.controller += [(h, pk) for pk in tr.to_controller]
            for port, out in tr.outputs:
                queue += self._wire(h, port, out, ft)
        return ft

    def _wire(self, host: str, port, pkt: dict, ft: FabricTrace) -> List[Tuple[str, dict]]:
        clean = {k: v for k, v in pkt.items() if k not in PIPELINE_ONLY}
        if port == TUNNEL_PORT:
            ft.wire.append((host, port, pkt))
            dst = self.by_vtep.get(pkt.get("tun_dst"))
            if dst is None:
                ft.problems.append(f"{host}: tunnel to unknown vtep {pkt.get('tun_dst')}")
                return []
            clean.update(in_port=TUNNEL_PORT, tun_src=self.vteps[host])
            clean.pop("tun_dst", None)
            return [(dst, clean)]
        if port == self.uplinks.get(host):
            ft.wire.append((host, port, pkt))
            return [(h, dict(clean, in_port=up)) for h, up in sorted(self.uplinks.items()) if h != host]
        name = self.port_names.get(host, {}).get(port)
        if name is None:
            ft.problems.append(f"{host}: output to unknown port {port}")
            return []
        for k in ("tun_id", "tun_src", "tun_dst"):
            clean.pop(k, None)
        ft.delivered.append((host, name, clean))
        return []

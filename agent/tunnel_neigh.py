"""Keeps OVS's tunnel neighbour cache resolved for every known remote host.

On the userspace (netdev) datapath, OVS's native tunnelling resolves the outer
destination MAC from its own cache (`ovs-appctl tnl/neigh/show`); a VTEP whose
MAC is not there yet makes OVS drop the packet while it sends an ARP, so the
first packet between two hosts that never talked was lost. Every host reports
the MAC of its VTEP interface when it registers (`vtepMAC`); each agent sets
(`tnl/neigh/set`) the entries of the other hosts on the same underlay subnet
as hosts come, change, and again every REFRESH seconds, since entries age out.
Hosts behind a router are left to OVS's own ARP: their MAC is the router's.
The kernel datapath queues instead of dropping and needs none of this.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
import time

LOG = logging.getLogger(__name__)
REFRESH = 60.0          # seconds; OVS ages a neighbour entry out after 15 minutes idle


def vtep_interface(vtep_ip: str) -> tuple[str, str, str] | None:
    """(device, MAC, its subnet) of the interface holding vtep_ip here, or None."""
    if not vtep_ip:
        return None
    try:
        out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True,
                             timeout=10).stdout
        links = json.loads(out or "[]")
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    for link in links:
        for a in link.get("addr_info", ()):
            if a.get("family") == "inet" and a.get("local") == vtep_ip:
                net = ipaddress.ip_interface(f"{vtep_ip}/{a.get('prefixlen', 32)}").network
                return link["ifname"], link.get("address", ""), str(net)
    return None


class TunnelNeighbours:
    """What this host told OVS, so it only speaks when something changed (or to refresh)."""

    def __init__(self, appctl_target: str, own_label: str):
        self.target = appctl_target
        self.own = own_label
        self.device = ""                  # the VTEP interface (a netdev bridge's own port)
        self.subnet = None
        self._set: dict[str, tuple[str, float]] = {}     # peer VTEP IP -> (MAC, when set)
        self.problem = ""                 # "" or why the last attempt failed (for /readyz)

    def configure(self, device: str, subnet: str) -> None:
        self.device = device
        self.subnet = ipaddress.ip_network(subnet)

    def wanted(self, hosts: list[dict]) -> dict[str, str]:
        """Peer VTEP IP -> MAC for the registered hosts we can resolve ourselves."""
        out = {}
        for h in hosts:
            ip, mac = h.get("vtepIP", ""), (h.get("vtepMAC") or "").lower()
            if h.get("hostLabel") == self.own or not ip or not mac or self.subnet is None:
                continue
            try:
                if ipaddress.ip_address(ip) in self.subnet:
                    out[ip] = mac
            except ValueError:
                continue
        return out

    def missing(self, hosts: list[dict]) -> list[str]:
        """Peer VTEPs whose entry is not set (readiness: a first packet to them would be lost)."""
        return sorted(ip for ip, mac in self.wanted(hosts).items()
                      if self._set.get(ip, ("", 0))[0] != mac)

    def sync(self, hosts: list[dict], now: float | None = None) -> int:
        """Set what is new, changed or due for refresh; returns how many entries were set."""
        if not self.device:
            return 0
        now = time.monotonic() if now is None else now
        n = 0
        for ip, mac in sorted(self.wanted(hosts).items()):
            have, when = self._set.get(ip, ("", 0.0))
            if have == mac and now - when < REFRESH:
                continue
            p = subprocess.run(["ovs-appctl", "-t", self.target, "tnl/neigh/set", self.device, ip, mac],
                               capture_output=True, text=True, timeout=10)
            if p.returncode != 0:
                self.problem = f"tnl/neigh/set {ip} failed: {(p.stderr or p.stdout).strip()}"
                LOG.warning("event=tunnel_neighbour_failed device=%s peer=%s mac=%s error=%r",
                            self.device, ip, mac, self.problem)
                continue
            if have != mac:
                LOG.info("event=tunnel_neighbour_set device=%s peer=%s mac=%s", self.device, ip, mac)
            self._set[ip] = (mac, now)
            n += 1
        if n and not self.missing(hosts):
            self.problem = ""
        return n

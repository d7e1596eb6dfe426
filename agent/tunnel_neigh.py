"""Keeps OVS's tunnel neighbour cache resolved for every known remote host.

On the userspace (netdev) datapath, OVS's native tunnelling resolves the outer
destination MAC from its own cache (`ovs-appctl tnl/neigh/show`); a VTEP whose
MAC is not there yet makes OVS drop the packet while it sends an ARP, so the
first packet between two hosts that never talked was lost. Every host reports
the MAC of its VTEP interface when it registers (`vtepMAC`); each agent sets
(`tnl/neigh/set`) the entries of the other hosts on the same underlay subnet
that the cache lacks, at every heartbeat: hosts come and change, entries age
out, and a restarted ovs-vswitchd starts with an empty cache.
Hosts behind a router are left to OVS's own ARP: their MAC is the router's.
The kernel datapath queues instead of dropping and needs none of this.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
import re

LOG = logging.getLogger(__name__)


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


def parse_show(text: str) -> dict[str, str]:
    """`ovs-appctl tnl/neigh/show` -> {IP: MAC}."""
    out = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and re.fullmatch(r"[0-9a-fA-F:.]+", words[0]) and ("." in words[0] or
                                                                             ":" in words[0]) \
                and re.fullmatch(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}", words[1]):
            out[words[0]] = words[1].lower()
    return out


class TunnelNeighbours:
    """Compares what OVS's cache holds with what it should, and sets the difference.

    The cache itself is read every time, not remembered: a restarted ovs-vswitchd starts
    empty, and entries age out; either way the next heartbeat puts them back."""

    def __init__(self, appctl_target: str, own_label: str):
        self.target = appctl_target
        self.own = own_label
        self.device = ""                  # the VTEP interface (a netdev bridge's own port)
        self.subnet = None
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

    @staticmethod
    def missing(wanted: dict[str, str], have: dict[str, str]) -> list[str]:
        """Peer VTEPs without their entry (a first packet to them would be lost)."""
        return sorted(ip for ip, mac in wanted.items() if have.get(ip) != mac)

    def _appctl(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run(["ovs-appctl", "-t", self.target, *args], capture_output=True,
                              text=True, timeout=10)

    def sync(self, hosts: list[dict]) -> list[str]:
        """Set the entries OVS lacks; returns the peers still missing afterwards."""
        want = self.wanted(hosts)
        if not self.device or not want:
            return []
        p = self._appctl("tnl/neigh/show")
        if p.returncode != 0:
            self.problem = f"tnl/neigh/show failed: {(p.stderr or p.stdout).strip()}"
            return sorted(want)
        have = parse_show(p.stdout)
        self.problem = ""
        for ip in self.missing(want, have):
            p = self._appctl("tnl/neigh/set", self.device, ip, want[ip])
            if p.returncode != 0:
                self.problem = f"tnl/neigh/set {ip} failed: {(p.stderr or p.stdout).strip()}"
                LOG.warning("event=tunnel_neighbour_failed device=%s peer=%s mac=%s error=%r",
                            self.device, ip, want[ip], self.problem)
                continue
            LOG.info("event=tunnel_neighbour_set device=%s peer=%s mac=%s was=%s", self.device, ip,
                     want[ip], have.get(ip, "-"))
            have[ip] = want[ip]
        return self.missing(want, have)

"""The kernel side of the host port (flows/egress.py): endpoints reach this host, and
through it the outside, from the tenant's pvtSubnet address their switch SNATs them to.

Ensure-style, run at every heartbeat (cheap when all is in place; puts back what a
restarted ovs-vswitchd or someone else removed): the internal port's interface gets the
fixed MAC the flows send to and the host's pvtSubnet address (its last usable one), TX
checksum offload off (the userspace datapath), IPv4 forwarding on, and one masquerade rule
for pvtSubnet leaving by any other interface. Nothing comes in that the switch does not let
in: it passes only replies of connections the endpoints opened.
"""
from __future__ import annotations

import ipaddress
import logging
import subprocess

from flows.pipeline import HOST_PORT_MAC, HOST_PORT_NAME, pvt_host_ip

LOG = logging.getLogger(__name__)


def _run(*cmd, check=False) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=10, check=check)


def ensure(pvt_subnet: str, dev: str = HOST_PORT_NAME) -> str:
    """'' when in place, else what is missing (for /readyz)."""
    net = ipaddress.IPv4Network(pvt_subnet, strict=False)
    addr = f"{pvt_host_ip(pvt_subnet)}/{net.prefixlen}"
    show = _run("ip", "-o", "link", "show", "dev", dev)
    if show.returncode != 0:
        return f"{dev} does not exist yet"
    changed = []
    if HOST_PORT_MAC not in show.stdout.lower():
        _run("ip", "link", "set", "dev", dev, "address", HOST_PORT_MAC)
        changed.append("mac")
    if "state UP" not in show.stdout and ",UP" not in show.stdout:
        _run("ip", "link", "set", "dev", dev, "up")
        changed.append("up")
    if addr not in _run("ip", "-o", "-4", "addr", "show", "dev", dev).stdout:
        _run("ip", "addr", "replace", addr, "dev", dev)
        _run("ethtool", "-K", dev, "tx", "off")
        changed.append("address")
    try:
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            forwarding = f.read().strip() == "1"
        if not forwarding:
            with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
                f.write("1")
            changed.append("ip_forward")
    except OSError as e:
        return f"ip_forward: {e}"
    rule = ["POSTROUTING", "-s", str(net), "!", "-o", dev, "-j", "MASQUERADE"]
    if _run("iptables", "-t", "nat", "-C", *rule).returncode != 0:
        p = _run("iptables", "-t", "nat", "-A", *rule)
        if p.returncode != 0:
            return f"iptables masquerade: {(p.stderr or p.stdout).strip()}"
        changed.append("masquerade")
    if changed:
        LOG.info("event=host_access_ensured device=%s address=%s changed=%s", dev, addr, ",".join(changed))
    return ""

"""Rule address syntax -> list of (network, netmask) strings for masked matches."""
from __future__ import annotations

import ipaddress
from typing import List, Tuple


def prefixes(spec: str) -> List[Tuple[str, str]]:
    """'a.b.c.d', 'a.b.c.d/len' or 'a.b.c.d-e' (last octet range) as prefixes."""
    spec = spec.strip()
    if "-" in spec:
        first, last_octet = spec.split("-", 1)
        lo = ipaddress.IPv4Address(first)
        hi = ipaddress.IPv4Address(first.rsplit(".", 1)[0] + "." + last_octet)
        if hi < lo:
            raise ValueError(f"bad range {spec!r}")
        nets = ipaddress.summarize_address_range(lo, hi)
    else:
        nets = [ipaddress.IPv4Network(spec, strict=False)]
    return [(str(n.network_address), str(n.netmask)) for n in nets]


def as_match(net: str, mask: str):
    """Exact match for a /32, masked otherwise (entry.py: exact has mask None)."""
    return net if mask == "255.255.255.255" else (net, mask)

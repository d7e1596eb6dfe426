"""Rule address syntax -> list of (network, netmask) strings for masked matches."""
from __future__ import annotations

import ipaddress
from typing import List, Tuple


def family(spec: str) -> int:
    """4 or 6: the IP family of a rule address ('a.b.c.d...' or an IPv6 address/CIDR)."""
    return 6 if ":" in spec else 4


def prefixes(spec: str) -> List[Tuple[str, str]]:
    """'a.b.c.d', 'a.b.c.d/len' or 'a.b.c.d-e' (last octet range) as prefixes; an IPv6
    address or 'addr/len' as one prefix (canonical compressed text)."""
    spec = spec.strip()
    if family(spec) == 6:
        n6 = ipaddress.IPv6Network(spec, strict=False)
        return [(str(n6.network_address), str(n6.netmask))]
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


_FULL = ("255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")


def as_match(net: str, mask: str):
    """Exact match for a /32 (/128), masked otherwise (entry.py: exact has mask None)."""
    return net if mask in _FULL else (net, mask)

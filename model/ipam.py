"""Address arithmetic for networks: subnets with an optional range, pools,
allocation of the lowest free address, and Contiv's range-string oper format."""
from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class Subnet:
    network: ipaddress.IPv4Network
    first: int          # lowest address that may be handed out
    last: int           # highest

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    def __post_init__(self):
        # bounds as integers, once (a network create checks every other network's)
        object.__setattr__(self, "_lo", int(self.network.network_address))
        object.__setattr__(self, "_hi", int(self.network.broadcast_address))

    def overlaps(self, other: "Subnet") -> bool:
        """Same answer as IPv4Network.overlaps."""
        return self._lo <= other._hi and other._lo <= self._hi


@functools.lru_cache(maxsize=1 << 16)
def parse_subnet(text: str) -> Subnet:
    """'10.1.2.0/24' or '10.1.2.10-10.1.2.20/24' (the range limits allocation).
    Cached: a network create checks its subnet against every other network's
    (Subnet is frozen, and a refused text raises, which is not cached)."""
    addr, plen = text.rsplit("/", 1)
    lo_text, _, hi_text = addr.partition("-")
    net = ipaddress.IPv4Network(f"{lo_text}/{plen}", strict=False)
    usable_lo = int(net.network_address) + (1 if net.prefixlen < 31 else 0)
    usable_hi = int(net.broadcast_address) - (1 if net.prefixlen < 31 else 0)
    if hi_text:
        lo, hi = int(ipaddress.IPv4Address(lo_text)), int(ipaddress.IPv4Address(hi_text))
        if not (int(net.network_address) <= lo <= hi <= int(net.broadcast_address)):
            raise ValueError(f"range {lo_text}-{hi_text} is not inside {net}")
        usable_lo, usable_hi = max(usable_lo, lo), min(usable_hi, hi)
    return Subnet(net, usable_lo, usable_hi)


def parse_pool(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    a = int(ipaddress.IPv4Address(lo))
    b = int(ipaddress.IPv4Address(hi)) if hi else a
    if b < a:
        raise ValueError(f"pool {text} ends before it starts")
    return a, b


def ip_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def ip_str(n: int) -> str:
    return str(ipaddress.IPv4Address(n))


def lowest_free(lo: int, hi: int, used: set[int], excluded=()) -> int | None:
    """The lowest address in [lo, hi] not used nor inside an excluded (a, b) span."""
    n = lo
    while n <= hi:
        for a, b in excluded:
            if a <= n <= b:
                n = b + 1
                break
        else:
            if n not in used:
                return n
            n += 1
    return None


def runs(nums) -> list[tuple[int, int]]:
    """Consecutive integers grouped: [1, 2, 3, 9] -> [(1, 3), (9, 9)]."""
    out: list[list[int]] = []
    for n in sorted(nums):
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return [(a, b) for a, b in out]


def free_runs(lo: int, hi: int, used) -> list[tuple[int, int]]:
    """The runs of [lo, hi] that no address of `used` falls in: the gaps
    between the used addresses, so the cost grows with how many are used,
    never with the size of the range (a /8 pool is 16M addresses)."""
    out, n = [], lo
    for u in sorted(a for a in set(used) if lo <= a <= hi):
        if u > n:
            out.append((n, u - 1))
        n = u + 1
    if n <= hi:
        out.append((n, hi))
    return out


def runs_text(spans) -> str:
    """Contiv's format for runs: joined by ', ', e.g. '10.1.1.1-10.1.1.3, 10.1.1.9'."""
    return ", ".join(ip_str(a) if a == b else f"{ip_str(a)}-{ip_str(b)}" for a, b in spans)


def ranges_text(addrs) -> str:
    """Contiv's format for a set of addresses (see runs_text)."""
    return runs_text(runs(addrs))


def mac_for(ip: str) -> str:
    """A locally administered MAC derived from the address (unique per VRF,
    since subnets never overlap inside a tenant)."""
    o = ipaddress.IPv4Address(ip).packed
    return "02:4e:" + ":".join(f"{b:02x}" for b in o)


# ---------------------------------------------------------------- IPv6
# A /64 holds 2^64 addresses: nothing here walks or maps a subnet. Allocation is the
# lowest free address over the set of used ones (lowest_free stops after at most
# len(used) + 1 steps), oper ranges are runs of the used set (free_runs, runs).
V6_PREFIX_MIN, V6_PREFIX_MAX = 64, 126


@dataclass(frozen=True)
class Subnet6:
    network: ipaddress.IPv6Network
    first: int          # the subnet-router anycast address (the subnet's own) is never handed out
    last: int

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    def overlaps(self, other: "Subnet6") -> bool:
        return self.network.overlaps(other.network)


@functools.lru_cache(maxsize=1 << 12)
def parse_subnet6(text: str) -> Subnet6:
    """'2001:db8:1::/64' (host bits are ignored, as for IPv4)."""
    net = ipaddress.IPv6Network(text, strict=False)
    return Subnet6(net, int(net.network_address) + 1, int(net.broadcast_address))


def ip6_int(text: str) -> int:
    return int(ipaddress.IPv6Address(text))


def ip6_str(n: int) -> str:
    """Canonical (compressed, lower-case) text: the one form stored and compared."""
    return str(ipaddress.IPv6Address(n))


def runs6_text(spans) -> str:
    """runs_text for IPv6 addresses."""
    return ", ".join(ip6_str(a) if a == b else f"{ip6_str(a)}-{ip6_str(b)}" for a, b in spans)

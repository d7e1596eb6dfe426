"""In-memory indexes of what creates check, kept from the store's change stream.

A create used to list every taken packet tag, id and address, and every
network of its tenant, to pick the lowest free number or find an overlapping
subnet: O(N) per create.  These indexes answer the same questions in
O(changed): they are fed by the store's watch (every committed change, ours,
another netmaster's through etcd's watch, and a failed group commit's undo),
so they always describe the mirror the writer validates against; the store's
guarded commit stays the arbiter between netmasters.

  FreeNumbers  the taken numbers of one space (tags of an encap, ids of a space,
               addresses of a network) and, per allocation range, a lower bound
               of its lowest free number (every number below it is unavailable)
  SubnetIndex  a tenant's networks as CIDR blocks (IPv4, and IPv6 apart): two blocks overlap only when
               one contains the other, so a query is at most 33 lookups of the
               blocks that could contain it plus a bisection for those inside it
"""
from __future__ import annotations

import bisect
import threading

from model import ipam

HINTS_MAX = 32          # allocation ranges remembered per space (pools change rarely)


class FreeNumbers:
    def __init__(self):
        self.taken: set[int] = set()
        self._hint: dict[tuple, int] = {}     # (lo, hi, excluded, extra) -> lowest candidate

    def add(self, n: int) -> None:
        self.taken.add(n)

    def discard(self, n: int) -> None:
        self.taken.discard(n)
        for dom, p in self._hint.items():     # a freed number below a bound lowers it
            if dom[0] <= n < p:
                self._hint[dom] = n

    def lowest_free(self, lo: int, hi: int, excluded=(), extra=frozenset()) -> int | None:
        """What ipam.lowest_free(lo, hi, taken | extra, excluded) answers."""
        dom = (lo, hi, tuple(sorted(excluded)), frozenset(extra))
        n = max(lo, self._hint.get(dom, lo))
        taken = self.taken
        while n <= hi:
            for a, b in dom[2]:
                if a <= n <= b:
                    n = b + 1
                    break
            else:
                if n not in taken and n not in extra:
                    break
                n += 1
        if len(self._hint) >= HINTS_MAX and dom not in self._hint:
            self._hint.clear()
        self._hint[dom] = n
        return n if n <= hi else None


class SubnetIndex:
    """One tenant's networks: name -> (start, end, prefixlen, subnet text); addresses
    of `width` bits (32 for IPv4, 128 for IPv6)."""

    def __init__(self, width: int = 32):
        self.width = width
        self.nets: dict[str, tuple[int, int, int, str]] = {}
        self._blocks: dict[tuple[int, int], set[str]] = {}   # (start, prefixlen) -> names
        self._starts: list[tuple[int, str]] = []              # sorted

    def add(self, name: str, subnet: str) -> None:
        if name in self.nets:
            self.remove(name)
        try:
            s = ipam.parse_subnet(subnet) if self.width == 32 else ipam.parse_subnet6(subnet)
        except ValueError:
            return                      # never stored by validation; nothing to overlap
        lo, hi, plen = _bounds(s)
        self.nets[name] = (lo, hi, plen, subnet)
        self._blocks.setdefault((lo, plen), set()).add(name)
        bisect.insort(self._starts, (lo, name))

    def remove(self, name: str) -> None:
        ent = self.nets.pop(name, None)
        if ent is None:
            return
        lo, _, plen, _ = ent
        names = self._blocks.get((lo, plen))
        if names is not None:
            names.discard(name)
            if not names:
                del self._blocks[(lo, plen)]
        i = bisect.bisect_left(self._starts, (lo, name))
        if i < len(self._starts) and self._starts[i] == (lo, name):
            del self._starts[i]

    def overlapping(self, subnet, exclude: str = "") -> str | None:
        """The name of a network whose subnet overlaps `subnet`, or None."""
        lo, hi, plen = _bounds(subnet)
        full = (1 << self.width) - 1
        for q in range(plen, -1, -1):        # blocks containing it (or equal)
            mask = full ^ ((1 << (self.width - q)) - 1)
            for name in self._blocks.get((lo & mask, q), ()):
                if name != exclude:
                    return name
        i = bisect.bisect_left(self._starts, (lo, ""))
        while i < len(self._starts) and self._starts[i][0] <= hi:   # blocks inside it
            if self._starts[i][1] != exclude:
                return self._starts[i][1]
            i += 1
        return None


def _bounds(s) -> tuple[int, int, int]:
    """(network address, broadcast address, prefix length) of an ipam.Subnet or Subnet6."""
    return int(s.network.network_address), int(s.network.broadcast_address), s.prefixlen


class Index:
    """Every index of the model, fed by Store.watch; `lock` is held by updates and
    by the writer's queries (the etcd watch applies events from its own thread)."""

    def __init__(self, store):
        self.lock = threading.RLock()
        self.numbers: dict[str, FreeNumbers] = {}      # "tag/vxlan", "id/net", "ip/<tenant:net>"
        self.subnets: dict[str, SubnetIndex] = {}      # tenant -> its networks
        self.subnets6: dict[str, SubnetIndex] = {}     # tenant -> its networks' ipv6Subnet
        self.pools: dict[str, dict[str, tuple[int, int]]] = {}   # "tenant:net" -> group -> pool
        self._pool_net: dict[str, str] = {}            # group key -> the "tenant:net" of its pool
        with self.lock:
            for key, value in dict(store._data).items():
                self._one(key, value)
        store.watch(self.on_events)

    def space(self, name: str) -> FreeNumbers:
        fn = self.numbers.get(name)
        if fn is None:
            fn = self.numbers[name] = FreeNumbers()
        return fn

    def other_pools(self, net_key: str) -> list[tuple[int, int]]:
        return list(self.pools.get(net_key, {}).values())

    def on_events(self, events) -> None:
        with self.lock:
            for ev in events:
                self._one(ev.key, ev.value)

    # the one place that knows the store layout (model/service.py's docstring)
    def _one(self, key: str, value) -> None:
        head, _, rest = key.partition("/")
        if head in ("tag", "id", "ip", "ip6"):
            space, _, num = rest.rpartition("/")
            try:
                n = ipam.ip_int(num) if head == "ip" else ipam.ip6_int(num) if head == "ip6" else int(num)
            except ValueError:
                return
            fn = self.space(f"{head}/{space}")
            if value is None:
                fn.discard(n)
                if head in ("ip", "ip6") and not fn.taken:
                    del self.numbers[f"{head}/{space}"]
            else:
                fn.add(n)
        elif head == "obj":
            kind, _, okey = rest.partition("/")
            if kind == "network":
                tenant, _, name = okey.partition(":")
                for table in (self.subnets, self.subnets6):
                    idx = table.get(tenant)
                    if idx is not None:
                        idx.remove(name)
                if value is not None:
                    self.subnets.setdefault(tenant, SubnetIndex()).add(name, value.get("subnet", ""))
                    if value.get("ipv6Subnet"):
                        self.subnets6.setdefault(tenant, SubnetIndex(128)).add(name, value["ipv6Subnet"])
            elif kind == "endpointGroup":
                was = self._pool_net.pop(okey, None)
                if was is not None:
                    self.pools[was].pop(okey, None)
                    if not self.pools[was]:
                        del self.pools[was]
                if value is not None and value.get("ipPool"):
                    try:
                        pool = ipam.parse_pool(value["ipPool"])
                    except ValueError:
                        return
                    net = f"{okey.partition(':')[0]}:{value.get('networkName', '')}"
                    self.pools.setdefault(net, {})[okey] = pool
                    self._pool_net[okey] = net

    # -- queries (each under the lock; never held across a commit: the etcd
    #    watch takes the mirror's lock, then this one)
    def lowest_free(self, space: str, lo: int, hi: int, excluded=(), extra=frozenset()) -> int | None:
        with self.lock:
            fn = self.numbers.get(space)
            if fn is None:
                return ipam.lowest_free(lo, hi, set(extra), excluded)
            return fn.lowest_free(lo, hi, excluded, extra)

    def is_taken(self, space: str, n: int) -> bool:
        with self.lock:
            fn = self.numbers.get(space)
            return fn is not None and n in fn.taken

    def taken(self, space: str) -> set[int]:
        with self.lock:
            fn = self.numbers.get(space)
            return set(fn.taken) if fn is not None else set()

    def count(self, space: str) -> int:
        with self.lock:
            fn = self.numbers.get(space)
            return len(fn.taken) if fn is not None else 0

    def overlapping(self, tenant: str, subnet, exclude: str = "", v6: bool = False) -> tuple[str, str] | None:
        """(name, subnet text) of a network of the tenant whose subnet (ipv6Subnet
        with v6) overlaps `subnet`."""
        with self.lock:
            idx = (self.subnets6 if v6 else self.subnets).get(tenant)
            name = idx.overlapping(subnet, exclude) if idx is not None else None
            return (name, idx.nets[name][3]) if name is not None else None

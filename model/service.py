"""The desired state and its rules: Contiv's semantics on top of the store.

Every write is validate-then-commit under the store's write lock (retried
when the commit finds the store moved on, see store.base.Stale): an object
and everything allocated for it (packet tag, ids, an endpoint's address)
change in one atomic commit or not at all.  Nothing here talks to switches;
the controller learns about changes from the store's watch.

Store layout (keys under the store's own prefix):
  obj/<kind>/<key>          the object's config, as validated
  meta/<kind>/<key>         what netmaster allocated for it: pktTag, id
  tag/<encap>/<n>           packet tag n is taken by a network
  id/<space>/<n>            id n in space vrf|net|group|rule is taken
  ep/<endpointID>           an endpoint, with its address and MAC
  ip/<tenant:net>/<a.b.c.d> an address is taken by an endpoint
  ip6/<tenant:net>/<v6>     an IPv6 address (canonical text) is taken by an endpoint
  host/<label>              a registered host and its last heartbeat
"""
from __future__ import annotations

import dataclasses
import ipaddress
import logging
import time

from model import ipam, objects, schema
from model.index import Index
from model.validate import Conflict, ModelError, NotFound, ValidationError, parse
from store.base import Store, retry_stale

log = logging.getLogger(__name__)

ID_LIMITS = {"vrf": 0xFFFF, "net": 0xFFFF, "group": 0x7FFF, "rule": 0xFFFFF, "svc": 0xFFFFFF}
VXLAN_OVERHEAD = 50


def bandwidth_kbps(text: str) -> int:
    """Contiv's bandwidth strings ('10mbps', '100 kbps', '1g', '18Mb') in kbit/s."""
    import re
    m = re.fullmatch(r"\s*([0-9]+)\s*([kmgKMG])(bps|b)?\s*", text or "")
    if not m:
        return 0
    return int(m.group(1)) * {"k": 1, "m": 1000, "g": 1000000}[m.group(2).lower()]


SERVICE_PORTS_MAX = 16          # flows/pipeline.py: 4 bits of a service's group id


def parse_service_port(text: str) -> tuple[int, int, str]:
    """'80:8080:TCP' -> (80, 8080, 'tcp'), or a ValidationError naming the entry."""
    parts = text.split(":")
    bad = ValidationError(f"ports: {text!r} is not svcPort:provPort:protocol "
                          f"(ports 1-65535, protocol TCP or UDP)")
    if len(parts) != 3 or parts[2].lower() not in ("tcp", "udp"):
        raise bad
    try:
        sport, pport = int(parts[0]), int(parts[1])
    except ValueError:
        raise bad from None
    if not (0 < sport < 65536 and 0 < pport < 65536):
        raise bad
    return sport, pport, parts[2].lower()


def okey(kind: str, key: str) -> str:
    return f"obj/{kind}/{key}"


class Model:
    def __init__(self, store: Store, host_timeout: float = 6.0, underlay_mtu: int = 1500,
                 clock=time.time):
        self.store = store
        self.host_timeout = host_timeout
        self.underlay_mtu = underlay_mtu
        self.clock = clock
        # taken tags, ids, addresses and each tenant's subnets, from the store's change
        # stream: a create checks and allocates in O(changed), not by listing everything
        self.index = Index(store)
        self.bootstrap()

    # ------------------------------------------------------------------ start
    @retry_stale
    def bootstrap(self):
        """Tenant 'default' and the global object exist from the first start."""
        with self.store.write_lock():
            puts = {}
            if self.store.get(okey("global", "global")) is None:
                g = objects.Global(name="global")
                puts[okey("global", "global")] = objects.to_dict(g)
            if self.store.get(okey("tenant", "default")) is None:
                t = objects.Tenant(tenantName="default")
                puts[okey("tenant", "default")] = objects.to_dict(t)
                puts.update(self._alloc_id("vrf", "default", puts))
            self.store.commit(puts)

    # ------------------------------------------------------------------ reads
    def get(self, kind: schema.Kind, key: str) -> dict:
        if kind is schema.ENDPOINT:
            return self.endpoint(key)
        if kind is schema.HOST:
            return self.host(key)
        obj = self.store.get(okey(kind.name, key))
        if obj is None:
            raise NotFound(f"{kind.name} {key} not found")
        return obj

    def list(self, kind: schema.Kind, host: str | None = None) -> list[dict]:
        """Every object of kind; endpoints: only those homed on host when given (an
        agent asks for its own: 10k views and their JSON held the event loop ~0.1 s)."""
        if kind is schema.ENDPOINT:
            return [self._ep_view(v) for v in self.store.list("ep/").values()
                    if host is None or v["homingHost"] == host]
        if kind is schema.HOST:
            return [self._host_view(v) for v in self.store.list("host/").values()]
        return list(self.store.list(f"obj/{kind.name}/").values())

    def objects_of(self, kind: schema.Kind, tenant: str | None = None) -> list[dict]:
        objs = self.store.list(f"obj/{kind.name}/").values()
        return [o for o in objs if tenant is None or o.get("tenantName") == tenant]

    def meta(self, kind: str, key: str) -> dict:
        return self.store.get(f"meta/{kind}/{key}") or {}

    # ---------------------------------------------------------------- writes
    @retry_stale
    def upsert(self, kind: schema.Kind, path_key: str, body) -> dict:
        """POST/PUT: create, or update the fields that may change."""
        if kind.read_only:
            raise ModelError(f"{kind.collection}: read-only; endpoints are created by the agent "
                             f"through CNI", 405)
        if kind is schema.HOST:
            return self.register_host(path_key, body)
        if kind is schema.SERVICE_LB and isinstance(body, dict) and ":" in str(body.get("ipAddress") or ""):
            raise ValidationError(f"ipAddress: {body['ipAddress']} is IPv6; a service's VIP is IPv4 "
                                  f"only (its load balancing and NAT are)")
        obj = parse(kind, body, path_key)
        normalize = getattr(self, f"_normalize_{kind.name}", None)
        if normalize is not None:
            obj = normalize(obj)
        key = objects.key(obj)
        new = objects.to_dict(obj)
        with self.store.write_lock():
            old = self.store.get(okey(kind.name, key))
            if old is not None:
                self._check_immutable(kind, old, new)
                if old == new:
                    return old                      # re-applying a config changes nothing
            puts = {okey(kind.name, key): new}
            deletes: list[str] = []
            check = getattr(self, f"_check_{kind.name}")
            more = check(obj, old, puts, deletes)
            if more:
                puts.update(more)
            self.store.commit(puts, deletes)
        log.info("event=object_%s kind=%s key=%s", "updated" if old else "created", kind.name, key)
        return new

    @retry_stale
    def delete(self, kind: schema.Kind, key: str) -> str:
        if kind.read_only:
            raise ModelError(f"{kind.collection}: read-only; endpoints are removed by the agent "
                             f"through CNI DEL", 405)
        with self.store.write_lock():
            if kind is schema.HOST:
                return self._delete_host(key)
            old = self.store.get(okey(kind.name, key))
            if old is None:
                raise NotFound(f"{kind.name} {key} not found")
            deletes = [okey(kind.name, key)]
            getattr(self, f"_delete_{kind.name}")(key, old, deletes)
            self.store.commit({}, deletes)
        log.info("event=object_deleted kind=%s key=%s", kind.name, key)
        return key

    @staticmethod
    def _check_immutable(kind, old, new):
        for f in kind.fields:
            if not f.mutable and old.get(f.name) != new.get(f.name):
                raise Conflict(f"{f.name}: cannot change after the {kind.name} is created "
                               f"(is {old.get(f.name)!r}, asked {new.get(f.name)!r})")

    # ------------------------------------------------------------ allocation
    def _alloc_id(self, space: str, owner: str, pending: dict) -> dict:
        pending_ids = frozenset(int(k.rsplit("/", 1)[1]) for k in pending if k.startswith(f"id/{space}/"))
        n = self.index.lowest_free(f"id/{space}", 1, ID_LIMITS[space], extra=pending_ids)
        if n is None:
            raise Conflict(f"{space} ids exhausted ({ID_LIMITS[space]} in use)")
        kind = {"vrf": "tenant", "net": "network", "group": "endpointGroup", "rule": "rule",
                "svc": "serviceLB"}[space]
        meta = dict(pending.get(f"meta/{kind}/{owner}") or self.meta(kind, owner))
        meta["id"] = n
        return {f"id/{space}/{n}": {"owner": owner}, f"meta/{kind}/{owner}": meta}

    def _free_id(self, kind: str, space: str, key: str, deletes: list):
        deletes.append(f"meta/{kind}/{key}")
        m = self.meta(kind, key)
        if "id" in m:
            deletes.append(f"id/{space}/{m['id']}")

    def _global(self) -> dict:
        return self.store.get(okey("global", "global")) or objects.to_dict(objects.Global(name="global"))

    @staticmethod
    def _range(text: str) -> tuple[int, int]:
        lo, hi = (int(x) for x in text.split("-"))
        return lo, hi

    def _require(self, kind: str, key: str, field: str):
        if self.store.get(okey(kind, key)) is None:
            raise NotFound(f"{field}: {kind} {key} does not exist")

    # ------------------------------------------------------------ per kind
    def _check_tenant(self, t, old, puts, deletes):
        if old is None:
            return self._alloc_id("vrf", t.tenantName, puts)

    def _delete_tenant(self, key, old, deletes):
        for kind, what in ((schema.APP_PROFILE, "app profiles"), (schema.ENDPOINT_GROUP, "endpoint groups"),
                           (schema.POLICY, "policies"), (schema.NETPROFILE, "netprofiles"),
                           (schema.SERVICE_LB, "services"), (schema.NETWORK, "networks")):
            n = len(self.objects_of(kind, key))
            if n:
                raise Conflict(f"tenant {key}: cannot delete, it has {n} {what}")
        self._free_id("tenant", "vrf", key, deletes)

    @staticmethod
    def _normalize_network(n):
        """The IPv6 subnet and gateway in canonical text, the gateway defaulting to the
        subnet's first address (before the immutability check: posting the same network
        again, in any spelling, changes nothing)."""
        if not n.ipv6Subnet:
            if n.ipv6Gateway:
                raise ValidationError("ipv6Gateway: needs an ipv6Subnet")
            return n
        try:
            sub6 = ipam.parse_subnet6(n.ipv6Subnet)
        except ValueError as exc:
            raise ValidationError(f"ipv6Subnet: {exc}")
        if not ipam.V6_PREFIX_MIN <= sub6.prefixlen <= ipam.V6_PREFIX_MAX:
            raise ValidationError(f"ipv6Subnet: /{sub6.prefixlen} is outside /{ipam.V6_PREFIX_MIN} to "
                                  f"/{ipam.V6_PREFIX_MAX}")
        if sub6.network.is_link_local or sub6.network.is_multicast or sub6.network.is_loopback:
            raise ValidationError(f"ipv6Subnet: {sub6.network} is a link-local, multicast or loopback "
                                  f"range")
        if n.ipv6Gateway:
            try:
                gw = ipam.ip6_int(n.ipv6Gateway)
            except ValueError as exc:
                raise ValidationError(f"ipv6Gateway: {exc}")
            if not sub6.first <= gw <= sub6.last:
                raise ValidationError(f"ipv6Gateway: {n.ipv6Gateway} is not a host address inside "
                                      f"{sub6.network}")
        else:
            gw = sub6.first
        return dataclasses.replace(n, ipv6Subnet=str(sub6.network), ipv6Gateway=ipam.ip6_str(gw))

    def _check_network(self, n, old, puts, deletes):
        if old is not None:
            return None                              # only cfgdTag may change
        self._require("tenant", n.tenantName, "tenantName")
        key = objects.key(n)
        if self.store.get(okey("endpointGroup", key)):
            raise Conflict(f"networkName: an endpoint group {key} already has this name")
        try:
            sub = ipam.parse_subnet(n.subnet)
        except ValueError as exc:
            raise ValidationError(f"subnet: {exc}")
        if sub.prefixlen < 8:
            raise ValidationError(f"subnet: /{sub.prefixlen} is too large (8 to 31)")
        if n.gateway:
            gw = ipaddress.IPv4Address(n.gateway)
            if gw not in sub.network or gw in (sub.network.network_address, sub.network.broadcast_address):
                raise ValidationError(f"gateway: {n.gateway} is not a host address inside {sub.network}")
        other = self.index.overlapping(n.tenantName, sub, exclude=n.networkName)
        if other is not None:
            raise Conflict(f"subnet: {n.subnet} overlaps network {other[0]} "
                           f"({other[1]}) in tenant {n.tenantName}")
        if n.ipv6Subnet:
            other = self.index.overlapping(n.tenantName, ipam.parse_subnet6(n.ipv6Subnet),
                                           exclude=n.networkName, v6=True)
            if other is not None:
                raise Conflict(f"ipv6Subnet: {n.ipv6Subnet} overlaps network {other[0]} "
                               f"({other[1]}) in tenant {n.tenantName}")
        g = self._global()
        rng_field = "vxlans" if n.encap == "vxlan" else "vlans"
        lo, hi = self._range(g[rng_field])
        if n.pktTag:
            if not lo <= n.pktTag <= hi:
                raise ValidationError(f"pktTag: {n.pktTag} is outside the global {rng_field} range {g[rng_field]}")
            if self.index.is_taken(f"tag/{n.encap}", n.pktTag):
                owner = self.store.get(f"tag/{n.encap}/{n.pktTag}")["network"]
                raise Conflict(f"pktTag: {n.encap} {n.pktTag} is already in use by network {owner}")
            tag = n.pktTag
        else:
            tag = self.index.lowest_free(f"tag/{n.encap}", lo, hi)
            if tag is None:
                raise Conflict(f"pktTag: the global {rng_field} range {g[rng_field]} is exhausted")
        more = self._alloc_id("net", key, puts)
        more[f"meta/network/{key}"]["pktTag"] = tag
        more[f"tag/{n.encap}/{tag}"] = {"network": key}
        return more

    def _delete_network(self, key, old, deletes):
        groups = [g["groupName"] for g in self.objects_of(schema.ENDPOINT_GROUP, old["tenantName"])
                  if g["networkName"] == old["networkName"]]
        if groups:
            raise Conflict(f"network {key}: cannot delete, it has {len(groups)} endpoint groups "
                           f"({', '.join(sorted(groups))})")
        svcs = sorted(s["serviceName"] for s in self.objects_of(schema.SERVICE_LB, old["tenantName"])
                      if s["networkName"] == old["networkName"])
        if svcs:
            raise Conflict(f"network {key}: cannot delete, it has {len(svcs)} services "
                           f"({', '.join(svcs)})")
        eps = self.index.count(f"ip/{key}")
        if eps:
            raise Conflict(f"network {key}: cannot delete, it has {eps} active endpoints")
        m = self.meta("network", key)
        if "pktTag" in m:
            deletes.append(f"tag/{old['encap']}/{m['pktTag']}")
        self._free_id("network", "net", key, deletes)

    def _check_endpointGroup(self, g, old, puts, deletes):
        key = objects.key(g)
        self._require("tenant", g.tenantName, "tenantName")
        net_key = f"{g.tenantName}:{g.networkName}"
        net = self.store.get(okey("network", net_key))
        if net is None:
            raise NotFound(f"networkName: network {net_key} does not exist")
        if self.store.get(okey("network", key)):
            raise Conflict(f"groupName: a network {key} already has this name")
        for p in g.policies:
            self._require("policy", f"{g.tenantName}:{p}", "policies")
        if g.netProfile:
            self._require("netprofile", f"{g.tenantName}:{g.netProfile}", "netProfile")
        for c in g.extContractsGrps:
            raise ValidationError(f"extContractsGrps: {c}: external contracts (ACI) are not supported")
        if old is None:
            if g.ipPool:
                sub = ipam.parse_subnet(net["subnet"])
                try:
                    lo, hi = ipam.parse_pool(g.ipPool)
                except ValueError as exc:
                    raise ValidationError(f"ipPool: {exc}")
                if lo < sub.first or hi > sub.last:
                    raise ValidationError(f"ipPool: {g.ipPool} is not inside the network's range {net['subnet']}")
                for other in self.objects_of(schema.ENDPOINT_GROUP, g.tenantName):
                    if other["networkName"] == g.networkName and other["ipPool"]:
                        a, b = ipam.parse_pool(other["ipPool"])
                        if a <= hi and lo <= b:
                            raise Conflict(f"ipPool: {g.ipPool} overlaps the pool of group {other['groupName']}")
                if any(lo <= a <= hi for a in self.index.taken(f"ip/{net_key}")):
                    raise Conflict(f"ipPool: {g.ipPool} contains addresses already allocated")
            return self._alloc_id("group", key, puts)
        return None

    def _delete_endpointGroup(self, key, old, deletes):
        n = sum(1 for e in self.store.list("ep/").values() if e.get("groupKey") == key)
        if n:
            raise Conflict(f"endpointGroup {key}: cannot delete, it has {n} active endpoints")
        for ap in self.objects_of(schema.APP_PROFILE, old["tenantName"]):
            if old["groupName"] in ap["endpointGroups"]:
                raise Conflict(f"endpointGroup {key}: cannot delete, app profile {ap['appProfileName']} uses it")
        for r in self.objects_of(schema.RULE, old["tenantName"]):
            if old["groupName"] in (r["fromEndpointGroup"], r["toEndpointGroup"]):
                raise Conflict(f"endpointGroup {key}: cannot delete, rule "
                               f"{r['policyName']}:{r['ruleId']} refers to it")
        self._free_id("endpointGroup", "group", key, deletes)

    def _check_policy(self, p, old, puts, deletes):
        self._require("tenant", p.tenantName, "tenantName")

    def _delete_policy(self, key, old, deletes):
        users = [g["groupName"] for g in self.objects_of(schema.ENDPOINT_GROUP, old["tenantName"])
                 if old["policyName"] in g["policies"]]
        if users:
            raise Conflict(f"policy {key}: cannot delete, it is attached to endpoint groups "
                           f"{', '.join(sorted(users))}")
        for r in self.objects_of(schema.RULE, old["tenantName"]):
            if r["policyName"] == old["policyName"]:
                rkey = f"{r['tenantName']}:{r['policyName']}:{r['ruleId']}"
                deletes.append(okey("rule", rkey))
                self._free_id("rule", "rule", rkey, deletes)

    def _check_rule(self, r, old, puts, deletes):
        self._require("tenant", r.tenantName, "tenantName")
        self._require("policy", f"{r.tenantName}:{r.policyName}", "policyName")
        if r.direction == "in":
            for f in ("toEndpointGroup", "toNetwork", "toIpAddress"):
                if getattr(r, f):
                    raise ValidationError(f"{f}: not allowed in an 'in' rule (use from* fields)")
        else:
            for f in ("fromEndpointGroup", "fromNetwork", "fromIpAddress"):
                if getattr(r, f):
                    raise ValidationError(f"{f}: not allowed in an 'out' rule (use to* fields)")
        for side in ("from", "to"):
            grp, net, ip = (getattr(r, f"{side}EndpointGroup"), getattr(r, f"{side}Network"),
                            getattr(r, f"{side}IpAddress"))
            if net and (grp or ip):
                other = f"{side}EndpointGroup" if grp else f"{side}IpAddress"
                raise ValidationError(f"{side}Network: cannot be combined with {other}")
            if grp:
                self._require("endpointGroup", f"{r.tenantName}:{grp}", f"{side}EndpointGroup")
            if net:
                self._require("network", f"{r.tenantName}:{net}", f"{side}Network")
        for f in ("fromIpAddress", "toIpAddress"):
            text = getattr(r, f)
            if text and ":" in text:           # the schema checked Contiv's IPv4 forms
                try:
                    ipaddress.IPv6Network(text, strict=False)
                except ValueError as exc:
                    raise ValidationError(f"{f}: {text} is not an IPv6 address or CIDR ({exc})")
                if r.protocol == "1":
                    raise ValidationError(f"protocol: 1 is ICMP for IPv4, which never matches the "
                                          f"IPv6 peer {f} {text} (ICMPv6 is 58)")
            elif text and r.protocol == "58":
                raise ValidationError(f"protocol: 58 is ICMPv6, which never matches the IPv4 peer "
                                      f"{f} {text}")
        if r.port and r.protocol not in ("tcp", "udp"):
            raise ValidationError(f"port: needs protocol tcp or udp (protocol is {r.protocol or 'any'!r})")
        if r.protocol and r.protocol.isdigit() and int(r.protocol) > 255:
            raise ValidationError(f"protocol: {r.protocol} is above the maximum 255")
        if r.enableLogging and r.action != "deny":
            raise ValidationError(f"enableLogging: only deny rules are logged (action is {r.action!r})")
        if old is None:
            return self._alloc_id("rule", objects.key(r), puts)

    def _delete_rule(self, key, old, deletes):
        self._free_id("rule", "rule", key, deletes)

    def _check_appProfile(self, a, old, puts, deletes):
        self._require("tenant", a.tenantName, "tenantName")
        for g in a.endpointGroups:
            self._require("endpointGroup", f"{a.tenantName}:{g}", "endpointGroups")

    def _delete_appProfile(self, key, old, deletes):
        pass

    def _check_netprofile(self, p, old, puts, deletes):
        self._require("tenant", p.tenantName, "tenantName")
        if p.burst == 1:
            raise ValidationError("burst: must be 0 or at least 2")

    def _delete_netprofile(self, key, old, deletes):
        users = [g["groupName"] for g in self.objects_of(schema.ENDPOINT_GROUP, old["tenantName"])
                 if g["netProfile"] == old["profileName"]]
        if users:
            raise Conflict(f"netprofile {key}: cannot delete, endpoint groups {', '.join(sorted(users))} use it")

    def _check_global(self, g, old, puts, deletes):
        ranges = {}
        for f, top in (("vlans", 4094), ("vxlans", 16777215)):
            lo, hi = self._range(getattr(g, f))
            if lo < 1 or lo > hi or hi > top:
                raise ValidationError(f"{f}: {getattr(g, f)} must be MIN-MAX with 1 <= MIN <= MAX <= {top}")
            ranges[f] = (lo, hi)
        in_use = {"vlan": sorted(int(k.rsplit("/", 1)[1]) for k in self.store.keys("tag/vlan/")),
                  "vxlan": sorted(int(k.rsplit("/", 1)[1]) for k in self.store.keys("tag/vxlan/"))}
        for encap, f in (("vlan", "vlans"), ("vxlan", "vxlans")):
            lo, hi = ranges[f]
            outside = [t for t in in_use[encap] if not lo <= t <= hi]
            if outside:
                raise Conflict(f"{f}: the new range {getattr(g, f)} leaves out {encap} tags in use "
                               f"{', '.join(map(str, outside[:10]))}")
        if old is not None:
            if g.fwdMode != old["fwdMode"] and (in_use["vlan"] or in_use["vxlan"]):
                raise Conflict(f"fwdMode: cannot change while {len(in_use['vlan'])} vlans and "
                               f"{len(in_use['vxlan'])} vxlans are in use")
            if g.pvtSubnet != old["pvtSubnet"] and self.objects_of(schema.NETWORK):
                raise Conflict("pvtSubnet: cannot change while networks exist")

    def _check_serviceLB(self, svc, old, puts, deletes):
        """Contiv's checks, done fully (Contiv's looked at the first port only and crashed
        on one without colons): selectors key=value, ports svcPort:provPort:TCP|UDP; the VIP
        is a free host address of the network, allocated when empty, kept with the service."""
        if not svc.selectors:
            raise ValidationError("selectors: at least one key=value label is required")
        for sel in svc.selectors:
            k, eq, v = sel.partition("=")
            if not eq or not k.strip() or not v.strip() or "=" in v:
                raise ValidationError(f"selectors: {sel!r} is not key=value")
        if not svc.ports:
            raise ValidationError("ports: at least one svcPort:provPort:protocol is required")
        if len(svc.ports) > SERVICE_PORTS_MAX:
            raise ValidationError(f"ports: at most {SERVICE_PORTS_MAX} per service")
        seen = set()
        for text in svc.ports:
            sport, pport, proto = parse_service_port(text)
            if (sport, proto) in seen:
                raise ValidationError(f"ports: service port {sport}/{proto} appears twice")
            seen.add((sport, proto))
        if old is not None:
            return None                  # selectors and ports may change; the VIP stays
        self._require("tenant", svc.tenantName, "tenantName")
        net_key = f"{svc.tenantName}:{svc.networkName}"
        net = self.store.get(okey("network", net_key))
        if net is None:
            raise NotFound(f"networkName: network {net_key} does not exist")
        vrf = self.meta("tenant", svc.tenantName).get("id", 0)
        if vrf >= 0x8000:
            raise Conflict(f"tenantName: tenant {svc.tenantName} has VRF id {vrf}; services need one "
                           f"below 32768 (their conntrack zone is 0x8000 + the VRF id)")
        sub = ipam.parse_subnet(net["subnet"])
        gw = frozenset([ipam.ip_int(net["gateway"])] if net["gateway"] else [])
        if svc.ipAddress:
            addr = ipam.ip_int(svc.ipAddress)
            if not sub.first <= addr <= sub.last:
                raise ValidationError(f"ipAddress: {svc.ipAddress} is outside the subnet {net['subnet']} "
                                      f"of network {net_key}")
            if net["gateway"] and addr == ipam.ip_int(net["gateway"]):
                raise Conflict(f"ipAddress: {svc.ipAddress} is the gateway of network {net_key}")
            if self.index.is_taken(f"ip/{net_key}", addr):
                owner = self.store.get(f"ip/{net_key}/{svc.ipAddress}") or {}
                raise Conflict(f"ipAddress: {svc.ipAddress} is already taken in network {net_key} "
                               f"({'service ' + owner['service'] if 'service' in owner else 'endpoint ' + owner.get('endpoint', '?')})")
        else:
            addr = self.index.lowest_free(f"ip/{net_key}", sub.first, sub.last,
                                          self.index.other_pools(net_key), gw)
            if addr is None:
                raise Conflict(f"ipAddress: no free address left in the subnet {net['subnet']} of "
                               f"network {net_key}")
        key = objects.key(svc)
        vip = ipam.ip_str(addr)
        more = self._alloc_id("svc", key, puts)
        more[f"meta/serviceLB/{key}"]["vip"] = vip
        more[f"ip/{net_key}/{vip}"] = {"service": key}
        return more

    def _delete_serviceLB(self, key, old, deletes):
        vip = self.meta("serviceLB", key).get("vip")
        if vip:
            deletes.append(f"ip/{old['tenantName']}:{old['networkName']}/{vip}")
        self._free_id("serviceLB", "svc", key, deletes)

    def providers(self, svc: dict) -> list[dict]:
        """The tenant's endpoints carrying every selector label (what flows/service.py picks)."""
        want = set(svc["selectors"])
        return sorted((e for e in self.store.list("ep/").values()
                       if e["tenantName"] == svc["tenantName"] and want <= set(e.get("labels") or ())),
                      key=lambda e: e["endpointID"])

    def _delete_global(self, key, old, deletes):
        raise Conflict("global: cannot be deleted; POST it to change its settings")

    # --------------------------------------------------------------- hosts
    @retry_stale
    def register_host(self, path_key: str, body, source: str = "") -> dict:
        """A netplugin registers its host; every later POST is a heartbeat. `source`
        is the address the request came from: the host's switch must connect from
        it (or from its VTEP address) to be taken as that host (controller/fabric.py)."""
        h = parse(schema.HOST, body, path_key)
        new = objects.to_dict(h)
        now = self.clock()
        with self.store.write_lock():
            old = self.store.get(f"host/{h.hostLabel}")
            for other in self.store.list("host/").values():
                if other["hostLabel"] != h.hostLabel and other["dpid"].lower() == h.dpid.lower():
                    raise Conflict(f"dpid: {h.dpid} is already used by host {other['hostLabel']}")
            rec = dict(new, lastHeartbeat=now)
            if source:
                rec["registeredFrom"] = source
            if old is None:
                rec["registered"] = now
                log.info("event=host_registered host=%s vtep=%s dpid=%s", h.hostLabel, h.vtepIP, h.dpid)
            else:
                rec["registered"] = old.get("registered", now)
            self.store.commit({f"host/{h.hostLabel}": rec})
        return self._host_view(rec)

    def host(self, label: str) -> dict:
        rec = self.store.get(f"host/{label}")
        if rec is None:
            raise NotFound(f"host {label} not found")
        return self._host_view(rec)

    def host_state(self, rec: dict) -> str:
        return "up" if self.clock() - rec.get("lastHeartbeat", 0) <= self.host_timeout else "down"

    def _host_view(self, rec: dict) -> dict:
        v = dict(rec)
        v["key"] = rec["hostLabel"]
        v["state"] = self.host_state(rec)
        v["endpointsVersion"] = self.endpoints_version(rec["hostLabel"])
        v["numEndpoints"] = sum(1 for e in self.store.list("ep/").values() if e["homingHost"] == rec["hostLabel"])
        return v

    def _delete_host(self, label: str) -> str:
        if self.store.get(f"host/{label}") is None:
            raise NotFound(f"host {label} not found")
        n = sum(1 for e in self.store.list("ep/").values() if e["homingHost"] == label)
        if n:
            raise Conflict(f"host {label}: cannot delete, it has {n} endpoints")
        self.store.commit({}, [f"host/{label}"])
        return label

    # ------------------------------------------------------------ endpoints
    def resolve_network(self, tenant: str, name: str, group: str) -> tuple[dict, dict | None]:
        """A CNI 'network' may name a network or (Contiv's form) a group."""
        self._require("tenant", tenant, "tenantName")
        net = self.store.get(okey("network", f"{tenant}:{name}"))
        grp = None
        if net is None:
            grp = self.store.get(okey("endpointGroup", f"{tenant}:{name}"))
            if grp is None:
                raise NotFound(f"networkName: neither a network nor an endpoint group {tenant}:{name} exists")
            net = self.store.get(okey("network", f"{tenant}:{grp['networkName']}"))
        if group:
            g2 = self.store.get(okey("endpointGroup", f"{tenant}:{group}"))
            if g2 is None:
                raise NotFound(f"groupName: endpoint group {tenant}:{group} does not exist")
            if grp is not None and g2 is not grp and g2["groupName"] != grp["groupName"]:
                raise ValidationError(f"groupName: {group} differs from the group named by networkName {name}")
            if g2["networkName"] != net["networkName"]:
                raise ValidationError(f"groupName: group {group} belongs to network {g2['networkName']}, "
                                      f"not {net['networkName']}")
            grp = g2
        return net, grp

    @retry_stale
    def allocate_endpoint(self, endpoint_id: str, body) -> dict:
        req = parse(schema.ENDPOINT, body, endpoint_id)
        with self.store.write_lock():
            existing = self.store.get(f"ep/{endpoint_id}")
            if existing is not None:                # a retried ADD, or what the agent learnt since
                return self._ep_view(self._attach(existing, req, body))
            net, grp = self.resolve_network(req.tenantName, req.networkName, req.groupName)
            if self.store.get(f"host/{req.host}") is None:
                raise NotFound(f"host: host {req.host} is not registered")
            net_key = f"{net['tenantName']}:{net['networkName']}"
            sub = ipam.parse_subnet(net["subnet"])
            space = f"ip/{net_key}"
            gw = frozenset([ipam.ip_int(net["gateway"])] if net["gateway"] else [])
            if req.ipAddress:
                addr = self._requested_ip(req.ipAddress, net, net_key, sub, grp, gw)
                where = ""
            elif grp is not None and grp["ipPool"]:
                lo, hi = ipam.parse_pool(grp["ipPool"])
                addr = self.index.lowest_free(space, lo, hi, extra=gw)
                where = f"ip pool {grp['ipPool']} of group {grp['groupName']}"
            else:
                addr = self.index.lowest_free(space, sub.first, sub.last, self.index.other_pools(net_key), gw)
                where = f"subnet {net['subnet']} of network {net_key}"
            if addr is None:
                raise Conflict(f"ipAddress: no free address left in the {where}")
            ip = ipam.ip_str(addr)
            ip6, sub6 = self._alloc_ip6(req, net, net_key)
            if req.ipv6Address and not ip6:
                raise ValidationError(f"ipv6Address: network {net_key} has no ipv6Subnet")
            mac = self._requested_mac(req.macAddress, net_key) if req.macAddress else ipam.mac_for(ip)
            meta = self.meta("network", net_key)
            rec = {
                "endpointID": endpoint_id,
                "tenantName": net["tenantName"],
                "networkName": net["networkName"],
                "network": net_key,
                "groupName": grp["groupName"] if grp else "",
                "groupKey": f"{grp['tenantName']}:{grp['groupName']}" if grp else "",
                "ipAddress": [ip, ip6],
                "macAddress": mac,
                "prefixLen": sub.prefixlen,
                "gateway": net["gateway"],
                "prefixLen6": sub6.prefixlen if sub6 else 0,
                "gateway6": net.get("ipv6Gateway") or "",
                "encap": net["encap"],
                "pktTag": meta.get("pktTag", 0),
                "mtu": self.underlay_mtu - (VXLAN_OVERHEAD if net["encap"] == "vxlan" else 0),
                "homingHost": req.host,
                "intfName": req.intfName,
                "ifName": req.ifName,
                "containerID": req.containerID,
                "containerName": req.containerName or "",
                "podNamespace": req.podNamespace or "",
                "cniNetwork": req.cniNetwork or "",
                "dockerEndpoint": req.dockerEndpoint or "",
                "labels": list(req.labels or ()),
                "created": self.clock(),
            }
            puts = {f"ep/{endpoint_id}": rec, f"ip/{net_key}/{ip}": {"endpoint": endpoint_id}}
            if ip6:
                puts[f"ip6/{net_key}/{ip6}"] = {"endpoint": endpoint_id}
            self.store.commit(puts)
        log.info("event=endpoint_allocated id=%s network=%s ip=%s ip6=%s host=%s",
                 endpoint_id, net_key, ip, ip6 or "-", req.host)
        return self._ep_view(rec)

    def _alloc_ip6(self, req, net: dict, net_key: str):
        """(address, subnet) of a new endpoint on a dual-stack network, ("", None) on an
        IPv4-only one: the one asked for, else the lowest free over the used set (ip6/ keys
        and the gateway), so the cost follows the endpoints, never the subnet's 2^64."""
        if not net.get("ipv6Subnet"):
            return "", None
        sub6 = ipam.parse_subnet6(net["ipv6Subnet"])
        gw6 = ipam.ip6_int(net["ipv6Gateway"]) if net.get("ipv6Gateway") else None
        if req.ipv6Address:
            text, _, plen = req.ipv6Address.partition("/")
            where = f"the ipv6Subnet {net['ipv6Subnet']} of network {net_key}"
            if plen and int(plen) != sub6.prefixlen:
                raise ValidationError(f"ipv6Address: {req.ipv6Address} has prefix length /{plen}, "
                                      f"{where} has /{sub6.prefixlen}")
            try:
                addr = ipam.ip6_int(text)
            except ValueError as exc:
                raise ValidationError(f"ipv6Address: {exc}")
            if not sub6.first <= addr <= sub6.last:
                raise ValidationError(f"ipv6Address: {text} is outside {where}")
            if addr == gw6:
                raise Conflict(f"ipv6Address: {text} is the ipv6Gateway of network {net_key}")
            if self.index.is_taken(f"ip6/{net_key}", addr):
                canon = ipam.ip6_str(addr)
                owner = (self.store.get(f"ip6/{net_key}/{canon}") or {}).get("endpoint", "?")
                raise Conflict(f"ipv6Address: {canon} is already taken in network {net_key} "
                               f"(endpoint {owner})")
        else:
            addr = self.index.lowest_free(f"ip6/{net_key}", sub6.first, sub6.last,
                                          extra=frozenset([gw6] if gw6 else []))
            if addr is None:
                raise Conflict(f"ipv6Address: no free address left in the ipv6Subnet "
                               f"{net['ipv6Subnet']} of network {net_key}")
        return ipam.ip6_str(addr), sub6

    def _requested_ip(self, text: str, net: dict, net_key: str, sub, grp, gw: frozenset) -> int:
        """The address an endpoint asked for (a CNI runtime's IP / ips), when it may have it."""
        ip_text, _, plen = text.partition("/")
        where = f"the subnet {net['subnet']} of network {net_key}"
        if plen and int(plen) != sub.prefixlen:
            raise ValidationError(f"ipAddress: {text} has prefix length /{plen}, {where} has "
                                  f"/{sub.prefixlen}")
        addr = ipam.ip_int(ip_text)
        if not sub.first <= addr <= sub.last:
            raise ValidationError(f"ipAddress: {ip_text} is outside {where}")
        if grp is not None and grp["ipPool"]:
            lo, hi = ipam.parse_pool(grp["ipPool"])
            if not lo <= addr <= hi:
                raise ValidationError(f"ipAddress: {ip_text} is outside the ip pool {grp['ipPool']} "
                                      f"of group {grp['groupName']}")
        elif any(lo <= addr <= hi for lo, hi in self.index.other_pools(net_key)):
            raise Conflict(f"ipAddress: {ip_text} belongs to a group's ip pool in network {net_key}; "
                           f"join that group to get it")
        if net["gateway"] and addr == ipam.ip_int(net["gateway"]):
            raise Conflict(f"ipAddress: {ip_text} is the gateway of network {net_key}")
        if addr in gw or self.index.is_taken(f"ip/{net_key}", addr):
            owner = (self.store.get(f"ip/{net_key}/{ip_text}") or {}).get("endpoint", "?")
            raise Conflict(f"ipAddress: {ip_text} is already taken in network {net_key} "
                           f"(endpoint {owner})")
        return addr

    def _requested_mac(self, text: str, net_key: str) -> str:
        """A MAC an endpoint asked for: unicast, not zero, not another endpoint's in its network."""
        mac = text.lower()
        if int(mac.split(":")[0], 16) & 1:
            raise ValidationError(f"macAddress: {text} is a multicast address, an endpoint needs "
                                  f"a unicast one")
        if mac == "00:00:00:00:00:00":
            raise ValidationError(f"macAddress: {text} is the zero address")
        for rec in self.store.list("ep/").values():
            if rec["network"] == net_key and rec["macAddress"].lower() == mac:
                raise Conflict(f"macAddress: {text} is already used in network {net_key} "
                               f"(endpoint {rec['endpointID']})")
        return mac

    def _attach(self, rec: dict, req, body) -> dict:
        """Write again what the agent learnt after the attach (container name, labels,
        Docker's endpoint id); anything else must equal what is stored."""
        if req.ipAddress and req.ipAddress.split("/")[0] != rec["ipAddress"][0]:
            raise Conflict(f"ipAddress: endpoint {rec['endpointID']} already has {rec['ipAddress'][0]}")
        if req.ipv6Address:
            have = rec["ipAddress"][1] if len(rec["ipAddress"]) > 1 else ""
            try:
                same = have and ipam.ip6_int(req.ipv6Address.split("/")[0]) == ipam.ip6_int(have)
            except ValueError:
                same = False
            if not same:
                raise Conflict(f"ipv6Address: endpoint {rec['endpointID']} already has "
                               f"{have or 'no IPv6 address'}")
        new = dict(rec)
        for name in schema.ENDPOINT_ATTACHMENT:
            if isinstance(body, dict) and name in body:
                value = getattr(req, name)
                new[name] = list(value) if isinstance(value, tuple) else value
        if new != rec:
            self.store.commit({f"ep/{rec['endpointID']}": new})
            log.info("event=endpoint_attachment id=%s container=%s name=%s", rec["endpointID"],
                     new.get("containerID", ""), new.get("containerName", ""))
        return new

    @retry_stale
    def release_endpoint(self, endpoint_id: str) -> str:
        with self.store.write_lock():
            rec = self.store.get(f"ep/{endpoint_id}")
            if rec is None:
                raise NotFound(f"endpoint {endpoint_id} not found")
            deletes = [f"ep/{endpoint_id}", f"ip/{rec['network']}/{rec['ipAddress'][0]}"]
            ip6 = rec["ipAddress"][1] if len(rec["ipAddress"]) > 1 else ""
            if ip6:
                deletes.append(f"ip6/{rec['network']}/{ip6}")
            self.store.commit({}, deletes)
        log.info("event=endpoint_released id=%s network=%s ip=%s ip6=%s", endpoint_id, rec["network"],
                 rec["ipAddress"][0], ip6 or "-")
        return endpoint_id

    def endpoint(self, ident: str) -> dict:
        """Contiv's lookup: the id, or a substring of the id or container id."""
        rec = self.store.get(f"ep/{ident}")
        if rec is None:
            for r in sorted(self.store.list("ep/").values(), key=lambda r: r["endpointID"]):
                if ident in r["endpointID"] or (r.get("containerID") and ident in r["containerID"]):
                    rec = r
                    break
        if rec is None:
            raise NotFound(f"endpoint {ident} not found")
        return self._ep_view(rec)

    def qos(self, group_key: str) -> dict:
        """The netprofile of an endpoint's group, as the agent applies it."""
        g = self.store.get(okey("endpointGroup", group_key)) if group_key else None
        prof = self.store.get(okey("netprofile", f"{g['tenantName']}:{g['netProfile']}")) \
            if g and g["netProfile"] else None
        if prof is None:
            return {"ingressPolicingRate": 0, "ingressPolicingBurst": 0, "dscp": 0}
        return {"ingressPolicingRate": bandwidth_kbps(prof["bandwidth"]),
                "ingressPolicingBurst": prof["burst"], "dscp": prof["DSCP"]}

    def endpoints_version(self, host: str) -> str:
        """Changes whenever something the agent applies to this host's endpoints changes."""
        import hashlib
        # Endpoints without QoS are left out: a new one gets its QoS at CNI ADD, and counting
        # it made every attach send its host's agent to re-read all its endpoints.
        qos: dict = {}
        items = []
        for e in self.store.list("ep/").values():
            if e["homingHost"] != host:
                continue
            q = qos.get(e["groupKey"])
            if q is None:
                q = qos[e["groupKey"]] = tuple(sorted(self.qos(e["groupKey"]).items()))
            if any(v for _, v in q):
                items.append((e["endpointID"], q))
        items.sort()
        return hashlib.sha1(repr(items).encode()).hexdigest()[:16]

    def _ep_view(self, rec: dict) -> dict:
        v = dict(rec)
        v.update(self.qos(rec["groupKey"]))
        v["key"] = rec["endpointID"]
        v["endpointGroupKey"] = rec["groupKey"]
        v["endpointGroupId"] = self.meta("endpointGroup", rec["groupKey"]).get("id", 0) if rec["groupKey"] else 0
        v["serviceName"] = rec["groupName"]
        host = self.store.get(f"host/{rec['homingHost']}")
        v["vtepIP"] = host["vtepIP"] if host else ""
        v["virtualPort"] = rec["intfName"]
        return v

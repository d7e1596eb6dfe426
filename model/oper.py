"""Derived (oper) data and Contiv's wire shape (key, links, link-sets).

Nothing here is stored: every figure is computed from the desired state at
the moment it is asked for, so it cannot drift from the truth.
"""
from __future__ import annotations

from model import ipam, schema
from model.service import Model


def _link(kind: str, key: str) -> dict:
    return {"type": kind, "key": key}


def wire(model: Model, kind: schema.Kind, obj: dict) -> dict:
    """Contiv's object JSON: key first, config fields (zero values left out,
    as Go's omitempty does), then link-sets and links."""
    out = {"key": schema.key_of(kind, obj)}
    for f in kind.fields:
        v = obj.get(f.name)
        if v in (None, "", 0, [], ()):
            continue
        out[f.name] = list(v) if isinstance(v, tuple) else v
    if kind in (schema.HOST, schema.ENDPOINT):
        return out
    out["link-sets"] = _link_sets(model, kind, obj)
    links = {}
    for name, target in kind.links.items():
        if target is None:
            links[name] = {}
            continue
        tkind, fields = target
        if all(obj.get(f) for f in fields):
            links[name] = _link(tkind, ":".join(obj[f] for f in fields))
        else:
            links[name] = {}
    if kind is schema.ENDPOINT_GROUP:
        for ap in model.objects_of(schema.APP_PROFILE, obj["tenantName"]):
            if obj["groupName"] in ap["endpointGroups"]:
                links["AppProfile"] = _link("appProfile", f"{ap['tenantName']}:{ap['appProfileName']}")
    if kind is schema.RULE:
        g = obj.get("fromEndpointGroup") or obj.get("toEndpointGroup")
        if g:
            links["MatchEndpointGroup"] = _link("endpointGroup", f"{obj['tenantName']}:{g}")
    if links or kind.links:
        out["links"] = links
    return out


def _keyed(kind_name: str, keys) -> dict:
    return {k: _link(kind_name, k) for k in sorted(keys)}


def _link_sets(model: Model, kind: schema.Kind, obj: dict) -> dict:
    t = obj.get("tenantName")
    sets = {}
    if kind is schema.TENANT:
        name = obj["tenantName"]
        for label, k in (("AppProfiles", schema.APP_PROFILE), ("EndpointGroups", schema.ENDPOINT_GROUP),
                         ("NetProfiles", schema.NETPROFILE), ("Networks", schema.NETWORK),
                         ("Policies", schema.POLICY), ("Servicelbs", schema.SERVICE_LB)):
            keys = [schema.key_of(k, o) for o in model.objects_of(k, name)]
            if keys:
                sets[label] = _keyed(k.name, keys)
    elif kind is schema.NETWORK:
        keys = [f"{t}:{g['groupName']}" for g in model.objects_of(schema.ENDPOINT_GROUP, t)
                if g["networkName"] == obj["networkName"]]
        if keys:
            sets["EndpointGroups"] = _keyed("endpointGroup", keys)
        svcs = [f"{t}:{s['serviceName']}" for s in model.objects_of(schema.SERVICE_LB, t)
                if s["networkName"] == obj["networkName"]]
        if svcs:
            sets["Servicelbs"] = _keyed("serviceLB", svcs)
    elif kind is schema.ENDPOINT_GROUP:
        if obj.get("policies"):
            sets["Policies"] = _keyed("policy", [f"{t}:{p}" for p in obj["policies"]])
    elif kind is schema.POLICY:
        groups = [f"{t}:{g['groupName']}" for g in model.objects_of(schema.ENDPOINT_GROUP, t)
                  if obj["policyName"] in g["policies"]]
        rules = [f"{t}:{r['policyName']}:{r['ruleId']}" for r in model.objects_of(schema.RULE, t)
                 if r["policyName"] == obj["policyName"]]
        if groups:
            sets["EndpointGroups"] = _keyed("endpointGroup", groups)
        if rules:
            sets["Rules"] = _keyed("rule", rules)
    elif kind is schema.RULE:
        sets["Policies"] = _keyed("policy", [f"{t}:{obj['policyName']}"])
    elif kind in (schema.APP_PROFILE,):
        if obj.get("endpointGroups"):
            sets["EndpointGroups"] = _keyed("endpointGroup", [f"{t}:{g}" for g in obj["endpointGroups"]])
    elif kind is schema.NETPROFILE:
        groups = [f"{t}:{g['groupName']}" for g in model.objects_of(schema.ENDPOINT_GROUP, t)
                  if g["netProfile"] == obj["profileName"]]
        if groups:
            sets["EndpointGroups"] = _keyed("endpointGroup", groups)
    return sets


# ------------------------------------------------------------------ oper
def _endpoints(model: Model, pred) -> list[dict]:
    eps = [model._ep_view(e) for e in model.store.list("ep/").values() if pred(e)]
    return sorted(eps, key=lambda e: e["endpointID"])


def _ep_brief(e: dict) -> dict:
    keep = ("endpointID", "containerID", "homingHost", "ipAddress", "macAddress", "network",
            "endpointGroupKey", "endpointGroupId", "intfName", "vtepIP", "serviceName")
    return {k: e[k] for k in keep if e.get(k) not in (None, "")}


def network_oper(model: Model, obj: dict) -> dict:
    key = f"{obj['tenantName']}:{obj['networkName']}"
    meta = model.meta("network", key)
    sub = ipam.parse_subnet(obj["subnet"])
    used = {ipam.ip_int(k.rsplit("/", 1)[1]) for k in model.store.keys(f"ip/{key}/")}
    gw = {ipam.ip_int(obj["gateway"])} if obj.get("gateway") else set()
    free = ipam.free_runs(sub.first, sub.last, used | gw)
    eps = _endpoints(model, lambda e: e["network"] == key)
    oper = {
        "pktTag": meta.get("pktTag", 0),
        "numEndpoints": len(eps),
        "allocatedAddressesCount": len(used),
        "allocatedIPAddresses": ipam.ranges_text(used | gw),
        "availableIPAddresses": ipam.runs_text(free),
        "networkTag": obj.get("cfgdTag") or f"{obj['networkName']}.{obj['tenantName']}",
        "netId": meta.get("id", 0),
        "endpoints": [_ep_brief(e) for e in eps],
    }
    if obj.get("ipv6Subnet"):
        # runs of the used set only: a /64's free space is two runs, not 2^64 entries
        sub6 = ipam.parse_subnet6(obj["ipv6Subnet"])
        used6 = {ipam.ip6_int(k.rsplit("/", 1)[1]) for k in model.store.keys(f"ip6/{key}/")}
        gw6 = {ipam.ip6_int(obj["ipv6Gateway"])} if obj.get("ipv6Gateway") else set()
        oper["allocatedIPv6AddressesCount"] = len(used6)
        oper["allocatedIPv6Addresses"] = ipam.runs6_text(ipam.runs(used6 | gw6))
        oper["availableIPv6Addresses"] = ipam.runs6_text(ipam.free_runs(sub6.first, sub6.last,
                                                                          used6 | gw6))
    if obj["encap"] == "vxlan":
        oper["externalPktTag"] = meta.get("pktTag", 0)
    return oper


def group_oper(model: Model, obj: dict) -> dict:
    key = f"{obj['tenantName']}:{obj['groupName']}"
    net = model.store.get(f"obj/network/{obj['tenantName']}:{obj['networkName']}") or {}
    nmeta = model.meta("network", f"{obj['tenantName']}:{obj['networkName']}")
    eps = _endpoints(model, lambda e: e["groupKey"] == key)
    oper = {
        "groupTag": obj.get("cfgdTag") or f"{obj['groupName']}.{obj['tenantName']}",
        "groupId": model.meta("endpointGroup", key).get("id", 0),
        "pktTag": nmeta.get("pktTag", 0),
        "numEndpoints": len(eps),
        "endpoints": [_ep_brief(e) for e in eps],
    }
    if net.get("encap") == "vxlan":
        oper["externalPktTag"] = nmeta.get("pktTag", 0)
    if obj.get("ipPool"):
        lo, hi = ipam.parse_pool(obj["ipPool"])
        used = {ipam.ip_int(e["ipAddress"][0]) for e in eps}
        oper["allocatedIPAddresses"] = ipam.ranges_text(used)
        oper["availableIPAddresses"] = ipam.runs_text(ipam.free_runs(lo, hi, used))
    return oper


def tenant_oper(model: Model, obj: dict) -> dict:
    t = obj["tenantName"]
    nets = model.objects_of(schema.NETWORK, t)
    groups = model.objects_of(schema.ENDPOINT_GROUP, t)
    eps = _endpoints(model, lambda e: e["tenantName"] == t)
    return {
        "vrfId": model.meta("tenant", t).get("id", 0),
        "totalNetworks": len(nets),
        "totalEPGs": len(groups),
        "totalNetprofiles": len(model.objects_of(schema.NETPROFILE, t)),
        "totalAppProfiles": len(model.objects_of(schema.APP_PROFILE, t)),
        "totalPolicies": len(model.objects_of(schema.POLICY, t)),
        "totalEndpoints": len(eps),
        "networks": [dict(network_oper(model, n), networkName=n["networkName"]) for n in nets],
        "endpointGroups": [dict(group_oper(model, g), groupName=g["groupName"]) for g in groups],
        "endpoints": [_ep_brief(e) for e in eps],
    }


def policy_oper(model: Model, obj: dict) -> dict:
    t = obj["tenantName"]
    groups = {f"{t}:{g['groupName']}" for g in model.objects_of(schema.ENDPOINT_GROUP, t)
              if obj["policyName"] in g["policies"]}
    eps = _endpoints(model, lambda e: e["groupKey"] in groups)
    return {"numEndpoints": len(eps), "policyViolations": 0, "endpoints": [_ep_brief(e) for e in eps]}


def global_oper(model: Model, obj: dict) -> dict:
    vlans = sorted(int(k.rsplit("/", 1)[1]) for k in model.store.keys("tag/vlan/"))
    vxlans = sorted(int(k.rsplit("/", 1)[1]) for k in model.store.keys("tag/vxlan/"))
    lo, hi = (int(x) for x in obj["vxlans"].split("-"))
    free = ipam.lowest_free(lo, hi, set(vxlans)) or 0
    return {
        "numNetworks": len(model.objects_of(schema.NETWORK)),
        "vlansInUse": _int_ranges(vlans),
        "vxlansInUse": _int_ranges(vxlans),
        "freeVXLANsStart": free,
        "clusterMode": "netweave",
    }


def service_oper(model: Model, obj: dict) -> dict:
    key = f"{obj['tenantName']}:{obj['serviceName']}"
    provs = [model._ep_view(e) for e in model.providers(obj)]
    return {
        "serviceVip": model.meta("serviceLB", key).get("vip", ""),
        "serviceId": model.meta("serviceLB", key).get("id", 0),
        "numProviders": len(provs),
        "providers": [dict(_ep_brief(e), labels=list(e.get("labels") or ()),
                           containerName=e.get("containerName", "")) for e in provs],
    }


def _int_ranges(nums: list[int]) -> str:
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ipam.runs(nums))


OPER = {
    "network": network_oper,
    "endpointGroup": group_oper,
    "tenant": tenant_oper,
    "policy": policy_oper,
    "global": global_oper,
    "serviceLB": service_oper,
}


def inspect(model: Model, kind: schema.Kind, key: str, extra_oper=None) -> dict:
    if kind is schema.ENDPOINT:
        ep = model.endpoint(key)
        return {"Config": {"key": ep["endpointID"]},
                "Oper": {**ep, **((extra_oper(kind, key) or {}) if extra_oper else {})}}
    if kind is schema.HOST:
        h = model.host(key)
        return {"Config": wire(model, kind, h),
                "Oper": {k: h[k] for k in ("state", "lastHeartbeat", "registered", "numEndpoints")}}
    obj = model.get(kind, key)
    out = {"Config": wire(model, kind, obj)}
    fn = OPER.get(kind.name)
    oper = fn(model, obj) if fn else {}
    if extra_oper:
        oper.update(extra_oper(kind, key) or {})
    if fn or oper:
        out["Oper"] = oper
    return out

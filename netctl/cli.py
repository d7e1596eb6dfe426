"""netctl: the command line over netmaster's REST API, with Contiv's command
tree and flags (long flags work with one dash or two, as Contiv's did).

Exit codes follow Contiv's: 1 usage, 2 the request failed, 3 the server
refused (its message is printed as it wrote it); and netweave's own 4: with
--wait, the change was stored but is not live on every host in time.

`--wait [--timeout S]`, anywhere on the line, makes every write return only
once netmaster says it is live on every host that is up (or names the hosts
that lag).

Credentials: the loopback URL (http://127.0.0.1:9999) needs none. Elsewhere
(https://NETMASTER:10000) `--token` or $NETMASTER_TOKEN, or the token that
`netctl login` saved in ~/.netctl/config.json (0600, per netmaster URL, as
Contiv's netctl kept it), and `--cacert` or $NETMASTER_CACERT to trust
netweave's CA.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import ssl
import sys
import urllib.error
import urllib.request

EXIT_USAGE, EXIT_REQUEST, EXIT_REFUSED, EXIT_NOT_LIVE = 1, 2, 3, 4


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class RequestFailed(Exception):
    pass


CONFIG = os.path.join(os.path.expanduser("~"), ".netctl", "config.json")


def load_config(path: str = CONFIG) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save_config(data: dict, path: str = CONFIG) -> None:
    """The login's token, readable by its owner only."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(path + ".tmp", path)


class Client:
    def __init__(self, base: str, timeout: float = 30, wait: float | None = None,
                 token: str = "", cacert: str = ""):
        # several comma-separated URLs (clustered netmasters): the next is tried when one
        # cannot be reached or answers 503 (cut off from the store)
        self.bases = [b.strip().rstrip("/") for b in base.split(",") if b.strip()] or [base.rstrip("/")]
        self.base = self.bases[0]
        self.wait = wait               # seconds a write may wait to be live (None: no wait)
        self.timeout = timeout if wait is None else timeout + wait
        self.realized = []             # per write with wait: (path, "k/n", [lagging hosts])
        self.token = token
        self.cacert = os.path.abspath(cacert) if cacert else ""
        self.ctx = ssl.create_default_context(cafile=cacert or None) \
            if any(b.startswith("https:") for b in self.bases) else None

    def call(self, method: str, path: str, body=None):
        for i, base in enumerate(self.bases):
            self.base = base
            try:
                return self._call(method, path, body)
            except RequestFailed:
                if i == len(self.bases) - 1:
                    raise
            except Refused as exc:
                if exc.status != 503 or i == len(self.bases) - 1:
                    raise

    def _call(self, method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        write = method in ("POST", "PUT", "DELETE") and self.wait is not None
        url = self.base + path + (f"?wait=true&timeout={self.wait:g}" if write else "")
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            ctx = self.ctx if self.base.startswith("https:") else None
            with urllib.request.urlopen(req, timeout=self.timeout, context=ctx) as resp:
                raw = resp.read()
                if write:
                    lag = resp.headers.get("X-Netweave-Lagging", "")
                    self.realized.append((path, resp.headers.get("X-Netweave-Realized", ""),
                                          [h for h in lag.split(",") if h]))
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                msg = json.loads(raw).get("error") or raw.decode()
            except (ValueError, AttributeError):
                msg = raw.decode(errors="replace").strip() or exc.reason
            raise Refused(exc.code, msg)
        except (urllib.error.URLError, OSError) as exc:
            raise RequestFailed(f"cannot reach netmaster at {self.base}: {getattr(exc, 'reason', exc)}")
        return json.loads(raw) if raw.strip() else None

    def get(self, path):
        return self.call("GET", path)

    def post(self, path, body):
        return self.call("POST", path, body)

    def delete(self, path):
        return self.call("DELETE", path)


# ---------------------------------------------------------------- output
def table(rows: list[list], headers: list[str]) -> str:
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def emit(args, data, rows=None, headers=None, quiet_field=None):
    if getattr(args, "json", False) or rows is None:
        print(json.dumps(data, indent=2, sort_keys=True))
    elif getattr(args, "quiet", False) and quiet_field:
        for item in data:
            print(item.get(quiet_field, ""))
    else:
        print(table(rows, headers))


# ---------------------------------------------------------------- parser
class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def flag(p, short, long, **kw):
    """Add --long and -long (Contiv's CLI took both), and -short if given."""
    names = ([short] if short else []) + [f"--{long}", f"-{long}"]
    p.add_argument(*names, **kw)


def _common(p, tenant=True, ls=False):
    if tenant:
        flag(p, "-t", "tenant", default="default", help="tenant (default: default)")
    if ls:
        flag(p, "-a", "all", action="store_true", help="all tenants")
        flag(p, "-j", "json", action="store_true", help="JSON output")
        flag(p, "-q", "quiet", action="store_true", help="names only")


def build_parser() -> Parser:
    top = Parser(prog="netctl", description="command line for netweave's netmaster (Contiv's netctl commands)",
                 allow_abbrev=False)
    top.add_argument("--netmaster", default=os.environ.get("NETMASTER", "http://127.0.0.1:9999"),
                     help="netmaster URL (default $NETMASTER or http://127.0.0.1:9999)")
    top.add_argument("--token", default=os.environ.get("NETMASTER_TOKEN", ""),
                     help="API token (default $NETMASTER_TOKEN, else the one netctl login saved)")
    top.add_argument("--cacert", default=os.environ.get("NETMASTER_CACERT", ""),
                     help="CA certificate that signed netmaster's (its pki folder's ca.crt; default "
                          "$NETMASTER_CACERT, else the one given to netctl login)")
    sub = top.add_subparsers(dest="cmd", parser_class=Parser)
    sub.required = True

    sub.add_parser("version", help="netmaster's version")

    def group(name, aliases, help_text):
        p = sub.add_parser(name, aliases=aliases, help=help_text, allow_abbrev=False)
        s = p.add_subparsers(dest="sub", parser_class=Parser)
        s.required = True
        return s

    def sp(s, name, aliases=(), **kw):
        return s.add_parser(name, aliases=list(aliases), allow_abbrev=False, **kw)

    # tenant
    s = group("tenant", [], "tenants")
    sp(s, "create").add_argument("name")
    sp(s, "rm", ["delete"]).add_argument("name")
    sp(s, "inspect").add_argument("name")
    p = sp(s, "ls", ["list"]); _common(p, tenant=False, ls=True)

    # network
    s = group("network", ["net"], "networks")
    p = sp(s, "create"); _common(p); p.add_argument("name")
    flag(p, "-n", "nw-type", default="data"); flag(p, "-e", "encap", default="vxlan")
    flag(p, "-p", "pkt-tag", type=int, default=0); flag(p, "-s", "subnet")
    flag(p, "-g", "gateway", default=""); flag(p, None, "subnetv6", default="")
    p.add_argument("--s6", dest="subnetv6"); flag(p, None, "gatewayv6", default="")
    p.add_argument("--g6", dest="gatewayv6"); flag(p, None, "nw-tag", default=""); p.add_argument("--tag", dest="nw_tag")
    for n, a in (("rm", ["delete"]), ("inspect", [])):
        p = sp(s, n, a); _common(p); p.add_argument("name")
    p = sp(s, "ls", ["list"]); _common(p, ls=True)

    # endpoint group
    s = group("group", ["endpointGroup"], "endpoint groups")
    p = sp(s, "create"); _common(p); p.add_argument("network"); p.add_argument("name")
    flag(p, "-p", "policy", action="append", default=[]); flag(p, "-n", "networkprofile", default="")
    flag(p, "-e", "external-contract", action="append", default=[]); flag(p, "-r", "ip-pool", default="")
    flag(p, None, "epg-tag", default=""); p.add_argument("--tag", dest="epg_tag")
    for n, a in (("rm", ["delete"]), ("inspect", [])):
        p = sp(s, n, a); _common(p); p.add_argument("name")
    p = sp(s, "ls", ["list"]); _common(p, ls=True)

    # policy and rules
    s = group("policy", [], "policies and their rules")
    for n, a in (("create", []), ("rm", ["delete"]), ("inspect", [])):
        p = sp(s, n, a); _common(p); p.add_argument("name")
    p = sp(s, "ls", ["list"]); _common(p, ls=True)
    p = sp(s, "rule-add"); _common(p); p.add_argument("policy"); p.add_argument("ruleid")
    flag(p, "-p", "priority", type=int, default=1); flag(p, "-d", "direction", default="in")
    flag(p, "-g", "from-group", default=""); flag(p, "-e", "to-group", default="")
    flag(p, "-n", "from-network", default=""); flag(p, "-o", "to-network", default="")
    flag(p, "-i", "from-ip-address", default=""); flag(p, "-s", "to-ip-address", default="")
    flag(p, "-l", "protocol", default=""); flag(p, "-P", "port", type=int, default=0)
    flag(p, "-j", "action", default="allow")
    flag(p, None, "log", action="store_true", help="log the connections this deny rule drops (netweave)")
    p = sp(s, "rule-rm", ["rule-delete"]); _common(p); p.add_argument("policy"); p.add_argument("ruleid")
    p = sp(s, "rule-ls", ["rule-list"]); _common(p); p.add_argument("policy")
    flag(p, "-j", "json", action="store_true"); flag(p, "-q", "quiet", action="store_true")
    flag(p, None, "stats", action="store_true", help="packets and bytes per rule per host")
    p = sp(s, "log", help="connections denied by rules with enableLogging, oldest first")
    _common(p); flag(p, "-a", "all", action="store_true", help="all tenants")
    flag(p, None, "limit", type=int, default=100, help="the last N entries (default 100)")
    flag(p, "-j", "json", action="store_true")

    # netprofile
    s = group("netprofile", [], "network profiles (bandwidth, DSCP)")
    p = sp(s, "create"); _common(p); p.add_argument("name")
    flag(p, "-b", "bandwidth", default=""); flag(p, "-d", "dscp", type=int, default=0)
    flag(p, "-s", "burst", type=int, default=0)
    for n, a in (("rm", ["delete"]), ("inspect", [])):
        p = sp(s, n, a); _common(p); p.add_argument("name")
    p = sp(s, "ls", ["list"]); _common(p, ls=True)

    # app-profile
    s = group("app-profile", [], "application profiles")
    for n in ("create", "update"):
        p = sp(s, n); _common(p); p.add_argument("name"); flag(p, "-g", "group", default="")
    for n, a in (("rm", ["delete"]), ("group-ls", [])):
        p = sp(s, n, a); _common(p); p.add_argument("name")
    p = sp(s, "ls", ["list"]); _common(p, ls=True)

    # global
    s = group("global", [], "global settings")
    p = sp(s, "info"); flag(p, "-j", "json", action="store_true")
    sp(s, "inspect")
    p = sp(s, "set")
    flag(p, "-f", "fabric-mode", default=None); flag(p, "-v", "vlan-range", default=None)
    flag(p, "-x", "vxlan-range", default=None); flag(p, "-b", "fwd-mode", default=None)
    flag(p, "-a", "arp-mode", default=None); flag(p, "-s", "private-subnet", default="172.19.0.0/16")

    # service load balancer
    s = group("service", [], "service load balancers (a VIP balanced over labelled endpoints)")
    p = sp(s, "create"); _common(p); p.add_argument("name")
    flag(p, "-s", "network", default="", help="the network the VIP belongs to")
    flag(p, "-l", "selector", action="append", default=[], help="key=value, repeatable")
    flag(p, "-p", "port", action="append", default=[], help="svcPort:provPort:protocol, repeatable")
    flag(p, None, "preferred-ip", default="", help="the VIP wanted (default: allocated)")
    p.add_argument("--ip", dest="preferred_ip")
    for n, a in (("rm", ["delete"]), ("inspect", [])):
        p = sp(s, n, a); _common(p); p.add_argument("name")
    p = sp(s, "ls", ["list"]); _common(p, ls=True)

    # endpoint
    s = group("endpoint", ["ep"], "endpoints")
    sp(s, "inspect").add_argument("id")
    p = sp(s, "ls", ["list"]); _common(p, ls=True)

    # trace
    p = sub.add_parser("trace", help="why a packet from an endpoint is delivered or dropped", allow_abbrev=False)
    p.add_argument("src", help="source endpoint id (or its address)")
    p.add_argument("dst", help="destination address or endpoint id")
    flag(p, "-l", "protocol", default="tcp", help="tcp, udp or icmp (default tcp)")
    flag(p, "-P", "port", type=int, default=0, help="destination port for tcp/udp")
    flag(p, None, "live", action="store_true", help="also trace on the real source switch (ofproto/trace)")
    flag(p, "-j", "json", action="store_true")

    # flows
    p = sub.add_parser("flows", help="the flows netmaster wants on a host next to what it holds",
                       allow_abbrev=False)
    p.add_argument("host")
    flag(p, None, "all", action="store_true", help="list every flow, not only the differences")
    flag(p, "-j", "json", action="store_true")

    # host
    s = group("host", [], "registered hosts")
    p = sp(s, "ls", ["list"]); flag(p, "-j", "json", action="store_true"); flag(p, "-q", "quiet", action="store_true")
    sp(s, "inspect").add_argument("name")
    sp(s, "revoke", help="revoke a host's credential (its agent must bootstrap again)").add_argument("name")

    # authentication (Contiv's login; users and their roles)
    p = sub.add_parser("login", help="log in to an https:// netmaster; saves the token", allow_abbrev=False)
    flag(p, "-u", "username", default=os.environ.get("NETMASTER_USER", "admin"))
    flag(p, None, "password-stdin", action="store_true", help="read the password from stdin")
    sub.add_parser("logout", help="forget the saved token of this netmaster")
    sub.add_parser("whoami", help="who netmaster takes you for")
    s = group("user", [], "users and their roles (admin only)")
    for name in ("create", "bind"):
        p = sp(s, name, help="create a user (or change it)" if name == "create" else "change a user's role")
        p.add_argument("name")
        flag(p, "-r", "role", choices=["admin", "ops", "viewer"], default=None if name == "bind" else "viewer",
             required=name == "bind")
        flag(p, "-t", "tenant", action="append", default=[], help="tenant an ops user works in; repeat")
        if name == "create":
            flag(p, None, "password-stdin", action="store_true", help="read the password from stdin")
    p = sp(s, "ls", ["list"]); flag(p, "-j", "json", action="store_true"); flag(p, "-q", "quiet", action="store_true")
    sp(s, "rm", ["delete"]).add_argument("name")
    return top


# ---------------------------------------------------------------- commands
def _check_tenant(c, args):
    if not getattr(args, "all", False):
        c.get(f"/api/v1/tenants/{args.tenant}/")


def _ls(c, args, coll, name_field, headers, row):
    _check_tenant(c, args)
    items = [o for o in c.get(f"/api/v1/{coll}/") or []
             if getattr(args, "all", False) or o.get("tenantName") == args.tenant]
    items.sort(key=lambda o: (o.get("tenantName", ""), o.get(name_field, "")))
    emit(args, items, [row(o) for o in items], headers, name_field)


def _inspect(c, coll, key):
    print(json.dumps(c.get(f"/api/v1/inspect/{coll}/{key}/"), indent=2, sort_keys=True))


def _done(verb, what):
    print(f"{what} {verb}")


def run(args, c: Client):
    cmd, sub = args.cmd, getattr(args, "sub", None)
    cmd = {"net": "network", "endpointGroup": "group", "ep": "endpoint"}.get(cmd, cmd)
    sub = {"delete": "rm", "list": "ls", "rule-delete": "rule-rm", "rule-list": "rule-ls"}.get(sub, sub)
    t = getattr(args, "tenant", "default")
    if cmd == "version":
        print(json.dumps(c.get("/version"), indent=2))
    elif cmd == "tenant":
        if sub == "create":
            c.post(f"/api/v1/tenants/{args.name}/", {"tenantName": args.name}); _done("created", f"tenant {args.name}")
        elif sub == "rm":
            c.delete(f"/api/v1/tenants/{args.name}/"); _done("deleted", f"tenant {args.name}")
        elif sub == "inspect":
            _inspect(c, "tenants", args.name)
        else:
            items = sorted(c.get("/api/v1/tenants/") or [], key=lambda o: o["tenantName"])
            emit(args, items, [[o["tenantName"], o.get("defaultNetwork", "")] for o in items],
                 ["Name", "Default-Network"], "tenantName")
    elif cmd == "network":
        key = f"{t}:{args.name}" if sub != "ls" else None
        if sub == "create":
            if not args.subnet:
                print("netctl: error: network create needs --subnet", file=sys.stderr)
                return EXIT_USAGE
            body = {"tenantName": t, "networkName": args.name, "nwType": args.nw_type, "encap": args.encap,
                    "subnet": args.subnet, "gateway": args.gateway, "pktTag": args.pkt_tag,
                    "ipv6Subnet": args.subnetv6 or "", "ipv6Gateway": args.gatewayv6 or "",
                    "cfgdTag": args.nw_tag or ""}
            c.post(f"/api/v1/networks/{key}/", body); _done("created", f"network {key}")
        elif sub == "rm":
            c.delete(f"/api/v1/networks/{key}/"); _done("deleted", f"network {key}")
        elif sub == "inspect":
            _inspect(c, "networks", key)
        else:
            # the IPv6 columns only when a listed network has an ipv6Subnet
            _check_tenant(c, args)
            nets = [o for o in c.get("/api/v1/networks/") or [] if args.all or o.get("tenantName") == args.tenant]
            v6 = any(o.get("ipv6Subnet") for o in nets)
            _ls(c, args, "networks", "networkName", ["Tenant", "Network", "Nw-Type", "Encap", "Pkt-Tag", "Subnet", "Gateway"]
                + (["IPv6-Subnet", "IPv6-Gateway"] if v6 else []),
                lambda o: [o["tenantName"], o["networkName"], o.get("nwType", ""), o.get("encap", ""),
                           o.get("pktTag", ""), o.get("subnet", ""), o.get("gateway", "")]
                + ([o.get("ipv6Subnet", ""), o.get("ipv6Gateway", "")] if v6 else []))
    elif cmd == "group":
        key = f"{t}:{args.name}" if sub != "ls" else None
        if sub == "create":
            body = {"tenantName": t, "groupName": args.name, "networkName": args.network,
                    "policies": args.policy, "netProfile": args.networkprofile,
                    "extContractsGrps": args.external_contract, "ipPool": args.ip_pool,
                    "cfgdTag": args.epg_tag or ""}
            c.post(f"/api/v1/endpointGroups/{key}/", body); _done("created", f"group {key}")
        elif sub == "rm":
            c.delete(f"/api/v1/endpointGroups/{key}/"); _done("deleted", f"group {key}")
        elif sub == "inspect":
            _inspect(c, "endpointGroups", key)
        else:
            _ls(c, args, "endpointGroups", "groupName", ["Tenant", "Group", "Network", "IP Pool", "Policies", "Network profile"],
                lambda o: [o["tenantName"], o["groupName"], o["networkName"], o.get("ipPool", ""),
                           ",".join(o.get("policies", [])), o.get("netProfile", "")])
    elif cmd == "policy":
        return run_policy(args, c, sub, t)
    elif cmd == "netprofile":
        key = f"{t}:{args.name}" if sub != "ls" else None
        if sub == "create":
            body = {"tenantName": t, "profileName": args.name, "bandwidth": args.bandwidth,
                    "DSCP": args.dscp, "burst": args.burst}
            c.post(f"/api/v1/netprofiles/{key}/", body); _done("created", f"netprofile {key}")
        elif sub == "rm":
            c.delete(f"/api/v1/netprofiles/{key}/"); _done("deleted", f"netprofile {key}")
        elif sub == "inspect":
            _inspect(c, "netprofiles", key)
        else:
            _ls(c, args, "netprofiles", "profileName", ["Tenant", "Name", "Bandwidth", "DSCP", "Burst"],
                lambda o: [o["tenantName"], o["profileName"], o.get("bandwidth", ""), o.get("DSCP", 0), o.get("burst", 0)])
    elif cmd == "app-profile":
        key = f"{t}:{args.name}" if sub != "ls" else None
        if sub in ("create", "update"):
            groups = [g for g in args.group.split(",") if g]
            c.post(f"/api/v1/appProfiles/{key}/", {"tenantName": t, "appProfileName": args.name,
                                                   "endpointGroups": groups})
            _done("updated" if sub == "update" else "created", f"app-profile {key}")
        elif sub == "rm":
            c.delete(f"/api/v1/appProfiles/{key}/"); _done("deleted", f"app-profile {key}")
        elif sub == "group-ls":
            ap = c.get(f"/api/v1/appProfiles/{key}/")
            print(table([[g] for g in ap.get("endpointGroups", [])], ["Group"]))
        else:
            _ls(c, args, "appProfiles", "appProfileName", ["Tenant", "Name", "Groups"],
                lambda o: [o["tenantName"], o["appProfileName"], ",".join(o.get("endpointGroups", []))])
    elif cmd == "global":
        if sub == "inspect":
            _inspect(c, "globals", "global")
        elif sub == "info":
            g = c.get("/api/v1/globals/")
            emit(args, g, None if args.json else [[o.get("fwdMode", ""), o.get("arpMode", ""), o.get("vlans", ""),
                                                 o.get("vxlans", ""), o.get("pvtSubnet", "")] for o in g],
                 ["Fwd-Mode", "ARP-Mode", "Vlans", "Vxlans", "Private-Subnet"])
            if not args.json:
                cl = (c.get("/info") or {}).get("cluster") or {}
                if cl:
                    members = ", ".join(m.get("id", "") for m in cl.get("members", []))
                    print(f"\nLeader: {cl.get('leader') or '(none)'}  generation {cl.get('generation', 0)}"
                          f"\nMembers: {members}")
        else:
            g = c.get("/api/v1/globals/global/")
            for field, val in (("networkInfraType", args.fabric_mode), ("vlans", args.vlan_range),
                               ("vxlans", args.vxlan_range), ("fwdMode", args.fwd_mode),
                               ("arpMode", args.arp_mode), ("pvtSubnet", args.private_subnet)):
                if val is not None:
                    g[field] = val
            c.post(f"/api/v1/globals/{g.get('name', 'global')}/", g); _done("updated", "global")
    elif cmd == "service":
        key = f"{t}:{args.name}" if sub != "ls" else None
        if sub == "create":
            if not args.network:
                print("netctl: error: service create needs --network", file=sys.stderr)
                return EXIT_USAGE
            body = {"tenantName": t, "serviceName": args.name, "networkName": args.network,
                    "selectors": args.selector, "ports": args.port, "ipAddress": args.preferred_ip or ""}
            c.post(f"/api/v1/serviceLBs/{key}/", body); _done("created", f"service {key}")
        elif sub == "rm":
            c.delete(f"/api/v1/serviceLBs/{key}/"); _done("deleted", f"service {key}")
        elif sub == "inspect":
            _inspect(c, "serviceLBs", key)
        else:
            def row(o):
                oper = c.get(f"/api/v1/inspect/serviceLBs/{o['tenantName']}:{o['serviceName']}/").get("Oper", {})
                return [o["tenantName"], o["serviceName"], o["networkName"], oper.get("serviceVip", ""),
                        ",".join(o.get("ports", [])), ",".join(o.get("selectors", [])),
                        oper.get("numProviders", 0)]
            _ls(c, args, "serviceLBs", "serviceName",
                ["Tenant", "Service", "Network", "VIP", "Ports", "Selectors", "Providers"], row)
    elif cmd == "endpoint":
        if sub == "inspect":
            _inspect(c, "endpoints", args.id)
        else:
            items = [e for e in c.get("/api/v1/endpoints/") or [] if args.all or e["tenantName"] == t]
            items.sort(key=lambda e: e["endpointID"])
            v6 = any((e["ipAddress"] + ["", ""])[1] for e in items)
            emit(args, items, [[e["endpointID"], e["tenantName"], e["networkName"], e.get("groupName", ""),
                                e["ipAddress"][0]] + ([(e["ipAddress"] + ["", ""])[1] or "-"] if v6 else [])
                               + [e["macAddress"], e["homingHost"], e.get("containerID", "")[:12],
                                  e.get("containerName", "")]
                               for e in items],
                 ["ID", "Tenant", "Network", "Group", "IP"] + (["IPv6"] if v6 else [])
                 + ["MAC", "Host", "Container", "Name"], "endpointID")
    elif cmd == "trace":
        return run_trace(args, c)
    elif cmd == "flows":
        return run_flows(args, c)
    elif cmd in ("login", "logout", "whoami", "user"):
        return run_auth(args, c, cmd, sub)
    elif cmd == "host":
        if sub == "inspect":
            _inspect(c, "hosts", args.name)
        elif sub == "revoke":
            c.delete(f"/api/v1/auth_proxy/host_credentials/{args.name}/")
            _done("revoked", f"credential of host {args.name}")
        else:
            items = sorted(c.get("/api/v1/hosts/") or [], key=lambda h: h["hostLabel"])
            emit(args, items, [[h["hostLabel"], h["state"], h["vtepIP"], h["dpid"], h.get("uplink", ""),
                                h.get("numEndpoints", 0)] for h in items],
                 ["Host", "State", "VTEP-IP", "Datapath-ID", "Uplink", "Endpoints"], "hostLabel")
    return 0


def _password(args, prompt="Password: ") -> str:
    if getattr(args, "password_stdin", False) or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    return getpass.getpass(prompt)


def run_auth(args, c, cmd, sub):
    if cmd == "login":
        out = c.post("/api/v1/auth_proxy/login/", {"username": args.username, "password": _password(args)})
        conf = load_config()
        conf.setdefault("netmasters", {})[c.base] = {"token": out["token"],
                                                     "cacert": c.cacert,
                                                     "username": out["username"], "expires": out["expires"]}
        save_config(conf)
        print(f"logged in to {c.base} as {out['username']} (role {out['role']}) until {out['expires']}")
    elif cmd == "logout":
        conf = load_config()
        conf.get("netmasters", {}).pop(c.base, None)
        save_config(conf)
        print(f"logged out of {c.base}")
    elif cmd == "whoami":
        me = c.get("/api/v1/auth_proxy/whoami/")
        of = f" of {','.join(me['tenants'])}" if me.get("tenants") else ""
        print(f"{me['principal']}" + (f" (role {me['role']}{of})" if me.get("role") else ""))
    elif sub in ("create", "bind"):
        body = {"role": args.role, "tenants": args.tenant}
        if sub == "create":
            body["password"] = _password(args, f"Password for {args.name}: ")
        c.post(f"/api/v1/auth_proxy/local_users/{args.name}/", body)
        _done("created" if sub == "create" else "bound to role " + args.role, f"user {args.name}")
    elif sub == "rm":
        c.delete(f"/api/v1/auth_proxy/local_users/{args.name}/"); _done("deleted", f"user {args.name}")
    else:
        items = c.get("/api/v1/auth_proxy/local_users/") or []
        emit(args, items, [[u["username"], u["role"], ",".join(u["tenants"])] for u in items],
             ["User", "Role", "Tenants"], "username")
    return 0


def run_policy(args, c, sub, t):
    if sub in ("create", "rm", "inspect"):
        key = f"{t}:{args.name}"
        if sub == "create":
            c.post(f"/api/v1/policys/{key}/", {"tenantName": t, "policyName": args.name}); _done("created", f"policy {key}")
        elif sub == "rm":
            c.delete(f"/api/v1/policys/{key}/"); _done("deleted", f"policy {key}")
        else:
            _inspect(c, "policys", key)
    elif sub == "ls":
        _ls(c, args, "policys", "policyName", ["Tenant", "Policy"], lambda o: [o["tenantName"], o["policyName"]])
    elif sub == "rule-add":
        key = f"{t}:{args.policy}:{args.ruleid}"
        body = {"tenantName": t, "policyName": args.policy, "ruleId": args.ruleid, "priority": args.priority,
                "direction": args.direction, "fromEndpointGroup": args.from_group, "toEndpointGroup": args.to_group,
                "fromNetwork": args.from_network, "toNetwork": args.to_network,
                "fromIpAddress": args.from_ip_address, "toIpAddress": args.to_ip_address,
                "protocol": args.protocol, "port": args.port, "action": args.action}
        if args.log:
            body["enableLogging"] = True        # sent only when asked: the body stays Contiv's otherwise
        c.post(f"/api/v1/rules/{key}/", body); _done("added", f"rule {key}")
    elif sub == "rule-rm":
        key = f"{t}:{args.policy}:{args.ruleid}"
        c.delete(f"/api/v1/rules/{key}/"); _done("deleted", f"rule {key}")
    elif sub == "log":
        from urllib.parse import urlencode
        q = {"limit": args.limit} if args.all else {"tenant": t, "limit": args.limit}
        entries = c.get("/api/v1/policylog/?" + urlencode(q)) or []
        rows = [[e["time"], e["host"], e["rule"] if args.all else f"{e['policy']}:{e['ruleId']}",
                 _addr(e["src"], e["srcEndpoint"]), _addr(e["dst"], e["dstEndpoint"]), e["protocol"],
                 e["port"] if e["protocol"] in ("tcp", "udp") else ""] for e in entries]
        emit(args, entries, rows, ["Time", "Host", "Rule", "Source", "Destination", "Protocol", "Port"])
    else:
        c.get(f"/api/v1/tenants/{t}/")
        c.get(f"/api/v1/policys/{t}:{args.policy}/")
        rules = [r for r in c.get("/api/v1/rules/") or []
                 if r["tenantName"] == t and r["policyName"] == args.policy]
        rules.sort(key=lambda r: (-r.get("priority", 1), r["ruleId"]))
        stats = {}
        if args.stats:
            for r in rules:
                ins = c.get(f"/api/v1/inspect/rules/{t}:{args.policy}:{r['ruleId']}/")
                stats[r["ruleId"]] = (ins.get("Oper") or {})
        if args.json:
            print(json.dumps([dict(r, stats=stats.get(r["ruleId"])) if args.stats else r for r in rules],
                             indent=2, sort_keys=True))
            return 0
        if args.quiet:
            for r in rules:
                print(r["ruleId"])
            return 0
        for title, direction, peer in (("Incoming Rules:", "in", "from"), ("Outgoing Rules:", "out", "to")):
            rows = []
            for r in (r for r in rules if r["direction"] == direction):
                row = [r["ruleId"], r.get("priority", 1), r.get(f"{peer}EndpointGroup", ""),
                       r.get(f"{peer}Network", ""), r.get(f"{peer}IpAddress", ""), r.get("protocol", ""),
                       r.get("port", ""), r["action"]]
                if args.stats:
                    s = stats.get(r["ruleId"], {})
                    row += [s.get("packets", 0), s.get("bytes", 0)]
                rows.append(row)
            headers = ["Rule", "Priority", f"{peer.capitalize()} EndpointGroup", f"{peer.capitalize()} Network",
                       f"{peer.capitalize()} IpAddress", "Protocol", "Port", "Action"]
            if args.stats:
                headers += ["Packets", "Bytes"]
            print(title)
            print(table(rows, headers))
    return 0


def _addr(ip: str, endpoint: str) -> str:
    return f"{ip} ({endpoint})" if endpoint else ip


def run_trace(args, c) -> int:
    from urllib.parse import urlencode
    q = {"from": args.src, "to": args.dst, "protocol": args.protocol, "port": args.port}
    if args.live:
        q["live"] = "1"
    t = c.get("/api/v1/trace/?" + urlencode(q))
    if args.json:
        print(json.dumps(t, indent=2, sort_keys=True))
        return 0
    pkt = t["packet"]
    what = f"{args.protocol} {pkt['ip_src']} -> {pkt['ip_dst']}" + (f":{args.port}" if args.port else "")
    print(f"trace {what} from {t['from']['endpoint']} on {t['from']['host']} (a new connection)")
    for hop in t["hops"]:
        print(f"\n{hop['host']}:")
        for st in hop["steps"]:
            print(f"  {st['table']:>3} {st['tableName']:<15} {st['owner']}")
        for d in hop["drops"]:
            print(f"      x {d}")
    d = t.get("decidedBy") or {}
    if t["to"].get("service"):
        got = [x["endpoint"] for x in t.get("delivered", []) if x.get("endpoint")]
        print(f"\nservice {t['to']['service']}: provider {', '.join(got) if got else 'none'}")
    print(f"\nverdict: {t['verdict'].upper()}", end="")
    if d:
        print(f"  (by {d.get('by')} on {d.get('host')}: {d.get('why')})")
    else:
        print()
    live = t.get("live")
    if live:
        print(f"source switch {live['host']}: simulated {live['simulated'].upper()}, "
              f"ofproto/trace {live['verdict'].upper()}: {'AGREE' if live['agrees'] else 'DISAGREE'}")
        for line in live.get("summary", []):
            print(f"  {line}")
    return 0


def run_flows(args, c) -> int:
    d = c.get(f"/api/v1/flows/{args.host}/")
    if args.json:
        print(json.dumps(d, indent=2, sort_keys=True))
        return 0
    if not d["connected"]:
        print(f"{args.host}: switch not connected; netmaster wants {len(d['desired'])} flows")
        for f in d["desired"] if args.all else []:
            print(f"  {f}")
        return 0
    diff = d["diff"]
    print(f"{args.host}: {len(d['desired'])} flows wanted, {len(d['held'])} held; "
          f"{diff['same']} identical, {len(diff['missing'])} missing, {len(diff['extra'])} extra, "
          f"{len(diff['changed'])} changed")
    for title, key, mark in (("missing on the switch", "missing", "+"), ("extra on the switch", "extra", "-"),
                             ("different on the switch", "changed", "~")):
        if diff[key]:
            print(f"{title}:")
            for f in diff[key]:
                print(f"  {mark} {f}")
    if args.all:
        print("held:")
        for f in d["held"]:
            print(f"  {f}")
    return 0


def _wait_flags(argv: list) -> tuple[list, float | None]:
    """Take --wait and --timeout S (one dash or two) out of the line, wherever they stand."""
    rest, wait, timeout, i = [], False, 10.0, 0
    while i < len(argv):
        a = argv[i]
        name, _, val = a.lstrip("-").partition("=")
        if a.startswith("-") and name == "wait":
            wait = True
        elif a.startswith("-") and name == "timeout":
            if not val:
                i += 1
                val = argv[i] if i < len(argv) else ""
            try:
                timeout = float(val)
            except ValueError:
                print(f"netctl: error: --timeout: {val!r} is not a number of seconds", file=sys.stderr)
                sys.exit(EXIT_USAGE)
        else:
            rest.append(a)
        i += 1
    return rest, (timeout if wait else None)


def main(argv=None) -> int:
    argv, wait = _wait_flags(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    saved = load_config().get("netmasters", {}).get(args.netmaster.rstrip("/"), {})
    c = Client(args.netmaster, wait=wait, token=args.token or saved.get("token", ""),
               cacert=args.cacert or saved.get("cacert", ""))
    try:
        rc = run(args, c) or 0
        if rc == 0 and wait is not None:
            lagging = sorted({h for _, _, lag in c.realized for h in lag})
            if lagging:
                print(f"Error: stored, but not live on {', '.join(lagging)} after {wait:g} s",
                      file=sys.stderr)
                return EXIT_NOT_LIVE
            if c.realized:
                print(f"live on {c.realized[-1][1] or '?'} hosts")
        return rc
    except Refused as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except RequestFailed as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_REQUEST


if __name__ == "__main__":
    sys.exit(main())

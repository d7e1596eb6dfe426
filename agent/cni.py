"""netweave-cni's work: CNI ADD, CHECK, DEL, GC and STATUS of containers on br-int.

Spec versions 0.4.0, 1.0.0 and 1.1.0 (the configuration's ``cniVersion``; a configuration
that carries only a list ``cniVersions`` gets the highest of them netweave speaks). GC and
STATUS are CNI 1.1.0's and need a 1.1.0 configuration.

The runtime executes ``agent.cni_plugin`` (the ``netweave-cni`` console script), which hands
the request to netplugin, whose OVSDB connection is already open (``agent.cni_server``); both
then run ``run()`` below. ``python -m agent.cni`` does the same work in its own process.

Run on the host whose OVS will carry the endpoint (for a simulated host that is a network
namespace: ``ip netns exec HOST netweave-cni``). ``CNI_NETNS`` is the container's namespace
(a path such as /var/run/netns/NAME).

Network configuration (stdin)::

    {"cniVersion": "1.0.0", "name": "netweave", "type": "netweave",
     "netmaster": "http://127.0.0.1:9999",   # optional, see below
     "tenant": "default", "network": "contiv-net", "group": "",
     "ovsdb": "unix:/var/run/openvswitch/db.sock", "bridge": "br-int",
     "hostLabel": "host1",                    # optional, see below
     "runtimeConfig": {"ips": ["10.1.2.9/24"], "mac": "02:00:00:00:00:09"}}  # optional

``runtimeConfig`` carries what a runtime asks for through the capabilities ``ips`` and ``mac``
(at most one address per family: an IPv4 one, and an IPv6 one on a network with an
ipv6Subnet). ``CNI_ARGS`` is read too: ``IP`` and ``MAC`` (the same requests, as podman's --ip
and --mac-address send them, ``IP`` holding both families joined by ',' when both are asked
for; runtimeConfig wins when both are given), ``K8S_POD_NAME`` and ``K8S_POD_NAMESPACE`` (kept in the endpoint
record as containerName and podNamespace), ``K8S_POD_INFRA_CONTAINER_ID``, ``K8S_POD_UID``,
``LABELS`` (netweave's: ``key=value`` labels joined by ``,``, kept in the endpoint record,
where a service's selectors find its providers);
any other key is an error unless ``IgnoreUnknown=1``. The configuration's ``name`` is kept in
the record as cniNetwork: GC releases this host's endpoints of that name that are not in
``cni.dev/valid-attachments``.

netweave-cni is meant to come first in a chain (portmap, bandwidth, tuning after it): its ADD
result is their prevResult.

``hostLabel`` and ``netmaster`` may be left out: netplugin records both in this host's OVSDB
(Open_vSwitch external_ids ``netweave-host-label`` / ``netweave-netmaster``) and the plugin
reads them from there; the last fallbacks are the hostname and http://127.0.0.1:9999.
``network`` may also name an endpoint group of the tenant (Contiv's form). ``netpluginSocket``
(optional) is where netplugin takes requests, by default netweave-cni.sock beside the OVSDB socket.
``portFlowsTimeout`` (optional, seconds, default 5, 0 for none): ADD returns once netmaster's
flows for the new port are on the host's switch (its in_port flows, which come in one bundle
with its delivery flows), waiting at most this long, as OVN's ovn-installed makes a CNI wait.
A container that sends at once (its first ARP) would otherwise see that packet dropped and the
kernel retry only a second later. Not waited for when the bridge has no connected controller;
a wait that runs out logs ``event=port_flows_late`` and the ADD still succeeds.

Errors go to stdout as CNI error JSON with exit code 1. Codes: the spec's 1-11, and
  100 netmaster refused the request            101 unknown tenant, network or group
  102 no free address in the network's subnet  103 Open vSwitch could not plug the port
  104 link setup (veth, address, route) failed 105 CHECK found the endpoint wrong
  106 the requested IP or MAC cannot be given (outside the subnet, the gateway, taken)
  999 unexpected internal error
STATUS answers 50 (the spec's "plugin not available") when it could not serve an ADD.
Every ADD failure is rolled back: no veth, no OVS port, no address left allocated.
Logs go to stderr (level from NETWEAVE_CNI_LOG_LEVEL, default WARNING).
"""
import json
import logging
import os
import socket
import subprocess
import sys

from agent import netlink, ofquery
from agent import netmaster_client as nmc

LOG = logging.getLogger("netweave-cni")

CNI_VERSION = "1.1.0"                       # the newest spec version spoken here
SUPPORTED_VERSIONS = ["0.4.0", "1.0.0", "1.1.0"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# CNI_ARGS keys understood; others need IgnoreUnknown=1 (the convention of the reference plugins)
KNOWN_ARGS = {"IgnoreUnknown", "K8S_POD_NAME", "K8S_POD_NAMESPACE", "K8S_POD_INFRA_CONTAINER_ID",
              "K8S_POD_UID", "IP", "MAC", "LABELS"}
DEFAULT_OVSDB = "unix:/var/run/openvswitch/db.sock"
PORT_FLOWS_TIMEOUT = 5.0                  # seconds ADD waits for the new port's flows at most

# CNI 1.0.0 well-known error codes
E_INCOMPATIBLE_VERSION = 1
E_UNSUPPORTED_FIELD = 2
E_CONTAINER_UNKNOWN = 3
E_INVALID_ENV = 4
E_IO = 5
E_DECODE = 6
E_INVALID_CONFIG = 7
E_TRY_AGAIN = 11
E_NOT_AVAILABLE = 50            # CNI 1.1 STATUS: cannot serve ADD now
# netweave-specific
E_NETMASTER_REFUSED = 100
E_UNKNOWN_NETWORK = 101
E_POOL_EXHAUSTED = 102
E_OVS = 103
E_LINK = 104
E_CHECK_FAILED = 105
E_ADDRESS_REFUSED = 106
E_INTERNAL = 999


class CniError(Exception):
    def __init__(self, code, msg, details=""):
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, version=CNI_VERSION):
        return {"cniVersion": version, "code": self.code, "msg": self.msg,
                "details": self.details}


# -- small helpers ---------------------------------------------------------------------------
def sh(cmd, netns=None, check=True):
    """Run an iproute2/ethtool command, in the container netns when ``netns`` is a path."""
    if netns:
        cmd = ["nsenter", "--net=" + netns] + cmd
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and res.returncode != 0:
        raise CniError(E_LINK, "command failed: %s" % " ".join(cmd),
                       (res.stderr or res.stdout).strip())
    return res


def link_info(name, netns=None):
    res = sh(["ip", "-j", "-d", "link", "show", "dev", name], netns, check=False)
    if res.returncode != 0:
        return None
    try:
        return json.loads(res.stdout)[0]
    except (ValueError, IndexError):
        return None


def link_addrs(name, netns=None):
    """The interface's IPv4 and global IPv6 addresses, addr/len (not the link-local)."""
    res = sh(["ip", "-j", "addr", "show", "dev", name], netns, check=False)
    if res.returncode != 0:
        return []
    try:
        info = json.loads(res.stdout)[0]
    except (ValueError, IndexError):
        return []
    return ["%s/%s" % (a["local"], a["prefixlen"]) for a in info.get("addr_info", [])
            if a.get("family") == "inet" or (a.get("family") == "inet6" and a.get("scope") == "global")]


def default_routes(netns, family="-4"):
    res = sh(["ip", "-j", family, "route", "show", "default"], netns, check=False)
    try:
        return json.loads(res.stdout) if res.returncode == 0 else []
    except ValueError:
        return []


def read_config(stream):
    raw = stream.read()
    try:
        conf = json.loads(raw)
    except ValueError as e:
        raise CniError(E_DECODE, "network configuration on stdin is not valid JSON", str(e))
    if not isinstance(conf, dict):
        raise CniError(E_INVALID_CONFIG, "network configuration must be a JSON object")
    version = conf.get("cniVersion")
    listed = conf.get("cniVersions")
    if not version and isinstance(listed, list) and listed:
        # a configuration list's CNI 1.1 form: the highest version both sides speak
        common = [v for v in SUPPORTED_VERSIONS if v in listed]
        if not common:
            raise CniError(E_INCOMPATIBLE_VERSION,
                           "none of cniVersions %s is supported; netweave speaks %s" %
                           (", ".join(map(str, listed)), ", ".join(SUPPORTED_VERSIONS)))
        version = conf["cniVersion"] = common[-1]
    if not version:
        raise CniError(E_INVALID_CONFIG, "network configuration lacks cniVersion")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(E_INCOMPATIBLE_VERSION,
                       "cniVersion %s is not supported; use one of %s" %
                       (version, ", ".join(SUPPORTED_VERSIONS)))
    for key in ("name", "tenant", "network", "group", "netmaster", "ovsdb", "bridge",
                "hostLabel", "netpluginSocket"):
        if key in conf and not isinstance(conf[key], str):
            raise CniError(E_INVALID_CONFIG, "network configuration field %r must be a string"
                           % key)
    wait = conf.get("portFlowsTimeout", PORT_FLOWS_TIMEOUT)
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= 600:
        raise CniError(E_INVALID_CONFIG, "network configuration field 'portFlowsTimeout' must be "
                       "a number of seconds from 0 to 600, got %r" % (wait,))
    rc = conf.get("runtimeConfig")
    if rc is not None and not isinstance(rc, dict):
        raise CniError(E_INVALID_CONFIG, "runtimeConfig must be a JSON object")
    return conf


def version_at_least(version, wanted):
    return tuple(int(x) for x in version.split(".")) >= tuple(int(x) for x in wanted.split("."))


def ip_family(text):
    """4 or 6 for an address with an optional /len (as CNI_ARGS IP and runtimeConfig ips carry
    it), 0 when it is neither."""
    import ipaddress
    addr, _, plen = text.partition("/")
    try:
        family = ipaddress.ip_address(addr).version
    except ValueError:
        return 0
    if plen and not (plen.isdigit() and 0 <= int(plen) <= (32 if family == 4 else 128)):
        return 0
    return family


def valid_ip(text):
    """An IPv4 address with an optional /len."""
    return ip_family(text) == 4


def split_families(texts, what):
    """(ipv4, ipv6) from a list of addresses, at most one of each family."""
    got = {4: "", 6: ""}
    for t in texts:
        fam = ip_family(t)
        if not fam:
            raise CniError(E_INVALID_ENV if what.startswith("CNI_ARGS") else E_INVALID_CONFIG,
                           "%s: %s is not an IPv4 or IPv6 address (addr or addr/len)" % (what, t))
        if got[fam]:
            raise CniError(E_INVALID_ENV if what.startswith("CNI_ARGS") else E_INVALID_CONFIG,
                           "%s asks for two IPv%d addresses (%s, %s); netweave gives one of each "
                           "family per interface" % (what, fam, got[fam], t))
        got[fam] = t
    return got[4], got[6]


def valid_mac(text):
    parts = text.split(":")
    return len(parts) == 6 and all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p)
                                   for p in parts)


def parse_cni_args(text):
    """CNI_ARGS ``K=V;K=V`` as a dict; unknown keys refused unless IgnoreUnknown is true."""
    args = {}
    for pair in (text or "").split(";"):
        if not pair:
            continue
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise CniError(E_INVALID_ENV, "CNI_ARGS: %r is not KEY=VALUE" % pair)
        args[key] = value
    ignore = args.get("IgnoreUnknown", "").lower() in ("1", "true")
    unknown = sorted(k for k in args if k not in KNOWN_ARGS)
    if unknown and not ignore:
        raise CniError(E_INVALID_ENV, "CNI_ARGS: unknown argument(s) %s (netweave knows %s; "
                       "add IgnoreUnknown=1 to pass others)" %
                       (", ".join(unknown), ", ".join(sorted(KNOWN_ARGS))))
    ip = args.get("IP", "")
    if ip:
        split_families(ip.split(","), "CNI_ARGS: IP=%s" % ip)
    labels = [x for x in args.get("LABELS", "").split(",") if x]
    for label in labels:
        k, eq, v = label.partition("=")
        if not eq or not k or not v or "=" in v:
            raise CniError(E_INVALID_ENV, "CNI_ARGS: LABELS=%s: %r is not key=value (labels are "
                           "key=value joined by ',')" % (args["LABELS"], label))
    mac = args.get("MAC", "")
    if mac and not valid_mac(mac):
        raise CniError(E_INVALID_ENV, "CNI_ARGS: MAC=%s is not a MAC address (six hex pairs "
                       "joined by ':')" % mac)
    return args


def requested_addresses(conf, args):
    """(ip, ip6, mac) the runtime asks for: runtimeConfig ips/mac, else CNI_ARGS IP/MAC."""
    rc = conf.get("runtimeConfig") or {}
    ip, ip6 = split_families([x for x in args.get("IP", "").split(",") if x], "CNI_ARGS IP")
    mac = args.get("MAC", "")
    ips = rc.get("ips")
    if ips is not None:
        if not isinstance(ips, list) or not all(isinstance(i, str) for i in ips):
            raise CniError(E_INVALID_CONFIG, "runtimeConfig.ips must be a list of addresses")
        if ips:
            ip, ip6 = split_families(ips, "runtimeConfig.ips")
    rmac = rc.get("mac")
    if rmac is not None:
        if not isinstance(rmac, str) or not valid_mac(rmac):
            raise CniError(E_INVALID_CONFIG, "runtimeConfig.mac: %r is not a MAC address (six "
                           "hex pairs joined by ':')" % (rmac,))
        mac = rmac
    return ip, ip6, mac


def need_env(env, *names):
    missing = [n for n in names if not env.get(n)]
    if missing:
        raise CniError(E_INVALID_ENV, "missing environment variable(s): %s" %
                       ", ".join(missing))


def check_ifname(ifname):
    if len(ifname) > 15 or "/" in ifname or " " in ifname:
        raise CniError(E_INVALID_ENV, "CNI_IFNAME %r is not a valid interface name "
                       "(at most 15 characters, no '/' or spaces)" % ifname)


class Context:
    """What one CNI invocation works with: config, env, OVSDB and netmaster.

    ``connect(remote)``, when given, lends an OVSDB connection its caller keeps open and
    closes (netplugin's); without it the context opens its own and closes it."""

    def __init__(self, conf, env, connect=None):
        self.conf = conf
        self.env = env
        self.container_id = env.get("CNI_CONTAINERID", "")
        self.netns = env.get("CNI_NETNS", "")
        self.ifname = env.get("CNI_IFNAME", "")
        self.ep_id = nmc.endpoint_id(self.container_id, self.ifname)
        self.host_port = nmc.host_port_name(self.ep_id)
        self.bridge = conf.get("bridge") or "br-int"
        self.ovsdb_remote = conf.get("ovsdb") or DEFAULT_OVSDB
        self.tenant = conf.get("tenant") or "default"
        self.network = conf.get("network") or ""
        self.group = conf.get("group") or ""
        self.version = conf.get("cniVersion") or CNI_VERSION
        self.net_name = conf.get("name") or ""
        self._db = None
        self._connect = connect
        self._host_info = None

    @property
    def db(self):
        if self._db is None:
            from agent import ovsdb  # imported lazily: VERSION needs no OVS
            try:
                if self._connect is not None:
                    self._db = self._connect(self.ovsdb_remote)
                else:
                    self._db = ovsdb.Ovsdb(self.ovsdb_remote, timeout=10.0)
            except ovsdb.OvsdbError as e:
                raise CniError(E_TRY_AGAIN, "cannot reach Open vSwitch at %s: is "
                               "ovsdb-server running on this host?" % self.ovsdb_remote,
                               str(e))
        return self._db

    def host_info(self):
        if self._host_info is None:
            try:
                self._host_info = self.db.host_info()
            except CniError:
                self._host_info = {}
        return self._host_info

    @property
    def host_label(self):
        return (self.conf.get("hostLabel") or self.host_info().get("netweave-host-label")
                or socket.gethostname())

    @property
    def nm(self):
        url = (self.conf.get("netmaster") or self.host_info().get("netweave-netmaster")
               or nmc.DEFAULT_NETMASTER)
        state = self.host_info().get("netweave-state-dir")
        if state and url.rstrip("/") not in nmc._CREDENTIALS:
            # the plugin working alone (netplugin not listening): the host's credential
            from agent.credential import HostCredential
            cred = HostCredential(state, self.host_label)
            try:
                if cred.load():
                    nmc.set_credential(url, cred.token, cred.ca)
            except OSError:
                pass
        return nmc.NetmasterClient(url, timeout=10.0)

    def close(self):
        if self._db is not None and self._connect is None:
            self._db.close()


def netmaster_error(e, what):
    if isinstance(e, nmc.NetmasterUnreachable):
        return CniError(E_TRY_AGAIN, "%s: %s; is netmaster running?" % (what, e))
    if e.status == 404:
        return CniError(E_UNKNOWN_NETWORK, "%s: %s" % (what, e.message),
                        "create the tenant/network/group in netmaster first")
    if e.status == 409:
        return CniError(E_POOL_EXHAUSTED, "%s: %s" % (what, e.message),
                        "the network's subnet has no free address; enlarge it or "
                        "delete unused endpoints")
    if e.status in (502, 503, 504):
        return CniError(E_TRY_AGAIN, "%s: %s" % (what, e.message))
    return CniError(E_NETMASTER_REFUSED, "%s: netmaster answered %d: %s" %
                    (what, e.status, e.message))


def wait_port_flows(ctx, ofport):
    """Return once the new port's flows are on its switch (a flow matching in_port=ofport in
    table 0: netmaster's classification of the port, sent in the same bundle as its delivery
    flows), or after portFlowsTimeout."""
    limit = float(ctx.conf.get("portFlowsTimeout", PORT_FLOWS_TIMEOUT))
    if limit <= 0 or not ofport or not ctx.db.controller_connected(ctx.bridge):
        return
    rundir = os.path.dirname(ctx.ovsdb_remote.split(":", 1)[1]) \
        if ctx.ovsdb_remote.startswith("unix:") else "/var/run/openvswitch"
    try:
        waited = ofquery.wait_port_flows("%s/%s.mgmt" % (rundir, ctx.bridge), int(ofport), limit)
    except (OSError, ValueError) as e:
        LOG.warning("event=port_flows_unknown port=%s error=%r action=answer_anyway", ctx.host_port, str(e))
        return
    if waited is None:
        LOG.warning("event=port_flows_late port=%s ofport=%s waited_s=%.1f action=answer_anyway",
                    ctx.host_port, ofport, limit)
        return
    LOG.info("event=port_flows_ready port=%s ofport=%s waited_ms=%.0f", ctx.host_port, ofport, 1000 * waited)


# -- ADD ----------------------------------------------------------------------------------
def cmd_add(ctx):
    need_env(ctx.env, "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME")
    check_ifname(ctx.ifname)
    args = parse_cni_args(ctx.env.get("CNI_ARGS", ""))
    want_ip, want_ip6, want_mac = requested_addresses(ctx.conf, args)
    if not ctx.network:
        raise CniError(E_INVALID_CONFIG, "network configuration lacks \"network\" (the "
                       "netweave network or endpoint group to join)")
    if not os.path.exists(ctx.netns):
        raise CniError(E_CONTAINER_UNKNOWN, "network namespace %s does not exist" % ctx.netns)
    try:
        taken = netlink.in_netns(ctx.netns, netlink.index_of, ctx.ifname)
    except netlink.LinkError as e:
        raise CniError(E_CONTAINER_UNKNOWN, "%s is not a network namespace" % ctx.netns, str(e))
    if taken:
        raise CniError(E_LINK, "interface %s already exists in %s" % (ctx.ifname, ctx.netns))
    db = ctx.db
    if not db.has_bridge(ctx.bridge):
        raise CniError(E_TRY_AGAIN, "bridge %s does not exist in Open vSwitch at %s: is "
                       "netplugin running on this host?" % (ctx.bridge, ctx.ovsdb_remote))
    userspace = db.bridge_datapath_type(ctx.bridge) == "netdev"
    host = ctx.host_label
    nm = ctx.nm
    undo = []
    try:
        try:
            ep = nm.create_endpoint(ctx.ep_id, ctx.tenant, ctx.network, ctx.group, host,
                                    ctx.container_id, ctx.host_port, ctx.ifname,
                                    ipAddress=want_ip, ipv6Address=want_ip6, macAddress=want_mac,
                                    containerName=args.get("K8S_POD_NAME", ""),
                                    podNamespace=args.get("K8S_POD_NAMESPACE", ""),
                                    cniNetwork=ctx.net_name,
                                    labels=[x for x in args.get("LABELS", "").split(",") if x])
        except (nmc.NetmasterError, nmc.NetmasterUnreachable) as e:
            what = "allocating endpoint %s in %s/%s" % (ctx.ep_id, ctx.tenant, ctx.network)
            if (want_ip or want_ip6 or want_mac) and isinstance(e, nmc.NetmasterError) and \
                    e.status in (400, 409) and \
                    e.message.startswith(("ipAddress:", "ipv6Address:", "macAddress:")):
                raise CniError(E_ADDRESS_REFUSED, "%s: %s" % (what, e.message),
                               "requested with %s" % ", ".join(
                                   x for x in ("IP " + want_ip if want_ip else "",
                                               "IPv6 " + want_ip6 if want_ip6 else "",
                                               "MAC " + want_mac if want_mac else "") if x))
            raise netmaster_error(e, what)
        undo.append(("release address", lambda: nm.delete_endpoint(ctx.ep_id)))
        ips = [a for a in (ep.get("ipAddress") or []) if a]
        if isinstance(ep.get("ipAddress"), str):
            ips = [ep["ipAddress"]] if ep["ipAddress"] else []
        if not ips:
            raise CniError(E_NETMASTER_REFUSED, "netmaster returned no IP address for "
                           "endpoint %s" % ctx.ep_id, json.dumps(ep))
        ip = ips[0].split("/")[0]
        prefix = int(ep.get("prefixLen") or 24)
        gateway = ep.get("gateway") or ""
        addrs = ep.get("ipAddress") if isinstance(ep.get("ipAddress"), list) else []
        ip6 = addrs[1] if len(addrs) > 1 else ""
        prefix6 = int(ep.get("prefixLen6") or 64)
        gateway6 = ep.get("gateway6") or ""
        mtu = int(ep.get("mtu") or 1450)
        mac = ep.get("macAddress") or ""

        for stale in (ctx.host_port, "nt" + ctx.ep_id[:11]):   # "nt...": older releases' name
            if netlink.delete_link(stale):
                LOG.warning("event=stale_link_removed link=%s", stale)
        # No process and one burst of link changes in the host's namespace (each burst costs
        # ovs-vswitchd a dump of every link there): the pair is made and configured inside
        # the container, its host end arrives up, and the OVSDB port add follows at once.
        # (The port row before the link, which ovs-vswitchd opens when it appears, measured
        # worse from attach to first ping: bench/README.md §3.)
        ns = ctx.netns
        cidrs = ([(ip6 + "/%d" % prefix6, True)] if ip6 else []) + [(ip + "/%d" % prefix, False)]
        try:
            c_mac, h_mac = netlink.plumb_veth(
                ns, ctx.ifname, ctx.host_port, mtu, mac, cidrs,
                [g for g in (gateway, gateway6 if ip6 else "") if g],
                # no DAD (the address is usable at once and the link-local, EUI-64 of the
                # MAC, is not tentative), no router solicitation or advertisement (the
                # default route is set here; netweave sends no RA)
                quiet_ipv6=bool(ip6),
                # the userspace datapath forwards partial checksums as they are: TCP breaks
                tx_csum_off=userspace)
        except netlink.LinkError as e:
            raise CniError(E_LINK, "link setup of %s in %s failed" % (ctx.ifname, ns), str(e))
        undo.append(("delete veth", lambda: netlink.delete_link(ctx.host_port)))

        undo.append(("remove OVS port", lambda: db.remove_port(ctx.bridge, ctx.host_port)))
        from agent.ovsdb import OvsdbError
        try:
            ofport = db.plug_endpoint(ctx.bridge, ctx.host_port, dict(ep, endpointID=ctx.ep_id),
                                      **{"container-id": ctx.container_id})
        except OvsdbError as e:
            raise CniError(E_OVS, "Open vSwitch could not plug %s into %s" %
                           (ctx.host_port, ctx.bridge), str(e))
        wait_port_flows(ctx, ofport)
        LOG.info("event=endpoint_added endpoint=%s port=%s ofport=%s ip=%s/%d ip6=%s",
                 ctx.ep_id, ctx.host_port, ofport, ip, prefix,
                 "%s/%d" % (ip6, prefix6) if ip6 else "-")

        result = {
            "cniVersion": ctx.version,
            "interfaces": [
                {"name": ctx.ifname, "mac": c_mac, "sandbox": ns},
                {"name": ctx.host_port, "mac": h_mac},
            ],
            "ips": [{"address": "%s/%d" % (ip, prefix), "interface": 0}],
            "routes": [],
            "dns": {},
        }
        if gateway:
            result["ips"][0]["gateway"] = gateway
            result["routes"].append({"dst": "0.0.0.0/0", "gw": gateway})
        if ip6:
            result["ips"].append({"address": "%s/%d" % (ip6, prefix6), "interface": 0})
            if gateway6:
                result["ips"][1]["gateway"] = gateway6
                result["routes"].append({"dst": "::/0", "gw": gateway6})
        if not version_at_least(ctx.version, "1.0.0"):
            for entry, family in zip(result["ips"], ("4", "6")):
                entry["version"] = family            # 0.3.x/0.4.0 results name the family
        return result
    except BaseException:
        for what, fn in reversed(undo):
            try:
                fn()
            except Exception as e:  # keep rolling back the rest
                LOG.error("event=rollback_step_failed step=%r error=%r", what, str(e))
        raise


# -- DEL ----------------------------------------------------------------------------------
def cmd_del(ctx):
    need_env(ctx.env, "CNI_CONTAINERID", "CNI_IFNAME")
    errors = []
    try:
        if ctx.db.remove_port(ctx.bridge, ctx.host_port):
            LOG.info("event=endpoint_port_removed port=%s", ctx.host_port)
    except CniError as e:
        errors.append(e)
    except Exception as e:
        errors.append(CniError(E_OVS, "removing OVS port %s failed" % ctx.host_port, str(e)))
    try:
        netlink.delete_link(ctx.host_port)          # takes the container's end along
    except netlink.LinkError as e:
        LOG.warning("event=link_delete_failed link=%s error=%r", ctx.host_port, str(e))
    try:
        ctx.nm.delete_endpoint(ctx.ep_id)
    except (nmc.NetmasterError, nmc.NetmasterUnreachable) as e:
        errors.append(netmaster_error(e, "releasing endpoint %s" % ctx.ep_id))
    if errors:
        raise errors[0]
    return None


# -- CHECK --------------------------------------------------------------------------------
def cmd_check(ctx):
    need_env(ctx.env, "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME")
    if not os.path.exists(ctx.netns):
        raise CniError(E_CONTAINER_UNKNOWN, "network namespace %s does not exist" % ctx.netns)
    try:
        ep = ctx.nm.get_endpoint(ctx.ep_id)
    except (nmc.NetmasterError, nmc.NetmasterUnreachable) as e:
        raise netmaster_error(e, "reading endpoint %s" % ctx.ep_id)
    if ep is None:
        raise CniError(E_CHECK_FAILED, "netmaster does not know endpoint %s (container %s, "
                       "interface %s)" % (ctx.ep_id, ctx.container_id, ctx.ifname))
    problems = []
    ips = ep.get("ipAddress") or []
    if isinstance(ips, str):
        ips = [ips]
    ips = [a for a in ips if a]
    want_addr = "%s/%d" % (ips[0].split("/")[0], int(ep.get("prefixLen") or 24)) if ips else ""
    rec_ips = ep.get("ipAddress") if isinstance(ep.get("ipAddress"), list) else []
    want_addr6 = "%s/%d" % (rec_ips[1], int(ep.get("prefixLen6") or 64)) \
        if len(rec_ips) > 1 and rec_ips[1] else ""
    gateway6 = (ep.get("gateway6") or "") if want_addr6 else ""
    want_mtu = int(ep.get("mtu") or 1450)
    gateway = ep.get("gateway") or ""
    c_link = link_info(ctx.ifname, ctx.netns)
    if c_link is None:
        problems.append("interface %s is missing in %s" % (ctx.ifname, ctx.netns))
    else:
        have = link_addrs(ctx.ifname, ctx.netns)
        for want in (want_addr, want_addr6):
            if want and want not in have:
                problems.append("interface %s has addresses %s, expected %s" %
                                (ctx.ifname, have or "none", want))
        if c_link.get("mtu") != want_mtu:
            problems.append("interface %s has MTU %s, expected %d" %
                            (ctx.ifname, c_link.get("mtu"), want_mtu))
        mac = ep.get("macAddress")
        if mac and c_link.get("address", "").lower() != mac.lower():
            problems.append("interface %s has MAC %s, expected %s" %
                            (ctx.ifname, c_link.get("address"), mac))
        if "UP" not in c_link.get("flags", []):
            problems.append("interface %s is down" % ctx.ifname)
        if gateway:
            routes = [r for r in default_routes(ctx.netns)
                      if r.get("gateway") == gateway and r.get("dev") == ctx.ifname]
            if not routes:
                problems.append("no default route via %s dev %s in %s" %
                                (gateway, ctx.ifname, ctx.netns))
        if gateway6:
            routes = [r for r in default_routes(ctx.netns, "-6")
                      if r.get("gateway") == gateway6 and r.get("dev") == ctx.ifname]
            if not routes:
                problems.append("no IPv6 default route via %s dev %s in %s" %
                                (gateway6, ctx.ifname, ctx.netns))
    prev = ctx.conf.get("prevResult")
    if isinstance(prev, dict) and want_addr:
        prev_addrs = [i.get("address") for i in prev.get("ips", []) if isinstance(i, dict)]
        for want in (want_addr, want_addr6):
            if prev_addrs and want and want not in prev_addrs:
                problems.append("prevResult has addresses %s but netmaster holds %s" %
                                (prev_addrs, want))
    h_link = link_info(ctx.host_port)
    if h_link is None:
        problems.append("host interface %s is missing" % ctx.host_port)
    elif "UP" not in h_link.get("flags", []):
        problems.append("host interface %s is down" % ctx.host_port)
    ext = ctx.db.port_external_ids(ctx.bridge, ctx.host_port)
    if ext is None:
        problems.append("OVS port %s is missing on bridge %s" % (ctx.host_port, ctx.bridge))
    elif ext.get("netweave-endpoint") != ctx.ep_id:
        problems.append("OVS port %s has external_ids %s, expected netweave-endpoint=%s" %
                        (ctx.host_port, ext, ctx.ep_id))
    if problems:
        raise CniError(E_CHECK_FAILED, "endpoint %s is not as it should be: %s" %
                       (ctx.ep_id, "; ".join(problems)), "\n".join(problems))
    return None


# -- GC and STATUS (CNI 1.1.0) ------------------------------------------------------------
def need_1_1(ctx, command):
    if not version_at_least(ctx.version, "1.1.0"):
        raise CniError(E_INCOMPATIBLE_VERSION, "%s needs cniVersion 1.1.0 or later; the "
                       "configuration says %s" % (command, ctx.version))


def cmd_gc(ctx):
    """Release this host's endpoints of this network configuration (cniNetwork = its name)
    that the runtime no longer knows: port, veth and address."""
    need_1_1(ctx, "GC")
    valid = ctx.conf.get("cni.dev/valid-attachments", [])
    if not isinstance(valid, list) or not all(
            isinstance(a, dict) and isinstance(a.get("containerID"), str) and
            isinstance(a.get("ifname"), str) for a in valid):
        raise CniError(E_INVALID_CONFIG, "cni.dev/valid-attachments must be a list of "
                       "{\"containerID\": ..., \"ifname\": ...}")
    if not ctx.net_name:
        raise CniError(E_INVALID_CONFIG, "network configuration lacks \"name\": GC releases "
                       "the endpoints made under that name")
    keep = {nmc.endpoint_id(a["containerID"], a["ifname"]) for a in valid}
    host = ctx.host_label
    try:
        eps = ctx.nm.list_endpoints(host=host)
    except (nmc.NetmasterError, nmc.NetmasterUnreachable) as e:
        raise netmaster_error(e, "listing the endpoints of host %s" % host)
    errors = []
    for ep in eps:
        ep_id = ep.get("endpointID")
        if ep.get("cniNetwork") != ctx.net_name or ep_id in keep:
            continue
        port = ep.get("intfName") or nmc.host_port_name(ep_id)
        try:
            ctx.db.remove_port(ctx.bridge, port)
            if link_info(port) is not None:
                sh(["ip", "link", "del", "dev", port], check=False)
            ctx.nm.delete_endpoint(ep_id)
            LOG.warning("event=gc_endpoint_released endpoint=%s container=%s name=%s ip=%s "
                        "port=%s network=%s", ep_id, ep.get("containerID"),
                        ep.get("containerName", ""), (ep.get("ipAddress") or [""])[0], port,
                        ctx.net_name)
        except (nmc.NetmasterError, nmc.NetmasterUnreachable) as e:
            errors.append(netmaster_error(e, "releasing endpoint %s" % ep_id))
        except CniError as e:
            errors.append(e)
        except Exception as e:
            errors.append(CniError(E_OVS, "removing OVS port %s failed" % port, str(e)))
    if errors:
        raise errors[0]
    return None


def cmd_status(ctx):
    """Could an ADD be served now? Open vSwitch with the bridge, netmaster, this host up."""
    need_1_1(ctx, "STATUS")
    try:
        if not ctx.db.has_bridge(ctx.bridge):
            raise CniError(E_NOT_AVAILABLE, "bridge %s does not exist in Open vSwitch at %s: is "
                           "netplugin running on this host?" % (ctx.bridge, ctx.ovsdb_remote))
    except CniError as e:
        if e.code == E_NOT_AVAILABLE:
            raise
        raise CniError(E_NOT_AVAILABLE, e.msg, e.details)
    host = ctx.host_label
    try:
        hosts = {h.get("hostLabel"): h for h in ctx.nm.list_hosts()}
    except (nmc.NetmasterError, nmc.NetmasterUnreachable) as e:
        raise CniError(E_NOT_AVAILABLE, "netmaster cannot be asked: %s" % e)
    state = (hosts.get(host) or {}).get("state")
    if state != "up":
        raise CniError(E_NOT_AVAILABLE, "host %s is %s in netmaster: is its netplugin running?"
                       % (host, state or "not registered"))
    return None


# -- entry point ----------------------------------------------------------------------------
COMMANDS = {"ADD": cmd_add, "DEL": cmd_del, "CHECK": cmd_check, "GC": cmd_gc,
            "STATUS": cmd_status}


def run(env, stdin, stdout, connect=None):
    """One CNI invocation; returns the exit code. Also what netplugin runs for
    netweave-cni (``agent.cni_server``), with ``connect`` lending its OVSDB connections."""
    command = env.get("CNI_COMMAND", "")
    if command == "VERSION":
        json.dump({"cniVersion": CNI_VERSION, "supportedVersions": SUPPORTED_VERSIONS}, stdout)
        return 0
    ctx = None
    version = CNI_VERSION
    try:
        if command not in COMMANDS:
            raise CniError(E_INVALID_ENV, "CNI_COMMAND must be one of %s, not %r" %
                           (", ".join(list(COMMANDS) + ["VERSION"]), command))
        conf = read_config(stdin)
        version = conf["cniVersion"]
        ctx = Context(conf, env, connect)
        result = COMMANDS[command](ctx)
        if result is not None:
            json.dump(result, stdout)
        return 0
    except CniError as e:
        LOG.error("event=cni_error command=%s code=%d msg=%r", command, e.code, e.msg)
        json.dump(e.to_json(version), stdout)
        return 1
    except Exception as e:  # never leave the runtime without an answer
        LOG.exception("event=cni_internal_error command=%s", command)
        json.dump(CniError(E_INTERNAL, "internal error in netweave-cni: %s" % e,
                           type(e).__name__).to_json(version), stdout)
        return 1
    finally:
        if ctx is not None:
            ctx.close()


def main():
    # python-ovs's poller probes for eventlet, and importing eventlet costs this
    # short-lived process about 0.4 s of every ADD: the plugin never uses it.
    sys.modules.setdefault("eventlet", None)
    # a runtime's cleanup (podman container cleanup) may run plugins with no PATH at all
    os.environ.setdefault("PATH", DEFAULT_PATH)
    logging.basicConfig(stream=sys.stderr,
                        level=os.environ.get("NETWEAVE_CNI_LOG_LEVEL", "WARNING").upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    rc = run(os.environ, sys.stdin, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return rc


if __name__ == "__main__":
    sys.exit(main())

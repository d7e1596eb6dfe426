"""netplugin as Docker's network and IPAM driver ("netplugin", Contiv's name).

Docker's libnetwork finds a remote driver by its unix socket in /run/docker/plugins and
speaks JSON over HTTP POST to it (Plugin.Activate, NetworkDriver.*, IpamDriver.*).
Call order seen with Docker 20.10 (platform notes):

    network create   IpamDriver.RequestPool, RequestAddress(gateway), NetworkDriver.CreateNetwork
    run              IpamDriver.RequestAddress, CreateEndpoint, Join, ProgramExternalConnectivity
    stop / rm        RevokeExternalConnectivity, Leave, DeleteEndpoint, ReleaseAddress
    network rm       ReleaseAddress(gateway), ReleasePool, DeleteNetwork

Where netweave keeps what: netmaster's endpoint record is the one allocation for Docker and
CNI alike. RequestAddress allocates it (its id "dk" + random, since Docker has no endpoint
id yet); CreateEndpoint finds it by network and address and writes Docker's endpoint id
into it, so every later call (which names only Docker's ids) finds it again, after a
netplugin restart too. Join makes the veth (MAC, MTU and offloads as the CNI path sets
them) and plugs its host end into br-int; Docker moves the other end into the container.
Leave unplugs; ReleaseAddress gives the address back. A Docker network's pool id is
"TENANT/NETWORK/GROUP" ("TENANT/NETWORK/GROUP/v6" for its IPv6 pool): the IPAM calls need no
other state.

Dual stack: on a netweave network with an ipv6Subnet, the IPv4 RequestAddress allocates the
endpoint with both addresses in one commit (as for CNI); Docker's IPv6 RequestAddress (a
network made with --ipv6) is answered with that endpoint's IPv6 address, never a second
allocation, and the IPv6 ReleaseAddress has nothing to give back (the endpoint and both its
addresses go with the IPv4 release). A Docker network made without --ipv6 sends no IPv6
address: CreateEndpoint then answers the endpoint's IPv6 address itself (libnetwork takes an
address the driver adds), so the container configures it too and no address is reserved in
netweave that no container holds. Join answers GatewayIPv6.

Docker networks are made by netplugin for every netweave network and endpoint group
(``DockerNetworks``), named as Contiv named them: NAME in the default tenant, NAME/TENANT
in another. A user's own ``docker network create -d netplugin --ipam-driver netplugin
-o tenant=T -o network=N --ipam-opt tenant=T --ipam-opt network=N NAME`` maps onto the
netweave network T/N (or ``group=G``); anything else is refused with the reason.
"""
import json
import logging
import os
import secrets
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler

from agent import cni, metrics, netlink
from agent import netmaster_client as nmc
from agent import ovsdb as ovsdb_mod
from agent.docker_api import DockerApi, DockerError
from model import ipam

LOG = logging.getLogger(__name__)

DRIVER = "netplugin"
ADDRESS_SPACE = "netweave"
GATEWAY_REQUEST = "com.docker.network.gateway"
MANAGED_LABEL = "netweave.managed"
CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"


class DriverError(Exception):
    """Answered to Docker as {"Err": message} (network calls) and {"Error": message}
    (libnetwork's IPAM response has a field Error with no JSON name)."""


def docker_name(tenant, name):
    """Contiv's Docker network names: NAME in the default tenant, NAME/TENANT elsewhere."""
    return name if tenant == "default" else "%s/%s" % (name, tenant)


def pool_id(tenant, network, group=""):
    return "%s/%s/%s" % (tenant, network, group)


def parse_pool_id(pid):
    """(tenant, network, group, v6) of a pool id."""
    parts = (pid or "").split("/")
    v6 = len(parts) == 4 and parts[3] == "v6"
    if v6:
        parts = parts[:3]
    if len(parts) != 3 or not all(parts[:2]):
        raise DriverError("pool %r is not a netweave pool (TENANT/NETWORK/GROUP[/v6])" % pid)
    return parts + [v6]


def _ip6(text):
    """An IPv6 address (an optional /LEN ignored) as an integer; refused when it is not one."""
    try:
        return ipam.ip6_int(text.split("/")[0])
    except ValueError:
        raise DriverError("%r is not an IPv6 address" % text)


def _net6(text):
    try:
        return str(ipam.parse_subnet6(text).network)
    except ValueError:
        raise DriverError("%r is not an IPv6 subnet" % text)


def with_len6(ep):
    """The endpoint's IPv6 address as ADDRESS/PREFIXLEN ("" on an IPv4-only network)."""
    ip6 = (ep.get("ipAddress") or ["", ""])[1:2]
    return "%s/%d" % (ip6[0], ep.get("prefixLen6") or 64) if ip6 and ip6[0] else ""


class Driver:
    """The libnetwork remote driver: one method per call, JSON in and out."""

    def __init__(self, host_label, bridge, ovsdb_remote, netmaster, lender, docker=None):
        self.host = host_label
        self.bridge = bridge
        self.ovsdb_remote = ovsdb_remote
        self.nm = netmaster
        self.lender = lender
        self.docker = docker
        self._serial = threading.Lock()      # Docker's calls on one host, one at a time
        # endpoints whose IPv4 address Docker holds and whose IPv6 one it has not asked for
        # yet, oldest first, per (tenant, network): Docker asks v4 then v6 for one endpoint
        self._awaiting_v6 = {}

    # -- lookups ------------------------------------------------------------------------------
    def _target(self, opts):
        """(tenant, network, group) named by options tenant= and network= or group=."""
        tenant = opts.get("tenant") or "default"
        network, group = opts.get("network", ""), opts.get("group", "")
        if group:
            g = self._get("/api/v1/endpointGroups/%s:%s/" % (tenant, group))
            if g is None:
                raise DriverError("endpoint group %s does not exist in netweave tenant %s: "
                                  "create it with netctl group create first" % (group, tenant))
            if network and network != g["networkName"]:
                raise DriverError("group %s is on network %s, not %s" % (group, g["networkName"],
                                                                         network))
            network = g["networkName"]
        if not network:
            raise DriverError("options: say which netweave network this is, with "
                              "-o tenant=T -o network=N (or -o group=G)")
        if self._get("/api/v1/networks/%s:%s/" % (tenant, network)) is None:
            raise DriverError("network %s does not exist in netweave tenant %s: create it with "
                              "netctl net create first" % (network, tenant))
        return tenant, network, group

    def _get(self, path):
        try:
            return self.nm.get(path)
        except (nmc.NetmasterError, nmc.NetmasterUnreachable) as e:
            raise DriverError("netmaster: %s" % e)

    def _network(self, tenant, network):
        return self._get("/api/v1/networks/%s:%s/" % (tenant, network))

    def _mine(self):
        try:
            return self.nm.list_endpoints(host=self.host)
        except (nmc.NetmasterError, nmc.NetmasterUnreachable) as e:
            raise DriverError("netmaster: %s" % e)

    def _by_docker_endpoint(self, docker_ep):
        for ep in self._mine():
            if ep.get("dockerEndpoint") == docker_ep:
                return ep
        return None

    # -- Plugin / capabilities ----------------------------------------------------------------
    def plugin_activate(self, req):
        return {"Implements": ["NetworkDriver", "IpamDriver"]}

    def get_capabilities(self, req):
        # local: each host's dockerd holds its own copy of each network (netplugin makes them);
        # global connectivity: endpoints on every host of a network reach each other
        return {"Scope": "local", "ConnectivityScope": "global"}

    # -- IPAM ---------------------------------------------------------------------------------
    def ipam_capabilities(self, req):
        return {"RequiresMACAddress": False}

    def default_address_spaces(self, req):
        return {"LocalDefaultAddressSpace": ADDRESS_SPACE, "GlobalDefaultAddressSpace": ADDRESS_SPACE}

    def request_pool(self, req):
        tenant, network, group = self._target(req.get("Options") or {})
        net = self._network(tenant, network)
        if req.get("V6"):
            return self._request_pool6(req, tenant, network, group, net)
        cidr = str(ipam.parse_subnet(net["subnet"]).network)
        if req.get("Pool") and req["Pool"] != cidr:
            raise DriverError("subnet %s is not netweave network %s/%s's subnet %s" %
                              (req["Pool"], tenant, network, cidr))
        if req.get("SubPool"):
            raise DriverError("--ip-range is not supported: netweave allocates from the "
                              "network's subnet (or the group's ip pool)")
        return {"PoolID": pool_id(tenant, network, group), "Pool": cidr, "Data": {}}

    def _request_pool6(self, req, tenant, network, group, net):
        if not net.get("ipv6Subnet"):
            raise DriverError("netweave network %s/%s has no ipv6Subnet: drop --ipv6, or create "
                              "the network with one (netctl net create --subnetv6)" %
                              (tenant, network))
        cidr = str(ipam.parse_subnet6(net["ipv6Subnet"]).network)
        if req.get("Pool") and _net6(req["Pool"]) != cidr:
            raise DriverError("IPv6 subnet %s is not netweave network %s/%s's ipv6Subnet %s" %
                              (req["Pool"], tenant, network, cidr))
        if req.get("SubPool"):
            raise DriverError("--ip-range is not supported: netweave allocates from the "
                              "network's ipv6Subnet")
        return {"PoolID": pool_id(tenant, network, group) + "/v6", "Pool": cidr, "Data": {}}

    def release_pool(self, req):
        return {}

    def request_address(self, req):
        tenant, network, group, v6 = parse_pool_id(req.get("PoolID"))
        opts = req.get("Options") or {}
        net = self._network(tenant, network)
        if net is None:
            raise DriverError("network %s does not exist in netweave tenant %s" % (network, tenant))
        if v6:
            return self._request_address6(req, tenant, network, net)
        plen = ipam.parse_subnet(net["subnet"]).network.prefixlen
        if opts.get("RequestAddressType") == GATEWAY_REQUEST:
            if not net.get("gateway"):
                raise DriverError("netweave network %s/%s has no gateway; Docker needs one"
                                  % (tenant, network))
            if req.get("Address") and req["Address"] != net["gateway"]:
                raise DriverError("gateway %s is not netweave network %s/%s's gateway %s" %
                                  (req["Address"], tenant, network, net["gateway"]))
            return {"Address": "%s/%d" % (net["gateway"], plen), "Data": {}}
        ep_id = "dk" + secrets.token_hex(5)
        fields = {"ipAddress": req["Address"]} if req.get("Address") else {}
        try:
            ep = self.nm.create_endpoint(ep_id, tenant, network, group, self.host, "",
                                         nmc.host_port_name(ep_id), "", **fields)
        except nmc.NetmasterError as e:
            raise DriverError("netweave refused an address in %s/%s: %s" % (tenant, network,
                                                                             e.message))
        except nmc.NetmasterUnreachable as e:
            raise DriverError(str(e))
        if with_len6(ep):
            self._awaiting_v6.setdefault((tenant, network), []).append(ep_id)
        LOG.info("event=docker_address_allocated endpoint=%s ip=%s ip6=%s pool=%s", ep_id,
                 ep["ipAddress"][0], with_len6(ep) or "-", req.get("PoolID"))
        return {"Address": "%s/%d" % (ep["ipAddress"][0], plen), "Data": {}}

    def _request_address6(self, req, tenant, network, net):
        """The IPv6 address of the endpoint whose IPv4 address Docker asked for just before."""
        opts = req.get("Options") or {}
        if opts.get("RequestAddressType") == GATEWAY_REQUEST:
            gw6 = net.get("ipv6Gateway")
            if req.get("Address") and _ip6(req["Address"]) != _ip6(gw6):
                raise DriverError("IPv6 gateway %s is not netweave network %s/%s's ipv6Gateway %s"
                                  % (req["Address"], tenant, network, gw6))
            plen6 = ipam.parse_subnet6(net["ipv6Subnet"]).prefixlen
            return {"Address": "%s/%d" % (gw6, plen6), "Data": {}}
        queue = self._awaiting_v6.get((tenant, network)) or []
        mine = {ep["endpointID"]: ep for ep in self._mine()}
        while queue and queue[0] not in mine:     # released meanwhile (Docker rolled back)
            queue.pop(0)
        if not queue:
            raise DriverError("no netweave endpoint of %s/%s waits for its IPv6 address on host "
                              "%s: Docker asks for the IPv4 address first" % (tenant, network,
                                                                              self.host))
        ep = mine[queue.pop(0)]
        addr = with_len6(ep)
        if req.get("Address") and _ip6(req["Address"]) != _ip6(ep["ipAddress"][1]):
            # the pair was allocated together with the IPv4 address. Docker 20.10 does not
            # release the IPv4 address when its IPv6 request fails: netweave frees both here
            try:
                self.nm.delete_endpoint(ep["endpointID"])
            except (nmc.NetmasterError, nmc.NetmasterUnreachable) as e:
                raise DriverError("netmaster: %s" % e)
            LOG.info("event=docker_address_released endpoint=%s ip=%s reason=%r",
                     ep["endpointID"], ep["ipAddress"][0], "--ip6 refused")
            raise DriverError("--ip6 is not supported: netweave gives the endpoint its IPv6 "
                              "address with its IPv4 one (%s here)" % addr)
        LOG.info("event=docker_address6_given endpoint=%s ip6=%s", ep["endpointID"], addr)
        return {"Address": addr, "Data": {}}

    def release_address(self, req):
        tenant, network, _, v6 = parse_pool_id(req.get("PoolID"))
        if v6:                # given back with the endpoint when its IPv4 address is released
            return {}
        ip = (req.get("Address") or "").split("/")[0]
        for ep in self._mine():
            if (ep.get("tenantName"), ep.get("networkName")) == (tenant, network) \
                    and ep.get("ipAddress", [""])[0] == ip and ep["endpointID"].startswith("dk"):
                self._release(ep, "docker released the address")
        return {}

    # -- network ------------------------------------------------------------------------------
    def create_network(self, req):
        opts = (req.get("Options") or {}).get("com.docker.network.generic") or {}
        tenant, network, group = self._target(opts)
        v4, v6 = req.get("IPv4Data") or [], req.get("IPv6Data") or []
        if v6 and (len(v6) != 1 or v6[0].get("AddressSpace") != ADDRESS_SPACE):
            raise DriverError("use --ipam-driver %s: IPv6 addresses must come from netweave's "
                              "IPAM too" % DRIVER)
        if len(v4) != 1 or v4[0].get("AddressSpace") != ADDRESS_SPACE:
            raise DriverError("use --ipam-driver %s: addresses must come from netweave's IPAM, "
                              "which knows every endpoint of %s/%s" % (DRIVER, tenant, network))
        # IPv4Data carries the pool's subnet, not its id: the subnet says whether the IPAM
        # options named the same netweave network as the driver options
        cidr = str(ipam.parse_subnet(self._network(tenant, network)["subnet"]).network)
        if v4[0].get("Pool") != cidr:
            raise DriverError("the IPAM pool %s is not netweave network %s/%s's subnet %s: give "
                              "--ipam-opt the same tenant and network as -o" %
                              (v4[0].get("Pool"), tenant, network, cidr))
        net6 = self._network(tenant, network).get("ipv6Subnet")
        if v6 and _net6(v6[0].get("Pool") or "") != _net6(net6 or "::/0"):
            raise DriverError("the IPv6 pool %s is not netweave network %s/%s's ipv6Subnet %s" %
                              (v6[0].get("Pool"), tenant, network, net6 or "(none)"))
        want = pool_id(tenant, network, group)
        LOG.info("event=docker_network_created id=%s netweave=%s", req.get("NetworkID", "")[:12], want)
        return {}

    def delete_network(self, req):
        return {}

    # -- endpoints ----------------------------------------------------------------------------
    def create_endpoint(self, req):
        iface = req.get("Interface") or {}
        addr = (iface.get("Address") or "").split("/")[0]
        addr6 = (iface.get("AddressIPv6") or "").split("/")[0]
        if not addr:
            raise DriverError("no address: the network must use --ipam-driver %s" % DRIVER)
        if iface.get("MacAddress"):
            raise DriverError("--mac-address is not supported: netweave derives each "
                              "endpoint's MAC from its address")
        candidates = [ep for ep in self._mine() if ep["endpointID"].startswith("dk")
                      and ep.get("ipAddress", [""])[0] == addr and not ep.get("dockerEndpoint")]
        net = self._docker_network(req.get("NetworkID", ""))
        if net is not None:
            candidates = [ep for ep in candidates
                          if (ep["tenantName"], ep["networkName"]) == net[:2]]
        if len(candidates) != 1:
            raise DriverError("no single netweave endpoint of host %s holds %s (found %d)" %
                              (self.host, addr, len(candidates)))
        ep = candidates[0]
        for queue in self._awaiting_v6.values():
            if ep["endpointID"] in queue:
                queue.remove(ep["endpointID"])
        mine6 = with_len6(ep)
        if addr6 and (not mine6 or _ip6(addr6) != _ip6(ep["ipAddress"][1])):
            raise DriverError("IPv6 address %s is not netweave endpoint %s's (%s)" %
                              (addr6, ep["endpointID"], mine6 or "none"))
        self._update(ep, dockerEndpoint=req["EndpointID"])
        LOG.info("event=docker_endpoint_created endpoint=%s docker_endpoint=%s ip=%s ip6=%s",
                 ep["endpointID"], req["EndpointID"][:12], addr, mine6 or "-")
        out = {"MacAddress": ep["macAddress"]}
        if mine6 and not addr6:
            # a Docker network without --ipv6 on a dual-stack netweave network: the address
            # netweave reserved is configured in the container too (libnetwork takes it)
            out["AddressIPv6"] = mine6
        return {"Interface": out}

    def _docker_network(self, network_id):
        """(tenant, network, group) of a Docker network, from dockerd (None if unknown)."""
        if self.docker is None or not network_id:
            return None
        try:
            opts = self.docker.network(network_id).get("Options") or {}
        except DockerError:
            return None
        tenant = opts.get("tenant") or "default"
        return (tenant, opts.get("network", ""), opts.get("group", "")) if opts.get("network") \
            else None

    def _update(self, ep, **fields):
        try:
            self.nm.create_endpoint(ep["endpointID"], ep["tenantName"], ep["networkName"],
                                    ep.get("groupName", ""), self.host, fields.pop(
                                        "containerID", ep.get("containerID", "")),
                                    ep["intfName"], ep.get("ifName", ""), **fields)
        except (nmc.NetmasterError, nmc.NetmasterUnreachable) as e:
            raise DriverError("netmaster: %s" % e)

    def endpoint_info(self, req):
        ep = self._by_docker_endpoint(req.get("EndpointID"))
        if ep is None:
            return {"Value": {}}
        return {"Value": {"netweave.endpoint": ep["endpointID"], "tenant": ep["tenantName"],
                          "network": ep["networkName"], "group": ep.get("groupName", ""),
                          "port": ep["intfName"]}}

    def delete_endpoint(self, req):
        ep = self._by_docker_endpoint(req.get("EndpointID"))
        if ep is not None:
            self._unplug(ep)
        return {}

    def join(self, req):
        ep = self._by_docker_endpoint(req.get("EndpointID"))
        if ep is None:
            raise DriverError("endpoint %s is unknown to netweave" % req.get("EndpointID", "")[:12])
        port, tmp = ep["intfName"], "nt" + ep["endpointID"][:11]
        mtu = int(ep.get("mtu") or 1450)
        for stale in (port, tmp):
            netlink.delete_link(stale)
        # The container end keeps MAC, MTU and offloads when Docker moves it into the container.
        with self.lender.lock:
            db = self.lender.connect(self.ovsdb_remote)
            userspace = db.bridge_datapath_type(self.bridge) == "netdev"
        try:
            # the userspace datapath forwards partial checksums as they are: TCP breaks
            netlink.pair_for_docker(port, tmp, mtu, ep["macAddress"], tx_csum_off=userspace)
        except netlink.LinkError as e:
            raise DriverError("could not make the veth %s: %s" % (port, e))
        try:
            with self.lender.lock:
                self.lender.connect(self.ovsdb_remote).plug_endpoint(
                    self.bridge, port, ep, **{"docker-endpoint": req["EndpointID"]})
        except ovsdb_mod.OvsdbError as e:
            netlink.delete_link(port)
            with self.lender.lock:
                self.lender.drop()
            raise DriverError("Open vSwitch could not plug %s: %s" % (port, e))
        LOG.info("event=docker_join endpoint=%s port=%s sandbox=%s", ep["endpointID"], port,
                 req.get("SandboxKey", ""))
        out = {"InterfaceName": {"SrcName": tmp, "DstPrefix": "eth"}}
        if ep.get("gateway"):
            out["Gateway"] = ep["gateway"]
        if with_len6(ep) and ep.get("gateway6"):
            out["GatewayIPv6"] = ep["gateway6"]
        return out

    def leave(self, req):
        ep = self._by_docker_endpoint(req.get("EndpointID"))
        if ep is not None:
            self._unplug(ep)
        return {}

    def _unplug(self, ep):
        port = ep["intfName"]
        with self.lender.lock:
            try:
                self.lender.connect(self.ovsdb_remote).remove_port(self.bridge, port)
            except ovsdb_mod.OvsdbError as e:
                self.lender.drop()
                raise DriverError("Open vSwitch could not unplug %s: %s" % (port, e))
        try:
            netlink.delete_link(port)
        except netlink.LinkError as e:
            LOG.warning("event=link_delete_failed link=%s error=%r", port, str(e))

    def _release(self, ep, why):
        self._unplug(ep)
        try:
            self.nm.delete_endpoint(ep["endpointID"])
        except (nmc.NetmasterError, nmc.NetmasterUnreachable) as e:
            raise DriverError("netmaster: %s" % e)
        LOG.info("event=docker_address_released endpoint=%s ip=%s reason=%r", ep["endpointID"],
                 ep["ipAddress"][0], why)

    def nothing(self, req):
        return {}

    ROUTES = {
        "/Plugin.Activate": "plugin_activate",
        "/NetworkDriver.GetCapabilities": "get_capabilities",
        "/NetworkDriver.CreateNetwork": "create_network",
        "/NetworkDriver.DeleteNetwork": "delete_network",
        "/NetworkDriver.CreateEndpoint": "create_endpoint",
        "/NetworkDriver.EndpointOperInfo": "endpoint_info",
        "/NetworkDriver.DeleteEndpoint": "delete_endpoint",
        "/NetworkDriver.Join": "join",
        "/NetworkDriver.Leave": "leave",
        "/NetworkDriver.ProgramExternalConnectivity": "nothing",
        "/NetworkDriver.RevokeExternalConnectivity": "nothing",
        "/NetworkDriver.DiscoverNew": "nothing",
        "/NetworkDriver.DiscoverDelete": "nothing",
        "/NetworkDriver.AllocateNetwork": "nothing",
        "/NetworkDriver.FreeNetwork": "nothing",
        "/IpamDriver.GetCapabilities": "ipam_capabilities",
        "/IpamDriver.GetDefaultAddressSpaces": "default_address_spaces",
        "/IpamDriver.RequestPool": "request_pool",
        "/IpamDriver.ReleasePool": "release_pool",
        "/IpamDriver.RequestAddress": "request_address",
        "/IpamDriver.ReleaseAddress": "release_address",
    }

    def handle(self, path, body):
        """(status, answer) for one call; the calls of one host run one at a time."""
        name = self.ROUTES.get(path)
        if name is None:
            return 404, _err("unknown call %s" % path)
        t0 = time.monotonic()
        try:
            req = json.loads(body) if body.strip() else {}
            if not isinstance(req, dict):
                raise DriverError("the request must be a JSON object")
            with self._serial:
                out = getattr(self, name)(req)
            result = "ok"
        except DriverError as e:
            out, result = _err(str(e)), "error"
        except ValueError as e:
            out, result = _err("the request is not JSON: %s" % e), "error"
        except Exception as e:  # never leave dockerd without an answer
            LOG.exception("event=docker_driver_internal_error call=%s", path)
            out, result = _err("netplugin internal error: %s" % e), "error"
        took = time.monotonic() - t0
        metrics.DOCKER_SECONDS.labels(path.lstrip("/"), result).observe(took)
        LOG.log(logging.WARNING if result == "error" else logging.INFO,
                "event=docker_request call=%s result=%s ms=%.0f%s", path.lstrip("/"), result,
                took * 1000, " err=%r" % out["Err"] if result == "error" else "")
        return 200, out


def _err(message):
    return {"Err": message, "Error": message}


class _Handler(BaseHTTPRequestHandler):
    server_version = "netweave-netplugin"

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(n, 1 << 20)).decode("utf-8", "replace")
        status, out = self.server.driver.handle(self.path, body)
        raw = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def address_string(self):
        return "docker"

    def log_message(self, *args):
        pass


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def serve(path, driver):
    """Listen on the plugin socket (replacing a stale one); returns the server."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            raise OSError("another netplugin serves %s" % path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)
        finally:
            probe.close()
    old = os.umask(0o177)
    try:
        srv = _UnixServer(path, _Handler)
    finally:
        os.umask(old)
    srv.driver = driver
    threading.Thread(target=srv.serve_forever, name="docker-plugin", daemon=True).start()
    LOG.info("event=docker_plugin_listening path=%s", path)
    return srv


class DockerNetworks:
    """Keeps one Docker network per netweave network and endpoint group on this host's
    dockerd, and writes the container's id, name and labels into its endpoints' records.
    Runs from netplugin's heartbeat thread: only HTTP, no OVSDB."""

    def __init__(self, docker: DockerApi, netmaster, host_label):
        self.docker = docker
        self.nm = netmaster
        self.host = host_label
        self._skipped = set()
        self._down = False

    def wanted(self):
        """Docker network name -> creation spec, from netmaster's networks and groups."""
        nets = {(n["tenantName"], n["networkName"]): n for n in self.nm.get("/api/v1/networks/") or []}
        out = {}
        for n in nets.values():
            out[docker_name(n["tenantName"], n["networkName"])] = self._spec(n, n["networkName"], "")
        for g in self.nm.get("/api/v1/endpointGroups/") or []:
            n = nets.get((g["tenantName"], g["networkName"]))
            if n is not None:
                out[docker_name(g["tenantName"], g["groupName"])] = self._spec(n, g["networkName"],
                                                                              g["groupName"])
        return {k: v for k, v in out.items() if v is not None}

    def _spec(self, n, network, group):
        if not n.get("gateway"):
            key = (n["tenantName"], network, group)
            if key not in self._skipped:
                self._skipped.add(key)
                LOG.warning("event=docker_network_skipped tenant=%s network=%s group=%s "
                            "reason=no_gateway", *key)
            return None
        opts = {"tenant": n["tenantName"], "network": network, "encap": n.get("encap", "vxlan")}
        if group:
            opts["group"] = group
        ipam_opts = {k: v for k, v in opts.items() if k != "encap"}
        cidr = str(ipam.parse_subnet(n["subnet"]).network)
        config = [{"Subnet": cidr, "Gateway": n["gateway"]}]
        if n.get("ipv6Subnet"):       # dual stack: Docker asks for (and shows) both addresses
            config.append({"Subnet": str(ipam.parse_subnet6(n["ipv6Subnet"]).network),
                           "Gateway": n["ipv6Gateway"]})
        return {"Driver": DRIVER, "CheckDuplicate": True, "Options": opts,
                "Labels": {MANAGED_LABEL: "true"}, "EnableIPv6": len(config) > 1,
                "IPAM": {"Driver": DRIVER, "Options": ipam_opts, "Config": config}}

    def sync(self):
        """One pass; returns False when dockerd or netmaster could not be reached."""
        try:
            want = self.wanted()
            have = {n["Name"]: n for n in self.docker.networks(DRIVER)}
        except (DockerError, nmc.NetmasterError, nmc.NetmasterUnreachable) as e:
            if not self._down:
                LOG.warning("event=docker_sync_deferred error=%r", str(e))
            self._down = True
            return False
        self._down = False
        for name, spec in sorted(want.items()):
            cur = have.get(name)
            if cur is not None and self._same(cur, spec):
                continue
            if cur is not None:
                if not self._remove(name, cur, "changed"):
                    continue
            try:
                self.docker.create_network(dict(spec, Name=name))
                LOG.info("event=docker_network_ensured name=%s tenant=%s network=%s group=%s",
                         name, spec["Options"]["tenant"], spec["Options"]["network"],
                         spec["Options"].get("group", ""))
            except DockerError as e:
                LOG.error("event=docker_network_failed name=%s error=%r", name, str(e))
        for name, cur in sorted(have.items()):
            if name not in want and (cur.get("Labels") or {}).get(MANAGED_LABEL) == "true":
                self._remove(name, cur, "gone from netweave")
        self._name_containers()
        return True

    @staticmethod
    def _same(cur, spec):
        have = [(c.get("Subnet"), c.get("Gateway"))
                for c in (cur.get("IPAM") or {}).get("Config") or []]
        want = [(c["Subnet"], c["Gateway"]) for c in spec["IPAM"]["Config"]]
        return ((cur.get("Options") or {}) == spec["Options"] and have == want
                and bool(cur.get("EnableIPv6")) == spec["EnableIPv6"])

    def _remove(self, name, cur, why):
        try:
            self.docker.delete_network(cur["Id"])
            LOG.info("event=docker_network_removed name=%s reason=%r", name, why)
            return True
        except DockerError as e:      # containers still attached: try again next time
            LOG.warning("event=docker_network_kept name=%s reason=%r error=%r", name, why, str(e))
            return False

    def _name_containers(self):
        """Write the container's id, name and labels into the endpoints Docker made here."""
        eps = [e for e in self.nm.list_endpoints(host=self.host)
               if e.get("dockerEndpoint") and not e.get("containerName")]
        if not eps:
            return
        by_dep = {}
        for c in self.docker.containers():
            for net in ((c.get("NetworkSettings") or {}).get("Networks") or {}).values():
                if net.get("EndpointID"):
                    by_dep[net["EndpointID"]] = c
        for ep in eps:
            c = by_dep.get(ep["dockerEndpoint"])
            if c is None:
                continue
            labels = sorted("%s=%s" % kv for kv in (c.get("Labels") or {}).items())
            name = ((c.get("Names") or ["/"])[0]).lstrip("/")
            try:
                self.nm.create_endpoint(ep["endpointID"], ep["tenantName"], ep["networkName"],
                                        ep.get("groupName", ""), self.host, c["Id"],
                                        ep["intfName"], ep.get("ifName", ""),
                                        containerName=name, labels=labels)
                LOG.info("event=docker_endpoint_named endpoint=%s container=%s name=%s",
                         ep["endpointID"], c["Id"][:12], name)
            except (nmc.NetmasterError, nmc.NetmasterUnreachable) as e:
                LOG.warning("event=docker_endpoint_naming_failed endpoint=%s error=%r",
                            ep["endpointID"], str(e))

"""netplugin: the netweave host agent (one per host).

Threads, kept explicit:
  * the main thread owns the OVSDB IDL (the IDL is not thread-safe): it ensures br-int, the
    VXLAN tunnel port and the uplink, watches the IDL for changes and puts back what someone
    removed or altered, and runs the stateless resync against netmaster at start, when
    netmaster answers again, and every ``--resync-interval`` seconds;
  * the CNI server's threads run netweave-cni's requests one at a time, on OVSDB connections
    of their own (agent/cni_server.py);
  * one heartbeat thread POSTs the host registration to netmaster every
    ``--heartbeat-interval`` seconds. It never touches OVSDB; it only raises a flag that the
    main thread reads (``resync wanted``).

Restarting netplugin must not disturb traffic: every OVSDB write goes through an ensure
operation that writes nothing when OVSDB already holds the wanted state, and the agent never
touches flows (the controller owns them).
"""
import argparse
import os
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

from agent import cni_plugin, cni_server
from agent import docker_api, docker_plugin
from agent import credential, host_access, localapi, metrics, tunnel_neigh
from agent import netmaster_client as nmc
from agent import ovsdb as ovsdb_mod
from flows.pipeline import DEFAULT_PVT_SUBNET, HOST_PORT, HOST_PORT_NAME
from netweave import config

LOG = logging.getLogger("netplugin")

HOST_LABEL_KEY = "netweave-host-label"   # Open_vSwitch external_ids, read by netweave-cni
NETMASTER_KEY = "netweave-netmaster"
BRIDGE_KEY = "netweave-bridge"
STATE_KEY = "netweave-state-dir"          # where the host credential is (agent/credential.py)


def default_controller(netmaster_url, port=6653):
    """One OpenFlow target per netmaster (comma-separated URLs: clustered netmasters)."""
    hosts = [urllib.parse.urlparse(u.strip()).hostname or "127.0.0.1"
             for u in netmaster_url.split(",") if u.strip()] or ["127.0.0.1"]
    return ",".join("tcp:%s:%d" % (h, port) for h in dict.fromkeys(hosts))


def tls_controller(netmaster_url, port):
    """OpenFlow over TLS to every netmaster: ssl:<host>:<port> each."""
    return default_controller(netmaster_url, port).replace("tcp:", "ssl:")


def of_tls_port(text):
    """--of-tls-port: 'auto' (ask netmaster), 'none' (plain tcp), or a port."""
    if str(text).lower() in ("auto", "none"):
        return str(text).lower()
    n = int(text)
    if not 0 < n < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port")
    return n


def guess_vtep_ip(netmaster_url):
    """The source address this host would use to reach netmaster (best effort)."""
    host = urllib.parse.urlparse(netmaster_url.split(",")[0].strip()).hostname or "127.0.0.1"
    try:
        addr = socket.gethostbyname(host)
        out = subprocess.run(["ip", "-o", "route", "get", addr], capture_output=True,
                             text=True, timeout=5).stdout.split()
        if "src" in out:
            return out[out.index("src") + 1]
    except (OSError, subprocess.SubprocessError, socket.error):
        pass
    return ""


def link_exists(name):
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True,
                          timeout=10).returncode == 0


def host_links():
    """Names of this namespace's network interfaces (one `ip` call), or None when unknown."""
    res = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                         timeout=10)
    if res.returncode != 0:
        LOG.warning("event=link_list_failed error=%r", res.stderr.strip())
        return None
    names = set()
    for line in res.stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.add(parts[1].strip().split("@", 1)[0])
    return names


def delete_link(name):
    subprocess.run(["ip", "link", "del", "dev", name], capture_output=True, timeout=10)


class Agent:
    def __init__(self, args):
        self.args = args
        self.host_label = args.host_label
        self.bridge = args.bridge
        self.dpid = nmc.dpid_for_host(self.host_label)
        self.datapath_type = ovsdb_mod.choose_datapath(args.datapath)
        # the switch's OpenFlow targets: --controller as given, else tcp:<netmaster>:6653 until
        # this host holds its certificate and netmaster offers OpenFlow over TLS, then
        # ssl:<netmaster>:<its TLS port> (_learn_tls); the heartbeat thread may change it,
        # the main thread (the IDL's owner) applies it when controller_wanted is set
        self.controller = args.controller or default_controller(args.netmaster)
        self.controller_wanted = threading.Event()
        self._tls_learned = False
        self.vtep_ip = args.vtep_ip if args.vtep_ip is not None else guess_vtep_ip(args.netmaster)
        self.credential = credential.HostCredential(args.state_dir, self.host_label)
        self._no_credential = False  # netmaster offers no credentials (plain URL, 404)
        self._credential_error = None
        self.nm = nmc.NetmasterClient(args.netmaster, timeout=max(1.0, args.heartbeat_interval))
        self.stop_event = threading.Event()
        self.docker_wanted = threading.Event()
        self.resync_wanted = threading.Event()
        self._last_resync = None     # time.monotonic() of the last finished resync
        self.qos_wanted = threading.Event()
        self.api_port = 0            # the local API's port once it listens (0: none)
        self._endpoints_version = None
        self.db = None
        self.known_ports = {}        # endpoint port name -> external_ids, as last seen
        self._hb_thread = None
        self.cni = None              # the CNI server once it listens
        self.lender = ovsdb_mod.Lender()     # OVSDB connections of the CNI and Docker servers
        self.docker = docker_api.DockerApi(args.docker_socket) if args.docker_socket else None
        self.docker_networks = (docker_plugin.DockerNetworks(self.docker, self.nm, self.host_label)
                                if self.docker is not None and args.docker_plugin_dir else None)
        self.docker_server = None
        self._uplink_error = None
        # what /readyz answers: written by the main thread (the IDL's owner) and the
        # heartbeat thread, read by the local API's threads
        self.checks = {"ovsdb": "not connected yet", "netmaster": "no heartbeat answered yet"}
        # the userspace datapath drops a first packet to a VTEP it has no MAC for: keep
        # every peer's resolved (agent/tunnel_neigh.py); the kernel datapath queues instead
        self.neigh = (tunnel_neigh.TunnelNeighbours(localapi.vswitchd_target(args.ovsdb), self.host_label)
                      if self.datapath_type == "netdev" else None)
        self.vtep_mac = ""

    # -- OVSDB side (main thread only) ----------------------------------------------------------
    def connect_ovsdb(self):
        while not self.stop_event.is_set():
            try:
                self.db = ovsdb_mod.Ovsdb(self.args.ovsdb)
                return True
            except ovsdb_mod.OvsdbError as e:
                LOG.warning("event=ovsdb_unreachable remote=%s error=%r retry_in=1s",
                            self.args.ovsdb, str(e))
                self.stop_event.wait(1.0)
        return False

    @staticmethod
    def _repaired(reason, fmt, *args):
        """Creating things at start (or on a new controller target) is routine; having
        to put them back later is news."""
        LOG.log(logging.INFO if reason in ("start", "controller") else logging.WARNING, fmt, *args)

    def reconcile(self, reason):
        """Put br-int, vxlan0 and the uplink back to what they must be. No-op when right."""
        db = self.db
        bridge_was_there = db.has_bridge(self.bridge)
        self.ensure_ssl(reason)
        if db.ensure_bridge(self.bridge, self.datapath_type, self.dpid, self.controller):
            self._repaired(reason, "event=bridge_ensured bridge=%s reason=%s created=%s "
                           "datapath=%s dpid=%016x controller=%s", self.bridge, reason,
                           not bridge_was_there, self.datapath_type, self.dpid, self.controller)
        db.ensure_tunnel_port(self.bridge, "vxlan0", 100)
        if db.last_status != "unchanged":
            self._repaired(reason, "event=tunnel_port_ensured bridge=%s port=vxlan0 reason=%s",
                           self.bridge, reason)
        if not self.args.no_host_access:
            db.ensure_host_port(self.bridge, HOST_PORT_NAME, HOST_PORT)
            if db.last_status != "unchanged":
                self._repaired(reason, "event=host_port_ensured bridge=%s port=%s reason=%s",
                               self.bridge, HOST_PORT_NAME, reason)
        db.set_host_info({HOST_LABEL_KEY: self.host_label, NETMASTER_KEY: self.args.netmaster,
                          BRIDGE_KEY: self.bridge, STATE_KEY: os.path.abspath(self.args.state_dir)})
        if self.args.uplink:
            try:
                db.ensure_uplink_port(self.bridge, self.args.uplink, 101)
                if db.last_status != "unchanged":
                    self._repaired(reason, "event=uplink_port_ensured bridge=%s port=%s "
                                   "reason=%s", self.bridge, self.args.uplink, reason)
                self._uplink_error = None
            except ovsdb_mod.OvsdbError as e:
                if str(e) != self._uplink_error:      # once per distinct error, not per change
                    LOG.error("event=uplink_port_failed port=%s error=%r", self.args.uplink,
                              str(e))
                self._uplink_error = str(e)
        if not bridge_was_there and reason != "start":
            # the bridge was deleted under us with its ports: plug back the endpoint veths
            # that still exist (their containers still run)
            for name, ext in sorted(self.known_ports.items()):
                if link_exists(name):
                    ofport = db.ensure_endpoint_port(self.bridge, name, ext)
                    LOG.warning("event=endpoint_port_replugged port=%s endpoint=%s ofport=%s",
                                name, ext.get(ovsdb_mod.ENDPOINT_KEY), ofport)
        self.known_ports = db.list_endpoint_ports(self.bridge)

    def ensure_ssl(self, reason):
        """With an ssl: target, the switch shows this host's certificate (CN host:<label>,
        netmaster's CA) and checks netmaster's against the CA: the Open_vSwitch table's
        ssl row names the credential's files (agent/credential.py)."""
        cred = self.credential
        if "ssl:" not in self.controller or not all(os.path.exists(p) for p in (cred.key, cred.cert, cred.ca)):
            return
        if self.db.ensure_ssl(os.path.abspath(cred.key), os.path.abspath(cred.cert), os.path.abspath(cred.ca)):
            self._repaired(reason, "event=switch_ssl_ensured bridge=%s reason=%s certificate=%s ca=%s",
                           self.bridge, reason, cred.cert, cred.ca)

    def _start_controller(self):
        """At start: a host that holds its certificate and was on ssl: stays on it (a
        restarted agent does not flip its switch back to tcp), and a given TLS port is
        used at once; otherwise tcp until _learn_tls."""
        held = all(os.path.exists(self.credential.path(n)) for n in credential.FILES)
        if self.args.controller or self.args.of_tls_port == "none" or not held:
            return
        if self.args.of_tls_port != "auto":
            self.controller = tls_controller(self.args.netmaster, self.args.of_tls_port)
            return
        have = self.db.controller_targets(self.bridge)
        hosts = sorted(t.rsplit(":", 1)[0] for t in default_controller(self.args.netmaster).split(","))
        if have and all(t.startswith("ssl:") for t in have) and \
                sorted("tcp:" + t[4:].rsplit(":", 1)[0] for t in have) == hosts:
            self.controller = ",".join(have)

    def _learn_tls(self):
        """Heartbeat thread: once this host holds its certificate, point the switch at
        netmaster's OpenFlow over TLS (the port its /info names as ofTlsPort, or
        --of-tls-port), so that netmaster knows the switch by its certificate."""
        if self._tls_learned or self.args.controller or self.args.of_tls_port == "none" \
                or not os.path.exists(self.credential.cert):
            return
        port = self.args.of_tls_port
        if port == "auto":
            try:
                port = int((self.nm.get("/info") or {}).get("ofTlsPort") or 0)
            except (nmc.NetmasterError, nmc.NetmasterUnreachable, ValueError, TypeError) as e:
                LOG.warning("event=openflow_tls_port_unknown error=%r", str(e))
                return
        self._tls_learned = True
        target = tls_controller(self.args.netmaster, port) if port else default_controller(self.args.netmaster)
        if target != self.controller:
            LOG.info("event=openflow_target host=%s target=%s", self.host_label, target)
            self.controller = target
            self.controller_wanted.set()

    def resync(self):
        """Stateless resync: OVSDB endpoint ports vs netmaster's endpoints for this host."""
        # OVSDB first, netmaster second: netweave-cni allocates in netmaster before it plugs
        # the port, so every port read here has its endpoint in the list read after it,
        # and a concurrent ADD is never mistaken for a stale port.
        ports = self.db.list_endpoint_ports(self.bridge)
        try:
            all_eps = self.nm.list_endpoints()
        except (nmc.NetmasterError, nmc.NetmasterUnreachable) as e:
            LOG.warning("event=resync_deferred error=%r", str(e))
            return False
        known_ids = {e.get("endpointID") for e in all_eps}
        mine = [e for e in all_eps if e.get("homingHost") == self.host_label]
        removed = 0
        for name, ext in sorted(ports.items()):
            ep_id = ext.get(ovsdb_mod.ENDPOINT_KEY)
            if ep_id not in known_ids:
                self.db.remove_port(self.bridge, name)
                delete_link(name)
                removed += 1
                metrics.RESYNC_REMOVED.inc()
                LOG.warning("event=stale_endpoint_port_removed port=%s endpoint=%s "
                            "container=%s reason=unknown_to_netmaster",
                            name, ep_id, ext.get("container-id"))
        by_id = {ext.get(ovsdb_mod.ENDPOINT_KEY): name for name, ext in ports.items()}
        # in this order: an endpoint in the list read above whose ADD is not in flight any
        # more has its veth by now, unless it died since
        adding = self.cni.adding() if self.cni is not None else set()
        links = host_links()
        missing = released = 0
        for ep in mine:
            ep_id = ep.get("endpointID")
            port = ep.get("intfName") or nmc.host_port_name(ep_id)
            if links is not None and port not in links:
                outcome = self.release_ghost(ep, port, by_id.get(ep_id), adding)
                if outcome == "released":
                    released += 1
                if outcome:
                    continue
            if ep_id not in by_id:
                missing += 1
                LOG.warning("event=endpoint_port_missing endpoint=%s port=%s container=%s "
                            "tenant=%s network=%s", ep_id, port, ep.get("containerID"),
                            ep.get("tenantName"), ep.get("networkName"))
        self.apply_qos(mine)
        self.known_ports = self.db.list_endpoint_ports(self.bridge)
        LOG.info("event=resync_done host=%s ports=%d netmaster_endpoints=%d removed=%d "
                 "missing=%d released=%d", self.host_label, len(ports), len(mine), removed,
                 missing, released)
        return True

    def release_ghost(self, ep, port, port_row, adding):
        """An endpoint of this host whose veth is gone: its container died and nobody ran DEL
        (a container killed behind its runtime's back, a runtime that crashed, a Docker
        daemon that lost its state). Release it at netmaster and remove what is left of its
        OVSDB port (a row whose device is gone), unless its ADD is in flight in the CNI
        server or it is younger than the grace period (an ADD allocates in netmaster before
        it makes the veth and plugs the port). Needs nothing but the endpoint record, so it
        works for CNI's endpoints and Docker's alike.
        Returns "released", "young" (not a ghost yet) or None (keep; report if port-less)."""
        ep_id = ep.get("endpointID")
        if ep_id in adding:
            return "young"
        try:
            age = time.time() - float(ep.get("created") or 0)
        except (TypeError, ValueError):
            age = float("inf")
        if age < self.release_grace:
            LOG.info("event=endpoint_veth_missing_young endpoint=%s port=%s age_s=%.1f "
                     "grace_s=%.1f", ep_id, port, age, self.release_grace)
            return "young"
        try:
            self.nm.delete_endpoint(ep_id)
        except (nmc.NetmasterError, nmc.NetmasterUnreachable) as e:
            LOG.warning("event=stale_endpoint_release_failed endpoint=%s error=%r", ep_id, str(e))
            return None
        if port_row:
            self.db.remove_port(self.bridge, port_row)
        metrics.RESYNC_RELEASED.inc()
        LOG.warning("event=stale_endpoint_released endpoint=%s ip=%s container=%s name=%s "
                    "port=%s port_row=%s tenant=%s network=%s age_s=%.1f reason=veth_gone",
                    ep_id, (ep.get("ipAddress") or [""])[0], ep.get("containerID"),
                    ep.get("containerName", ""), port, "removed" if port_row else "absent",
                    ep.get("tenantName"), ep.get("networkName"), age)
        return "released"

    @property
    def release_grace(self):
        """How old an endpoint without port and veth must be before resync releases it."""
        return max(self.args.resync_interval, 1.0)

    def apply_qos(self, endpoints):
        """Ingress policing of each local endpoint port from its netprofile, as netmaster
        reports it in the endpoint record. Ensure-style: no write when already right."""
        ports = self.db.list_endpoint_ports(self.bridge)
        by_id = {ext.get(ovsdb_mod.ENDPOINT_KEY): name for name, ext in ports.items()}
        for ep in endpoints:
            port = by_id.get(ep.get("endpointID"))
            if port is None or "ingressPolicingRate" not in ep:
                continue
            rate = int(ep.get("ingressPolicingRate") or 0)
            burst = int(ep.get("ingressPolicingBurst") or 0)
            self.db.set_ingress_policing(port, rate, burst)
            if self.db.last_status != "unchanged":
                LOG.info("event=qos_applied port=%s endpoint=%s rate_kbps=%d burst_kb=%d",
                         port, ep.get("endpointID"), rate, burst)

    def refresh_qos(self):
        try:
            mine = self.nm.list_endpoints(host=self.host_label)
        except (nmc.NetmasterError, nmc.NetmasterUnreachable) as e:
            LOG.warning("event=qos_refresh_deferred error=%r", str(e))
            return False
        self.apply_qos(mine)
        return True

    def ensure_credential(self):
        """This host's credential: from the state folder, else issued by netmaster (with
        the bootstrap token over HTTPS, or as the local admin over the loopback door).
        True once held; the heartbeat thread retries until then."""
        if self.credential.token or self._no_credential:
            return True
        if not self.credential.load():
            try:
                self.credential.obtain(self.args.netmaster, self._bootstrap_token(),
                                       self.args.cacert or None, self.vtep_ip or "")
            except (nmc.NetmasterError, nmc.NetmasterUnreachable, OSError) as e:
                if isinstance(e, nmc.NetmasterError) and e.status == 404 and \
                        self.args.netmaster.startswith("http:"):
                    # a plain (loopback) netmaster without credentials: go on as before,
                    # with no local API, which needs the host's certificate
                    if not self._no_credential:
                        LOG.warning("event=host_credential_unavailable host=%s netmaster=%s "
                                    "local_api=off", self.host_label, self.args.netmaster)
                    self._no_credential = True
                    return True
                self.checks["netmaster"] = f"no host credential yet: {e}"
                if str(e) != self._credential_error:      # once per distinct error, not per beat
                    LOG.warning("event=host_credential_failed host=%s error=%r", self.host_label, str(e))
                self._credential_error = str(e)
                return False
        # every client of this URL in this process (heartbeat, CNI server, Docker driver) uses it
        nmc.set_credential(self.args.netmaster, self.credential.token,
                           self.args.cacert or self.credential.ca)
        return True

    def _bootstrap_token(self):
        if self.args.bootstrap_token_file:
            with open(self.args.bootstrap_token_file) as f:
                return f.read().strip()
        return os.environ.get("NETWEAVE_BOOTSTRAP_TOKEN", "")

    def start_local_api(self):
        """netmaster's way to this host's own switch (ofproto/trace for `netctl trace --live`),
        on the VTEP address where netmaster reaches the host; TLS with this host's
        certificate, /trace only for netmaster's client certificate."""
        if self.args.api_port < 0 or self.api_port or not self.credential.token:
            return
        addr = self.vtep_ip or "127.0.0.1"
        try:
            srv = localapi.serve(addr, self.args.api_port, self.args.ovsdb, self.bridge,
                                 ready=self.ready,
                                 tls=(self.credential.cert, self.credential.key, self.credential.ca))
            self.api_port = srv.server_port
        except OSError as e:
            LOG.error("event=local_api_failed address=%s port=%d error=%r", addr, self.args.api_port, str(e))

    def start_cni_server(self):
        """netweave-cni on this host hands its requests to us (agent/cni_plugin.py)."""
        path = self.args.cni_socket
        if path is None:
            path = cni_plugin.beside_ovsdb(self.args.ovsdb)   # where netweave-cni looks
        if not path:
            return
        srv = cni_server.CniServer(path, self.lender)
        try:
            if srv.start():
                self.cni = srv
        except OSError as e:
            LOG.error("event=cni_socket_failed path=%s error=%r", path, str(e))

    def start_docker_plugin(self):
        """Docker's network and IPAM driver "netplugin", on the socket dockerd looks for."""
        folder = self.args.docker_plugin_dir
        if not folder:
            return
        drv = docker_plugin.Driver(self.host_label, self.bridge, self.args.ovsdb,
                                   nmc.NetmasterClient(self.args.netmaster, timeout=10.0),
                                   self.lender, self.docker)
        try:
            self.docker_server = docker_plugin.serve(
                os.path.join(folder, docker_plugin.DRIVER + ".sock"), drv)
        except OSError as e:
            LOG.error("event=docker_plugin_failed folder=%s error=%r", folder, str(e))

    def sync_docker(self):
        """Docker networks for netweave's networks and groups, when this host runs dockerd."""
        if self.docker_networks is not None and os.path.exists(self.args.docker_socket):
            self.docker_networks.sync()

    def docker_loop(self):
        """Docker sync in its own thread, woken by each heartbeat: a dockerd that is slow to
        answer (starting, or busy; 10 s per call) must not hold the heartbeat, which keeps the
        host up and its tunnel neighbours resolved."""
        while not self.stop_event.is_set():
            if not self.docker_wanted.wait(1.0):
                continue
            self.docker_wanted.clear()
            try:
                self.sync_docker()
            except Exception as e:         # noqa: BLE001 - keep syncing on the next beat
                LOG.error("event=docker_sync_failed error=%r", str(e))

    # -- heartbeat thread (HTTP only) ---------------------------------------------------------
    def heartbeat_loop(self):
        up = None
        while not self.stop_event.is_set():
            if not self.ensure_credential():
                self.stop_event.wait(self.args.heartbeat_interval)
                continue
            self.start_local_api()
            self._learn_tls()
            try:
                self._find_vtep()
                answer = self.nm.register_host(self.host_label, self.vtep_ip, self.dpid,
                                               self.args.uplink or "", agent_port=self.api_port,
                                               vtep_mac=self.vtep_mac)
                version = (answer or {}).get("endpointsVersion") \
                    if isinstance(answer, dict) else None
                if version is not None and version != self._endpoints_version:
                    # something applied to this host's endpoints (e.g. a netprofile) changed
                    if self._endpoints_version is not None:
                        self.qos_wanted.set()
                    self._endpoints_version = version
                metrics.HEARTBEATS.labels("ok").inc()
                self.checks["netmaster"] = "ok"
                self.sync_tunnel_neighbours()
                self.sync_host_access()
                self.docker_wanted.set()
                if up is not True:
                    LOG.info("event=host_registered host=%s vtep=%s dpid=%016x netmaster=%s",
                             self.host_label, self.vtep_ip, self.dpid, self.args.netmaster)
                    self.resync_wanted.set()
                up = True
            except (nmc.NetmasterError, nmc.NetmasterUnreachable) as e:
                if isinstance(e, nmc.NetmasterError) and e.status == 401:
                    # revoked or rotated by an admin: bootstrap again on the next beat
                    LOG.warning("event=host_credential_refused host=%s error=%r", self.host_label, str(e))
                    self.credential.forget()
                    self._tls_learned = False
                metrics.HEARTBEATS.labels("failed").inc()
                self.checks["netmaster"] = f"heartbeat failed: {e}"
                if up is not False:
                    LOG.warning("event=heartbeat_failed host=%s error=%r", self.host_label,
                                str(e))
                up = False
            self.stop_event.wait(self.args.heartbeat_interval)

    def _find_vtep(self):
        """The VTEP interface's MAC, reported to netmaster for the other hosts' caches."""
        if self.vtep_mac:
            return
        found = tunnel_neigh.vtep_interface(self.vtep_ip)
        if found is None:
            return
        dev, self.vtep_mac, subnet = found
        if self.neigh is not None:
            self.neigh.configure(dev, subnet)
        LOG.info("event=vtep_interface device=%s mac=%s subnet=%s", dev, self.vtep_mac, subnet)

    def sync_host_access(self):
        """The host port's kernel side, for the pvtSubnet netmaster has (heartbeat thread)."""
        if self.args.no_host_access:
            return
        try:
            g = self.nm.get("/api/v1/globals/global/") or {}
        except (nmc.NetmasterError, nmc.NetmasterUnreachable) as e:
            LOG.warning("event=host_access_deferred error=%r", str(e))
            return
        try:
            problem = host_access.ensure(g.get("pvtSubnet") or DEFAULT_PVT_SUBNET)
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            problem = f"host access: {e}"
        self.checks["host_access"] = problem or "ok"

    def sync_tunnel_neighbours(self):
        """Peers' VTEP MACs into OVS's tunnel neighbour cache (heartbeat thread: no IDL)."""
        if self.neigh is None or not self.neigh.device:
            return
        try:
            hosts = self.nm.list_hosts()
        except (nmc.NetmasterError, nmc.NetmasterUnreachable) as e:
            LOG.warning("event=tunnel_neighbours_deferred error=%r", str(e))
            return
        try:
            missing = self.neigh.sync(hosts)
        except (OSError, subprocess.SubprocessError) as e:
            self.neigh.problem = f"ovs-appctl failed: {e}"
            missing = sorted(self.neigh.wanted(hosts))
        self.checks["tunnels"] = ("ok" if not missing else
                                  f"no tunnel neighbour entry for {', '.join(missing)}: "
                                  f"{self.neigh.problem or 'not set yet'}")

    # -- main loop ------------------------------------------------------------------------------
    def run(self):
        LOG.info("event=agent_start host=%s bridge=%s datapath=%s ovsdb=%s netmaster=%s",
                 self.host_label, self.bridge, self.datapath_type, self.args.ovsdb,
                 self.args.netmaster)
        if not self.connect_ovsdb():
            return 0
        self._start_controller()
        self.reconcile("start")
        self.start_cni_server()
        self.start_docker_plugin()
        self._hb_thread = threading.Thread(target=self.heartbeat_loop, name="heartbeat",
                                           daemon=True)
        self._hb_thread.start()
        if self.docker_networks is not None:
            threading.Thread(target=self.docker_loop, name="docker-sync", daemon=True).start()
        last_seqno = self.db.run()
        while not self.stop_event.is_set():
            self.db.wait(0.25)
            seqno = self.db.run()
            self._check_switch()
            if not self.db.ready():
                continue        # reconnecting: the IDL is empty until it is in sync again
            try:
                if self.controller_wanted.is_set():
                    self.controller_wanted.clear()
                    self.reconcile("controller")
                    last_seqno = self.db.change_seqno
                if seqno != last_seqno:
                    self.reconcile("ovsdb_change")
                    last_seqno = self.db.change_seqno
                interval = self.args.resync_interval
                if interval > 0 and self._last_resync is not None and \
                        time.monotonic() - self._last_resync >= interval:
                    self.resync_wanted.set()
                if self.resync_wanted.is_set():
                    self.resync_wanted.clear()
                    if self.resync():
                        self._last_resync = time.monotonic()
                    else:
                        self.resync_wanted.set()
                    last_seqno = self.db.change_seqno
                if self.qos_wanted.is_set():
                    self.qos_wanted.clear()
                    if not self.refresh_qos():
                        self.qos_wanted.set()
                    last_seqno = self.db.change_seqno
            except ovsdb_mod.OvsdbError as e:
                LOG.error("event=reconcile_failed error=%r retry=true", str(e))
                self.stop_event.wait(1.0)
        LOG.info("event=agent_stop host=%s", self.host_label)
        if self.cni is not None:
            self.cni.stop()
        if self.docker_server is not None:
            self.docker_server.shutdown()
            self.docker_server.server_close()
            try:
                os.unlink(self.docker_server.server_address)
            except OSError:
                pass
        self.db.close()
        return 0

    def stop(self, *_):
        self.stop_event.set()

    # -- health (main thread writes, the local API reads) ----------------------------------------
    def _check_switch(self):
        db = self.db
        if not db.ready():
            self.checks["ovsdb"] = f"not in sync with {self.args.ovsdb}"
            return
        self.checks["ovsdb"] = "ok"
        if not db.has_bridge(self.bridge):
            self.checks["switch"] = f"bridge {self.bridge} is missing"
        elif not db.controller_connected(self.bridge):
            self.checks["switch"] = f"bridge {self.bridge} is not connected to {self.controller}"
        else:
            self.checks["switch"] = "ok"
        metrics.ENDPOINT_PORTS.set(len(self.known_ports))

    def ready(self):
        checks = dict(self.checks)
        return all(v == "ok" for v in checks.values()), checks


def build_parser():
    p = argparse.ArgumentParser(prog="netplugin", description="netweave host agent")
    p.add_argument("--netmaster", default=nmc.DEFAULT_NETMASTER,
                   help="netmaster URL; several comma-separated (clustered netmasters: "
                        "requests fail over between them)")
    p.add_argument("--host-label", default=socket.gethostname(),
                   help="this host's name in netmaster (default: hostname)")
    p.add_argument("--vtep-ip", default=None,
                   help="tunnel endpoint IP of this host (default: source IP towards netmaster)")
    p.add_argument("--ovsdb", default="unix:/var/run/openvswitch/db.sock")
    p.add_argument("--controller", default=None,
                   help="OpenFlow controller target, or several comma-separated (default "
                        "ssl:<netmaster host>:<its TLS port> once this host holds its certificate, "
                        "else tcp:<netmaster host>:6653, for each netmaster)")
    p.add_argument("--of-tls-port", type=of_tls_port, default="auto",
                   help="OpenFlow over TLS: once this host holds its certificate (--state-dir), "
                        "its switch connects to ssl:<netmaster host>:PORT with it; 'auto' (default) "
                        "asks netmaster for its port, 'none' stays on tcp (ignored with --controller)")
    p.add_argument("--datapath", choices=["system", "netdev", "auto"], default="auto")
    p.add_argument("--uplink", default="", help="interface for VLAN networks (optional)")
    p.add_argument("--bridge", default="br-int")
    p.add_argument("--no-host-access", action="store_true",
                   help="no host port: by default netplugin keeps nethost0 (ofport 102) with this host's "
                        "pvtSubnet address, IPv4 forwarding and masquerading, so that endpoints reach "
                        "this host and the outside")
    p.add_argument("--heartbeat-interval", type=float, default=2.0)
    p.add_argument("--resync-interval", type=float, default=30.0,
                   help="seconds between resyncs with netmaster; a resync releases endpoints "
                        "whose port and veth are gone and that are older than this interval "
                        "(0: resync only at start and reconnect)")
    p.add_argument("--cacert", default="",
                   help="CA certificate to trust for an https:// netmaster (netmaster's pki folder's "
                        "ca.crt); default: the system's, then the CA netmaster gave with the credential")
    p.add_argument("--bootstrap-token-file", default="",
                   help="file holding netmaster's bootstrap token (its pki folder's bootstrap.token), "
                        "to obtain this host's credential once; or $NETWEAVE_BOOTSTRAP_TOKEN")
    p.add_argument("--state-dir", default="/var/lib/netweave/netplugin",
                   help="folder of this host's credential and certificate (root only)")
    p.add_argument("--api-port", type=int, default=9090,
                   help="port of the local API on the VTEP address (0: any free port, -1: off)")
    p.add_argument("--docker-plugin-dir", default="/run/docker/plugins",
                   help="folder where dockerd looks for plugins: netplugin serves Docker's network "
                        "and IPAM driver 'netplugin' there (empty: no Docker driver)")
    p.add_argument("--docker-socket", default="/var/run/docker.sock",
                   help="dockerd's API socket, to keep a Docker network per netweave network "
                        "and group (empty: none)")
    p.add_argument("--cni-socket", default=None,
                   help="unix socket where netweave-cni hands over its requests (default: "
                        "netweave-cni.sock beside the OVSDB unix socket; empty: none)")
    p.add_argument("--log-level", default="INFO")
    config.add_config_option(p)
    return p


def parse_args(argv=None):
    """Flags > the configuration file's [netplugin] table (netweave/config.py) > defaults."""
    return config.parse_args(build_parser(), argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    agent = Agent(args)
    signal.signal(signal.SIGTERM, agent.stop)
    signal.signal(signal.SIGINT, agent.stop)
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())

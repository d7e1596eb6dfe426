"""Idempotent OVSDB operations for the netweave agent, over the python-ovs IDL.

One ``Ovsdb`` object owns one IDL connection. The IDL is not thread-safe: every method of
an ``Ovsdb`` must be called from the thread that owns it (netplugin's main loop, or the
short-lived CNI process). Nothing here shells out to ovs-vsctl.

Every ``ensure_*`` operation compares what OVSDB holds with what is wanted and writes only
the difference. When nothing differs no operation is sent and the transaction status is
``unchanged`` (kept in ``last_status``); ``next_cfg`` is bumped only when something changed,
and then the call waits until ovs-vswitchd has applied it (``cur_cfg >= next_cfg``).
"""
import logging
import os
import subprocess
import threading
import time
import warnings

# python-ovs's poller probes for eventlet, whose import prints a deprecation banner on stderr
warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")

import ovs.db.idl  # noqa: E402
import ovs.jsonrpc  # noqa: E402
import ovs.poller  # noqa: E402
import ovs.stream  # noqa: E402

from agent import metrics  # noqa: E402

LOG = logging.getLogger(__name__)

SCHEMA_FALLBACK = "/usr/share/openvswitch/vswitch.ovsschema"

COLUMNS = {
    "Open_vSwitch": ["bridges", "cur_cfg", "next_cfg", "external_ids", "ssl"],
    "SSL": ["private_key", "certificate", "ca_cert"],
    "Bridge": ["name", "datapath_type", "protocols", "fail_mode", "other_config",
               "controller", "ports", "external_ids"],
    "Controller": ["target", "connection_mode", "is_connected", "max_backoff"],
    "Port": ["name", "interfaces", "external_ids"],
    "Interface": ["name", "type", "options", "ofport", "ofport_request", "external_ids",
                  "error", "ingress_policing_rate", "ingress_policing_burst", "mtu_request"],
}

# OVS backs off up to 8 s between reconnects by default: a restarted netmaster would
# wait that long for its switches (their flows keep forwarding meanwhile).
CONTROLLER_MAX_BACKOFF_MS = 1000

ENDPOINT_KEY = "netweave-endpoint"  # Interface external_ids key marking a netweave endpoint


class OvsdbError(Exception):
    """OVSDB refused a transaction, timed out, or vswitchd could not apply it."""


def fetch_schema(remote, timeout=10.0):
    """Ask the server for the Open_vSwitch schema (the pip wheel ships none we can find)."""
    if remote.startswith("unix:"):
        try:
            return _fetch_schema_unix(remote[5:], timeout)
        except (OSError, ValueError):
            pass                 # let python-ovs try, and say what went wrong
    err, stream = ovs.stream.Stream.open_block(ovs.stream.Stream.open(remote),
                                               int(timeout * 1000))
    if err:
        raise OvsdbError("cannot connect to OVSDB at %s: %s" % (remote, os.strerror(err)))
    conn = ovs.jsonrpc.Connection(stream)
    try:
        req = ovs.jsonrpc.Message.create_request("get_schema", ["Open_vSwitch"])
        err, reply = conn.transact_block(req)
        if err or reply is None or reply.error:
            raise OvsdbError("get_schema from %s failed: %s" % (
                remote, os.strerror(err) if err else getattr(reply, "error", None)))
        return reply.result
    finally:
        conn.close()


def _fetch_schema_unix(path, timeout):
    """get_schema over the unix socket, decoded by the C json module: python-ovs's
    pure-Python parser took ~50 ms of every short-lived CNI call for the schema alone."""
    import json
    import socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps({"method": "get_schema", "params": ["Open_vSwitch"], "id": 0}).encode())
        buf, dec = b"", json.JSONDecoder()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raise ValueError("OVSDB closed the connection during get_schema")
            buf += chunk
            try:
                msg, _ = dec.raw_decode(buf.decode())
            except ValueError:
                continue
            if msg.get("error") or "result" not in msg:
                raise ValueError("get_schema failed: %r" % msg.get("error"))
            return msg["result"]


def datapath_id_str(dpid):
    """OVS wants other_config:datapath-id as exactly 16 hex digits."""
    if isinstance(dpid, str):
        dpid = int(dpid, 16)
    if not 0 < dpid < 1 << 64:
        raise ValueError("dpid out of range: %r" % dpid)
    return "%016x" % dpid


def _opt(value):
    """Optional (min 0, max 1) columns read back as lists; give the scalar or None."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


class Ovsdb:
    def __init__(self, remote, timeout=10.0):
        self.remote = remote
        self.timeout = timeout
        helper = ovs.db.idl.SchemaHelper(schema_json=fetch_schema(remote, timeout))
        for table, cols in COLUMNS.items():
            helper.register_columns(table, list(cols))
        self.idl = ovs.db.idl.Idl(remote, helper)
        self.last_status = None
        self._wait_for(self.ready, "connect to OVSDB at %s" % remote)
        LOG.debug("event=ovsdb_connected remote=%s", remote)

    # -- IDL plumbing --------------------------------------------------------------------------
    def close(self):
        self.idl.close()

    def run(self):
        """Process what the server sent. Returns the IDL change sequence number."""
        self.idl.run()
        return self.idl.change_seqno

    def ready(self):
        """Connected and holding the server's current contents. After a reconnect the IDL
        is empty until the monitor reply arrives: deciding anything then (e.g. "br-int is
        missing") would be wrong, so every transaction waits for this first."""
        return (self.idl._session.is_connected()
                and self.idl.state == self.idl.IDL_S_MONITORING)

    def sync(self):
        """Process what the server sent since the last call and wait until in sync: a
        long-lived connection used now and then (netplugin's for CNI requests) calls this
        before it reads anything."""
        self._wait_for(self.ready, "OVSDB connection at %s to be in sync" % self.remote)

    @property
    def change_seqno(self):
        return self.idl.change_seqno

    def wait(self, timeout_s):
        """Block until the IDL has something to process or ``timeout_s`` passed."""
        poller = ovs.poller.Poller()
        self.idl.wait(poller)
        poller.timer_wait(int(timeout_s * 1000))
        poller.block()

    def _wait_for(self, cond, what, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            self.idl.run()
            if cond():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise OvsdbError("timed out waiting to %s" % what)
            self.wait(min(left, 0.5))

    def _root(self):
        rows = list(self.idl.tables["Open_vSwitch"].rows.values())
        return rows[0] if rows else None

    def _bridge(self, name):
        for row in self.idl.tables["Bridge"].rows.values():
            if row.name == name:
                return row
        return None

    def _port(self, bridge_row, name):
        if bridge_row is None:
            return None
        for port in bridge_row.ports:
            if port.name == name:
                return port
        return None

    def _transact(self, build, comment, wait_applied=True):
        """Run ``build(txn)`` in a transaction, retrying on TRY_AGAIN with fresh IDL data.

        ``build`` returns True when it added operations (something differed). When nothing
        differs the transaction is still committed (status ``unchanged``) but next_cfg is not
        bumped. Returns the status string.
        """
        t0 = time.monotonic()
        try:
            status = self._transact_once(build, comment, wait_applied)
        except OvsdbError:
            metrics.OVSDB_TXN_SECONDS.labels(comment.split(" ")[0], "error").observe(time.monotonic() - t0)
            raise
        metrics.OVSDB_TXN_SECONDS.labels(comment.split(" ")[0], status).observe(time.monotonic() - t0)
        return status

    def _transact_once(self, build, comment, wait_applied):
        deadline = time.monotonic() + self.timeout
        while True:
            self._wait_for(self.ready, "OVSDB connection to be in sync before %s" % comment)
            seqno = self.idl.change_seqno
            txn = ovs.db.idl.Transaction(self.idl)
            txn.add_comment("netweave: " + comment)
            changed = build(txn)
            root = self._root()
            if changed and wait_applied and root is not None:
                root.increment("next_cfg")
            status = txn.commit_block()
            name = ovs.db.idl.Transaction.status_to_string(status)
            if status == ovs.db.idl.Transaction.TRY_AGAIN:
                if time.monotonic() > deadline:
                    raise OvsdbError("%s: transaction kept failing (try again)" % comment)
                # wait for the IDL to catch up before rebuilding from fresh rows
                self._wait_for(lambda: self.idl.change_seqno != seqno,
                               "refresh IDL after try-again", timeout=2)
                continue
            if status not in (ovs.db.idl.Transaction.SUCCESS, ovs.db.idl.Transaction.UNCHANGED):
                raise OvsdbError("%s: transaction %s: %s" % (comment, name, txn.get_error()))
            self.last_status = name
            if changed and wait_applied and status == ovs.db.idl.Transaction.SUCCESS \
                    and root is not None:
                target = txn.get_increment_new_value()
                self._wait_for(lambda: (self._root() is not None
                                        and self._root().cur_cfg >= target),
                               "vswitchd to apply %s" % comment)
            if changed:
                LOG.info("event=ovsdb_txn op=%s status=%s", comment, name)
            return name

    # -- bridge ---------------------------------------------------------------------------------
    def ensure_bridge(self, name="br-int", datapath_type="netdev", dpid=None,
                      controller_target=None):
        """Bridge with OpenFlow13, fail_mode secure, datapath-id, in-band off, its controllers
        (``controller_target``: one target or several comma-separated).

        Returns True when something was changed (``last_status`` says how)."""
        dpid_s = datapath_id_str(dpid) if dpid is not None else None
        changed_any = []

        def build(txn):
            changed = False
            root = self._root()
            if root is None:
                root = txn.insert(self.idl.tables["Open_vSwitch"])
                changed = True
            br = self._bridge(name)
            if br is None:
                iface = txn.insert(self.idl.tables["Interface"])
                iface.name = name
                iface.type = "internal"
                port = txn.insert(self.idl.tables["Port"])
                port.name = name
                port.interfaces = [iface]
                br = txn.insert(self.idl.tables["Bridge"])
                br.name = name
                br.ports = [port]
                root.addvalue("bridges", br)
                changed = fresh = True
            else:
                fresh = False
                if br.uuid not in [b.uuid for b in root.bridges]:
                    root.addvalue("bridges", br)
                    changed = True
            if fresh or br.datapath_type != datapath_type:
                br.datapath_type = datapath_type
                changed = True
            if fresh or list(br.protocols) != ["OpenFlow13"]:
                br.protocols = ["OpenFlow13"]
                changed = True
            if fresh or _opt(br.fail_mode) != "secure":
                br.fail_mode = "secure"
                changed = True
            want_oc = {"disable-in-band": "true"}
            if dpid_s:
                want_oc["datapath-id"] = dpid_s
            if fresh:
                br.other_config = want_oc
            else:
                for k, v in want_oc.items():
                    if br.other_config.get(k) != v:
                        br.setkey("other_config", k, v)
                        changed = True
            if controller_target:
                # one Controller row per target (clustered netmasters: every member)
                targets = [t.strip() for t in controller_target.split(",") if t.strip()]
                ctrls = [] if fresh else list(br.controller)
                if sorted(c.target for c in ctrls) == sorted(targets):
                    for c in ctrls:
                        if _opt(c.connection_mode) != "out-of-band":
                            c.connection_mode = "out-of-band"
                            changed = True
                        if _opt(c.max_backoff) != CONTROLLER_MAX_BACKOFF_MS:
                            c.max_backoff = CONTROLLER_MAX_BACKOFF_MS
                            changed = True
                else:
                    rows = []
                    for t in targets:
                        c = txn.insert(self.idl.tables["Controller"])
                        c.target = t
                        c.connection_mode = "out-of-band"
                        c.max_backoff = CONTROLLER_MAX_BACKOFF_MS
                        rows.append(c)
                    br.controller = rows
                    changed = True
            changed_any[:] = [changed]
            return changed

        self._transact(build, "ensure_bridge %s" % name)
        return bool(changed_any and changed_any[0])

    def ensure_ssl(self, private_key, certificate, ca_cert):
        """The switch's TLS identity for `ssl:` controller targets (the Open_vSwitch
        table's ssl row, what `ovs-vsctl set-ssl` writes): file paths that
        ovs-vswitchd reads, and reads again when they change.
        Returns True when something was changed."""
        want = {"private_key": private_key, "certificate": certificate, "ca_cert": ca_cert}
        self.idl.run()
        root = self._root()
        have = _opt(root.ssl) if root is not None else None
        if have is not None and all(getattr(have, k) == v for k, v in want.items()):
            self.last_status = "unchanged"          # the common case: no transaction at all
            return False
        changed_any = []

        def build(txn):
            root = self._root()
            if root is None:
                raise OvsdbError("the Open_vSwitch table has no row")
            row = _opt(root.ssl)
            if row is not None and all(getattr(row, k) == v for k, v in want.items()):
                changed_any[:] = [False]
                return False
            if row is None:
                row = txn.insert(self.idl.tables["SSL"])
                root.ssl = row
            for k, v in want.items():
                setattr(row, k, v)
            changed_any[:] = [True]
            return True

        self._transact(build, "ensure_ssl")
        return bool(changed_any and changed_any[0])

    def controller_targets(self, name="br-int"):
        """The bridge's controller targets, as OVSDB holds them."""
        self.idl.run()
        br = self._bridge(name)
        return sorted(c.target for c in br.controller) if br is not None else []

    def controller_connected(self, name="br-int"):
        """Whether the bridge's OpenFlow connection to netmaster is up (ovs-vswitchd's word)."""
        br = self._bridge(name)
        return br is not None and any(c.is_connected for c in br.controller)

    def bridge_uuid(self, name="br-int"):
        self.idl.run()
        br = self._bridge(name)
        return br.uuid if br is not None else None

    def bridge_datapath_type(self, name="br-int"):
        self.idl.run()
        br = self._bridge(name)
        return br.datapath_type if br is not None else None

    def has_bridge(self, name="br-int"):
        return self.bridge_uuid(name) is not None

    def set_host_info(self, info):
        """Record ``{key: value}`` in Open_vSwitch external_ids (e.g. the host label, so
        that netweave-cni on this host can find it). Idempotent."""
        def build(txn):
            root = self._root()
            if root is None:
                return False
            changed = False
            for k, v in info.items():
                if root.external_ids.get(k) != v:
                    root.setkey("external_ids", k, v)
                    changed = True
            return changed
        self._transact(build, "set_host_info", wait_applied=False)

    def host_info(self):
        self.idl.run()
        root = self._root()
        return dict(root.external_ids) if root is not None else {}

    # -- ports ----------------------------------------------------------------------------------
    def _ensure_port(self, bridge, name, iface_type, options=None, ofport_request=None,
                     external_ids=None, what="port", columns=None):
        def build(txn):
            br = self._bridge(bridge)
            if br is None:
                raise OvsdbError("bridge %s does not exist" % bridge)
            changed = False
            port = self._port(br, name)
            if port is None:
                # a port of that name on another bridge would make vswitchd fail: move it
                for other in self.idl.tables["Bridge"].rows.values():
                    stale = self._port(other, name)
                    if stale is not None:
                        other.delvalue("ports", stale)
                        stale.delete()
                iface = txn.insert(self.idl.tables["Interface"])
                iface.name = name
                port = txn.insert(self.idl.tables["Port"])
                port.name = name
                port.interfaces = [iface]
                br.addvalue("ports", port)
                changed = True
                fresh = True
            else:
                ifaces = [i for i in port.interfaces if i.name == name]
                if not ifaces:
                    iface = txn.insert(self.idl.tables["Interface"])
                    iface.name = name
                    port.interfaces = [iface]
                    changed = True
                    fresh = True
                else:
                    iface = ifaces[0]
                    fresh = False
            if fresh or iface.type != iface_type:
                iface.type = iface_type
                changed = True
            if fresh:
                if options:
                    iface.options = dict(options)
                if external_ids:
                    iface.external_ids = dict(external_ids)
            else:
                for col, want in (("options", options), ("external_ids", external_ids)):
                    have = getattr(iface, col)
                    for k, v in (want or {}).items():
                        if have.get(k) != v:
                            iface.setkey(col, k, v)
                            changed = True
            if ofport_request is not None and (fresh or _opt(iface.ofport_request)
                                               != ofport_request):
                iface.ofport_request = ofport_request
                changed = True
            for col, want in (columns or {}).items():      # plain Interface columns
                if fresh or getattr(iface, col) != want:    # a new row has nothing to read
                    setattr(iface, col, want)
                    changed = True
            return changed

        self._transact(build, "ensure_%s %s/%s" % (what, bridge, name))
        return self._wait_ofport(bridge, name)

    def _wait_ofport(self, bridge, name):
        """vswitchd assigns ofport after applying the config; -1 means it failed."""
        result = {}

        def ready():
            port = self._port(self._bridge(bridge), name)
            if port is None:
                raise OvsdbError("port %s vanished from %s" % (name, bridge))
            iface = [i for i in port.interfaces if i.name == name][0]
            ofport = _opt(iface.ofport)
            if ofport is None:
                return False
            if ofport < 0:
                raise OvsdbError("ovs-vswitchd could not add %s: %s" % (
                    name, _opt(iface.error) or "ofport -1"))
            result["ofport"] = ofport
            return True

        self._wait_for(ready, "get an ofport for %s" % name)
        return result["ofport"]

    def ensure_tunnel_port(self, bridge="br-int", name="vxlan0", ofport=100):
        """Flow-based VXLAN port: remote_ip=flow, key=flow. Returns its ofport."""
        return self._ensure_port(bridge, name, "vxlan", {"remote_ip": "flow", "key": "flow"},
                                 ofport, what="tunnel_port")

    def ensure_host_port(self, bridge, name, ofport=102):
        """The internal port to this host's kernel (agent/host_access.py). Returns its ofport."""
        return self._ensure_port(bridge, name, "internal", None, ofport, what="host_port")

    def ensure_uplink_port(self, bridge, ifname, ofport=101):
        """An existing host interface (VLAN uplink) plugged into the bridge. Returns ofport."""
        return self._ensure_port(bridge, ifname, "", None, ofport, what="uplink_port")

    def ensure_endpoint_port(self, bridge, port_name, external_ids, columns=None):
        """Plug the host end of an endpoint veth into the bridge; returns its ofport once
        ovs-vswitchd assigned it. ``external_ids`` land on the Interface row, and so do
        ``columns`` (name: value)."""
        return self._ensure_port(bridge, port_name, "", None, None, external_ids,
                                 what="endpoint_port", columns=columns)

    def plug_endpoint(self, bridge, port, ep, **external_ids):
        """Plug an endpoint's host-side veth as netmaster's record ``ep`` says (the port named
        after the endpoint, its group's netprofile as ingress policing); returns the ofport.
        One transaction: each is a reconfiguration of ovs-vswitchd and a wait for it.
        The CNI plugin and the Docker driver both attach through this."""
        ids = {ENDPOINT_KEY: ep["endpointID"], "iface-id": ep["endpointID"], **external_ids}
        columns = {}
        if "ingressPolicingRate" in ep:     # the group's netprofile (0 = unlimited)
            columns = {"ingress_policing_rate": int(ep.get("ingressPolicingRate") or 0),
                       "ingress_policing_burst": int(ep.get("ingressPolicingBurst") or 0)}
        return self.ensure_endpoint_port(bridge, port, ids, columns)

    def port_exists(self, bridge, name):
        self.idl.run()
        return self._port(self._bridge(bridge), name) is not None

    def port_external_ids(self, bridge, name):
        self.idl.run()
        port = self._port(self._bridge(bridge), name)
        if port is None:
            return None
        for iface in port.interfaces:
            if iface.name == name:
                return dict(iface.external_ids)
        return {}

    def remove_port(self, bridge, name):
        """Remove the port (and its interface). Returns True if it was there."""
        found = []

        def build(txn):
            br = self._bridge(bridge)
            port = self._port(br, name)
            found[:] = [port is not None]
            if port is None:
                return False
            br.delvalue("ports", port)
            port.delete()
            return True

        self._transact(build, "remove_port %s/%s" % (bridge, name))
        return found[0]

    def list_endpoint_ports(self, bridge="br-int"):
        """{port name: Interface external_ids} for every netweave endpoint port."""
        self.idl.run()
        br = self._bridge(bridge)
        out = {}
        if br is None:
            return out
        for port in br.ports:
            for iface in port.interfaces:
                if ENDPOINT_KEY in iface.external_ids:
                    out[port.name] = dict(iface.external_ids)
        return out

    def set_ingress_policing(self, port, rate_kbps, burst_kb):
        """Rate-limit what the endpoint sends into the bridge (Interface ingress policing)."""
        def build(txn):
            for iface in self.idl.tables["Interface"].rows.values():
                if iface.name == port:
                    changed = False
                    if iface.ingress_policing_rate != int(rate_kbps):
                        iface.ingress_policing_rate = int(rate_kbps)
                        changed = True
                    if iface.ingress_policing_burst != int(burst_kb):
                        iface.ingress_policing_burst = int(burst_kb)
                        changed = True
                    return changed
            raise OvsdbError("no interface %s" % port)
        self._transact(build, "set_ingress_policing %s" % port)


def kernel_datapath_available():
    """True when the openvswitch kernel module is loaded or could be loaded."""
    if os.path.exists("/sys/module/openvswitch"):
        return True
    try:
        res = subprocess.run(["modprobe", "-n", "openvswitch"], capture_output=True,
                             timeout=5)
        return res.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def choose_datapath(mode):
    """``system`` | ``netdev`` | ``auto`` → the datapath_type to use."""
    if mode in ("system", "netdev"):
        return mode
    if mode != "auto":
        raise ValueError("datapath must be system, netdev or auto, not %r" % mode)
    return "system" if kernel_datapath_available() else "netdev"


class Lender:
    """Long-lived OVSDB connections lent to one request at a time: netplugin's servers
    (CNI, Docker) run their requests under ``lock`` and ``connect`` within it. A
    connection that failed is dropped (``drop``) and made anew by the next request."""

    def __init__(self, timeout=10.0):
        self.lock = threading.Lock()
        self.timeout = timeout
        self._dbs = {}

    def connect(self, remote):
        db = self._dbs.get(remote)
        if db is None:
            db = self._dbs[remote] = Ovsdb(remote, timeout=self.timeout)
        else:
            db.sync()
        return db

    def drop(self):
        for db in self._dbs.values():
            db.close()
        self._dbs.clear()


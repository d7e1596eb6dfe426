"""The OpenFlow listeners and the os-ken app's place in netmaster's process.

`start(fabric, host, port)` brings up os-ken's OpenFlow machinery and the
SwitchManager app (controller/ofapp.py) in this process's eventlet hub, serving
OpenFlow over tcp on a socket bound first (listen(): a switch connecting during
netmaster's slow start waits in the kernel's backlog instead of being refused)
and, optionally, over TLS with client certificates; it returns a `Handle` whose
stop() ends all of it (start() may then be called again).  The entry point must
have set OSKEN_HUB_TYPE=eventlet and monkey-patched eventlet before any import.
"""
from __future__ import annotations

import gc
import logging
import socket
from dataclasses import dataclass
from typing import Optional

from os_ken.base import app_manager
from os_ken.lib import hub

from controller.ofapp import DENY_LOG_RATE, TLS_PEERS, Fabric, SwitchManager, tls_identity, who

LOG = logging.getLogger(__name__)

_conf_parsed = False
_running: Optional["Handle"] = None    # os-ken's AppManager is a process singleton


@dataclass
class Handle:
    app: SwitchManager
    _mgr: app_manager.AppManager
    _threads: list
    _tls: Optional[tuple] = None               # (green thread, listening socket) of the TLS listener
    _plain: Optional[tuple] = None             # (green thread, listening socket) of the tcp listener

    def stop(self) -> None:
        """Stop listening, drop every switch connection, forget the apps.
        Returns promptly in the eventlet hub; start() may be called again."""
        app = self.app
        if app._stopping:
            return
        app._stopping = True
        for lst in (self._tls, self._plain):
            if lst is not None:
                hub.kill(lst[0])
                lst[1].close()
        for sw in list(app.switches.values()):     # each kills its worker and retry timer
            sw.close()
        hub.kill(app._auditor)
        self._mgr.close()                      # stops event loops, kills the listener
        for t in self._threads:
            hub.kill(t)
        hub.joinall(self._threads)
        for dp in list(app._conns):            # switches see EOF and reconnect elsewhere
            dp.close()
        app._conns.clear()
        app.datapaths.clear()
        app.switches.clear()
        app_manager.AppManager._instance = None
        gc.collect()                           # closes the listening socket of the killed loop
        global _running
        _running = None
        LOG.info("event=controller_stopped")


_FABRIC_ADMIT = [None]          # the running fabric's admit(dpid, address), for the ofctl guard


def _guard_ofctl_takeover() -> None:
    """os-ken's ofctl service closes the connected datapath as soon as another
    connection announces the same datapath id: whoever knows a host's dpid could
    push its real switch off. A switch the fabric refuses is closed there instead,
    before it can replace anyone; an admitted one takes over as before (a switch
    that reconnects)."""
    from os_ken.app.ofctl import service
    orig = service.OfctlService._switch_features_handler
    if getattr(orig, "netweave_guard", False):
        return

    def guarded(self, ev):
        dp = ev.msg.datapath
        admit = _FABRIC_ADMIT[0]
        if admit is not None:
            address, identity = dp.address[0] if dp.address else "", tls_identity(dp)
            ok, why = admit(dp.id, address, identity)
            if not ok:
                LOG.warning("event=switch_refused dpid=%016x addr=%s identity=%s reason=%s", dp.id,
                            address, who(identity), why)
                dp.close()
                return
        return orig(self, ev)

    guarded.__dict__.update(orig.__dict__)        # set_ev_cls' registration (callers)
    guarded.netweave_guard = True
    service.OfctlService._switch_features_handler = guarded


def listen(host: str, port: int):
    """A bound, listening socket for OpenFlow (tcp, or TLS `ssl:` targets), or OSError now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return hub.listen((host, port), family=family)


def _tcp_serve(sock) -> None:
    """OpenFlow over tcp on a socket bound in start() (or earlier, by the caller),
    instead of os-ken's own listener: that one binds only when the hub first runs,
    after netmaster's initial compile, and a switch retrying meanwhile was refused
    and backed off. Bound early, its connection waits in the kernel's backlog."""
    from os_ken.controller.controller import datapath_connection_factory
    while True:
        conn, addr = sock.accept()
        hub.spawn(datapath_connection_factory, conn, addr)


def _no_osken_listener() -> None:
    """os-ken's OpenFlowController serves nothing but the switches it connects to
    itself (none here): the tcp listener is ours (_tcp_serve)."""
    from os_ken.controller import controller as osken_controller
    orig = osken_controller.OpenFlowController.server_loop
    if getattr(orig, "netweave_off", False):
        return

    def server_loop(self, tcp_port, ssl_port):
        return None
    server_loop.netweave_off = True
    osken_controller.OpenFlowController.server_loop = server_loop


def _tls_serve(sock, tls: tuple) -> None:
    """OpenFlow over TLS beside the tcp listener (_tcp_serve). Only switches holding a certificate signed by the CA
    complete the handshake; each handshake runs in its connection's own green
    thread, bounded in time, so a silent peer cannot stall accept(). The
    certificate's CN is the switch's identity (see Fabric.admit)."""
    from os_ken.controller.controller import datapath_connection_factory
    from netweave.pki import cert_sha256, common_name, server_context
    certfile, keyfile, cafile = tls
    ctx = server_context(certfile, keyfile, cafile, require_client=True)

    def handle(conn, addr):
        try:
            conn.settimeout(10)
            conn = ctx.wrap_socket(conn, server_side=True)
            cn = common_name(conn.getpeercert())
            sha = cert_sha256(conn.getpeercert(binary_form=True))
        except (OSError, ValueError) as exc:           # ssl.SSLError is an OSError
            LOG.warning("event=openflow_tls_refused addr=%s error=%s", addr[0], exc)
            conn.close()
            return
        LOG.info("event=openflow_tls_accepted addr=%s identity=%s", addr[0], cn or "-")
        TLS_PEERS[tuple(addr)] = (cn, sha)
        try:
            datapath_connection_factory(conn, addr)     # os-ken sets its own socket timeout
        finally:
            TLS_PEERS.pop(tuple(addr), None)

    while True:
        conn, addr = sock.accept()
        hub.spawn(handle, conn, addr)


def start(fabric: Fabric, host: str = "0.0.0.0", port: int = 6653, deny_log_rate: int = DENY_LOG_RATE,
          deny_log_burst: Optional[int] = None, packet_in=None, roles: bool = False,
          tls_port: Optional[int] = None, tls: Optional[tuple] = None,
          tls_host: Optional[str] = None, sock=None) -> Handle:
    """Run the OpenFlow listeners and SwitchManager in this process's hub.
    deny_log_rate/burst: the deny-log meter on every switch (packets/s, packets;
    burst defaults to one second's worth); packet_in: see SwitchManager.
    tls_port, tls=(certfile, keyfile, cafile): also listen for OpenFlow over TLS, on
    tls_host (default: host). sock: the tcp listener on (host, port), bound by the
    caller (listen()); else bound here."""
    global _conf_parsed, _running
    if _running is not None:
        raise RuntimeError("an OpenFlow controller already runs in this process; stop() it first")
    if hub.HUB_TYPE != "eventlet":
        raise RuntimeError("set OSKEN_HUB_TYPE=eventlet and monkey-patch before importing os_ken")
    from os_ken import cfg
    import os_ken.controller.controller  # noqa: F401  registers the ofp_* options
    if not _conf_parsed:
        cfg.CONF(args=[], project="os_ken")
        _conf_parsed = True
    cfg.CONF.set_override("ofp_listen_host", host)
    cfg.CONF.set_override("ofp_tcp_listen_port", port)
    # bound now (OSError here, not a silent death in a green thread), served by _tcp_serve
    plain_sock = sock if sock is not None else listen(host, port)
    tls_host = tls_host or host
    try:
        tls_sock = listen(tls_host, tls_port) if tls_port else None
    except OSError:
        plain_sock.close()
        raise
    _no_osken_listener()
    _FABRIC_ADMIT[0] = getattr(fabric, "admit", None)
    _guard_ofctl_takeover()
    mgr = app_manager.AppManager.get_instance()
    mgr.load_apps(["os_ken.controller.ofp_handler", SwitchManager.__module__])
    contexts = mgr.create_contexts()
    threads = mgr.instantiate_apps(fabric=fabric, deny_log_rate=deny_log_rate, deny_log_burst=deny_log_burst,
                                   packet_in=packet_in, **contexts)
    app = next(a for a in mgr.applications.values() if isinstance(a, SwitchManager))
    if roles:
        from controller.roles import Roles
        app.roles = Roles(app)
    tls_thread = None
    if tls_sock is not None:
        tls_thread = (hub.spawn(_tls_serve, tls_sock, tls), tls_sock)
    plain = (hub.spawn(_tcp_serve, plain_sock), plain_sock)
    LOG.info("event=controller_started host=%s port=%d tls=%s", host, port,
             f"{tls_host}:{tls_port}" if tls_port else "off")
    _running = Handle(app, mgr, threads, tls_thread, plain)
    return _running

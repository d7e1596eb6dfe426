"""The agent's local API: what netmaster can only learn on the host itself.

    GET /trace?flow=FLOW&ct=trk,new;trk,new
        `ovs-appctl ofproto/trace BRIDGE FLOW` on this host's switch (with one
        `--ct-next` per conntrack lookup), answered as {"output": text}.
    GET /healthz, /readyz    the agent answers; OVSDB, br-int, the switch's
        connection to netmaster and the heartbeat are all well (503 with the
        reasons when not)
    GET /metrics             Prometheus

It listens on the host's VTEP address (where netmaster reaches it), runs
ovs-appctl without a shell, and accepts only flow text made of the characters
ofproto/trace's flow syntax uses.  With `tls`, it speaks HTTPS with this host's
certificate, and /trace answers only a client holding netmaster's certificate
(CN netmaster, signed by netweave's CA); health and metrics need none.
"""
import glob
import json
import logging
import os
import re
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from netweave import pki

LOG = logging.getLogger(__name__)

FLOW_CHARS = re.compile(r"^[A-Za-z0-9_=,.:/+\-]{1,1000}$")
CT_STATES = re.compile(r"^(trk|new|est|rel|rpl|inv)(,(trk|new|est|rel|rpl|inv))*$")


def vswitchd_target(ovsdb_remote: str) -> str:
    """ovs-vswitchd's control socket next to the OVSDB socket (a private instance
    names it ovs-vswitchd.ctl, the packaged one ovs-vswitchd.PID.ctl)."""
    rundir = os.path.dirname(ovsdb_remote.split(":", 1)[1]) if ovsdb_remote.startswith("unix:") \
        else "/var/run/openvswitch"
    fixed = os.path.join(rundir, "ovs-vswitchd.ctl")
    if os.path.exists(fixed):
        return fixed
    try:
        pid = open(os.path.join(rundir, "ovs-vswitchd.pid")).read().strip()
        return os.path.join(rundir, f"ovs-vswitchd.{pid}.ctl")
    except OSError:
        found = glob.glob(os.path.join(rundir, "ovs-vswitchd.*.ctl"))
        return found[0] if found else fixed


def ofproto_trace(target: str, bridge: str, flow: str, ct: list[str], timeout: float = 10) -> str:
    cmd = ["ovs-appctl", "-t", target, "ofproto/trace", bridge, flow]
    for state in ct:
        cmd += ["--ct-next", state]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip() or p.stdout.strip())
    return p.stdout


class _Handler(BaseHTTPRequestHandler):
    server_version = "netweave-agent"

    def _send(self, status, body):
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        path = url.path.rstrip("/")
        if path == "/healthz":
            return self._send(200, {"status": "ok"})
        if path == "/readyz":
            ok, checks = self.server.ready()
            return self._send(200 if ok else 503, {"ready": ok, "checks": checks})
        if path == "/metrics":
            raw = generate_latest(REGISTRY)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
            return None
        if path != "/trace":
            return self._send(404, {"error": f"no such path {url.path}"})
        if self.server.tls and self._peer_cn() != "netmaster":
            LOG.warning("event=local_api_refused path=%s peer=%s cn=%r", path, self.client_address[0],
                        self._peer_cn())
            return self._send(403, {"error": "trace: needs netmaster's client certificate"})
        q = urllib.parse.parse_qs(url.query)
        flow = (q.get("flow") or [""])[0]
        ct = [s for s in (q.get("ct") or [""])[0].split(";") if s]
        if not FLOW_CHARS.match(flow):
            return self._send(400, {"error": "flow: missing or has characters a flow cannot have"})
        if any(not CT_STATES.match(s) for s in ct):
            return self._send(400, {"error": "ct: conntrack states are trk,new,est,rel,rpl,inv"})
        try:
            out = ofproto_trace(self.server.target, self.server.bridge, flow, ct)
        except (RuntimeError, subprocess.SubprocessError, OSError) as e:
            return self._send(502, {"error": f"ofproto/trace failed: {e}"})
        LOG.info("event=live_trace flow=%s", flow)
        self._send(200, {"output": out})

    def _peer_cn(self) -> str:
        getpeercert = getattr(self.connection, "getpeercert", None)
        return pki.common_name(getpeercert()) if getpeercert else ""

    def log_message(self, *args):
        pass


class _Server(ThreadingHTTPServer):
    tls = None          # ssl.SSLContext, when serving HTTPS

    def finish_request(self, request, client_address):
        # the handshake runs here, in the connection's own thread: a silent client
        # cannot hold up accept()
        if self.tls is not None:
            request.settimeout(10)
            request = self.tls.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        LOG.info("event=local_api_connection_failed peer=%s error=%r", client_address[0],
                 str(sys.exc_info()[1]))


def serve(address: str, port: int, ovsdb_remote: str, bridge: str,
          ready=lambda: (True, {}), tls=None) -> ThreadingHTTPServer:
    """Start the API in a daemon thread; returns the server (its port is .server_port).
    ready() -> (bool, {check: "ok" | reason}) answers /readyz.
    tls: (cert file, key file, CA file) to serve HTTPS."""
    srv = _Server((address, port), _Handler)
    if tls is not None:
        srv.tls = pki.server_context(tls[0], tls[1], tls[2], require_client=False)
    srv.target = vswitchd_target(ovsdb_remote)
    srv.bridge = bridge
    srv.ready = ready
    threading.Thread(target=srv.serve_forever, name="localapi", daemon=True).start()
    LOG.info("event=local_api_started address=%s port=%d vswitchd=%s tls=%s", address, srv.server_port,
             srv.target, "on" if tls else "off")
    return srv

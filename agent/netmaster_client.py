"""HTTP client for netmaster's REST API (the agent/CNI side of the contract).

Contract (JSON bodies; errors are 4xx/5xx with body ``{"error": "message"}``):
  POST   /api/v1/hosts/<hostLabel>/       register / heartbeat
  GET    /api/v1/hosts/                   list of hosts with "state" and "lastHeartbeat"
  POST   /api/v1/endpoints/<id>/          allocate (idempotent for one id)
  DELETE /api/v1/endpoints/<id>/          release (404 when not there)
  GET    /api/v1/endpoints/               list of endpoints

Plain urllib: no third-party dependency, so the CNI binary starts fast.
"""
import hashlib
import json
import logging
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request

LOG = logging.getLogger(__name__)

DEFAULT_NETMASTER = "http://127.0.0.1:9999"


class NetmasterError(Exception):
    """netmaster answered with an error status. ``status`` is the HTTP code."""

    def __init__(self, status, message, method="", path=""):
        super().__init__("netmaster %s %s: %s %s" % (method, path, status, message))
        self.status = status
        self.message = message


class NetmasterUnreachable(Exception):
    """No answer from netmaster (connection refused, timeout, DNS...)."""


def endpoint_id(container_id, ifname):
    """Deterministic endpoint id: DEL finds the same id with no local state."""
    return hashlib.sha1((container_id + ifname).encode()).hexdigest()[:12]


def host_port_name(ep_id):
    """Host-side veth / OVS port name, at most 15 characters (Linux IFNAMSIZ-1)."""
    return "nw" + ep_id[:11]


def dpid_for_host(host_label):
    """Fixed datapath id from the host label: 48 bits of sha1, never 0."""
    value = int(hashlib.sha1(host_label.encode()).hexdigest()[:12], 16)
    return value or 1


# netmaster URL -> (token, CA file): the host credential netplugin holds, used by every
# client it makes for that URL (heartbeat, CNI server, Docker driver)
_CREDENTIALS = {}


def set_credential(base_url, token, cafile=None):
    _CREDENTIALS[base_url.rstrip("/")] = (token, cafile)


_CONTEXTS = {}


def _context(cafile):
    """One TLS client context per CA file (loading a CA costs more than a request)."""
    if cafile not in _CONTEXTS:
        _CONTEXTS[cafile] = ssl.create_default_context(cafile=cafile)
    return _CONTEXTS[cafile]


class NetmasterClient:
    """token/cafile: None takes what set_credential() recorded for this URL when the
    request is made, so clients made before the credential arrived use it too.

    ``base_url``: one netmaster URL, or several comma-separated (clustered netmasters:
    every member serves the API). A request goes to the member that answered last and
    moves to the next one when a member is unreachable or answers 503 (cut off from the
    store), each tried once: a failover costs at most ``timeout`` per member."""

    def __init__(self, base_url=DEFAULT_NETMASTER, timeout=5.0, token=None, cafile=None):
        self.url = base_url.rstrip("/")
        self.bases = [b.strip().rstrip("/") for b in base_url.split(",") if b.strip()] \
            or [DEFAULT_NETMASTER]
        self._cur = 0
        self.timeout = timeout
        self.token = token
        self.cafile = cafile

    @property
    def base(self):
        return self.bases[self._cur]

    def call(self, method, path, body=None):
        last = None
        for i in range(len(self.bases)):
            n = (self._cur + i) % len(self.bases)
            try:
                out = self._call_one(self.bases[n], method, path, body)
            except NetmasterUnreachable as e:
                last = e
                continue
            except NetmasterError as e:
                if e.status != 503 or len(self.bases) == 1:
                    raise
                last = e
                continue
            if n != self._cur:
                LOG.info("event=netmaster_failover from=%s to=%s", self.bases[self._cur], self.bases[n])
                self._cur = n
            return out
        raise last

    def _call_one(self, base, method, path, body=None):
        url = base + path
        data = json.dumps(body).encode() if body is not None else None
        known = _CREDENTIALS.get(base) or _CREDENTIALS.get(self.url, ("", None))
        token = known[0] if self.token is None else self.token
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + token
        ctx = _context(self.cafile or known[1]) if base.startswith("https:") else None
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=ctx) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                msg = json.loads(raw).get("error") or raw.decode(errors="replace")
            except (ValueError, AttributeError):
                msg = raw.decode(errors="replace").strip() or e.reason
            raise NetmasterError(e.code, msg, method, path) from None
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise NetmasterUnreachable("netmaster at %s is unreachable: %s" %
                                       (base, reason)) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise NetmasterError(502, "answer is not JSON: %r" % raw[:200], method, path)

    @staticmethod
    def _q(name):
        return urllib.parse.quote(name, safe="")

    # -- hosts -----------------------------------------------------------------------------
    def register_host(self, host_label, vtep_ip, dpid, uplink="", agent_port=0, vtep_mac=""):
        """Register, and heartbeat: netmaster expects this POST every few seconds."""
        if isinstance(dpid, int):
            dpid = "%016x" % dpid
        body = {"hostLabel": host_label, "vtepIP": vtep_ip or "", "dpid": dpid,
                "uplink": uplink or "", "agentPort": int(agent_port or 0)}
        if vtep_mac:
            body["vtepMAC"] = vtep_mac
        return self.call("POST", "/api/v1/hosts/%s/" % self._q(host_label), body)

    heartbeat = register_host

    def list_hosts(self):
        return self.call("GET", "/api/v1/hosts/") or []

    # -- endpoints -------------------------------------------------------------------------
    def create_endpoint(self, ep_id, tenant, network, group, host, container_id,
                        intf_name, if_name, **extra):
        """``extra``: optional record fields (ipAddress, macAddress asked for; containerName,
        podNamespace, cniNetwork, labels, dockerEndpoint); empty ones are not sent. For an
        existing endpoint, netmaster writes again what may change after the attach
        (containerID, containerName, labels, dockerEndpoint)."""
        body = {"tenantName": tenant, "networkName": network, "groupName": group or "",
                "host": host, "containerID": container_id, "intfName": intf_name,
                "ifName": if_name}
        body.update({k: v for k, v in extra.items() if v})
        return self.call("POST", "/api/v1/endpoints/%s/" % self._q(ep_id), body)

    def get(self, path):
        """GET an API path (e.g. /api/v1/networks/); None when it is not there (404)."""
        try:
            return self.call("GET", path)
        except NetmasterError as e:
            if e.status == 404:
                return None
            raise

    def delete_endpoint(self, ep_id):
        """Release the endpoint. Returns False when netmaster did not know it (404)."""
        try:
            self.call("DELETE", "/api/v1/endpoints/%s/" % self._q(ep_id))
            return True
        except NetmasterError as e:
            if e.status == 404:
                return False
            raise

    def list_endpoints(self, host=None):
        path = "/api/v1/endpoints/" + (f"?host={urllib.parse.quote(host)}" if host is not None else "")
        eps = self.call("GET", path) or []
        if host is not None:                 # (a netmaster without the filter sends all)
            eps = [e for e in eps if e.get("homingHost") == host]
        return eps

    def get_endpoint(self, ep_id):
        for ep in self.list_endpoints():
            if ep.get("endpointID") == ep_id:
                return ep
        return None

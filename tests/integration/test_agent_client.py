"""netmaster_client and netweave-cni's pure parts, against a tiny local HTTP server.

No root, no OVS: these pin the client's side of the REST contract and the CNI error codes.
"""
import io
import json
import os
import sys
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import pytest  # noqa: E402

from agent import cni  # noqa: E402
from agent import netmaster_client as nmc  # noqa: E402


class FakeNetmaster(BaseHTTPRequestHandler):
    calls = []
    answers = {}

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        FakeNetmaster.calls.append((self.command, self.path, body))
        status, payload = FakeNetmaster.answers.get((self.command, self.path), (404, {
            "error": "no route"}))
        raw = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *a):
        pass


class LocalHTTPServer(HTTPServer):
    """HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can hang
    for minutes where DNS is unreachable: bind without it."""

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


@pytest.fixture
def fake():
    FakeNetmaster.calls = []
    FakeNetmaster.answers = {}
    srv = LocalHTTPServer(("127.0.0.1", 0), FakeNetmaster)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv, nmc.NetmasterClient("http://127.0.0.1:%d" % srv.server_port, timeout=2)
    finally:
        srv.shutdown()
        srv.server_close()


def test_ids_and_names_are_deterministic():
    a = nmc.endpoint_id("c0ffee", "eth0")
    assert a == nmc.endpoint_id("c0ffee", "eth0") and len(a) == 12
    assert a != nmc.endpoint_id("c0ffee", "eth1")
    assert nmc.host_port_name(a) == "nw" + a[:11] and len(nmc.host_port_name(a)) <= 15
    d = nmc.dpid_for_host("host1")
    assert d == nmc.dpid_for_host("host1") != nmc.dpid_for_host("host2")
    assert 0 < d < 1 << 48


def test_register_host_body(fake):
    srv, client = fake
    FakeNetmaster.answers[("POST", "/api/v1/hosts/h1/")] = (200, {"hostLabel": "h1"})
    assert client.register_host("h1", "10.0.0.1", 0xab, "") == {"hostLabel": "h1"}
    method, path, body = FakeNetmaster.calls[0]
    assert body == {"hostLabel": "h1", "vtepIP": "10.0.0.1", "dpid": "00000000000000ab",
                    "uplink": ""}


def test_endpoint_calls_and_errors(fake):
    srv, client = fake
    ep = {"endpointID": "e1", "homingHost": "h1", "ipAddress": ["10.1.2.2", ""]}
    FakeNetmaster.answers[("POST", "/api/v1/endpoints/e1/")] = (200, ep)
    FakeNetmaster.answers[("GET", "/api/v1/endpoints/")] = (200, [ep, dict(
        ep, endpointID="e2", homingHost="h2")])
    FakeNetmaster.answers[("DELETE", "/api/v1/endpoints/e1/")] = (200, {})
    FakeNetmaster.answers[("POST", "/api/v1/endpoints/e9/")] = (409, {"error": "exhausted"})
    assert client.create_endpoint("e1", "default", "net", "", "h1", "c", "nwx", "eth0") == ep
    assert FakeNetmaster.calls[-1][2] == {
        "tenantName": "default", "networkName": "net", "groupName": "", "host": "h1",
        "containerID": "c", "intfName": "nwx", "ifName": "eth0"}
    assert [e["endpointID"] for e in client.list_endpoints(host="h1")] == ["e1"]
    assert client.get_endpoint("e2")["homingHost"] == "h2"
    assert client.delete_endpoint("e1") is True
    assert client.delete_endpoint("nope") is False          # 404 means already released
    with pytest.raises(nmc.NetmasterError) as exc:
        client.create_endpoint("e9", "default", "net", "", "h1", "c", "nwx", "eth0")
    assert exc.value.status == 409 and exc.value.message == "exhausted"


def test_unreachable():
    client = nmc.NetmasterClient("http://127.0.0.1:1", timeout=1)
    with pytest.raises(nmc.NetmasterUnreachable):
        client.list_hosts()


@pytest.mark.parametrize("exc,code", [
    (nmc.NetmasterUnreachable("down"), cni.E_TRY_AGAIN),
    (nmc.NetmasterError(404, "no such network"), cni.E_UNKNOWN_NETWORK),
    (nmc.NetmasterError(409, "no free address"), cni.E_POOL_EXHAUSTED),
    (nmc.NetmasterError(503, "not leader"), cni.E_TRY_AGAIN),
    (nmc.NetmasterError(400, "bad field"), cni.E_NETMASTER_REFUSED),
    (nmc.NetmasterError(500, "bug"), cni.E_NETMASTER_REFUSED),
])
def test_cni_error_codes_for_netmaster_answers(exc, code):
    assert cni.netmaster_error(exc, "doing x").code == code


def run_cni(env, stdin):
    out = io.StringIO()
    rc = cni.run(env, io.StringIO(stdin), out)
    return rc, json.loads(out.getvalue()) if out.getvalue() else None


def test_cni_version_and_config_errors():
    rc, out = run_cni({"CNI_COMMAND": "VERSION"}, "")
    assert rc == 0 and out == {"cniVersion": "1.0.0", "supportedVersions": ["1.0.0"]}
    rc, out = run_cni({"CNI_COMMAND": "ADD"}, "[1, 2")
    assert rc == 1 and out["code"] == 6 and out["cniVersion"] == "1.0.0"
    rc, out = run_cni({"CNI_COMMAND": "ADD"}, json.dumps({"name": "x"}))
    assert rc == 1 and out["code"] == 7 and "cniVersion" in out["msg"]
    rc, out = run_cni({"CNI_COMMAND": "ADD"}, json.dumps({"cniVersion": "0.3.1"}))
    assert rc == 1 and out["code"] == 1
    rc, out = run_cni({"CNI_COMMAND": "ADD"}, json.dumps({"cniVersion": "1.0.0",
                                                          "network": 5}))
    assert rc == 1 and out["code"] == 7 and "network" in out["msg"]
    rc, out = run_cni({"CNI_COMMAND": ""}, "{}")
    assert rc == 1 and out["code"] == 4
    rc, out = run_cni({"CNI_COMMAND": "DEL"}, json.dumps({"cniVersion": "1.0.0"}))
    assert rc == 1 and out["code"] == 4 and "CNI_CONTAINERID" in out["msg"]

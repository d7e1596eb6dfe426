"""The REST API under abuse (issue 13): each case an attacker or a fuzzer
found, against a real netmaster process on SQLite (no OpenFlow)."""
from __future__ import annotations

import json
import resource
import socket

import pytest
import requests
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec

from tests.procs import Netmaster
from topologies.common import wait_until


@pytest.fixture(scope="module")
def nm():
    n = Netmaster(extra=["--no-openflow"])
    try:
        yield n.start()
    finally:
        n.cleanup()


def raw_http(port: int, request: bytes) -> tuple[str, bytes]:
    """Send bytes as they are (no client library re-encodes them); (status line, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while True:
            part = s.recv(65536)
            if not part:
                break
            data += part
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode("latin-1"), body


def refused(r, status, words):
    assert r.status_code == status, (r.status_code, r.text)
    assert words in r.json()["error"], r.json()
    assert "Traceback" not in r.text and ".py" not in r.text


def test_undecodable_path_is_400_without_traceback(nm):
    line, body = raw_http(nm.port, b"GET /api/v1/tenants/%ff/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   b"Connection: close\r\n\r\n")
    assert line.startswith("HTTP/1.1 400 path: not valid UTF-8"), line
    assert b"Traceback" not in body and b".py" not in body
    assert json.loads(body)["error"].startswith("path:")
    assert nm.get("/healthz").status_code == 200


def test_deep_json_is_400(nm):
    for doc in ("[" * 5000 + "]" * 5000, '{"a":' * 40 + "1" + "}" * 40):
        refused(nm.post("/api/v1/tenants/deep/", data=doc.encode(),
                        headers={"Content-Type": "application/json"}), 400, "nested deeper than 32")
    # brackets inside strings are text, not nesting
    ok = nm.post("/api/v1/tenants/brackets/", data=json.dumps({"tenantName": "brackets", "x": "[" * 100}).encode())
    assert ok.status_code == 200, ok.text
    assert nm.get("/api/v1/tenants/deep/").status_code == 404


def test_chunked_body_is_read(nm):
    def chunks():
        yield b'{"tenantName": "chunky",'
        yield b' "defaultNetwork": "n1"}'
    r = requests.post(nm.url + "/api/v1/tenants/chunky/", data=chunks(),
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert r.status_code == 200 and r.json()["defaultNetwork"] == "n1", r.text
    assert nm.get("/api/v1/tenants/chunky/").json()["defaultNetwork"] == "n1"
    # a chunked body past the limit is refused whole, not cut
    big = (b"x" * 65536 for _ in range(20))
    r = requests.post(nm.url + "/api/v1/tenants/big/", data=big, timeout=30)
    refused(r, 413, "body: larger than 1048576 bytes")


def test_null_is_refused_for_scalars_naming_the_field(nm):
    refused(nm.post("/api/v1/tenants/nul/", {"tenantName": "nul", "defaultNetwork": None}), 400,
            "defaultNetwork: null is not allowed (expected a string)")
    refused(nm.post("/api/v1/tenants/nul/", {"tenantName": None}), 400, "tenantName: null is not allowed")
    refused(nm.post("/api/v1/netprofiles/default:p/", {"profileName": "p", "DSCP": None}), 400,
            "DSCP: null is not allowed (expected an integer)")
    assert nm.get("/api/v1/tenants/nul/").status_code == 404
    # Go writes a nil slice as null: arrays may be null (Contiv's clients)
    assert nm.post("/api/v1/policys/default:pn/", {"policyName": "pn"}).status_code == 200
    r = nm.post("/api/v1/appProfiles/default:apn/", {"appProfileName": "apn", "endpointGroups": None})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("method,path,allow", [
    ("PATCH", "/api/v1/tenants/default/", "GET, POST, PUT, DELETE"),
    ("POST", "/api/v1/tenants/", "GET"),
    ("DELETE", "/api/v1/inspect/tenants/default/", "GET"),
    ("TRACE", "/healthz", "GET"),
    ("POST", "/api/v1/openapi.json", "GET"),
    ("POST", "/api/v1/policylog/", "GET"),
    ("POST", "/ui/", "GET, HEAD"),
])
def test_405_names_what_is_allowed(nm, method, path, allow):
    r = requests.request(method, nm.url + path, timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == allow, (r.status_code, r.headers)


def test_cross_origin_writes_are_refused(nm):
    """A page elsewhere posting a text/plain form (CSRF): browsers add Origin."""
    body = b'{"tenantName": "csrf"}'
    for headers in ({"Origin": "http://evil.example", "Content-Type": "text/plain"},
                    {"Origin": "null", "Content-Type": "text/plain"},
                    {"Origin": f"http://127.0.0.1:{nm.port + 1}"},
                    {"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}):
        r = requests.post(nm.url + "/api/v1/tenants/csrf/", data=body, headers=headers, timeout=10)
        assert r.status_code == 403, (headers, r.status_code, r.text)
        r = requests.delete(nm.url + "/api/v1/tenants/default/", headers=headers, timeout=10)
        assert r.status_code == 403
    assert nm.get("/api/v1/tenants/csrf/").status_code == 404
    # reads stay open to pages (the web view reads), and the same origin may write
    assert requests.get(nm.url + "/api/v1/tenants/", headers={"Origin": "http://evil.example"},
                        timeout=10).status_code == 200
    r = requests.post(nm.url + "/api/v1/tenants/csrf/", data=body, timeout=10,
                      headers={"Origin": nm.url, "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    # Contiv's clients send no Origin and no (or a form) content type: still served
    r = requests.post(nm.url + "/api/v1/tenants/contiv/", data=b'{"tenantName": "contiv"}',
                      headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
    assert r.status_code == 200, r.text


def test_foreign_host_is_refused_on_loopback(nm):
    """DNS rebinding: a page at evil.example whose name now resolves to 127.0.0.1."""
    for host in ("evil.example", f"evil.example:{nm.port}", "127.0.0.1.evil.example", "[::2]"):
        r = requests.get(nm.url + "/api/v1/tenants/", headers={"Host": host}, timeout=10)
        assert r.status_code == 403 and "Host:" in r.json()["error"], (host, r.status_code)
    for host in ("127.0.0.1", f"localhost:{nm.port}", "[::1]:9999", "127.1.2.3"):
        r = requests.get(nm.url + "/api/v1/tenants/", headers={"Host": host}, timeout=10)
        assert r.status_code == 200, (host, r.text)


def peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def test_oper_of_a_slash8_pool_follows_what_is_used(nm):
    """A /8 network and a group pool of 16M addresses: the answer is computed from
    the addresses in use, never by walking the range (the old inspect built a list
    of every free address: 5.3 s and 51 -> 710 MB for one request)."""
    assert nm.post("/api/v1/tenants/huge/", {}).status_code == 200
    assert nm.post("/api/v1/networks/huge:n/", {"subnet": "10.0.0.0/8", "gateway": "10.0.0.1"}).ok
    assert nm.post("/api/v1/endpointGroups/huge:g/", {"networkName": "n",
                                                      "ipPool": "10.0.1.0-10.255.255.254"}).ok
    r = nm.post("/api/v1/hosts/hh/", {"dpid": "00000000000000aa", "vtepIP": "192.0.2.10"})
    assert r.status_code == 200, r.text
    for i, group in ((1, ""), (2, "g")):
        r = nm.post(f"/api/v1/endpoints/huge{i}/", {"tenantName": "huge", "networkName": "n", "groupName": group,
                                                    "host": "hh", "intfName": f"veth{i}"})
        assert r.status_code == 200, r.text
    before = peak_rss_kb(nm.proc.pid)
    g = requests.get(nm.url + "/api/v1/inspect/endpointGroups/huge:g/", timeout=30).json()["Oper"]
    assert g["allocatedIPAddresses"] == "10.0.1.0"
    assert g["availableIPAddresses"] == "10.0.1.1-10.255.255.254"
    n = requests.get(nm.url + "/api/v1/inspect/networks/huge:n/", timeout=30).json()["Oper"]
    assert n["allocatedIPAddresses"] == "10.0.0.1-10.0.0.2, 10.0.1.0"
    assert n["availableIPAddresses"] == "10.0.0.3-10.0.0.255, 10.0.1.1-10.255.255.254"
    t = requests.get(nm.url + "/api/v1/inspect/tenants/huge/", timeout=30).json()["Oper"]
    assert t["endpointGroups"][0]["availableIPAddresses"] == "10.0.1.1-10.255.255.254"
    # memory, not time: walking 16M addresses costs hundreds of MB of peak RSS
    assert peak_rss_kb(nm.proc.pid) - before < 50_000
    for i in (1, 2):
        assert nm.delete(f"/api/v1/endpoints/huge{i}/").status_code == 200
    assert nm.delete("/api/v1/hosts/hh/").status_code == 200


def test_openapi_validates_and_says_what_the_server_sends(nm):
    spec = nm.get("/api/v1/openapi.json").json()
    validate_spec(spec)
    assert '"required": []' not in json.dumps(spec)
    schemas = spec["components"]["schemas"]

    def conforms(name, obj):
        resolver_spec = {"components": spec["components"], **schemas[name]}
        errors = list(OAS30Validator(resolver_spec).iter_errors(obj))
        assert not errors, (name, [e.message for e in errors])

    assert nm.post("/api/v1/networks/default:oa/", {"subnet": "10.77.0.0/24", "gateway": "10.77.0.1"}).ok
    assert nm.post("/api/v1/hosts/oah/", {"dpid": "00000000000000bb", "vtepIP": "192.0.2.11"}).ok
    ep = nm.post("/api/v1/endpoints/oa1/", {"tenantName": "default", "networkName": "oa", "host": "oah",
                                             "intfName": "vethoa"}).json()
    try:
        assert ep["homingHost"] == "oah" and "homingHost" in schemas["Endpoint"]["properties"]
        assert "host" in schemas["EndpointRequest"]["properties"]
        conforms("Endpoint", ep)
        conforms("Endpoint", nm.get("/api/v1/endpoints/oa1/").json())
        conforms("Host", nm.get("/api/v1/hosts/oah/").json())
        conforms("Network", nm.get("/api/v1/networks/default:oa/").json())
    finally:
        nm.delete("/api/v1/endpoints/oa1/")
        nm.delete("/api/v1/hosts/oah/")
        nm.delete("/api/v1/networks/default:oa/")


def test_descriptor_exhaustion_degrades_and_recovers():
    """With its descriptors used up, netmaster stops accepting for a while and
    serves again once clients leave (it used to lose its REST listener for good)."""
    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    nm = Netmaster(extra=["--no-openflow"], preexec_fn=low_limit)
    clients = []
    try:
        nm.start()
        url = nm.url
        for _ in range(100):            # more than 64: some wait in the kernel's backlog
            clients.append(socket.create_connection(("127.0.0.1", nm.port), timeout=5))
        wait_until(lambda: "event=accept_exhausted" in nm.log(), 20, what="EMFILE seen")
        assert nm.proc.poll() is None
        for c in clients:
            c.close()
        clients.clear()
        wait_until(lambda: requests.get(url + "/healthz", timeout=2).ok, 30, what="REST back")
        assert requests.post(url + "/api/v1/tenants/after/", json={}, timeout=5).status_code == 200
        assert nm.proc.poll() is None
    finally:
        for c in clients:
            c.close()
        nm.cleanup()

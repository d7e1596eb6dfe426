"""Clients of clustered netmasters (netplugin's and the CNI plugin's NetmasterClient,
netctl's Client) take comma-separated URLs and move to the next member when one is
unreachable or answers 503; any other answer is final.  Real HTTP servers on
loopback, no netmaster needed."""
from __future__ import annotations

import http.server
import json
import threading

import pytest

from agent import netmaster_client as nmc
from netctl import cli
from topologies.common import free_port


class _Member:
    """An HTTP server answering every request with one status and records the paths."""

    def __init__(self, status: int):
        self.status, self.paths = status, []
        member = self

        class H(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                member.paths.append((self.command, self.path))
                body = json.dumps({"ok": True} if status == 200 else {"error": f"status {status}"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        threading.Thread(target=self.srv.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port('127.0.0.1')}"      # a port nobody listens on


@pytest.fixture
def members():
    ms = {s: _Member(s) for s in (200, 503, 409)}
    yield ms
    for m in ms.values():
        m.close()


def test_netmaster_client_skips_dead_and_503_members(members):
    ok, busy = members[200], members[503]
    c = nmc.NetmasterClient(",".join([_dead_url(), busy.url, ok.url]), timeout=2)
    assert c.call("POST", "/api/v1/endpoints/e1/", {"x": 1}) == {"ok": True}
    assert busy.paths == [("POST", "/api/v1/endpoints/e1/")] and ok.paths == [("POST", "/api/v1/endpoints/e1/")]
    assert c.base == ok.url                     # it stays with the member that answered
    c.call("GET", "/api/v1/hosts/")
    assert len(busy.paths) == 1 and len(ok.paths) == 2


def test_netmaster_client_refusal_is_final(members):
    c = nmc.NetmasterClient(",".join([members[409].url, members[200].url]), timeout=2)
    with pytest.raises(nmc.NetmasterError) as exc:
        c.call("POST", "/api/v1/endpoints/e1/", {})
    assert exc.value.status == 409 and not members[200].paths


def test_netmaster_client_all_down_says_so():
    c = nmc.NetmasterClient(",".join([_dead_url(), _dead_url()]), timeout=1)
    with pytest.raises(nmc.NetmasterUnreachable):
        c.call("GET", "/api/v1/hosts/")


def test_netctl_client_fails_over(members):
    c = cli.Client(",".join([_dead_url(), members[503].url, members[200].url]))
    assert c.get("/api/v1/tenants/") == {"ok": True}
    c2 = cli.Client(",".join([members[409].url, members[200].url]))
    with pytest.raises(cli.Refused):
        c2.get("/api/v1/tenants/")
    with pytest.raises(cli.RequestFailed):
        cli.Client(_dead_url()).get("/api/v1/tenants/")


def test_agent_controller_targets_one_per_netmaster():
    from agent.main import default_controller
    assert default_controller("http://10.0.0.1:9999,http://10.0.0.2:9999/") == "tcp:10.0.0.1:6653,tcp:10.0.0.2:6653"
    assert default_controller("http://h:9999") == "tcp:h:6653"

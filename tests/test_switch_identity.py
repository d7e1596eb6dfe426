"""A switch is taken as host h only when it connects from h's address (the one
its agent registered from, or its VTEP): a fake switch that knows h1's datapath
id is refused before it gets any flow (issue 13). Real netmaster, stand-in
switches (tests/fake_switch.py) on loopback addresses."""
from __future__ import annotations

import http.client
import json

import pytest

from agent.netmaster_client import dpid_for_host
from tests.fake_switch import T_EXPERIMENTER, FakeSwitch
from tests.procs import Netmaster
from topologies.common import wait_until

AGENT_ADDR = "127.0.0.2"        # where the "agent" (and so its switch) lives; lo holds 127/8


@pytest.fixture(scope="module")
def nm():
    n = Netmaster(extra=["--tls-listen", "none"])
    try:
        yield n.start()
    finally:
        n.cleanup()


def register(nm, label, vtep, source):
    """POST the host from `source`, as the agent on that host would."""
    conn = http.client.HTTPConnection("127.0.0.1", nm.port, timeout=10, source_address=(source, 0))
    try:
        conn.request("POST", f"/api/v1/hosts/{label}/", json.dumps(
            {"dpid": f"{dpid_for_host(label):016x}", "vtepIP": vtep}), {"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200, r.read()
        return json.loads(r.read())
    finally:
        conn.close()


def switch_host(nm, dpid):
    return next((s["host"] for s in nm.get("/api/v1/switches/").json() if s["dpid"] == f"{dpid:016x}"), None)


def test_fake_switch_with_a_hosts_dpid_is_refused(nm):
    rec = register(nm, "h1", "192.0.2.1", AGENT_ADDR)
    assert rec["registeredFrom"] == AGENT_ADDR
    assert nm.post("/api/v1/networks/default:idnet/", {"subnet": "10.66.0.0/24", "gateway": "10.66.0.1"}).ok
    dpid = dpid_for_host("h1")
    fake = FakeSwitch(nm.of_port, dpid, {"br-int": 0xFFFFFFFE}).start()        # from 127.0.0.1
    try:
        wait_until(lambda: "event=switch_refused dpid=%016x addr=127.0.0.1" % dpid in nm.log(), 20,
                   what="the fake switch refused")
        wait_until(lambda: not fake.thread.is_alive(), 10, what="its connection closed")
        assert T_EXPERIMENTER not in fake.seen            # no bundle: not one flow was sent to it
        assert switch_host(nm, dpid) is None
    finally:
        fake.stop()
    real = FakeSwitch(nm.of_port, dpid, {"br-int": 0xFFFFFFFE}, source=AGENT_ADDR).start()
    try:
        wait_until(lambda: switch_host(nm, dpid) == "h1", 20, what="h1's own switch taken as h1")
        wait_until(lambda: T_EXPERIMENTER in real.seen, 20, what="h1's flows sent in a bundle")
        # a second fake, while the real one is connected, neither replaces nor unnames it
        fake2 = FakeSwitch(nm.of_port, dpid, {"br-int": 0xFFFFFFFE}).start()
        try:
            wait_until(lambda: nm.log().count("event=switch_refused dpid=%016x" % dpid) >= 2, 20,
                       what="the second fake refused")
            assert switch_host(nm, dpid) == "h1" and real.thread.is_alive()
        finally:
            fake2.stop()
    finally:
        real.stop()


def test_switch_connected_before_its_host_registers_is_not_named(nm):
    """A fake switch that connects first and waits for h2 to register stays unnamed."""
    dpid = dpid_for_host("h2")
    fake = FakeSwitch(nm.of_port, dpid, {"br-int": 0xFFFFFFFE}).start()        # from 127.0.0.1
    try:
        wait_until(lambda: switch_host(nm, dpid) == "", 20, what="an unnamed switch")
        register(nm, "h2", "192.0.2.2", AGENT_ADDR)
        wait_until(lambda: nm.get("/api/v1/hosts/h2/").ok, 10, what="h2 registered")
        assert switch_host(nm, dpid) == ""
        flows = nm.get("/api/v1/flows/h2/").json()
        assert flows["connected"] is False, flows
    finally:
        fake.stop()

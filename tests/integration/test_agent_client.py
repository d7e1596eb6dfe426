"""netmaster_client and netweave-cni's pure parts.

No OVS: the client's side of the REST contract against a real netmaster, and the CNI
error codes.
"""
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import pytest  # noqa: E402

from agent import cni  # noqa: E402
from agent import netmaster_client as nmc  # noqa: E402


def test_ids_and_names_are_deterministic():
    a = nmc.endpoint_id("c0ffee", "eth0")
    assert a == nmc.endpoint_id("c0ffee", "eth0") and len(a) == 12
    assert a != nmc.endpoint_id("c0ffee", "eth1")
    assert nmc.host_port_name(a) == "nw" + a[:11] and len(nmc.host_port_name(a)) <= 15
    d = nmc.dpid_for_host("host1")
    assert d == nmc.dpid_for_host("host1") != nmc.dpid_for_host("host2")
    assert 0 < d < 1 << 48


def test_client_against_a_real_netmaster(netmaster):
    """The client's side of the REST contract, spoken to netmaster itself."""
    client = nmc.NetmasterClient(netmaster.url, timeout=5)
    h = client.register_host("h1", "10.0.0.1", 0xab, "")
    assert (h["hostLabel"], h["vtepIP"], h["dpid"], h["state"]) == ("h1", "10.0.0.1", "00000000000000ab", "up")
    assert [x["hostLabel"] for x in client.list_hosts()] == ["h1"]
    assert netmaster.post("/api/v1/networks/default:net/", {"subnet": "10.1.2.0/30"}).ok
    ep = client.create_endpoint("e1", "default", "net", "", "h1", "c", "nwx", "eth0")
    assert (ep["endpointID"], ep["ipAddress"][0], ep["homingHost"], ep["intfName"], ep["containerID"]) == \
        ("e1", "10.1.2.1", "h1", "nwx", "c")
    assert client.create_endpoint("e1", "default", "net", "", "h1", "c", "nwx", "eth0") == ep
    client.register_host("h2", "10.0.0.2", 0xac, "")
    client.create_endpoint("e2", "default", "net", "", "h2", "c2", "nwy", "eth0")
    assert [e["endpointID"] for e in client.list_endpoints(host="h1")] == ["e1"]
    assert client.get_endpoint("e2")["homingHost"] == "h2"
    with pytest.raises(nmc.NetmasterError) as exc:
        client.create_endpoint("e9", "default", "net", "", "h1", "c", "nwz", "eth0")
    assert exc.value.status == 409 and "no free address" in exc.value.message
    with pytest.raises(nmc.NetmasterError) as exc:
        client.create_endpoint("e9", "default", "nonet", "", "h1", "c", "nwz", "eth0")
    assert exc.value.status == 404
    assert client.delete_endpoint("e1") is True
    assert client.delete_endpoint("e1") is False          # 404 means already released


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
    assert rc == 0 and out == {"cniVersion": "1.1.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}
    rc, out = run_cni({"CNI_COMMAND": "ADD"}, "[1, 2")
    assert rc == 1 and out["code"] == 6 and out["cniVersion"] == "1.1.0"   # unreadable: the newest
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

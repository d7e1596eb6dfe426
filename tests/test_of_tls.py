"""OpenFlow over TLS: a real Open vSwitch reaches a real netmaster through an
`ssl:` controller target with a certificate of netmaster's CA and gets its
flows; with a certificate from another CA netmaster refuses the handshake (not
connected, no flows). Over TLS the certificate says which host a switch is:
host:tls-a (the one issued with tls-a's credential) is taken for tls-a although
it connects from an address tls-a never registered from; the same certificate
presenting tls-b's datapath id is refused although it connects from tls-b's
VTEP; revoked, it is refused, and the reissued one is taken. The plain listener
is on loopback only (the default). Needs root and Open vSwitch (tests/procs.linked_ovs)."""
import os
import shutil
import tempfile

import pytest

from tests.procs import Netmaster, linked_ovs
from topologies.common import free_port, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ovs-vswitchd"),
                                reason="needs root and Open vSwitch")


@pytest.fixture(scope="module")
def lab():
    tls_port = free_port()        # below the ephemeral range, as netmaster's other ports
    ovs = None
    nm = Netmaster(extra=["--of-tls-port", str(tls_port)])      # plain OpenFlow: loopback (default)
    rogue_dir = tempfile.mkdtemp(prefix="nwtest-rogue-ca-")
    try:
        ovs = linked_ovs("tls", bridge=f"nwtls{os.getpid() % 10000}")
        nm.start()
        yield ovs, nm, tls_port, rogue_dir
    finally:
        nm.cleanup()
        if ovs is not None:
            ovs.stop()
        shutil.rmtree(rogue_dir, ignore_errors=True)


def _flows(ovs) -> list:
    return ovs.dump_flows() if ovs.vsctl("list-br").split() else []


def test_ovs_over_ssl_connects_only_with_netmasters_ca(lab):
    from netweave.pki import PKI
    ovs, nm, tls_port, rogue_dir = lab
    ca = os.path.join(nm.pki, "ca.crt")
    # a certificate from another CA, for the same host name: netmaster must refuse it
    rogue = PKI(rogue_dir)
    rogue.ensure_ca()
    rogue_crt, rogue_key = rogue.ensure_cert("host", cn="host:tls-a")
    ovs.vsctl("set-ssl", rogue_key, rogue_crt, ca)     # it still trusts netmaster's CA
    ovs.add_bridge(0x7151, f"tcp:{ovs.root_ip}:{nm.of_port}")
    ctl = ovs.vsctl("get", "bridge", ovs.bridge, "controller").strip("[] \n")
    ovs.vsctl("set", "controller", ctl, f'target="ssl:{ovs.root_ip}:{tls_port}"')

    wait_until(lambda: "event=openflow_tls_refused" in nm.log(), 20, what="netmaster refusing the rogue cert")
    assert not ovs.connected()
    assert _flows(ovs) == []

    # host tls-a's credential, as agent/credential.py gets it (here through the loopback door)
    crt, key = _credential(nm, "tls-a", rogue_dir)
    ovs.vsctl("set-ssl", key, crt, ca)
    wait_until(ovs.connected, 20, what="OVS connected over ssl:")

    def beat_and_flows():        # the host's agent would heartbeat; its switch gets its flows
        # registered from loopback with a VTEP the switch does not connect from: over tcp it
        # would be refused; over TLS its certificate names it
        r = nm.post("/api/v1/hosts/tls-a/", {"dpid": "%016x" % 0x7151, "vtepIP": "192.0.2.71"})
        assert r.status_code == 200, r.text
        return _flows(ovs)

    flows = wait_until(beat_and_flows, 20, interval=0.5, what="netmaster's flows on the switch")
    assert flows
    assert _switch_host(nm, 0x7151) == "tls-a"
    assert f"event=openflow_tls_accepted addr={ovs.ip} identity=host:tls-a" in nm.log()
    status = ovs.vsctl("--columns=status", "list", "Controller")
    assert "ssl" in ovs.vsctl("--columns=target", "list", "Controller")
    assert "state=ACTIVE" in status or "ACTIVE" in status

    # host:tls-a's certificate presenting tls-b's datapath id, from tls-b's own VTEP address
    # (which the address check would accept): refused, never named tls-b
    r = nm.post("/api/v1/hosts/tls-b/", {"dpid": "%016x" % 0x7152, "vtepIP": ovs.ip})
    assert r.status_code == 200, r.text
    ovs.vsctl("set", "bridge", ovs.bridge, "other-config:datapath-id=%016x" % 0x7152)
    wait_until(lambda: "event=switch_refused dpid=%016x addr=%s identity=host:tls-a" % (0x7152, ovs.ip)
               in nm.log(), 20, what="netmaster refusing host:tls-a as tls-b")
    assert _switch_host(nm, 0x7152) is None
    assert nm.get("/api/v1/flows/tls-b/").json()["connected"] is False
    assert "event=switch_connected dpid=%016x host=tls-b" % 0x7152 not in nm.log()

    # revoked, tls-a's certificate (still signed by the CA) is tls-a no more; reissued, the new
    # files, written in place as the agent does, are read by ovs-vswitchd and taken again
    assert nm.delete("/api/v1/auth_proxy/host_credentials/tls-a/").status_code == 200
    ovs.vsctl("set", "bridge", ovs.bridge, "other-config:datapath-id=%016x" % 0x7151)
    wait_until(lambda: "event=switch_refused dpid=%016x addr=%s identity=host:tls-a reason=the certificate "
               "host:tls-a is not host tls-a's current one" % (0x7151, ovs.ip) in nm.log(), 20,
               what="the revoked certificate refused")
    assert _switch_host(nm, 0x7151) is None
    _credential(nm, "tls-a", rogue_dir)
    wait_until(lambda: _switch_host(nm, 0x7151) == "tls-a", 30, what="the reissued certificate taken")


def _credential(nm, label, folder):
    """A host credential from netmaster's API, its key and certificate written as the agent does."""
    from agent.credential import _write
    r = nm.post(f"/api/v1/auth_proxy/host_credentials/{label}/", {})
    assert r.status_code == 200, r.text
    crt, key = os.path.join(folder, f"{label}.crt"), os.path.join(folder, f"{label}.key")
    _write(key, r.json()["key"])
    _write(crt, r.json()["cert"], 0o644)
    return crt, key


def _switch_host(nm, dpid):
    return next((s["host"] for s in nm.get("/api/v1/switches/").json() if s["dpid"] == f"{dpid:016x}"), None)


def test_plain_openflow_listens_on_loopback_only(lab):
    """--of-listen defaults to 127.0.0.1, and the start-up line says which listeners
    are open and how each authenticates."""
    import socket
    _, nm, tls_port, _ = lab
    with socket.socket() as s:
        s.connect(("127.0.0.1", nm.of_port))          # the local door answers
    ovs = lab[0]
    with socket.socket() as s:
        s.settimeout(5)
        with pytest.raises(OSError):
            s.connect((ovs.root_ip, nm.of_port))   # a non-loopback address of this machine does not
    line = next(x for x in nm.log().splitlines() if "event=netmaster_started" in x)
    assert f"openflow@127.0.0.1:{nm.of_port}/none-loopback" in line, line
    assert f"openflow-tls@0.0.0.0:{tls_port}/certificate" in line, line
    assert f"https@127.0.0.1:{nm.tls_port}/token" in line and f"rest@127.0.0.1:{nm.port}/none-loopback-admin" in line

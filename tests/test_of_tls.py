"""OpenFlow over TLS: a real Open vSwitch reaches a real netmaster through an
`ssl:` controller target with a certificate of netmaster's CA and gets its
flows; with a certificate from another CA netmaster refuses the handshake (not
connected, no flows). Needs root and Open vSwitch (tests/procs.linked_ovs)."""
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
    nm = Netmaster(extra=["--of-listen", "0.0.0.0", "--of-tls-port", str(tls_port)])
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

    # the host certificate netmaster's CA issues (as agent/credential.py gets it)
    crt, key = PKI(nm.pki).ensure_cert("host-tls-a", cn="host:tls-a")
    ovs.vsctl("set-ssl", key, crt, ca)
    wait_until(ovs.connected, 20, what="OVS connected over ssl:")

    def beat_and_flows():        # the host's agent would heartbeat; its switch gets its flows
        r = nm.post("/api/v1/hosts/tls-a/", {"dpid": "%016x" % 0x7151, "vtepIP": ovs.ip})
        assert r.status_code == 200, r.text
        return _flows(ovs)

    flows = wait_until(beat_and_flows, 20, interval=0.5, what="netmaster's flows on the switch")
    assert flows
    status = ovs.vsctl("--columns=status", "list", "Controller")
    assert "ssl" in ovs.vsctl("--columns=target", "list", "Controller")
    assert "state=ACTIVE" in status or "ACTIVE" in status

"""agent.ovsdb and netplugin's self-repair against real OVS daemons in a namespace.

No netmaster needed: netplugin keeps retrying its heartbeat and still owns br-int.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import pytest  # noqa: E402

from agent import ovsdb as ovsdb_mod  # noqa: E402
from agent.netmaster_client import dpid_for_host  # noqa: E402
from tests.agent_fixtures import agent_factory, host  # noqa: E402,F401
from topologies.common import wait_until  # noqa: E402

CTRL = "tcp:127.0.0.1:6653"


@pytest.fixture
def db(host):
    d = ovsdb_mod.Ovsdb(host.remote)
    try:
        yield d
    finally:
        d.close()


def get(host, table, record, column):
    """ovs-vsctl get, with the quotes it puts around some strings taken off."""
    return host.vsctl("get", table, record, column).replace('"', "")


def test_bridge_and_tunnel_port_as_specified(host, db):
    assert db.ensure_bridge("br-int", "netdev", 0xa1, CTRL) is True
    assert db.last_status == "success"
    assert get(host, "Bridge", "br-int", "protocols") == '[OpenFlow13]'
    assert get(host, "Bridge", "br-int", "fail_mode") == "secure"
    assert get(host, "Bridge", "br-int", "datapath_type") == "netdev"
    assert get(host, "Bridge", "br-int", "other_config:datapath-id") == '00000000000000a1'
    assert get(host, "Bridge", "br-int", "other_config:disable-in-band") == 'true'
    assert host.vsctl("get-controller", "br-int") == CTRL
    assert host.vsctl("--columns=connection_mode", "--bare", "list", "Controller") == \
        "out-of-band"
    # vswitchd took the datapath id
    wait_until(lambda: get(host, "Bridge", "br-int", "datapath_id") == '00000000000000a1',
               5, what="datapath_id")

    assert db.ensure_tunnel_port("br-int", "vxlan0", 100) == 100
    assert get(host, "Interface", "vxlan0", "type") == "vxlan"
    assert get(host, "Interface", "vxlan0", "options:remote_ip") == "flow"
    assert get(host, "Interface", "vxlan0", "options:key") == "flow"
    assert get(host, "Interface", "vxlan0", "ofport_request") == "100"
    assert get(host, "Interface", "vxlan0", "ofport") == "100"
    # the bridge's own internal port exists, like ovs-vsctl add-br makes it
    assert get(host, "Interface", "br-int", "type") == "internal"


def test_ensure_twice_changes_nothing(host, db):
    db.ensure_bridge("br-int", "netdev", 0xa1, CTRL)
    db.ensure_tunnel_port("br-int")
    uuid1 = host.vsctl("get", "Bridge", "br-int", "_uuid")
    ctrl1 = host.vsctl("get", "Bridge", "br-int", "controller")
    port1 = host.vsctl("get", "Port", "vxlan0", "_uuid")
    assert db.ensure_bridge("br-int", "netdev", 0xa1, CTRL) is False
    assert db.last_status == "unchanged"
    assert db.ensure_tunnel_port("br-int") == 100
    assert db.last_status == "unchanged"
    assert host.vsctl("get", "Bridge", "br-int", "_uuid") == uuid1
    assert host.vsctl("get", "Bridge", "br-int", "controller") == ctrl1
    assert host.vsctl("get", "Port", "vxlan0", "_uuid") == port1
    # a second IDL connection (a restarted agent) also finds nothing to do
    db2 = ovsdb_mod.Ovsdb(host.remote)
    try:
        assert db2.ensure_bridge("br-int", "netdev", 0xa1, CTRL) is False
        assert db2.last_status == "unchanged"
        db2.ensure_tunnel_port("br-int")
        assert db2.last_status == "unchanged"
    finally:
        db2.close()
    # a drifted field is put back, and only that
    host.vsctl("set", "Bridge", "br-int", "fail_mode=standalone")
    host.vsctl("set", "Interface", "vxlan0", "options:key=5")
    assert db.ensure_bridge("br-int", "netdev", 0xa1, CTRL) is True
    db.ensure_tunnel_port("br-int")
    assert db.last_status == "success"
    assert get(host, "Bridge", "br-int", "fail_mode") == "secure"
    assert get(host, "Interface", "vxlan0", "options:key") == "flow"
    assert host.vsctl("get", "Bridge", "br-int", "_uuid") == uuid1


def test_endpoint_and_uplink_ports(host, db):
    db.ensure_bridge("br-int", "netdev", 0xa1, CTRL)
    host.ns("ip", "link", "add", "nwtest0", "type", "veth", "peer", "name", "nwtest0p")
    host.ns("ip", "link", "add", "upl0", "type", "veth", "peer", "name", "upl0p")
    for ifname in ("nwtest0", "nwtest0p", "upl0", "upl0p"):
        host.ns("ip", "link", "set", ifname, "up")
    ext = {"netweave-endpoint": "0123456789ab", "container-id": "c1", "iface-id": "x"}
    ofport = db.ensure_endpoint_port("br-int", "nwtest0", ext)
    assert isinstance(ofport, int) and ofport > 0
    assert db.ensure_endpoint_port("br-int", "nwtest0", ext) == ofport
    assert db.last_status == "unchanged"
    assert get(host, "Interface", "nwtest0", "external_ids:netweave-endpoint") == \
        '0123456789ab'
    assert db.ensure_uplink_port("br-int", "upl0", 101) == 101
    assert db.list_endpoint_ports("br-int") == {"nwtest0": ext}

    db.set_ingress_policing("nwtest0", 1000, 100)
    assert get(host, "Interface", "nwtest0", "ingress_policing_rate") == "1000"
    assert get(host, "Interface", "nwtest0", "ingress_policing_burst") == "100"
    db.set_ingress_policing("nwtest0", 1000, 100)
    assert db.last_status == "unchanged"

    assert db.remove_port("br-int", "nwtest0") is True
    assert db.remove_port("br-int", "nwtest0") is False
    assert "nwtest0" not in host.vsctl("list-ports", "br-int").split()
    assert db.list_endpoint_ports("br-int") == {}


def test_endpoint_port_error_is_reported(host, db):
    db.ensure_bridge("br-int", "netdev", 0xa1, CTRL)
    with pytest.raises(ovsdb_mod.OvsdbError) as exc:
        db.ensure_endpoint_port("br-int", "nwnosuchdev", {"netweave-endpoint": "x"})
    assert "nwnosuchdev" in str(exc.value)


def test_datapath_auto_detection(monkeypatch):
    assert ovsdb_mod.choose_datapath("system") == "system"
    assert ovsdb_mod.choose_datapath("netdev") == "netdev"
    with pytest.raises(ValueError):
        ovsdb_mod.choose_datapath("kernel")
    real = "system" if ovsdb_mod.kernel_datapath_available() else "netdev"
    assert ovsdb_mod.choose_datapath("auto") == real
    if not os.path.exists("/sys/module/openvswitch"):
        assert real == "netdev"   # this machine: no kernel module
    monkeypatch.setattr(ovsdb_mod, "kernel_datapath_available", lambda: True)
    assert ovsdb_mod.choose_datapath("auto") == "system"
    monkeypatch.setattr(ovsdb_mod, "kernel_datapath_available", lambda: False)
    assert ovsdb_mod.choose_datapath("auto") == "netdev"
    # detection itself: /sys/module/openvswitch present means available
    real_exists = os.path.exists
    monkeypatch.undo()
    monkeypatch.setattr(ovsdb_mod.os.path, "exists",
                        lambda p: True if p == "/sys/module/openvswitch" else real_exists(p))
    assert ovsdb_mod.kernel_datapath_available() is True


def test_netplugin_self_repair(host, agent_factory):
    # netmaster is not running: the agent still owns br-int and keeps retrying heartbeats
    agent = agent_factory(host, "http://%s:1" % host.root_ip, label="repairhost").start()
    dpid = "%016x" % dpid_for_host("repairhost")
    assert get(host, "Bridge", "br-int", "other_config:datapath-id") == '%s' % dpid
    assert get(host, "Bridge", "br-int", "datapath_type") == "netdev"   # auto, no module
    ctrl = host.vsctl("get-controller", "br-int")
    assert ctrl == "tcp:%s:6653" % host.root_ip
    assert host.vsctl("get", "Open_vSwitch", ".", "external_ids:netweave-host-label") == \
        "repairhost"

    # an endpoint port that must come back with the bridge (its veth still exists)
    host.ns("ip", "link", "add", "nwrep0", "type", "veth", "peer", "name", "nwrep0p")
    host.ns("ip", "link", "set", "nwrep0", "up")
    host.vsctl("add-port", "br-int", "nwrep0", "--", "set", "Interface", "nwrep0",
               "external_ids:netweave-endpoint=aaaabbbbcccc")
    wait_until(lambda: "nwrep0" in agent.log_text() or True, 1, what="agent saw port")

    host.vsctl("del-port", "br-int", "vxlan0")
    wait_until(lambda: "vxlan0" in host.vsctl("list-ports", "br-int").split(), 10,
               what="vxlan0 to be put back", detail=agent.log_tail)
    assert get(host, "Interface", "vxlan0", "ofport") == "100"

    host.vsctl("set-controller", "br-int", "tcp:192.0.2.1:6653")
    wait_until(lambda: host.vsctl("get-controller", "br-int") == ctrl, 10,
               what="controller to be put back", detail=agent.log_tail)

    host.vsctl("del-br", "br-int")
    wait_until(lambda: {"vxlan0", "nwrep0"} <= set(host.vsctl("list-ports", "br-int",
                                                              check=False).split()),
               10, what="br-int, vxlan0 and the endpoint port to be put back", detail=agent.log_tail)
    assert get(host, "Bridge", "br-int", "fail_mode") == "secure"
    assert get(host, "Interface", "nwrep0", "external_ids:netweave-endpoint") == \
        'aaaabbbbcccc'
    log = agent.log_text()
    assert "event=bridge_ensured" in log and "reason=ovsdb_change" in log
    assert "event=tunnel_port_ensured" in log
    assert "event=endpoint_port_replugged port=nwrep0" in log
    assert agent.stop() == 0
    assert "event=agent_stop" in agent.log_text()


def test_netplugin_survives_ovsdb_restart(host, agent_factory):
    agent = agent_factory(host, "http://%s:1" % host.root_ip, label="dbrestart").start()
    uuid = host.vsctl("get", "Bridge", "br-int", "_uuid")
    host.stop_db()
    time.sleep(1)
    host.start_db()
    # while it was away someone removed the tunnel port: the agent reconnects and repairs
    host.vsctl("del-port", "br-int", "vxlan0")
    wait_until(lambda: "vxlan0" in host.vsctl("list-ports", "br-int").split(), 20,
               what="vxlan0 back after ovsdb-server restart", detail=agent.log_tail)
    assert host.vsctl("get", "Bridge", "br-int", "_uuid") == uuid
    assert agent.proc.poll() is None


def test_netplugin_waits_for_ovsdb(host, agent_factory):
    host.stop_db()
    agent = agent_factory(host, "http://%s:1" % host.root_ip, label="early")
    agent.start(wait_bridge=False)
    wait_until(lambda: "event=ovsdb_unreachable" in agent.log_text(), 10, what="retry log", detail=agent.log_tail)
    host.start_db()
    wait_until(lambda: "vxlan0" in host.vsctl("list-ports", "br-int", check=False).split(), 20,
               what="br-int once ovsdb-server is up", detail=agent.log_tail)
    assert agent.stop() == 0


def test_netplugin_uplink(host, agent_factory):
    host.ns("ip", "link", "add", "upl0", "type", "veth", "peer", "name", "upl0p")
    host.ns("ip", "link", "set", "upl0", "up")
    agent = agent_factory(host, "http://%s:1" % host.root_ip, label="upl",
                          extra=("--uplink", "upl0")).start()
    wait_until(lambda: get(host, "Interface", "upl0", "ofport") == "101", 10, what="uplink", detail=agent.log_tail)
    assert get(host, "Interface", "upl0", "type") == ""
    host.vsctl("del-port", "br-int", "upl0")
    wait_until(lambda: get(host, "Interface", "upl0", "ofport") == "101", 10,
               what="uplink put back", detail=agent.log_tail)
    assert "event=uplink_port_ensured bridge=br-int port=upl0 reason=ovsdb_change" in \
        agent.log_text()

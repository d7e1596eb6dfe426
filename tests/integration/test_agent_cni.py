"""netweave-cni and netplugin against a real netmaster and real OVS (one namespace per host).

Skipped, with the reason, when controller/main.py (netmaster) is not in the tree.
"""
import json
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import pytest  # noqa: E402

from agent.netmaster_client import endpoint_id, host_port_name  # noqa: E402
from tests.agent_fixtures import (agent_factory, cni, cni_conf, containers, host,  # noqa: E402,F401
                                  host2, netmaster_options)
from topologies.common import wait_until  # noqa: E402
from topologies.ovs import run  # noqa: E402


@pytest.fixture
def site(netmaster, host, agent_factory):
    """netmaster with network contiv-net (10.1.2.0/24), one host running netplugin."""
    netmaster.create_network()
    agent = agent_factory(host, netmaster.url_for(host), label="hostA",
                          controller=netmaster.controller_for(host)).start()
    wait_until(lambda: netmaster.hosts().get("hostA", {}).get("state") == "up", 15,
               what="hostA registered", detail=agent.log_tail)
    return netmaster, host, agent


def nw_links(host):
    out = host.ns("ip", "-o", "link", "show").stdout
    return sorted(re.findall(r"^\d+: (nw[0-9a-f]+)[@:]", out, re.M))


def ovs_ports(host):
    return sorted(p for p in host.vsctl("list-ports", "br-int").split() if p.startswith("nw"))


def assert_nothing_left(nm, host, ctr=None, ifname="eth0", keep_endpoints=()):
    assert nw_links(host) == [], "veth left behind"
    assert ovs_ports(host) == [], "OVS port left behind"
    eps = [e["endpointID"] for e in nm.endpoints() if e["endpointID"] not in keep_endpoints]
    assert eps == [], "address left allocated: %s" % eps
    if ctr:
        links = netns_links(ctr)
        assert ifname not in links


def netns_links(ctr):
    out = run("ip", "netns", "exec", ctr, "ip", "-o", "link", "show").stdout
    return re.findall(r"^\d+: ([^@:]+)[@:]", out, re.M)


def in_ctr(ctr, *cmd):
    return run("ip", "netns", "exec", ctr, *cmd).stdout


def test_version(host):
    rc, out, _ = cni(host, "VERSION", "")
    assert rc == 0
    assert out["cniVersion"] == "1.1.0"
    assert out["supportedVersions"] == ["0.4.0", "1.0.0", "1.1.0"]


def test_add_check_del(site, containers):
    nm, host, agent = site
    ctr = containers()
    netns = "/var/run/netns/" + ctr
    conf = cni_conf(host, nm)
    rc, res, err = cni(host, "ADD", conf, "ctr-one", netns, "eth0")
    assert rc == 0, (res, err)
    ep_id = endpoint_id("ctr-one", "eth0")
    port = host_port_name(ep_id)
    assert len(port) <= 15

    # the CNI 1.0.0 result
    assert res["cniVersion"] == "1.0.0"
    assert res["interfaces"][0]["name"] == "eth0"
    assert res["interfaces"][0]["sandbox"] == netns
    assert res["interfaces"][1]["name"] == port
    ip = res["ips"][0]
    assert ip["address"].startswith("10.1.2.") and ip["address"].endswith("/24")
    assert ip["gateway"] == "10.1.2.1" and ip["interface"] == 0
    assert res["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.1.2.1"}]

    # netmaster's view
    ep = [e for e in nm.endpoints() if e["endpointID"] == ep_id][0]
    assert ep["homingHost"] == "hostA" and ep["intfName"] == port
    assert ep["ipAddress"][0] + "/24" == ip["address"]

    # the container's side
    link = json.loads(in_ctr(ctr, "ip", "-j", "link", "show", "eth0"))[0]
    assert link["mtu"] == ep["mtu"] == 1450
    assert link["address"] == ep["macAddress"].lower() == res["interfaces"][0]["mac"]
    assert "UP" in link["flags"]
    assert ip["address"] in in_ctr(ctr, "ip", "-o", "-4", "addr", "show", "eth0")
    assert "default via 10.1.2.1 dev eth0" in in_ctr(ctr, "ip", "route")
    assert re.search(r"tx-checksumming: off", in_ctr(ctr, "ethtool", "-k", "eth0"))

    # the host's side and OVS
    assert port in nw_links(host)
    assert json.loads(host.ns("ip", "-j", "link", "show", port).stdout)[0]["mtu"] == 1450
    assert port in ovs_ports(host)
    ext = host.vsctl("get", "Interface", port, "external_ids")
    assert 'netweave-endpoint="%s"' % ep_id in ext.replace(" ", "") or \
        "netweave-endpoint=%s" % ep_id in ext.replace('"', "")
    assert "container-id=ctr-one" in ext.replace('"', "")
    assert "iface-id=%s" % ep_id in ext.replace('"', "")
    assert int(host.vsctl("get", "Interface", port, "ofport")) > 0

    # CHECK: fine, then says exactly what is wrong
    conf_check = dict(conf, prevResult=res)
    rc, out, err = cni(host, "CHECK", conf_check, "ctr-one", netns, "eth0")
    assert rc == 0 and out is None, (out, err)
    stale = dict(res, ips=[dict(ip, address="10.1.2.250/24")])
    rc, out, _ = cni(host, "CHECK", dict(conf, prevResult=stale), "ctr-one", netns, "eth0")
    assert rc == 1 and out["code"] == 105 and "prevResult" in out["msg"], out
    in_ctr(ctr, "ip", "link", "set", "eth0", "mtu", "1400")
    host.vsctl("del-port", "br-int", port)
    rc, out, _ = cni(host, "CHECK", conf_check, "ctr-one", netns, "eth0")
    assert rc == 1 and out["code"] == 105
    assert "MTU 1400, expected 1450" in out["msg"]
    assert "OVS port %s is missing" % port in out["msg"]

    # DEL, and DEL again
    rc, out, err = cni(host, "DEL", conf, "ctr-one", netns, "eth0")
    assert rc == 0 and out is None, (out, err)
    assert_nothing_left(nm, host, ctr)
    rc, out, err = cni(host, "DEL", conf, "ctr-one", netns, "eth0")
    assert rc == 0 and out is None, (out, err)
    # DEL with the netns already gone (container died) also succeeds
    rc, out, err = cni(host, "DEL", conf, "ctr-one", "/var/run/netns/nwag-gone", "eth0")
    assert rc == 0, (out, err)


def test_dual_stack_add_check_del(site, containers):
    """On a network with an ipv6Subnet: both addresses in the result and the namespace (the
    IPv6 one without DAD, so usable at once), both default routes; CHECK sees a lost IPv6
    address; an asked-for pair (CNI_ARGS IP=v4,v6) is given; DEL releases both."""
    nm, host, _ = site
    nm.call("POST", "/api/v1/networks/default:ds/", {
        "subnet": "10.3.0.0/24", "gateway": "10.3.0.1", "ipv6Subnet": "fd00:3::/64"})
    ctr = containers()
    netns = "/var/run/netns/" + ctr
    conf = cni_conf(host, nm, network="ds")
    rc, res, err = cni(host, "ADD", conf, "ctr-ds", netns, "eth0")
    assert rc == 0, (res, err)
    assert res["ips"] == [{"address": "10.3.0.2/24", "interface": 0, "gateway": "10.3.0.1"},
                          {"address": "fd00:3::2/64", "interface": 0, "gateway": "fd00:3::1"}]
    assert res["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.3.0.1"}, {"dst": "::/0", "gw": "fd00:3::1"}]
    addrs = json.loads(in_ctr(ctr, "ip", "-j", "-6", "addr", "show", "eth0"))[0]["addr_info"]
    glob = [a for a in addrs if a["scope"] == "global"]
    assert [(a["local"], a["prefixlen"]) for a in glob] == [("fd00:3::2", 64)]
    assert not any(a.get("tentative") for a in addrs), addrs          # DAD off: usable at once
    # the link-local is the EUI-64 of the endpoint's MAC (what the spoof guard lets through)
    import ipaddress
    ll = [ipaddress.IPv6Address(a["local"]) for a in addrs if a["scope"] == "link"]
    m = bytes.fromhex(res["interfaces"][0]["mac"].replace(":", ""))
    eui = ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + bytes([m[0] ^ 2]) + m[1:3] + b"\xff\xfe" + m[3:])
    assert ll == [eui], (ll, eui)
    assert "default via fd00:3::1 dev eth0" in in_ctr(ctr, "ip", "-6", "route")
    assert in_ctr(ctr, "sysctl", "-n", "net.ipv6.conf.eth0.accept_ra").strip() == "0"
    conf_check = dict(conf, prevResult=res)
    rc, out, err = cni(host, "CHECK", conf_check, "ctr-ds", netns, "eth0")
    assert rc == 0 and out is None, (out, err)
    in_ctr(ctr, "ip", "-6", "route", "del", "default")
    in_ctr(ctr, "ip", "addr", "del", "fd00:3::2/64", "dev", "eth0")
    rc, out, _ = cni(host, "CHECK", conf_check, "ctr-ds", netns, "eth0")
    assert rc == 1 and out["code"] == 105, out
    assert "expected fd00:3::2/64" in out["msg"] and "no IPv6 default route via fd00:3::1" in out["msg"]
    # an asked-for pair, in a 0.4.0 result that names each family
    ctr2 = containers()
    rc, res2, err = cni(host, "ADD", dict(conf, cniVersion="0.4.0"), "ctr-ds2", "/var/run/netns/" + ctr2,
                        extra_env={"CNI_ARGS": "IP=10.3.0.40,fd00:3::40/64"})
    assert rc == 0, (res2, err)
    assert [(i["address"], i["version"]) for i in res2["ips"]] == [("10.3.0.40/24", "4"),
                                                                   ("fd00:3::40/64", "6")]
    for cid, ns in (("ctr-ds", netns), ("ctr-ds2", "/var/run/netns/" + ctr2)):
        rc, out, err = cni(host, "DEL", conf, cid, ns, "eth0")
        assert rc == 0, (out, err)
    assert_nothing_left(nm, host, ctr)
    oper = nm.call("GET", "/api/v1/inspect/networks/default:ds/")["Oper"]
    assert oper["allocatedIPv6Addresses"] == "fd00:3::1"                # only the gateway


def test_add_uses_host_label_recorded_by_netplugin(site, containers):
    nm, host, agent = site
    ctr = containers()
    conf = cni_conf(host, nm)
    conf.pop("netmaster")          # both come from OVSDB external_ids written by netplugin
    assert "hostLabel" not in conf
    rc, res, err = cni(host, "ADD", conf, "ctr-label", "/var/run/netns/" + ctr, "eth1")
    assert rc == 0, (res, err)
    ep = [e for e in nm.endpoints() if e["endpointID"] == endpoint_id("ctr-label", "eth1")][0]
    assert ep["homingHost"] == "hostA"
    rc, out, err = cni(host, "DEL", conf, "ctr-label", "/var/run/netns/" + ctr, "eth1")
    assert rc == 0, (out, err)
    assert_nothing_left(nm, host, ctr, "eth1")


def test_add_unknown_network(site, containers):
    nm, host, _ = site
    ctr = containers()
    rc, out, _ = cni(host, "ADD", cni_conf(host, nm, network="no-such-net"), "ctr-x",
                     "/var/run/netns/" + ctr)
    assert rc == 1
    assert out["code"] == 101 and "no-such-net" in out["msg"], out
    assert out["cniVersion"] == "1.0.0"
    assert_nothing_left(nm, host, ctr)
    rc, out, _ = cni(host, "ADD", cni_conf(host, nm, tenant="no-such-tenant"), "ctr-x",
                     "/var/run/netns/" + ctr)
    assert rc == 1 and out["code"] == 101, out
    assert_nothing_left(nm, host, ctr)


def test_add_missing_netns(site):
    nm, host, _ = site
    rc, out, _ = cni(host, "ADD", cni_conf(host, nm), "ctr-y", "/var/run/netns/nwag-nothere")
    assert rc == 1 and out["code"] == 3, out
    assert "/var/run/netns/nwag-nothere" in out["msg"]
    assert_nothing_left(nm, host)


def test_add_exhausted_subnet(site, containers):
    nm, host, _ = site
    nm.create_network("tiny", subnet="10.3.0.0/30", gateway="10.3.0.1")
    conf = cni_conf(host, nm, network="tiny")
    ok = []
    last = None
    for i in range(5):
        ctr = containers()
        rc, out, err = cni(host, "ADD", conf, "ctr-t%d" % i, "/var/run/netns/" + ctr)
        if rc != 0:
            last = (ctr, out)
            break
        ok.append((ctr, "ctr-t%d" % i, out))
    assert ok, "a /30 must hold at least one endpoint"
    assert last is not None, "the /30 never ran out"
    ctr, out = last
    assert out["code"] == 102, out
    assert "10.3.0.0/30" in out["msg"] or "free" in out["msg"]
    # nothing of the failed ADD is left; the successful ones are untouched
    kept = {endpoint_id(cid, "eth0") for _, cid, _ in ok}
    assert {e["endpointID"] for e in nm.endpoints()} == kept
    assert ovs_ports(host) == sorted(host_port_name(e) for e in kept)
    assert "eth0" not in netns_links(ctr)
    for c, cid, _ in ok:
        rc, out, err = cni(host, "DEL", conf, cid, "/var/run/netns/" + c)
        assert rc == 0, (out, err)
    assert_nothing_left(nm, host)


def test_add_netmaster_unreachable(host, agent_factory, containers):
    # OVS and br-int are there (netplugin ran), netmaster is not
    agent = agent_factory(host, "http://%s:1" % host.root_ip, label="lonely").start()
    ctr = containers()
    conf = {"cniVersion": "1.0.0", "name": "netweave", "type": "netweave",
            "netmaster": "http://%s:1" % host.root_ip, "network": "contiv-net",
            "ovsdb": host.remote}
    rc, out, _ = cni(host, "ADD", conf, "ctr-z", "/var/run/netns/" + ctr)
    assert rc == 1 and out["code"] == 11, out
    assert "unreachable" in out["msg"]
    assert nw_links(host) == [] and ovs_ports(host) == []
    assert "eth0" not in netns_links(ctr)
    agent.stop()


def test_add_refuses_taken_ifname(site, containers):
    nm, host, _ = site
    ctr = containers()
    in_ctr(ctr, "ip", "link", "add", "dummy0", "type", "veth", "peer", "name", "dummy0p")
    rc, out, _ = cni(host, "ADD", cni_conf(host, nm), "ctr-r", "/var/run/netns/" + ctr,
                     "dummy0")
    assert rc == 1 and out["code"] == 104 and "dummy0" in out["msg"], out
    assert_nothing_left(nm, host)
    rc, out, _ = cni(host, "ADD", cni_conf(host, nm, bridge="br-missing"), "ctr-r",
                     "/var/run/netns/" + ctr)
    assert rc == 1 and out["code"] == 11 and "br-missing" in out["msg"], out
    assert_nothing_left(nm, host)


FAIL_OVS = """
from agent import ovsdb
def boom(self, *a, **k):
    raise ovsdb.OvsdbError("injected: vswitchd refused the port")
ovsdb.Ovsdb.ensure_endpoint_port = boom
"""

FAIL_ETHTOOL = """
from agent import netlink
def refuse(name):
    raise netlink.LinkError("injected: ethtool refused on " + name, 1)
netlink.tx_checksum_off = refuse
"""

FAIL_PLUGGED = """
from agent import ovsdb
real = ovsdb.Ovsdb.ensure_endpoint_port
def plugged_then_boom(self, *a, **k):
    real(self, *a, **k)
    raise RuntimeError("injected: crash after the port was plugged")
ovsdb.Ovsdb.ensure_endpoint_port = plugged_then_boom
"""


@pytest.mark.parametrize("inject,code", [(FAIL_OVS, 103), (FAIL_ETHTOOL, 104),
                                         (FAIL_PLUGGED, 999)],
                         ids=["ovs-port-fails", "ethtool-fails", "crash-after-plug"])
def test_add_late_failure_rolls_back_everything(site, containers, inject, code):
    """Failures after the address was allocated, the veth made and moved, the port
    plugged: the veth, the OVS port and the address must all go."""
    nm, host, _ = site
    ctr = containers()
    rc, out, err = cni(host, "ADD", cni_conf(host, nm), "ctr-late", "/var/run/netns/" + ctr,
                       inject=inject)
    assert rc == 1 and out["code"] == code, (out, err)
    assert "injected" in out["msg"] + out.get("details", ""), out
    assert_nothing_left(nm, host, ctr)


NO_PROCESS = """
import os, subprocess
def refuse(*a, **k):
    raise AssertionError("injected: the ADD started a process %r" % (a[:1],))
subprocess.Popen = refuse
os.fork = os.posix_spawn = os.posix_spawnp = os.system = refuse
"""


def test_add_plumbs_in_process_as_one_burst(site, containers):
    """The ADD starts no process (no ip, ethtool, sysctl, ovs-ofctl), and the host's
    namespace sees of the host end only: made (already promiscuous, so OVS has no flag to
    change; the kernel may report it a second time once its peer is attached), up, its
    carrier when the container end comes up last; the end has no IPv6, whose link-local
    would change a route a second later. Each of those is a re-read of every link of the
    namespace by OVS."""
    nm, host, _ = site
    ctr = containers()
    netns = "/var/run/netns/" + ctr
    port = host_port_name(endpoint_id("ctr-quiet", "eth0"))
    seen = []
    mon = subprocess.Popen(["ip", "netns", "exec", host.netns, "ip", "monitor", "link"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    reader = threading.Thread(target=lambda: seen.extend(mon.stdout), daemon=True)
    reader.start()

    def mark(name):         # a change of our own: the monitor has read all before it
        host.ns("ip", "tuntap", "add", "dev", name, "mode", "tap")
        wait_until(lambda: any(re.match(r"\d+: %s:" % name, x) for x in list(seen)), 10,
                   what="the link monitor saw " + name)

    try:
        mark("qmark0")
        # the wait for the port's flows included: it asks the switch in-process too
        rc, res, err = cni(host, "ADD", cni_conf(host, nm), "ctr-quiet",
                           netns, inject=NO_PROCESS)
        assert rc == 0, (res, err)
        mark("qmark1")
    finally:
        mon.terminate()
        mon.wait()
        reader.join(5)
        for name in ("qmark0", "qmark1"):
            host.ns("ip", "link", "del", name, check=False)
    about = [x for x in seen if re.match(r"\d+: %s[@:]" % port, x)]
    assert about and all("PROMISC" in x for x in about), about
    assert len(about) <= 4 and "state UP" in about[-1], about
    assert int(host.vsctl("get", "Interface", port, "ofport")) > 0
    assert host.ns("ip", "-6", "addr", "show", "dev", port).stdout.strip() == ""
    assert re.search(r"tx-checksumming: off", in_ctr(ctr, "ethtool", "-k", "eth0"))
    assert res["ips"][0]["address"] in in_ctr(ctr, "ip", "-o", "-4", "addr", "show", "eth0")
    assert "default via 10.1.2.1 dev eth0" in in_ctr(ctr, "ip", "route")
    assert res["interfaces"][1]["mac"] == json.loads(
        host.ns("ip", "-j", "link", "show", port).stdout)[0]["address"]
    rc, out, err = cni(host, "DEL", cni_conf(host, nm), "ctr-quiet", netns, inject=NO_PROCESS)
    assert rc == 0, (out, err)
    assert_nothing_left(nm, host, ctr)


def test_bad_input(site, containers):
    nm, host, _ = site
    ctr = containers()
    netns = "/var/run/netns/" + ctr
    rc, out, _ = cni(host, "ADD", "{not json", "c", netns)
    assert rc == 1 and out["code"] == 6, out
    conf = cni_conf(host, nm)
    del conf["network"]
    rc, out, _ = cni(host, "ADD", conf, "c", netns)
    assert rc == 1 and out["code"] == 7, out
    rc, out, _ = cni(host, "ADD", cni_conf(host, nm, cniVersion="0.1.0"), "c", netns)
    assert rc == 1 and out["code"] == 1, out
    rc, out, _ = cni(host, "ADD", cni_conf(host, nm), "", netns)
    assert rc == 1 and out["code"] == 4 and "CNI_CONTAINERID" in out["msg"], out
    rc, out, _ = cni(host, "ADD", cni_conf(host, nm), "c", netns, "x" * 16)
    assert rc == 1 and out["code"] == 4, out
    rc, out, _ = cni(host, "FROB", cni_conf(host, nm), "c", netns)
    assert rc == 1 and out["code"] == 4, out
    for bad in ("5", -1, True):
        rc, out, _ = cni(host, "ADD", cni_conf(host, nm, portFlowsTimeout=bad), "c", netns)
        assert rc == 1 and out["code"] == 7 and "portFlowsTimeout" in out["msg"], out
    assert_nothing_left(nm, host, ctr)


def flows(host):
    """dump-flows without the counters that move by themselves."""
    out = host.ofctl("dump-flows", check=False)
    lines = []
    for line in out.splitlines():
        if "reply" in line:
            continue
        line = re.sub(r"(duration|n_packets|n_bytes|idle_age|hard_age)=[^,]*, ?", "", line)
        lines.append(line.strip())
    return sorted(lines)


def ports_state(host):
    return host.vsctl("--columns=_uuid,name,ofport,external_ids", "list", "Interface"), \
        host.vsctl("get", "Bridge", "br-int", "_uuid"), \
        host.vsctl("get", "Bridge", "br-int", "controller")


def test_netplugin_restart_leaves_ports_and_flows(site, containers):
    nm, host, agent = site
    ctrs = [containers() for _ in range(2)]
    conf = cni_conf(host, nm)
    for i, c in enumerate(ctrs):
        rc, out, err = cni(host, "ADD", conf, "ctr-rs%d" % i, "/var/run/netns/" + c)
        assert rc == 0, (out, err)
    wait_until(lambda: host.vsctl("--bare", "--columns=is_connected", "list", "Controller")
               == "true", 20, what="br-int connected to netmaster's controller")
    time.sleep(2)     # let the controller settle its flows
    # a flow of our own too, so that the comparison never compares two empty tables
    host.ofctl("add-flow", "table=200,cookie=0x7e57,priority=5,ip,nw_dst=192.0.2.9,"
               "actions=drop")
    before_flows, before_ports = flows(host), ports_state(host)
    connects = host.log().count(": connected")
    assert any("cookie=0x7e57" in f for f in before_flows), before_flows
    assert agent.stop() == 0
    agent.start()
    wait_until(lambda: "event=resync_done" in agent.log_since_start(),
               15, what="resync after restart", detail=agent.log_tail)
    time.sleep(1)
    assert ports_state(host) == before_ports
    assert host.log().count(": connected") == connects, "the OpenFlow connection was reset"
    assert flows(host) == before_flows
    restarted = agent.log_since_start()
    assert "event=bridge_ensured" not in restarted
    assert "event=tunnel_port_ensured" not in restarted
    assert "removed=0 missing=0" in restarted
    for i, c in enumerate(ctrs):
        rc, out, err = cni(host, "DEL", conf, "ctr-rs%d" % i, "/var/run/netns/" + c)
        assert rc == 0, (out, err)


def test_resync_removes_unknown_ports_and_reports_missing(site, containers):
    nm, host, agent = site
    ctr = containers()
    conf = cni_conf(host, nm)
    rc, out, err = cni(host, "ADD", conf, "ctr-gone", "/var/run/netns/" + ctr)
    assert rc == 0, (out, err)
    known_port = host_port_name(endpoint_id("ctr-gone", "eth0"))
    agent.stop()
    # a stale port whose endpoint netmaster never heard of
    host.ns("ip", "link", "add", "nwstale0", "type", "veth", "peer", "name", "nwstale0p")
    host.vsctl("add-port", "br-int", "nwstale0", "--", "set", "Interface", "nwstale0",
               "external_ids:netweave-endpoint=deadbeef0000")
    # and a known endpoint whose port vanished
    host.vsctl("del-port", "br-int", known_port)
    agent.start()
    wait_until(lambda: "event=resync_done" in agent.log_since_start(),
               15, what="resync", detail=agent.log_tail)
    log = agent.log_since_start()
    assert "event=stale_endpoint_port_removed port=nwstale0 endpoint=deadbeef0000" in log
    assert "event=endpoint_port_missing endpoint=%s port=%s" % (
        endpoint_id("ctr-gone", "eth0"), known_port) in log
    assert "nwstale0" not in host.vsctl("list-ports", "br-int").split()
    assert "nwstale0" not in nw_links(host)
    rc, out, err = cni(host, "DEL", conf, "ctr-gone", "/var/run/netns/" + ctr)
    assert rc == 0, (out, err)


def test_heartbeat_up_down(netmaster, host, agent_factory):
    agent = agent_factory(host, netmaster.url_for(host), label="beater", interval=0.5)
    agent.start()
    wait_until(lambda: netmaster.hosts().get("beater", {}).get("state") == "up", 10,
               what="host up", detail=agent.log_tail)
    h = netmaster.hosts()["beater"]
    assert h["vtepIP"] == host.ip
    assert re.fullmatch(r"[0-9a-f]{16}", h["dpid"])
    first = h["lastHeartbeat"]
    time.sleep(1.2)
    assert netmaster.hosts()["beater"]["lastHeartbeat"] != first, "heartbeats do not move"
    agent.stop()
    wait_until(lambda: netmaster.hosts()["beater"]["state"] == "down", 10, what="host down")
    agent.start()
    wait_until(lambda: netmaster.hosts()["beater"]["state"] == "up", 10, what="host up again", detail=agent.log_tail)


def test_two_hosts_cni_runs_inside_each_host_namespace(netmaster, host, host2,
                                                      agent_factory, containers):
    netmaster.create_network()
    for h, label in ((host, "hA"), (host2, "hB")):
        agent_factory(h, netmaster.url_for(h), label=label,
                      controller=netmaster.controller_for(h)).start()
    wait_until(lambda: {k for k, v in netmaster.hosts().items() if v["state"] == "up"}
               >= {"hA", "hB"}, 15, what="both hosts up")
    c1, c2 = containers(), containers()
    rc, r1, err = cni(host, "ADD", cni_conf(host, netmaster, hostLabel="hA"), "m1",
                      "/var/run/netns/" + c1)
    assert rc == 0, (r1, err)
    rc, r2, err = cni(host2, "ADD", cni_conf(host2, netmaster, hostLabel="hB"), "m2",
                      "/var/run/netns/" + c2)
    assert rc == 0, (r2, err)
    p1, p2 = host_port_name(endpoint_id("m1", "eth0")), host_port_name(endpoint_id("m2", "eth0"))
    assert ovs_ports(host) == [p1] and ovs_ports(host2) == [p2]
    assert nw_links(host) == [p1] and nw_links(host2) == [p2]
    homes = {e["endpointID"]: e["homingHost"] for e in netmaster.endpoints()}
    assert homes == {endpoint_id("m1", "eth0"): "hA", endpoint_id("m2", "eth0"): "hB"}
    assert r1["ips"][0]["address"] != r2["ips"][0]["address"]
    for h, c, cid in ((host, c1, "m1"), (host2, c2, "m2")):
        rc, out, err = cni(h, "DEL", cni_conf(h, netmaster), cid, "/var/run/netns/" + c)
        assert rc == 0, (out, err)
    assert netmaster.endpoints() == []


def test_parallel_adds_and_dels(site, containers):
    """Several CNI processes at once on one host: each plugs its own port (OVSDB mutations
    do not clash), gets its own address, and DEL removes exactly its own."""
    from concurrent.futures import ThreadPoolExecutor
    nm, host, _ = site
    conf = cni_conf(host, nm)
    ctrs = [containers() for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda ic: cni(host, "ADD", conf, "par%d" % ic[0],
                                               "/var/run/netns/" + ic[1]),
                                enumerate(ctrs)))
    assert all(rc == 0 for rc, _, _ in results), results
    addrs = {res["ips"][0]["address"] for _, res, _ in results}
    assert len(addrs) == 6
    ids = sorted(endpoint_id("par%d" % i, "eth0") for i in range(6))
    assert ovs_ports(host) == sorted(host_port_name(i) for i in ids)
    assert sorted(e["endpointID"] for e in nm.endpoints()) == ids
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda ic: cni(host, "DEL", conf, "par%d" % ic[0],
                                               "/var/run/netns/" + ic[1]),
                                enumerate(ctrs)))
    assert all(rc == 0 for rc, _, _ in results), results
    assert_nothing_left(nm, host)


def test_netprofile_qos_reaches_the_port(site, containers):
    """A group's netprofile becomes the endpoint port's ingress policing at ADD, and a later
    netprofile change reaches the port through netplugin (heartbeat endpointsVersion)."""
    nm, host, agent = site
    nm.call("POST", "/api/v1/netprofiles/default:slow/",
            {"tenantName": "default", "profileName": "slow", "bandwidth": "10mbps",
             "burst": 64, "DSCP": 10})
    nm.call("POST", "/api/v1/endpointGroups/default:web/",
            {"tenantName": "default", "groupName": "web", "networkName": "contiv-net",
             "netProfile": "slow"})
    ctr = containers()
    conf = cni_conf(host, nm, network="web")
    rc, res, err = cni(host, "ADD", conf, "ctr-qos", "/var/run/netns/" + ctr)
    assert rc == 0, (res, err)
    port = host_port_name(endpoint_id("ctr-qos", "eth0"))
    assert host.vsctl("get", "Interface", port, "ingress_policing_rate") == "10000"
    assert host.vsctl("get", "Interface", port, "ingress_policing_burst") == "64"
    nm.call("POST", "/api/v1/netprofiles/default:slow/",
            {"tenantName": "default", "profileName": "slow", "bandwidth": "1gbps",
             "burst": 128, "DSCP": 10})
    wait_until(lambda: host.vsctl("get", "Interface", port, "ingress_policing_rate")
               == "1000000", 15, what="netplugin to apply the new netprofile", detail=agent.log_tail)
    assert host.vsctl("get", "Interface", port, "ingress_policing_burst") == "128"
    assert "event=qos_applied port=%s" % port in agent.log_text()
    rc, out, err = cni(host, "DEL", conf, "ctr-qos", "/var/run/netns/" + ctr)
    assert rc == 0, (out, err)


def test_cni_hands_requests_to_netplugin_and_works_without_it(site, containers):
    """netweave-cni runs its requests in netplugin (whose OVSDB connection is open) when
    netplugin listens beside the OVSDB socket, and in its own process when it does not:
    netplugin stopped (socket removed) or killed (a stale socket file nobody answers)."""
    import signal
    import socket as so
    nm, host, agent = site
    path = os.path.join(host.dir, "netweave-cni.sock")
    wait_until(lambda: os.path.exists(path), 10, what="netplugin's CNI socket", detail=agent.log_tail)
    assert os.stat(path).st_mode & 0o777 == 0o600
    conf = cni_conf(host, nm)

    def add_del(cid, through_netplugin):
        ctr = containers()
        before = agent.log_since_start().count("event=cni_request")
        rc, res, err = cni(host, "ADD", conf, cid, "/var/run/netns/" + ctr)
        assert rc == 0, (res, err)
        assert in_ctr(ctr, "ip", "-o", "-4", "addr", "show", "eth0").count(
            res["ips"][0]["address"]) == 1
        rc, out, err = cni(host, "DEL", conf, cid, "/var/run/netns/" + ctr)
        assert rc == 0, (out, err)
        assert_nothing_left(nm, host, ctr)
        served = agent.log_since_start().count("event=cni_request") - before
        assert served == (2 if through_netplugin else 0), agent.log_since_start()[-2000:]

    add_del("via-np", True)
    assert re.search(r"event=cni_request command=ADD container=via-np ifname=eth0 rc=0 ms=\d+",
                     agent.log_since_start())
    # a client that sends garbage, or nothing, gets no answer and harms nothing
    for junk in (b"not json", b""):
        s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
        s.connect(path)
        s.sendall(junk)
        s.shutdown(so.SHUT_WR)
        assert s.recv(100) == b""
        s.close()
    wait_until(lambda: agent.log_since_start().count("event=cni_bad_request") == 2, 5,
               what="both bad requests logged", detail=agent.log_tail)

    assert agent.stop() == 0
    assert not os.path.exists(path)
    add_del("no-np", False)

    agent.start()
    wait_until(lambda: os.path.exists(path), 10, what="the socket again", detail=agent.log_tail)
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait(5)
    assert os.path.exists(path)                 # stale: nobody answers
    add_del("dead-np", False)

    agent.start()
    wait_until(lambda: "event=cni_socket_listening" in agent.log_since_start(), 10,
               what="netplugin to replace the stale socket", detail=agent.log_tail)
    add_del("np-back", True)


def test_resync_releases_endpoints_whose_container_is_gone(netmaster, host, agent_factory,
                                                            containers):
    """A container that dies with nobody running DEL leaves an address in netmaster and a
    port row without device in OVSDB; the periodic resync releases both within one period
    and says so, and spares endpoints that are alive or too young to judge."""
    import subprocess
    interval = 2.0
    nm = netmaster
    nm.create_network()
    agent = agent_factory(host, nm.url_for(host), label="hostA",
                          controller=nm.controller_for(host),
                          extra=["--resync-interval", str(interval)]).start()
    wait_until(lambda: nm.hosts().get("hostA", {}).get("state") == "up", 15, what="hostA up", detail=agent.log_tail)
    conf = cni_conf(host, nm)
    dead, live = containers(), containers()
    for cid, ctr in (("ctr-dead", dead), ("ctr-live", live)):
        rc, out, err = cni(host, "ADD", conf, cid, "/var/run/netns/" + ctr,
                           extra_env={"CNI_ARGS": "K8S_POD_NAME=%s" % cid})
        assert rc == 0, (out, err)
    dead_id, live_id = endpoint_id("ctr-dead", "eth0"), endpoint_id("ctr-live", "eth0")
    # an allocation with no veth yet, as an ADD in flight (or a runtime about to plug) has it
    nm.call("POST", "/api/v1/endpoints/young0000001/",
            {"tenantName": "default", "networkName": "contiv-net", "host": "hostA",
             "intfName": "nwyoung000000", "containerID": "young"})
    run("ip", "netns", "del", dead)           # the container dies behind everyone's back
    wait_until(lambda: host_port_name(dead_id) not in nw_links(host), 10, what="the veth to go")
    wait_until(lambda: dead_id not in {e["endpointID"] for e in nm.endpoints()},
               3 * interval, what="resync to release the dead endpoint", detail=agent.log_tail)
    # the agent logs the release after netmaster confirmed it and the port row is gone:
    # wait for the line rather than read the log the instant the endpoint disappears
    released = (r"event=stale_endpoint_released endpoint=%s ip=10\.1\.2\.\d+ "
                r"container=ctr-dead name=ctr-dead port=%s port_row=removed "
                r"tenant=default network=contiv-net age_s=[\d.]+ reason=veth_gone"
                % (dead_id, host_port_name(dead_id)))
    wait_until(lambda: re.search(released, agent.log_text()), 10, what="the release logged",
               detail=agent.log_tail)
    log = agent.log_text()
    assert host_port_name(dead_id) not in ovs_ports(host)
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "netctl"),
                          "--netmaster", nm.url, "endpoint", "ls"],
                         capture_output=True, text=True, timeout=30).stdout
    assert dead_id not in out and live_id in out, out
    # the young allocation went only once it was older than the grace period (one interval)
    wait_until(lambda: "young0000001" not in {e["endpointID"] for e in nm.endpoints()},
               3 * interval, what="the young endpoint to be released once old", detail=agent.log_tail)
    age = re.search(r"event=stale_endpoint_released endpoint=young0000001 .* age_s=([\d.]+)",
                    agent.log_text())
    assert age and float(age.group(1)) >= interval, agent.log_text()[-3000:]
    # the live one is untouched
    time.sleep(interval)
    assert {e["endpointID"] for e in nm.endpoints()} == {live_id}
    assert ovs_ports(host) == [host_port_name(live_id)]
    assert re.search(r"event=resync_done host=hostA ports=1 netmaster_endpoints=1 removed=0 "
                     r"missing=0 released=0", agent.log_text())
    rc, out, err = cni(host, "DEL", conf, "ctr-live", "/var/run/netns/" + live)
    assert rc == 0, (out, err)


def test_runtime_requests_and_their_refusals(site, containers):
    """CNI_ARGS and runtimeConfig as runtimes send them: a requested address and MAC are
    given; every request netweave cannot satisfy is a CNI error naming the reason, and
    leaves nothing behind (no endpoint, no port, no veth, nothing in the container)."""
    nm, host, _ = site
    ctr = containers()
    netns = "/var/run/netns/" + ctr
    conf = dict(cni_conf(host, nm), name="nw-rq")

    def refused(code, text, conf=conf, args="", version=None, cid="c-bad"):
        rc, out, err = cni(host, "ADD", conf, cid, netns, extra_env={"CNI_ARGS": args})
        assert rc == 1 and out["code"] == code and text in out["msg"], (out, err)
        assert out["cniVersion"] == (version or conf.get("cniVersion", "1.1.0")), out
        ports = sorted(host_port_name(e) for e in kept)
        assert nw_links(host) == ports and ovs_ports(host) == ports, "veth or port left"
        assert sorted(e["endpointID"] for e in nm.endpoints()) == sorted(kept)
        assert "eth0" not in netns_links(ctr)
        return out

    kept = ()
    ctr_ok = containers()
    rc, res, err = cni(host, "ADD", conf, "c-ok", "/var/run/netns/" + ctr_ok, extra_env={
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=web-1;K8S_POD_NAMESPACE=shop;"
                    "IP=10.1.2.50;MAC=02:00:00:aa:bb:cc;FOO=bar"})
    assert rc == 0, (res, err)
    assert res["ips"][0]["address"] == "10.1.2.50/24"
    assert res["interfaces"][0]["mac"] == "02:00:00:aa:bb:cc"
    ep_ok = endpoint_id("c-ok", "eth0")
    ep = [e for e in nm.endpoints() if e["endpointID"] == ep_ok][0]
    assert (ep["containerName"], ep["podNamespace"], ep["cniNetwork"], ep["macAddress"]) == \
        ("web-1", "shop", "nw-rq", "02:00:00:aa:bb:cc")
    kept = (ep_ok,)
    ctr2 = containers()
    # runtimeConfig (capabilities ips, mac) wins over CNI_ARGS; a 0.4.0 result names the family
    rc, res2, err = cni(host, "ADD", dict(conf, cniVersion="0.4.0", runtimeConfig={
        "ips": ["10.1.2.60/24"], "mac": "02:00:00:aa:bb:dd"}), "c-rt", "/var/run/netns/" + ctr2,
        extra_env={"CNI_ARGS": "IP=10.1.2.61"})
    assert rc == 0, (res2, err)
    assert res2["cniVersion"] == "0.4.0"
    assert res2["ips"][0] == {"address": "10.1.2.60/24", "interface": 0, "gateway": "10.1.2.1",
                              "version": "4"}
    assert res2["interfaces"][0]["mac"] == "02:00:00:aa:bb:dd"
    rc, out, err = cni(host, "DEL", conf, "c-rt", "/var/run/netns/" + ctr2)
    assert rc == 0, (out, err)

    refused(106, "ipAddress: 10.9.9.9 is outside the subnet 10.1.2.0/24 of network "
                 "default:contiv-net", args="IP=10.9.9.9")
    refused(106, "ipAddress: 10.1.2.50 is already taken in network default:contiv-net "
                 "(endpoint %s)" % ep_ok, args="IgnoreUnknown=1;IP=10.1.2.50")
    refused(106, "ipAddress: 10.1.2.1 is the gateway", args="IP=10.1.2.1")
    refused(106, "macAddress: 02:00:00:AA:BB:CC is already used in network default:contiv-net",
            args="MAC=02:00:00:AA:BB:CC")
    refused(106, "macAddress: 01:00:5e:00:00:01 is a multicast address", args="MAC=01:00:5e:00:00:01")
    refused(4, "CNI_ARGS: MAC=02:00:zz:00:00:01 is not a MAC address", args="MAC=02:00:zz:00:00:01")
    refused(4, "CNI_ARGS: IP=10.1.2: 10.1.2 is not an IPv4 or IPv6 address", args="IP=10.1.2")
    refused(4, "CNI_ARGS: IP=10.1.2.7,10.1.2.8 asks for two IPv4 addresses", args="IP=10.1.2.7,10.1.2.8")
    refused(106, "ipv6Address: network default:contiv-net has no ipv6Subnet", args="IP=10.1.2.7,fd00::7")
    refused(4, "CNI_ARGS: unknown argument(s) FOO", args="FOO=1")
    refused(4, "CNI_ARGS: 'junk' is not KEY=VALUE", args="junk")
    refused(7, "runtimeConfig.ips asks for two IPv4 addresses",
            conf=dict(conf, runtimeConfig={"ips": ["10.1.2.7", "10.1.2.8"]}))
    refused(7, "runtimeConfig.mac: 'nope' is not a MAC address",
            conf=dict(conf, runtimeConfig={"mac": "nope"}))
    refused(1, "cniVersion 0.3.1 is not supported; use one of 0.4.0, 1.0.0, 1.1.0",
            conf=dict(conf, cniVersion="0.3.1"), version="1.1.0")
    refused(1, "none of cniVersions 2.0.0 is supported",
            conf={k: v for k, v in dict(conf, cniVersions=["2.0.0"]).items()
                  if k != "cniVersion"}, version="1.1.0")
    refused(7, "network configuration lacks \"network\"",
            conf={k: v for k, v in conf.items() if k != "network"})
    refused(101, "no-such-net", conf=dict(conf, network="no-such-net"))
    # GC and STATUS are CNI 1.1's
    for command in ("GC", "STATUS"):
        rc, out, _ = cni(host, command, dict(conf, cniVersion="1.0.0"), "", "")
        assert rc == 1 and out["code"] == 1 and "needs cniVersion 1.1.0" in out["msg"], out
    rc, out, err = cni(host, "STATUS", dict(conf, cniVersion="1.1.0"), "", "")
    assert rc == 0 and out is None, (out, err)
    rc, out, _ = cni(host, "STATUS", dict(conf, cniVersion="1.1.0", bridge="br-nope"), "", "")
    assert rc == 1 and out["code"] == 50 and "br-nope" in out["msg"], out
    rc, out, err = cni(host, "DEL", conf, "c-ok", "/var/run/netns/" + ctr_ok)
    assert rc == 0, (out, err)
    kept = ()
    assert_nothing_left(nm, host, ctr)


def test_add_returns_once_its_flows_are_on_the_switch(netmaster, host, agent_factory, containers):
    """A container may send the moment ADD returns; its first ARP dropped for want of flows
    costs it the kernel's one-second retry. So ADD waits (bounded) until netmaster's flows for
    the port are on the switch. Here everything the switch sends netmaster is held 0.3 s by
    a relay in the host's namespace (tests/delay_relay.py): the port's flows come several
    round trips after the port does, so an ADD that did not wait would return without them."""
    netmaster.create_network()
    relay = subprocess.Popen(["ip", "netns", "exec", host.netns, sys.executable,
                              os.path.join(os.path.dirname(os.path.dirname(__file__)), "delay_relay.py"),
                              host.root_ip, str(netmaster.of_port), "0.3"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(relay.stdout.readline())
        agent = agent_factory(host, netmaster.url_for(host), label="hostA",
                              controller="tcp:127.0.0.1:%d" % port).start()
        wait_until(lambda: netmaster.hosts().get("hostA", {}).get("state") == "up" and
                   host.vsctl("--bare", "--columns=is_connected", "list", "Controller") == "true",
                   20, what="hostA up, its switch connected through the relay", detail=agent.log_tail)
        ctr = containers()
        conf = cni_conf(host, netmaster)
        rc, out, err = cni(host, "ADD", conf, "ctr-fl", "/var/run/netns/" + ctr)
        assert rc == 0, (out, err)
        name = host_port_name(endpoint_id("ctr-fl", "eth0"))
        ofport = int(host.vsctl("get", "Interface", name, "ofport"))
        held = host.ofctl("dump-flows", "table=0,in_port=%d" % ofport)
        assert "actions=" in held, "ADD returned before the port's flows were on its switch:\n" + held
        assert "event=port_flows_ready port=%s" % name in agent.log_text(), agent.log_tail()
        rc, out, err = cni(host, "DEL", conf, "ctr-fl", "/var/run/netns/" + ctr)
        assert rc == 0, (out, err)
    finally:
        relay.kill()
        relay.wait()

"""netplugin moves its switch to OpenFlow over TLS by itself: a real agent in a
simulated host, a real OVS, a real netmaster offering --of-tls-port. Given no
--controller, the agent obtains its host credential, learns netmaster's TLS
port from /info, writes the Open_vSwitch ssl row (its key, certificate, CA) and
points br-int at ssl:<netmaster>:<port>; netmaster takes the switch for that
host by its certificate (CN host:<label>), sends its flows, and two endpoints
attached there ping each other. Restarted, the agent keeps the ssl: target."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import pytest  # noqa: E402

from agent.netmaster_client import dpid_for_host  # noqa: E402
from tests.agent_fixtures import (NETMASTER_FOR_HOSTS, agent_factory, cni, cni_conf, containers,  # noqa: E402,F401
                                  host, need_root_tools)
from topologies.common import free_port, wait_until  # noqa: E402
from topologies.ovs import run  # noqa: E402


@pytest.fixture
def netmaster_options():
    """The agent tests' netmaster, offering OpenFlow over TLS on a port of its own."""
    need_root_tools()
    return dict(NETMASTER_FOR_HOSTS, extra=NETMASTER_FOR_HOSTS["extra"] + ["--of-tls-port", str(free_port())])


def _switch(nm, dpid):
    return next((s for s in nm.call("GET", "/api/v1/switches/") if s["dpid"] == "%016x" % dpid), None)


def test_agent_switch_over_ssl_gets_flows_and_pings(netmaster, host, agent_factory, containers):
    nm = netmaster
    tls_port = int(nm.extra[nm.extra.index("--of-tls-port") + 1])
    nm.create_network()
    assert nm.call("GET", "/info")["ofTlsPort"] == tls_port
    agent = agent_factory(host, nm.url_for(host), label="tlsh").start()
    want = "ssl:%s:%d" % (host.root_ip, tls_port)
    wait_until(lambda: host.vsctl("get-controller", "br-int").split() == [want], 20,
               what="br-int pointed at netmaster's TLS port", detail=agent.log_text)
    state = os.path.join(host.dir, "agent-tlsh")
    ssl = host.vsctl("get-ssl")
    for f in ("host.key", "host.crt", "ca.crt"):
        assert os.path.join(state, f) in ssl, ssl
    dpid = dpid_for_host("tlsh")
    # netmaster knows the switch as tlsh by its certificate, and it holds its flows
    wait_until(lambda: (_switch(nm, dpid) or {}).get("host") == "tlsh", 20, what="switch named tlsh",
               detail=agent.log_text)
    assert "event=openflow_tls_accepted addr=%s identity=host:tlsh" % host.ip in nm.log()

    def flows_held():
        f = nm.call("GET", "/api/v1/flows/tlsh/")
        return f["connected"] and f["desired"] and not f["diff"]["missing"]
    wait_until(flows_held, 20, what="netmaster's flows on the switch")
    assert "tcp:" not in host.vsctl("--columns=target", "list", "Controller")

    c1, c2 = containers(), containers()
    ips = []
    for i, c in enumerate((c1, c2)):
        rc, res, err = cni(host, "ADD", cni_conf(host, nm), "tls%d" % i, "/var/run/netns/" + c)
        assert rc == 0, (res, err)
        ips.append(res["ips"][0]["address"].split("/")[0])
    wait_until(lambda: run("ip", "netns", "exec", c1, "ping", "-c1", "-W1", ips[1], check=False).returncode == 0,
               30, what="ping between endpoints over the TLS-managed switch")

    # a restarted agent keeps its switch on ssl: (no flip to tcp and back)
    agent.stop()
    again = agent_factory(host, nm.url_for(host), label="tlsh").start()
    wait_until(lambda: "event=host_registered" in again.log_since_start(), 20, what="agent registered again",
               detail=again.log_text)
    assert host.vsctl("get-controller", "br-int").split() == [want]
    assert "controller=tcp:" not in again.log_since_start() and "target=tcp:" not in again.log_since_start()
    assert run("ip", "netns", "exec", c1, "ping", "-c1", "-W2", ips[1], check=False).returncode == 0
    for i, c in enumerate((c1, c2)):
        rc, out, err = cni(host, "DEL", cni_conf(host, nm), "tls%d" % i, "/var/run/netns/" + c)
        assert rc == 0, (out, err)

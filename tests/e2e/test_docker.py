"""Real dockerd on two simulated hosts, netplugin as its network and IPAM driver: the
seed's tutorial as Contiv ran it with `docker run --net`, and what must never leak."""
import shutil
import subprocess
import sys

import pytest
import requests

from tests.e2e.conftest import TCP, running_cluster
from topologies import docker_host
from topologies.cluster import Cluster
from topologies.common import wait_until

pytestmark = pytest.mark.skipif(not (shutil.which("ovs-vswitchd") and docker_host.available()),
                                reason="needs Open vSwitch, docker.io and busybox-static")
IMG = docker_host.IMAGE


class Docker:
    def __init__(self, c: Cluster):
        self.c = c
        self.url = c.url
        self._netns = {}

    def d(self, host, *args, check=True):
        return self.c.docker(host).cli(*args, check=check)

    def run(self, host, name, net, *extra):
        self.d(host, "run", "-d", "--name", name, "--net", net, *extra, IMG, "sleep", "100000")
        return self.ip(host, name)

    def ip(self, host, name):
        nets = self.c.docker(host).inspect("container", name)["NetworkSettings"]["Networks"]
        return next(iter(nets.values()))["IPAddress"]

    def ping(self, host, name, ip, count=1):
        return self.d(host, "exec", name, "ping", "-c", str(count), "-W", "1", ip, check=False).returncode == 0

    def netns(self, host, name):
        """The container's network namespace (kept: it outlives a dockerd restart)."""
        key = (host, name)
        if key not in self._netns:
            self._netns[key] = f"/proc/{self.c.docker(host).inspect('container', name)['State']['Pid']}/ns/net"
        return self._netns[key]

    def serve(self, host, name, port):
        p = subprocess.Popen(["nsenter", f"--net={self.netns(host, name)}", sys.executable, TCP, "serve",
                              str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert p.stdout.readline().strip() == "listening"
        return p

    def tcp(self, host, name, ip, port, timeout=2.0):
        return subprocess.run(["nsenter", f"--net={self.netns(host, name)}", sys.executable, TCP, "connect",
                               ip, str(port), str(timeout)], capture_output=True, timeout=30).returncode == 0

    def endpoints(self):
        return requests.get(self.url + "/api/v1/endpoints/", timeout=10).json()

    def ports(self, host):
        out = self.c.ovs(host).vsctl("list-ports", "br-int", check=False)
        return sorted(p for p in out.split() if p.startswith("nw"))

    def post(self, path, body):
        r = requests.post(self.url + path, json=body, timeout=10)
        assert r.ok, r.text


@pytest.fixture(scope="module")
def dk():
    with running_cluster("nwdk", "10.95.0.0/24", hosts=2, docker=True) as e:
        x = Docker(e.c)
        x.servers = e.servers                  # stopped with the cluster
        yield x


def test_tutorial_with_docker_run(dk):
    x = dk
    x.post("/api/v1/networks/default:contiv-net/", {"subnet": "10.1.2.0/24", "gateway": "10.1.2.1"})
    x.post("/api/v1/tenants/blue/", {"tenantName": "blue"})
    x.post("/api/v1/networks/blue:contiv-net/", {"subnet": "10.1.2.0/24", "gateway": "10.1.2.1"})
    # netplugin makes the Docker networks, named as Contiv named them
    for h in ("h1", "h2"):
        wait_until(lambda: {"contiv-net", "contiv-net/blue"} <= set(
            x.d(h, "network", "ls", "--format", "{{.Name}}").stdout.split()), 20, what=f"networks on {h}")
    net = x.c.docker("h1").inspect("network", "contiv-net")
    assert net["Driver"] == "netplugin" and net["IPAM"]["Driver"] == "netplugin"
    assert net["IPAM"]["Config"] == [{"Subnet": "10.1.2.0/24", "Gateway": "10.1.2.1"}]
    assert net["Options"] == {"tenant": "default", "network": "contiv-net", "encap": "vxlan"}

    a1 = x.run("h1", "a1", "contiv-net")
    a2 = x.run("h2", "a2", "contiv-net")
    assert (a1, a2) == ("10.1.2.2", "10.1.2.3")                  # netweave's IPAM, lowest free first
    wait_until(lambda: x.ping("h1", "a1", a2), 10, what="a1 pings a2 across hosts")
    assert x.ping("h2", "a2", a1, count=3)
    link = x.d("h1", "exec", "a1", "ip", "-o", "link", "show", "eth0").stdout
    assert "mtu 1450" in link and "02:4e:0a:01:02:02" in link      # MTU and MAC as the CNI path sets them
    assert "default via 10.1.2.1" in x.d("h1", "exec", "a1", "ip", "route").stdout
    x.servers.append(x.serve("h2", "a2", 7000))
    assert x.tcp("h1", "a1", a2, 7000)                            # offloads off: TCP works on the userspace datapath

    # tenant blue: the identical subnet, isolated from default
    b1 = x.run("h1", "b1", "contiv-net/blue")
    b2 = x.run("h2", "b2", "contiv-net/blue")
    assert (b1, b2) == (a1, a2)
    wait_until(lambda: x.ping("h1", "b1", b2), 10, what="b1 pings b2")
    wait_until(lambda: {"a1", "a2", "b1", "b2"} <= {e.get("containerName") for e in x.endpoints()}, 10,
               what="endpoints named after their containers")
    eps = {e["containerName"]: e for e in x.endpoints() if e.get("containerName")}
    assert eps["b1"]["tenantName"] == "blue" and eps["a1"]["tenantName"] == "default"
    assert eps["a1"]["homingHost"] == "h1" and eps["a1"]["containerID"] == \
        x.c.docker("h1").inspect("container", "a1")["Id"]
    # the same address in the other tenant answers from blue's b2, and default's a2 sees nothing of b1
    x.servers.append(x.serve("h2", "b2", 7001))
    assert x.tcp("h1", "b1", b2, 7001) and not x.tcp("h1", "a1", b2, 7001, timeout=1.0)

    # db-policy on db-group: --net db-group joins the group
    x.post("/api/v1/policys/default:db-policy/", {"tenantName": "default", "policyName": "db-policy"})
    for rid, body in (("1", {"direction": "in", "protocol": "tcp", "action": "deny"}),
                      ("2", {"direction": "in", "protocol": "tcp", "port": 8888, "action": "allow",
                             "priority": 10})):
        x.post(f"/api/v1/rules/default:db-policy:{rid}/",
               dict(body, tenantName="default", policyName="db-policy", ruleId=rid))
    x.post("/api/v1/endpointGroups/default:db-group/", {"tenantName": "default", "groupName": "db-group",
                                                         "networkName": "contiv-net", "policies": ["db-policy"]})
    wait_until(lambda: "db-group" in x.d("h2", "network", "ls", "--format", "{{.Name}}").stdout.split(), 20,
               what="db-group on h2")
    db = x.run("h2", "db1", "db-group", "--label", "app=db")
    for port in (8888, 5432):
        x.servers.append(x.serve("h2", "db1", port))
    wait_until(lambda: x.tcp("h1", "a1", db, 8888), 10, what="8888 open")
    assert not x.tcp("h1", "a1", db, 5432, timeout=1.0)
    wait_until(lambda: any(e.get("containerName") == "db1" for e in x.endpoints()), 10, what="db1 named")
    rec = next(e for e in x.endpoints() if e.get("containerName") == "db1")
    assert rec["groupName"] == "db-group" and rec["labels"] == ["app=db"]


def test_docker_rm_and_dockerd_kill9_leak_nothing(dk):
    x = dk
    before = len(x.endpoints())
    ports = x.ports("h1")
    ip = x.run("h1", "tmp1", "contiv-net")
    assert len(x.endpoints()) == before + 1 and len(x.ports("h1")) == len(ports) + 1
    x.d("h1", "rm", "-f", "tmp1")
    assert len(x.endpoints()) == before and x.ports("h1") == ports           # released at once
    assert ip not in {e["ipAddress"][0] for e in x.endpoints() if e["tenantName"] == "default"}

    # dockerd dies with containers running (live-restore): they keep their network, nothing leaks
    a2 = x.ip("h2", "a2")
    x.netns("h1", "a1")
    d1 = x.c.docker("h1")
    d1.kill()
    assert x.tcp("h1", "a1", a2, 7000)                                   # a1 still reaches a2
    d1.start()
    wait_until(lambda: x.ping("h1", "a1", a2), 10, what="a1 pings a2 after dockerd's restart")
    assert len(x.endpoints()) == before and x.ports("h1") == ports
    # netplugin restarts: it holds no state, Docker's calls find their endpoints in netmaster
    x.c.agent_restart("h1")
    wait_until(lambda: x.ping("h1", "a1", a2), 10, what="a1 pings a2 after netplugin's restart")
    x.d("h1", "rm", "-f", "b1")
    assert len(x.endpoints()) == before - 1
    ip = x.run("h1", "tmp2", "contiv-net")
    assert x.ping("h1", "tmp2", a2, count=3)
    x.d("h1", "rm", "-f", "tmp2")
    assert len(x.endpoints()) == before - 1 and len(x.ports("h1")) == len(ports) - 1    # b1's port went too


def test_bad_input_is_refused_and_leaves_nothing(dk):
    x = dk
    before, nets = len(x.endpoints()), x.d("h1", "network", "ls", "-q").stdout.split()

    def refused(*args):
        p = x.d("h1", *args, check=False)
        assert p.returncode != 0, args
        return p.stderr

    err = refused("network", "create", "-d", "netplugin", "--ipam-driver", "netplugin", "--ipam-opt", "tenant=default",
                  "--ipam-opt", "network=nope", "-o", "tenant=default", "-o", "network=nope", "--subnet", "10.9.0.0/24",
                  "mine")
    assert "network nope does not exist in netweave tenant default" in err, err
    err = refused("network", "create", "-d", "netplugin", "-o", "tenant=default", "-o", "network=contiv-net",
                  "--subnet", "10.1.2.0/24", "mine")
    assert "use --ipam-driver netplugin" in err, err
    err = refused("network", "create", "-d", "netplugin", "--ipam-driver", "netplugin", "--ipam-opt", "tenant=default",
                  "--ipam-opt", "network=contiv-net", "-o", "tenant=default", "-o", "network=contiv-net",
                  "--subnet", "10.1.3.0/24", "mine")
    assert "is not netweave network default/contiv-net's subnet 10.1.2.0/24" in err, err
    assert x.d("h1", "network", "ls", "-q").stdout.split() == nets            # no half-made network
    # a user's own network that names an existing netweave network maps onto it
    x.d("h1", "network", "create", "-d", "netplugin", "--ipam-driver", "netplugin", "--ipam-opt", "tenant=default",
        "--ipam-opt", "network=contiv-net", "-o", "tenant=default", "-o", "network=contiv-net", "--subnet",
        "10.1.2.0/24", "--gateway", "10.1.2.1", "mine")
    ip = x.run("h1", "m1", "mine", "--ip", "10.1.2.77")
    assert ip == "10.1.2.77" and x.ping("h1", "m1", x.ip("h2", "a2"), count=3)
    err = refused("run", "-d", "--name", "m2", "--net", "mine", "--ip", "10.1.2.77", IMG, "sleep", "1")
    assert "10.1.2.77 is already taken" in err, err
    err = refused("run", "-d", "--name", "m3", "--net", "contiv-net", "--mac-address", "02:00:00:00:00:09", IMG,
                  "sleep", "1")
    assert "--mac-address is not supported" in err, err
    x.d("h1", "rm", "-f", "m1", "m2", "m3", check=False)
    x.d("h1", "network", "rm", "mine")
    assert len(x.endpoints()) == before



def test_dual_stack_docker_networks(dk):
    x = dk
    before = len(x.endpoints())
    x.post("/api/v1/networks/default:dual/", {"subnet": "10.1.6.0/24", "gateway": "10.1.6.1",
                                              "ipv6Subnet": "fd00:15::/64"})
    for h in ("h1", "h2"):
        wait_until(lambda: "dual" in x.d(h, "network", "ls", "--format", "{{.Name}}").stdout.split(), 20,
                   what=f"dual on {h}")
    net = x.c.docker("h1").inspect("network", "dual")
    assert net["EnableIPv6"] is True
    assert net["IPAM"]["Config"] == [{"Subnet": "10.1.6.0/24", "Gateway": "10.1.6.1"},
                                     {"Subnet": "fd00:15::/64", "Gateway": "fd00:15::1"}]
    x.run("h1", "d1", "dual")
    x.run("h2", "d2", "dual")
    v6 = {}
    for h, name in (("h1", "d1"), ("h2", "d2")):
        s = x.c.docker(h).inspect("container", name)["NetworkSettings"]["Networks"]["dual"]
        rec = next(e for e in x.endpoints() if e["dockerEndpoint"] == s["EndpointID"])
        assert rec["ipAddress"] == [s["IPAddress"], s["GlobalIPv6Address"]]     # one allocation, both shown
        assert s["GlobalIPv6PrefixLen"] == 64 and s["IPv6Gateway"] == "fd00:15::1"
        v6[name] = s["GlobalIPv6Address"]
    assert v6 == {"d1": "fd00:15::2", "d2": "fd00:15::3"}
    assert "default via fd00:15::1" in x.d("h1", "exec", "d1", "ip", "-6", "route").stdout
    wait_until(lambda: x.ping("h1", "d1", v6["d2"]), 10, what="d1 pings6 d2 across hosts")
    assert x.ping("h2", "d2", v6["d1"], count=2)

    # a Docker network without --ipv6 on the same netweave network: the IPv6 address netweave
    # reserves is configured in the container too (no phantom), and released with it
    x.d("h1", "network", "create", "-d", "netplugin", "--ipam-driver", "netplugin", "--ipam-opt", "tenant=default",
        "--ipam-opt", "network=dual", "-o", "tenant=default", "-o", "network=dual", "--subnet", "10.1.6.0/24",
        "--gateway", "10.1.6.1", "dual4")
    x.run("h1", "d3", "dual4")
    rec = next(e for e in x.endpoints() if e["ipAddress"][0] == x.ip("h1", "d3"))
    assert rec["ipAddress"][1] == "fd00:15::4"
    assert "inet6 fd00:15::4/64" in x.d("h1", "exec", "d3", "ip", "-6", "addr", "show", "eth0").stdout
    wait_until(lambda: x.ping("h1", "d3", v6["d2"]), 10, what="d3 (no --ipv6) pings6 d2")
    x.d("h1", "rm", "-f", "d3")
    x.d("h1", "network", "rm", "dual4")
    assert len(x.endpoints()) == before + 2
    assert "fd00:15::4" not in {e["ipAddress"][1] for e in x.endpoints()}

    # an --ip6 other than the one allocated with the IPv4 address: refused, the IPv4 one rolled back
    p = x.d("h1", "run", "-d", "--name", "d4", "--net", "dual", "--ip6", "fd00:15::99", IMG, "sleep", "1",
            check=False)
    assert p.returncode != 0 and "--ip6 is not supported" in p.stderr, p.stderr
    x.d("h1", "rm", "-f", "d4", check=False)
    assert len(x.endpoints()) == before + 2

    # --ipv6 on an IPv4-only netweave network is refused, nothing half-made
    nets = x.d("h1", "network", "ls", "-q").stdout.split()
    p = x.d("h1", "network", "create", "--ipv6", "-d", "netplugin", "--ipam-driver", "netplugin", "--ipam-opt",
            "tenant=default", "--ipam-opt", "network=contiv-net", "-o", "tenant=default", "-o", "network=contiv-net",
            "--subnet", "10.1.2.0/24", "--subnet", "fd00:16::/64", "v6bad", check=False)
    assert p.returncode != 0 and "has no ipv6Subnet" in p.stderr, p.stderr
    assert x.d("h1", "network", "ls", "-q").stdout.split() == nets

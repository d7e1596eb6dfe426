"""netweave under a real container runtime: podman 4.3 with its CNI backend.

One simulated host (a network namespace with its own OVS and netplugin, tests/agent_fixtures)
and a netmaster, shared by the module. podman runs inside the host's network namespace
(``nsenter --net``, which leaves the mount namespace alone, so the container namespaces podman
mounts under /run/netns are seen by its later cleanup) with everything of its own in a temp
folder: --root, --runroot, --tmpdir, a vfs store, CONTAINERS_CONF naming the plugin and
configuration folders. The network configurations are written by `netweave-cni install`.
The image is a busybox-static rootfs, imported (no registry here).

Left on the machine by podman and removed here: its CNI result cache entries
(/var/lib/cni/results/<network>-*; libcni's cache folder cannot be moved by podman 4.3's
configuration) and, when this module created them, the empty /var/lib/cni folders.

Skipped when podman, runc, busybox-static or the reference CNI plugins are missing
(scripts/setup.sh installs them).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import pytest  # noqa: E402

from agent.netmaster_client import host_port_name  # noqa: E402
from tests.agent_fixtures import NETMASTER_FOR_HOSTS, AgentProc, need_root_tools  # noqa: E402
from tests.procs import Netmaster, linked_ovs  # noqa: E402
from topologies.common import wait_until  # noqa: E402

REFERENCE_PLUGINS = "/usr/lib/cni"
CNI_CACHE = "/var/lib/cni"
NET = "nwpod%d" % os.getpid()            # the runtime's network names: unique per run
CHAIN_NET = NET + "-chain"
BAD_NET = NET + "-bad"


def need_podman():
    need_root_tools()
    for tool in ("podman", "runc", "conmon", "iptables", "tc"):
        if shutil.which(tool) is None:
            pytest.skip("%s is not installed (scripts/setup.sh installs it)" % tool)
    for f in ("/bin/busybox", REFERENCE_PLUGINS + "/portmap", REFERENCE_PLUGINS + "/bandwidth",
              REFERENCE_PLUGINS + "/tuning"):
        if not os.path.exists(f):
            pytest.skip("%s is missing (busybox-static, containernetworking-plugins)" % f)


class Podman:
    """podman with private storage and configuration, in a simulated host's namespace."""

    def __init__(self, host):
        self.host = host
        self.dir = tempfile.mkdtemp(prefix="nwpod-%d-" % os.getpid())
        self.bin = os.path.join(self.dir, "bin")
        self.netd = os.path.join(self.dir, "net.d")
        self.conf = os.path.join(self.dir, "containers.conf")
        with open(self.conf, "w") as f:
            f.write('[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n'
                    'events_logger = "none"\n'
                    '[containers]\ndefault_ulimits = ["nofile=20000:20000", '
                    '"nproc=32768:32768"]\n'
                    '[network]\nnetwork_backend = "cni"\n'
                    'cni_plugin_dirs = ["%s", "%s"]\nnetwork_config_dir = "%s"\n'
                    % (self.bin, REFERENCE_PLUGINS, self.netd))
        self.env = dict(os.environ, CONTAINERS_CONF=self.conf)
        self.cache_existed = os.path.isdir(CNI_CACHE)
        self.netns_before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()

    def cmd(self, *args):
        return ["nsenter", "--net=/run/netns/" + self.host.netns, "podman",
                "--root", os.path.join(self.dir, "root"),
                "--runroot", os.path.join(self.dir, "runroot"),
                "--tmpdir", os.path.join(self.dir, "tmp"),
                "--storage-driver", "vfs"] + list(args)

    def __call__(self, *args, check=True, timeout=60):
        res = subprocess.run(self.cmd(*args), capture_output=True, text=True, env=self.env,
                             timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError("podman %s failed (%d): %s %s" %
                                 (" ".join(args), res.returncode, res.stdout, res.stderr))
        return res

    def import_busybox(self):
        rootfs = os.path.join(self.dir, "rootfs")
        os.makedirs(os.path.join(rootfs, "bin"))
        shutil.copy("/bin/busybox", os.path.join(rootfs, "bin"))
        subprocess.run(["chroot", rootfs, "/bin/busybox", "--install", "-s", "/bin"],
                       check=True, capture_output=True)
        tar = os.path.join(self.dir, "busybox.tar")
        subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
        self("import", tar, "localhost/busybox:latest")

    def install(self, name, *extra):
        """`netweave-cni install`, as a user types it, into this podman's folders."""
        res = subprocess.run([os.path.join(os.path.dirname(sys.executable), "netweave-cni"),
                              "install", "--bin-dir", self.bin, "--conf-dir", self.netd,
                              "--name", name, "--ovsdb", self.host.remote] + list(extra),
                             capture_output=True, text=True, timeout=30, env=self.env)
        assert res.returncode == 0, (res.stdout, res.stderr)
        return res

    def pid_of(self, name):
        return int(self("inspect", "-f", "{{.State.Pid}}", name).stdout.strip())

    def conmon_pid_of(self, name):
        return int(self("inspect", "-f", "{{.State.ConmonPid}}", name).stdout.strip())

    def cleanup(self):
        try:
            self("rm", "-af", "-t", "0", check=False)
            self("system", "reset", "-f", check=False)
        except Exception:           # keep cleaning: processes, netns, cache, files
            pass
        for pid in pids_mentioning(self.dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if os.path.isdir("/run/netns"):
            for ns in set(os.listdir("/run/netns")) - self.netns_before:
                if ns.startswith("netns-"):           # podman's, made during this module
                    subprocess.run(["umount", "/run/netns/" + ns], capture_output=True)
                    try:
                        os.unlink("/run/netns/" + ns)
                    except OSError:
                        pass
        results = os.path.join(CNI_CACHE, "results")
        if os.path.isdir(results):
            for f in os.listdir(results):
                if f.startswith(NET + "-"):
                    os.unlink(os.path.join(results, f))
        if not self.cache_existed:
            for d in (results, CNI_CACHE):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        subprocess.run(["umount", "-R", self.dir], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def pids_mentioning(text):
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                if text.encode() in f.read():
                    found.append(int(p))
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def lab():
    need_podman()
    nm, host, agent, pod = Netmaster(**NETMASTER_FOR_HOSTS), None, None, None
    try:
        nm.start()
        host = linked_ovs("h")
        nm.create_network()
        agent = AgentProc(host, nm.url_for(host), label="hostA",
                          controller=nm.controller_for(host),
                          extra=["--resync-interval", "2"]).start()
        wait_until(lambda: nm.hosts().get("hostA", {}).get("state") == "up", 15, what="hostA up",
                   detail=agent.log_tail)
        pod = Podman(host)
        pod.install(NET, "--network", "contiv-net")
        pod.install(CHAIN_NET, "--network", "contiv-net", "--chain", "portmap", "--chain",
                    json.dumps({"type": "bandwidth", "ingressRate": 8000000,
                                "ingressBurst": 100000, "egressRate": 8000000,
                                "egressBurst": 100000}),
                    "--chain", json.dumps({"type": "tuning",
                                           "sysctl": {"net.ipv4.conf.eth0.rp_filter": "2"}}))
        pod.import_busybox()
        yield nm, host, agent, pod
    finally:
        if pod is not None:
            pod.cleanup()
        if agent is not None:
            agent.stop()
        if host is not None:
            host.stop()
        nm.cleanup()


def nw_links(host):
    out = host.ns("ip", "-o", "link", "show").stdout
    return sorted(re.findall(r"^\d+: (nw[0-9a-f]+)[@:]", out, re.M))


def ovs_ports(host):
    return sorted(p for p in host.vsctl("list-ports", "br-int").split() if p.startswith("nw"))


def endpoints_by_name(nm):
    return {e.get("containerName"): e for e in nm.endpoints()}


def assert_clean(nm, host):
    assert nm.endpoints() == [], "address left allocated"
    assert ovs_ports(host) == [], "OVS port left"
    assert nw_links(host) == [], "veth left"


def test_install_writes_plugin_and_conflist(lab):
    nm, host, agent, pod = lab
    launcher = os.path.join(pod.bin, "netweave")
    assert os.access(launcher, os.X_OK)
    shebang = open(launcher).readline().strip()
    assert shebang.startswith("#!/") and os.access(shebang[2:], os.X_OK), shebang
    conf = json.load(open(os.path.join(pod.netd, "50-%s.conflist" % NET)))
    assert conf == {"cniVersion": "1.0.0", "cniVersions": ["1.0.0", "1.1.0"], "name": NET,
                    "plugins": [{"type": "netweave", "tenant": "default",
                                 "network": "contiv-net", "ovsdb": host.remote,
                                 "capabilities": {"ips": True, "mac": True}}]}
    chain = json.load(open(os.path.join(pod.netd, "50-%s.conflist" % CHAIN_NET)))
    assert [p["type"] for p in chain["plugins"]] == ["netweave", "portmap", "bandwidth", "tuning"]
    assert "cniVersions" not in chain       # the reference plugins 1.1 speak up to 1.0.0
    names = pod("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert NET in names and CHAIN_NET in names
    # VERSION, as podman asks it
    res = subprocess.run([launcher], env={"CNI_COMMAND": "VERSION"}, input="{}",
                         capture_output=True, text=True, timeout=30)
    assert json.loads(res.stdout)["supportedVersions"] == ["0.4.0", "1.0.0", "1.1.0"]


def test_two_containers_ping_and_cleanup_releases(lab):
    nm, host, agent, pod = lab
    pod("run", "-d", "--name", "web1", "--network", NET, "localhost/busybox", "sleep", "600")
    pod("run", "-d", "--name", "web2", "--network", NET, "--ip", "10.1.2.77",
        "--mac-address", "02:00:00:00:77:77", "localhost/busybox", "sleep", "600")
    eps = endpoints_by_name(nm)
    assert set(eps) == {"web1", "web2"}
    assert eps["web2"]["ipAddress"][0] == "10.1.2.77"
    assert eps["web2"]["macAddress"] == "02:00:00:00:77:77"
    assert {e["cniNetwork"] for e in eps.values()} == {NET}
    assert {e["homingHost"] for e in eps.values()} == {"hostA"}
    out = pod("exec", "web2", "ip", "-o", "link", "show", "eth0").stdout
    assert "02:00:00:00:77:77" in out and "mtu 1450" in out
    out = pod("exec", "web1", "ping", "-c", "3", "-W", "2", "10.1.2.77").stdout
    assert "3 packets received" in out, out
    web1_ip = eps["web1"]["ipAddress"][0]
    ls = subprocess.run([os.path.join(os.path.dirname(sys.executable), "netctl"), "--netmaster",
                         nm.url, "endpoint", "ls"], capture_output=True, text=True,
                        timeout=30).stdout
    assert re.search(r"%s .*hostA .* web1\n" % re.escape(web1_ip), ls + "\n"), ls
    assert "0% packet loss" in pod("exec", "web2", "ping", "-c", "2", web1_ip).stdout

    # a container that exits by itself: conmon runs `podman container cleanup` (minimal
    # environment), whose CNI DEL releases the address
    pod("run", "-d", "--name", "short", "--network", NET, "localhost/busybox", "sleep", "2")
    short = endpoints_by_name(nm)["short"]
    port = host_port_name(short["endpointID"])
    assert port in ovs_ports(host)
    wait_until(lambda: "short" not in endpoints_by_name(nm), 20,
               what="podman container cleanup to release the address", detail=agent.log_tail)
    assert port not in ovs_ports(host) and port not in nw_links(host)
    assert re.search(r"event=cni_request command=DEL container=%s ifname=eth0 rc=0"
                     % short["containerID"], agent.log_text())
    pod("rm", "-f", "-t", "0", "web1", "web2", "short")
    assert_clean(nm, host)


def test_chain_with_portmap_bandwidth_tuning(lab):
    """netweave first, then the reference plugins, each fed the previous result: portmap's
    DNAT names the container's address, bandwidth shapes netweave's host veth, tuning sets a
    sysctl in the container; DEL runs the chain backwards with podman's cached result."""
    nm, host, agent, pod = lab
    pod("run", "-d", "--name", "peer", "--network", NET, "localhost/busybox", "sleep", "600")
    pod("run", "-d", "--name", "chained", "--network", CHAIN_NET, "-p", "8080:80",
        "localhost/busybox", "sleep", "600")
    eps = endpoints_by_name(nm)
    ip = eps["chained"]["ipAddress"][0]
    port = host_port_name(eps["chained"]["endpointID"])
    nat = host.ns("iptables-save", "-t", "nat").stdout
    assert re.search(r"--dport 8080 -j DNAT --to-destination %s:80" % re.escape(ip), nat), nat
    qdisc = host.ns("tc", "qdisc", "show", "dev", port).stdout
    assert "tbf" in qdisc and "rate 8Mbit" in qdisc, qdisc
    assert pod("exec", "chained", "cat", "/proc/sys/net/ipv4/conf/eth0/rp_filter").stdout.strip() \
        == "2"
    out = pod("exec", "chained", "ping", "-c", "2", eps["peer"]["ipAddress"][0]).stdout
    assert "2 packets received" in out, out
    pod("rm", "-f", "-t", "0", "chained")
    nat = host.ns("iptables-save", "-t", "nat").stdout
    assert ip + ":80" not in nat, nat
    assert "chained" not in endpoints_by_name(nm)
    assert port not in nw_links(host) and port not in ovs_ports(host)
    assert not [line for line in host.ns("tc", "qdisc", "show").stdout.splitlines()
                if "tbf" in line], "bandwidth's qdiscs left"
    pod("rm", "-f", "-t", "0", "peer")
    assert_clean(nm, host)


def gc(pod, valid):
    """CNI 1.1 GC as a 1.1 runtime sends it: the configuration list's plugin configuration
    at 1.1.0 with the attachments the runtime still has."""
    conf = json.load(open(os.path.join(pod.netd, "50-%s.conflist" % NET)))
    plugin = dict(conf["plugins"][0], cniVersion="1.1.0", name=conf["name"])
    plugin["cni.dev/valid-attachments"] = valid
    res = subprocess.run(["nsenter", "--net=/run/netns/" + pod.host.netns,
                          os.path.join(pod.bin, "netweave")],
                         env={"CNI_COMMAND": "GC", "CNI_PATH": pod.bin},
                         input=json.dumps(plugin), capture_output=True, text=True, timeout=60)
    return res.returncode, res.stdout.strip()


def test_gc_releases_a_container_killed_behind_podmans_back(lab):
    nm, host, agent, pod = lab
    pod("run", "-d", "--name", "keep", "--network", NET, "localhost/busybox", "sleep", "600")
    pod("run", "-d", "--name", "victim", "--network", NET, "localhost/busybox", "sleep", "600")
    eps = endpoints_by_name(nm)
    keep_cid = pod("inspect", "-f", "{{.Id}}", "keep").stdout.strip()
    victim_id = eps["victim"]["endpointID"]
    victim_port = host_port_name(victim_id)
    # conmon first, so that nobody runs the cleanup; then the container's process
    os.kill(pod.conmon_pid_of("victim"), signal.SIGKILL)
    os.kill(pod.pid_of("victim"), signal.SIGKILL)
    time.sleep(0.5)
    assert "victim" in endpoints_by_name(nm)            # nobody ran DEL
    rc, out = gc(pod, [{"containerID": keep_cid, "ifname": "eth0"}])
    assert rc == 0 and out == "", out
    eps = endpoints_by_name(nm)
    assert set(eps) == {"keep"}
    assert victim_port not in ovs_ports(host) and victim_port not in nw_links(host)
    assert re.search(r"event=gc_endpoint_released endpoint=%s .*name=victim" % victim_id,
                     agent.log_text())
    # GC again changes nothing; podman's own removal later is a DEL of nothing: no error
    assert gc(pod, [{"containerID": keep_cid, "ifname": "eth0"}]) == (0, "")
    # podman finds its container stopped under it: the first removal syncs its state
    if pod("rm", "-f", "-t", "0", "victim", check=False).returncode:
        pod("rm", "-f", "-t", "0", "victim")
    pod("rm", "-f", "-t", "0", "keep")
    assert_clean(nm, host)


@pytest.mark.parametrize("args,conf,msg", [
    (["--ip", "10.9.9.9"], None,
     "ipAddress: 10.9.9.9 is outside the subnet 10.1.2.0/24 of network default:contiv-net"),
    (["--ip", "10.1.2.1"], None, "ipAddress: 10.1.2.1 is the gateway of network "
                                 "default:contiv-net"),
    (["--mac-address", "03:00:00:00:00:01"], None,
     "macAddress: 03:00:00:00:00:01 is a multicast address"),
    ([], {"network": "no-such-net"}, "neither a network nor an endpoint group "
                                     "default:no-such-net exists"),
    # podman checks the list against netweave's VERSION answer before any ADD, and refuses
    # the network (netweave's own answer to such an ADD, code 1, is in test_agent_cni.py)
    ([], {"cniVersion": "0.3.1"}, 'plugin netweave does not support config version \\"0.3.1\\"'),
], ids=["ip-outside-subnet", "ip-is-gateway", "multicast-mac", "missing-network",
        "bad-cniVersion"])
def test_podman_shows_the_refusal_and_nothing_is_left(lab, args, conf, msg):
    nm, host, agent, pod = lab
    net = NET
    if conf:
        net = BAD_NET
        pod.install(BAD_NET, "--network", conf.get("network", "contiv-net"))
        path = os.path.join(pod.netd, "50-%s.conflist" % BAD_NET)
        c = json.load(open(path))
        if "cniVersion" in conf:
            c["cniVersion"] = conf["cniVersion"]
            c.pop("cniVersions", None)
        json.dump(c, open(path, "w"))
    try:
        res = pod("run", "--rm", "--name", "bad", "--network", net, *args, "localhost/busybox",
                  "true", check=False)
        assert res.returncode != 0
        assert msg in res.stderr, res.stderr
        assert_clean(nm, host)
        assert pod("ps", "-a", "--format", "{{.Names}}").stdout.split() in ([], ["bad"])
    finally:
        pod("rm", "-f", "-t", "0", "bad", check=False)
        if conf:
            os.unlink(os.path.join(pod.netd, "50-%s.conflist" % BAD_NET))


def test_taken_address_is_refused_and_the_owner_kept(lab):
    nm, host, agent, pod = lab
    pod("run", "-d", "--name", "owner", "--network", NET, "--ip", "10.1.2.90",
        "localhost/busybox", "sleep", "600")
    owner = endpoints_by_name(nm)["owner"]
    res = pod("run", "--rm", "--name", "thief", "--network", NET, "--ip", "10.1.2.90",
              "localhost/busybox", "true", check=False)
    assert res.returncode != 0
    assert "ipAddress: 10.1.2.90 is already taken in network default:contiv-net (endpoint %s)" \
        % owner["endpointID"] in res.stderr, res.stderr
    assert set(endpoints_by_name(nm)) == {"owner"}
    assert ovs_ports(host) == nw_links(host) == [host_port_name(owner["endpointID"])]
    pod("rm", "-f", "-t", "0", "thief", check=False)
    pod("rm", "-f", "-t", "0", "owner")
    assert_clean(nm, host)

"""A simulated multi-host cluster on one machine.

Each host is a network namespace with its own ovsdb-server, ovs-vswitchd
(userspace datapath) and netplugin.  The hosts share an underlay: a Linux
bridge in the root namespace, with each host's VTEP address on its OVS
bridge `br-phy` (whose port is the host's end of a veth into the underlay
bridge).  netmaster runs in the root namespace and listens on 127.0.0.1
(for curl and netctl: the local administrator's door) and, over HTTPS with
authentication, on the underlay (for the hosts: each agent obtains its host's
credential with the cluster netmaster's bootstrap token, and trusts its CA).  Endpoints are
namespaces attached through the CNI plugin, run inside their host's namespace.

Every name starts with the cluster's name, so two clusters never collide, and
`down` finds what a crashed run left behind by that prefix alone.

    python -m topologies.cluster up --hosts 3
    python -m topologies.cluster run h1 web1 --net contiv-net
    python -m topologies.cluster exec web1 -- ping -c1 10.1.2.3
    python -m topologies.cluster ls [--json]
    python -m topologies.cluster netmaster stop|start|restart
    python -m topologies.cluster up --hosts 3 --netmasters 3   # 3 netmasters over a 3-member etcd
    python -m topologies.cluster netmaster stop|start|restart|kill 2
    python -m topologies.cluster up --hosts 2 --docker      # a dockerd per host, netplugin its driver
    python -m topologies.cluster docker h1 -- run -d --net contiv-net nwbusybox sleep 1000
    python -m topologies.cluster down
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import re
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import requests

from topologies import docker_host, launch
from topologies.etcd import EtcdCluster
from topologies.ovs import OvsInstance, kill_pidfile, pid_alive, sh

log = logging.getLogger(__name__)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_DIR = "/var/run/netweave/clusters"


class ClusterError(Exception):
    pass


class Cluster:
    def __init__(self, name: str = "nw", hosts: int = 3, underlay: str = "10.99.0.0/24",
                 rest_port: int = 9999, of_port: int = 6653, netmaster: str | None = None,
                 workdir: str | None = None, python: str | None = None, uplinks: bool = True,
                 docker: bool = False, netmaster_args: list[str] | None = None, netmasters: int = 1):
        if not name.isalnum() or len(name) > 5:
            raise ClusterError("name: 1 to 5 letters or digits (it prefixes interface names)")
        self.name = name
        self.workdir = workdir or os.path.join(BASE_DIR, name)
        self.python = python or sys.executable
        self.state = {"name": name, "hosts": {}, "endpoints": {}, "underlay": underlay,
                      "rest_port": rest_port, "of_port": of_port, "netmaster": netmaster, "own_netmaster": False,
                      "uplinks": uplinks, "docker": docker, "netmaster_args": list(netmaster_args or []),
                      "netmasters": netmasters, "members": {}, "etcd_ports": [], "proxy_pid": None}
        self._load()

    # ------------------------------------------------------------ state file
    @property
    def state_path(self) -> str:
        return os.path.join(self.workdir, "cluster.json")

    def _load(self):
        try:
            with open(self.state_path) as f:
                self.state.update(json.load(f))
        except (OSError, ValueError):
            pass

    def _save(self):
        os.makedirs(self.workdir, exist_ok=True)
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f, indent=1)
        os.replace(tmp, self.state_path)

    # ------------------------------------------------------------ names
    @property
    def net(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.state["underlay"])

    @property
    def root_ip(self) -> str:
        return str(self.net.network_address + 254)

    def host_ip(self, i: int) -> str:
        return str(self.net.network_address + i)

    @property
    def outside_ip(self) -> str:
        """The "outside": a namespace on the underlay that is no host of the cluster."""
        return str(self.net.network_address + 250)

    @property
    def outside_ns(self) -> str:
        return f"{self.name}-outside"

    def _outside_up(self) -> None:
        ns, veth = self.outside_ns, f"{self.name}-out"
        if ns in _netns_list():
            return
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "set", "lo", "up", netns=ns)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", veth, "master", self.bridge, "up")
        sh("ethtool", "-K", veth, "tx", "off", check=False)
        sh("ip", "addr", "add", f"{self.outside_ip}/{self.net.prefixlen}", "dev", "eth0", netns=ns)
        sh("ip", "link", "set", "eth0", "up", netns=ns)
        sh("ethtool", "-K", "eth0", "tx", "off", check=False, netns=ns)

    @property
    def bridge(self) -> str:
        return f"{self.name}-ul"

    @property
    def vlan_bridge(self) -> str:
        """The VLAN trunk between hosts' uplinks (for networks with encap vlan)."""
        return f"{self.name}-vl"

    def host_ns(self, label: str) -> str:
        return f"{self.name}-{label}"

    def ep_ns(self, ep: str) -> str:
        return f"{self.name}-e-{ep}"

    @property
    def url(self) -> str:
        return self.state["netmaster"] or f"http://127.0.0.1:{self.state['rest_port']}"

    @property
    def hosts_url(self) -> str:
        """The address hosts use to reach netmaster (over the underlay); with several
        netmasters, every member's, comma-separated."""
        if self.state["netmaster"]:
            return self.state["netmaster"]
        if self.clustered:
            return ",".join(f"http://{self.member_ip(k)}:{self.state['rest_port']}"
                            for k in range(1, self.state["netmasters"] + 1))
        return f"https://{self.root_ip}:{self.state['rest_port']}"

    @property
    def pki(self) -> str:
        """The cluster netmaster's PKI folder: ca.crt, admin.token, bootstrap.token."""
        return os.path.join(self.workdir, "pki")

    @property
    def ca(self) -> str:
        return os.path.join(self.pki, "ca.crt")

    # ------------------------------------------------------------ clustered netmasters
    @property
    def clustered(self) -> bool:
        return int(self.state.get("netmasters") or 1) > 1

    def member_ip(self, k: int) -> str:
        return str(self.net.network_address + 200 + k)

    def member_ns(self, k: int) -> str:
        return f"{self.name}-m{k}"

    def etcd(self) -> EtcdCluster:
        return EtcdCluster(os.path.join(self.workdir, "etcd"), host=self.root_ip,
                           ports=[tuple(p) for p in self.state["etcd_ports"]], name=self.name)

    def _etcd_up(self) -> None:
        """A 3-member etcd cluster in the root namespace, on the underlay address."""
        if not self.state["etcd_ports"]:
            ports, base = [], 32379 + 10 * (sum(map(ord, self.name)) % 100)
            for i in range(3):
                ports.append((base + 2 * i, base + 2 * i + 1))
            self.state["etcd_ports"] = ports
            self._save()
        ec = self.etcd()
        for i in range(ec.members):
            ec.start_member(i, wait=False)
        self.state["etcd_pids"] = [ec.pid(i) for i in range(ec.members)]
        self._save()
        ec.wait_healthy(30)

    def etcd_kill(self, i: int) -> None:
        pid = (self.state.get("etcd_pids") or [None] * 3)[i]
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)

    def etcd_start(self, i: int) -> None:
        ec = self.etcd()
        ec.start_member(i)
        self.state["etcd_pids"][i] = ec.pid(i)
        self._save()

    def _member_net(self, k: int) -> None:
        ns, veth = self.member_ns(k), f"{self.name}-m{k}u"
        if ns in _netns_list():
            return
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "set", "lo", "up", netns=ns)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth1", "netns", ns)
        sh("ip", "link", "set", veth, "master", self.bridge, "up")
        sh("ethtool", "-K", veth, "tx", "off", check=False)
        sh("ip", "addr", "add", f"{self.member_ip(k)}/{self.net.prefixlen}", "dev", "eth1", netns=ns)
        sh("ip", "link", "set", "eth1", "up", netns=ns)
        sh("ethtool", "-K", "eth1", "tx", "off", check=False, netns=ns)

    def member_start(self, k: int) -> None:
        m = self.state["members"].get(str(k)) or {}
        if m.get("pid") and pid_alive(m["pid"]):
            return
        self._member_net(k)
        ip, port = self.member_ip(k), self.state["rest_port"]
        store = self.etcd().url("/netweave/")
        cmd = ["ip", "netns", "exec", self.member_ns(k)] + launch.netmaster_cmd(
            self.python, [f"{ip}:{port}"], self.state["of_port"], store,
            pki_dir=os.path.join(self.workdir, f"m{k}-pki"),
            extra=["--of-listen", ip, "--advertise", ip, *(self.state.get("netmaster_args") or [])])
        logf = open(os.path.join(self.workdir, f"netmaster{k}.log"), "ab")
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        self.state["members"][str(k)] = {"pid": p.pid, "ip": ip}
        self._save()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise ClusterError(f"netmaster {k} exited (code {p.returncode}); see {self.workdir}/netmaster{k}.log")
            if self._member_answers(k):
                return
            time.sleep(0.1)
        raise ClusterError(f"netmaster {k} did not answer within 30 s")

    def _member_answers(self, k: int, path: str = "/version") -> bool:
        r = subprocess.run(["ip", "netns", "exec", self.member_ns(k), "curl", "-sf", "-m", "1",
                            f"http://{self.member_ip(k)}:{self.state['rest_port']}{path}"],
                           capture_output=True)
        return r.returncode == 0

    def member_stop(self, k: int, sig=signal.SIGTERM) -> None:
        m = self.state["members"].get(str(k)) or {}
        if m.get("pid") and pid_alive(m["pid"]):
            os.kill(m["pid"], sig)
            _wait_gone(m["pid"], 20)
        if m:
            m["pid"] = None
            self._save()

    def member_pid(self, k: int) -> int | None:
        pid = (self.state["members"].get(str(k)) or {}).get("pid")
        return pid if pid and pid_alive(pid) else None

    def _proxy_start(self) -> None:
        pid = self.state.get("proxy_pid")
        if pid and pid_alive(pid):
            return
        port = self.state["rest_port"]
        cmd = [self.python, "-m", "topologies.restproxy", f"127.0.0.1:{port}",
               *[f"{self.member_ip(k)}:{port}" for k in range(1, self.state["netmasters"] + 1)]]
        logf = open(os.path.join(self.workdir, "restproxy.log"), "ab")
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        self.state["proxy_pid"] = p.pid
        self._save()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/version", timeout=1).ok:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise ClusterError("the REST forwarder on 127.0.0.1 did not answer")

    def cluster_status(self) -> dict:
        """Each member: alive or not, and what its /info says (leader, generation)."""
        out, leader = [], ""
        for k in range(1, int(self.state.get("netmasters") or 1) + 1):
            m = {"index": k, "address": self.member_ip(k), "namespace": self.member_ns(k),
                 "pid": self.member_pid(k), "alive": self.member_pid(k) is not None, "state": "down"}
            if m["alive"]:
                r = subprocess.run(["ip", "netns", "exec", self.member_ns(k), "curl", "-sf", "-m", "2",
                                    f"http://{self.member_ip(k)}:{self.state['rest_port']}/info"],
                                   capture_output=True, text=True)
                try:
                    cl = json.loads(r.stdout).get("cluster") or {}
                    m["state"], m["generation"] = cl.get("state", "?"), cl.get("generation", 0)
                    if m["state"] == "leader":
                        leader = m["address"]
                except ValueError:
                    m["state"] = "not answering"
            out.append(m)
        return {"leader": leader, "members": out}

    def ovs(self, label: str) -> OvsInstance:
        return OvsInstance(os.path.join(self.workdir, label), netns=self.host_ns(label))

    def docker(self, label: str) -> docker_host.DockerDaemon:
        """The host's dockerd (clusters made with docker=True)."""
        return docker_host.DockerDaemon(os.path.join(self.workdir, f"{label}-docker"), self.host_ns(label),
                                        f"{self.name}-{label}")

    # ------------------------------------------------------------ up
    def up(self, hosts: int = 3, wait: float = 60.0) -> None:
        os.makedirs(self.workdir, exist_ok=True)
        self._save()
        if not _link_exists(self.bridge):
            # Two bridges with one subnet make the root namespace answer some hosts through the
            # wrong one: they look down, at random. Refuse, naming the other.
            for route in sh("ip", "-o", "route", "show", "to", "match", self.host_ip(1), check=False).splitlines():
                words = route.split()
                if words and words[0] != "default" and "dev" in words:
                    raise ClusterError(f"underlay {self.net} is already routed through "
                                       f"{words[words.index('dev') + 1]} (another cluster?): choose another --underlay")
            docker_host.quiet_bridge_netfilter()
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            sh("ip", "addr", "add", f"{self.root_ip}/{self.net.prefixlen}", "dev", self.bridge)
            sh("ip", "link", "set", self.bridge, "up")
            # The userspace datapath forwards partially checksummed packets as they
            # are: TCP (REST, OpenFlow) over the underlay needs TX offload off.
            sh("ethtool", "-K", self.bridge, "tx", "off", check=False)
        if self.state["uplinks"] and not _link_exists(self.vlan_bridge):
            sh("ip", "link", "add", self.vlan_bridge, "type", "bridge")
            sh("ip", "link", "set", self.vlan_bridge, "up")
        if self.clustered:
            self._etcd_up()
            for k in range(1, self.state["netmasters"] + 1):
                self.member_start(k)
            self._proxy_start()
        elif not self.state["netmaster"] and not self._netmaster_alive():
            self.netmaster_start()
        self._outside_up()
        for i in range(1, hosts + 1):
            label = f"h{i}"
            if label not in self.state["hosts"]:
                self._host_up(label, i)
        self.wait_ready(wait)

    def _host_up(self, label: str, i: int) -> None:
        ns, veth = self.host_ns(label), f"{self.name}-{label}u"
        self.state["hosts"][label] = {"ns": ns, "vtep": self.host_ip(i), "index": i}
        self._save()
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "set", "lo", "up", netns=ns)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth1", "netns", ns)
        sh("ip", "link", "set", veth, "master", self.bridge, "up")
        sh("ethtool", "-K", veth, "tx", "off", check=False)
        sh("ip", "link", "set", "eth1", "up", netns=ns)
        sh("ethtool", "-K", "eth1", "tx", "off", check=False, netns=ns)
        # eth1 is br-phy's port, yet the kernel sees its frames too and, by default, answers
        # ARP for any local address on any link: a peer asking for this VTEP would get eth1's
        # MAC besides br-phy's, and OVS's tunnel neighbour cache on the asking host takes
        # what it snoops. Tunnel packets sent to eth1's MAC are not the VTEP's: OVS floods
        # them instead of decapsulating, and every packet to this host is lost until the
        # agent's next neighbour sync (a heartbeat, ~1 s: the attach benchmark's 1 s samples).
        sh("sysctl", "-q", "-w", "net.ipv4.conf.eth1.arp_ignore=1", netns=ns)
        if self.state["uplinks"]:
            vl = f"{self.name}-{label}v"
            sh("ip", "link", "add", vl, "type", "veth", "peer", "name", "eth2", "netns", ns)
            sh("ip", "link", "set", vl, "master", self.vlan_bridge, "up")
            sh("ip", "link", "set", "eth2", "up", netns=ns)
            for dev, where in ((vl, None), ("eth2", ns)):
                sh("ethtool", "-K", dev, "tx", "off", check=False, netns=where)
        ovs = self.ovs(label).start()
        # the underlay side: br-phy carries eth1 and the VTEP address
        ovs.vsctl("--may-exist", "add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
                  "fail_mode=standalone", "--", "--may-exist", "add-port", "br-phy", "eth1")
        sh("ip", "addr", "add", f"{self.host_ip(i)}/{self.net.prefixlen}", "dev", "br-phy", netns=ns)
        sh("ip", "link", "set", "br-phy", "up", netns=ns)
        sh("ethtool", "-K", "br-phy", "tx", "off", check=False, netns=ns)
        if self.state.get("docker"):
            self.docker(label).start()
        self._agent_start(label)

    def _agent_start(self, label: str) -> None:
        h = self.state["hosts"][label]
        ovs = self.ovs(label)
        of_host = self.root_ip if not self.state["netmaster"] else _url_host(self.state["netmaster"])
        if self.clustered:                # every member is a controller of every switch
            of_hosts = [self.member_ip(k) for k in range(1, self.state["netmasters"] + 1)]
        else:
            of_hosts = [of_host]
        dk = self.docker(label) if self.state.get("docker") else None
        # clustered members serve the hosts on a plain underlay listener (see README: no shared
        # PKI across members yet)
        auth = [] if self.state["netmaster"] or self.clustered else [
            "--cacert", self.ca, "--bootstrap-token-file", os.path.join(self.pki, "bootstrap.token")]
        cmd = launch.netplugin_cmd(self.python, h["ns"], self.hosts_url, label, h["vtep"], ovs.remote,
                                   ",".join(f"tcp:{h}:{self.state['of_port']}" for h in of_hosts),
                                   "eth2" if self.state["uplinks"] else "",
                                   dk.plugins if dk else "", dk.socket if dk else "",
                                   state_dir=os.path.join(self.workdir, f"{label}-agent"), extra=auth)
        logf = open(os.path.join(self.workdir, f"{label}-netplugin.log"), "ab")
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        h["agent_pid"] = p.pid
        self._save()

    def agent_stop(self, label: str, sig=signal.SIGTERM) -> None:
        pid = self.state["hosts"][label].get("agent_pid")
        if pid and pid_alive(pid):
            os.kill(pid, sig)
            _wait_gone(pid)

    def agent_restart(self, label: str) -> None:
        self.agent_stop(label)
        self._agent_start(label)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Every host registered and up, and every host's br-int connected to netmaster."""
        deadline = time.monotonic() + timeout
        pending = set(self.state["hosts"])
        up: set = set()
        while pending and time.monotonic() < deadline:
            try:
                up = {h["hostLabel"] for h in requests.get(self.url + "/api/v1/hosts/", timeout=2).json()
                      if h["state"] == "up"}
            except (requests.RequestException, ValueError):
                up = set()
            for label in list(pending):
                if label in up and self.switch_connected(label) and self.tunnels_resolved(label):
                    pending.discard(label)
            if pending:
                time.sleep(0.2)
        if pending:
            # say which condition each host misses and show its agent's last lines: a test's
            # teardown removes the cluster, and with it the logs this message points to
            why = []
            for label in sorted(pending):
                missing = [c for c, ok in (("registered and up", label in up),
                                           ("switch connected", self.switch_connected(label)),
                                           ("tunnel neighbours", self.tunnels_resolved(label))) if not ok]
                try:
                    with open(os.path.join(self.workdir, f"{label}-netplugin.log"), errors="replace") as f:
                        tail = "".join(f.readlines()[-15:])
                except OSError:
                    tail = "(no log)\n"
                why.append(f"{label}: missing {', '.join(missing) or 'nothing (just now)'}; "
                           f"its netplugin log ends:\n{tail}")
            raise ClusterError(f"hosts not ready after {timeout:.0f}s: {', '.join(sorted(pending))} "
                               f"(see {self.workdir}/*-netplugin.log and netmaster.log)\n" + "".join(why))

    def tunnels_resolved(self, label: str) -> bool:
        """The host's OVS knows every other host's VTEP MAC (its agent set them), so no
        first packet between two hosts is dropped while OVS would ARP."""
        out = self.ovs(label).appctl("tnl/neigh/show", check=False)
        have = set(re.findall(r"^(\d+\.\d+\.\d+\.\d+)\s", out, re.M))
        return all(h["vtep"] in have for k, h in self.state["hosts"].items() if k != label)

    def switch_connected(self, label: str) -> bool:
        out = self.ovs(label).vsctl("--columns=is_connected", "find", "Controller", check=False)
        return "true" in out

    # ------------------------------------------------------------ netmaster
    def _netmaster_alive(self) -> bool:
        pid = self.state.get("netmaster_pid")
        return bool(pid) and pid_alive(pid)

    def netmaster_start(self) -> None:
        if self.state["netmaster"]:
            raise ClusterError("this cluster uses an external netmaster")
        port = self.state["rest_port"]
        # the hosts' switches reach the plain OpenFlow listener over the underlay: open it there
        # (netmaster admits each switch by the address it connects from)
        cmd = launch.netmaster_cmd(self.python, [f"127.0.0.1:{port}"],
                                   self.state["of_port"], f"sqlite://{self.workdir}/state.db",
                                   extra=["--of-listen", self.root_ip, *(self.state.get("netmaster_args") or [])],
                                   tls_listen=[f"{self.root_ip}:{port}"], pki_dir=self.pki)
        logf = open(os.path.join(self.workdir, "netmaster.log"), "ab")
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        self.state["netmaster_pid"] = p.pid
        self.state["own_netmaster"] = True
        self._save()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise ClusterError(f"netmaster exited (code {p.returncode}); see {self.workdir}/netmaster.log")
            try:
                if requests.get(f"http://127.0.0.1:{port}/version", timeout=1).ok:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise ClusterError("netmaster did not answer within 30 s")

    def netmaster_stop(self, sig=signal.SIGTERM) -> None:
        pid = self.state.get("netmaster_pid")
        if pid and pid_alive(pid):
            os.kill(pid, sig)
            _wait_gone(pid, 20)
        self.state["netmaster_pid"] = None
        self._save()

    # ------------------------------------------------------------ endpoints
    def cni(self, host: str, command: str, ep: str, conf: dict, labels: list[str] = ()) -> dict:
        rc, out, err = launch.cni(self.python, self.state["hosts"][host]["ns"], command, ep, self.ep_ns(ep), conf,
                                  labels)
        if rc != 0:
            raise ClusterError(f"CNI {command} failed: {out.get('msg') or err} (code {out.get('code')})")
        return out

    def net_conf(self, host: str, net: str, tenant: str, group: str) -> dict:
        return launch.net_conf(self.hosts_url, tenant, net, group, self.ovs(host).remote, host)

    def run(self, host: str, ep: str, net: str, tenant: str = "default", group: str = "",
            labels: list[str] = ()) -> dict:
        if host not in self.state["hosts"]:
            raise ClusterError(f"host {host} is not in cluster {self.name} ({', '.join(sorted(self.state['hosts']))})")
        if ep in self.state["endpoints"]:
            raise ClusterError(f"endpoint {ep} already exists")
        ns = self.ep_ns(ep)
        sh("ip", "netns", "add", ns)
        self.state["endpoints"][ep] = {"host": host, "ns": ns, "net": net, "tenant": tenant, "group": group}
        self._save()
        try:
            res = self.cni(host, "ADD", ep, self.net_conf(host, net, tenant, group), list(labels))
        except Exception:
            self.state["endpoints"].pop(ep, None)
            self._save()
            sh("ip", "netns", "del", ns, check=False)
            raise
        sh("ip", "link", "set", "lo", "up", netns=ns)
        ip = res["ips"][0]["address"].split("/")[0]
        ip6 = res["ips"][1]["address"].split("/")[0] if len(res["ips"]) > 1 else ""
        self.state["endpoints"][ep].update(ip=ip, ip6=ip6, mac=res["interfaces"][0].get("mac", ""))
        self._save()
        return self.state["endpoints"][ep]

    def rm(self, ep: str) -> None:
        e = self.state["endpoints"].get(ep)
        if e is None:
            raise ClusterError(f"no endpoint {ep}")
        self.cni(e["host"], "DEL", ep, self.net_conf(e["host"], e["net"], e["tenant"], e["group"]))
        sh("ip", "netns", "del", e["ns"], check=False)
        del self.state["endpoints"][ep]
        self._save()

    def exec(self, name: str, *cmd, check=False, timeout=60) -> subprocess.CompletedProcess:
        """Run cmd in an endpoint's, a host's or (name "outside") the outside's namespace."""
        ns = (self.state["endpoints"].get(name) or {}).get("ns") or (self.state["hosts"].get(name) or {}).get("ns")
        if name == "outside":
            ns = self.outside_ns
        if ns is None:
            raise ClusterError(f"no endpoint or host named {name}")
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                              timeout=timeout, check=check)

    def ip(self, ep: str) -> str:
        return self.state["endpoints"][ep]["ip"]

    def ip6(self, ep: str) -> str:
        """The endpoint's IPv6 address ("" off dual-stack networks)."""
        return self.state["endpoints"][ep].get("ip6", "")

    def ls(self) -> dict:
        hosts = {}
        try:
            hosts = {h["hostLabel"]: h for h in requests.get(self.url + "/api/v1/hosts/", timeout=2).json()}
        except (requests.RequestException, ValueError):
            pass
        extra = {"netmasters": self.cluster_status()} if self.clustered else {}
        return {
            **extra,
            "netmaster": self.url,
            "hosts": [{"name": k, "vtep": v["vtep"], "namespace": v["ns"],
                       "state": hosts.get(k, {}).get("state", "unknown")}
                      for k, v in sorted(self.state["hosts"].items())],
            "endpoints": [{"name": k, "host": v["host"], "tenant": v["tenant"], "network": v["net"],
                           "group": v["group"], "ip": v.get("ip", ""), "ip6": v.get("ip6", ""),
                           "namespace": v["ns"]}
                          for k, v in sorted(self.state["endpoints"].items())],
        }

    # ------------------------------------------------------------ down
    def down(self) -> None:
        """Remove everything of this cluster, whether it is healthy, half made or crashed.
        With $NETWEAVE_KEEP_LOGS=DIR, the cluster's logs are copied to DIR/NAME first."""
        keep = os.environ.get("NETWEAVE_KEEP_LOGS")
        if keep and os.path.isdir(self.workdir):
            dest = os.path.join(keep, self.name)
            shutil.rmtree(dest, ignore_errors=True)
            try:
                shutil.copytree(self.workdir, dest, ignore=shutil.ignore_patterns(
                    "*.sock", "*.ctl", "*.mgmt", "*.snoop", "data", "exec", "containerd", "plugins", "*.db", "*.tar"),
                    ignore_dangling_symlinks=True)
            except (shutil.Error, OSError) as exc:       # sockets and the like: the logs are what count
                log.warning("cluster %s: logs kept in part: %s", self.name, str(exc)[:200])
        # containers first, while netplugin still answers dockerd's Leave and DeleteEndpoint
        for label in self.state["hosts"]:
            if self.state.get("docker"):
                try:
                    self.docker(label).stop()
                except (docker_host.DockerError, OSError, subprocess.SubprocessError) as exc:
                    log.warning("cluster %s: docker on %s: %s", self.name, label, exc)
        for h in self.state["hosts"].values():
            pid = h.get("agent_pid")
            if pid and pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
        if self.state.get("own_netmaster"):
            self.netmaster_stop()
        for k in list(self.state.get("members") or {}):
            self.member_stop(int(k), signal.SIGKILL)
        for pid in [self.state.get("proxy_pid")] + list(self.state.get("etcd_pids") or []):
            if pid and pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        # containers of a crashed run, by their cgroup (named after the cluster's hosts)
        for ctrl in os.listdir(docker_host.CGROUP_ROOT) if os.path.isdir(docker_host.CGROUP_ROOT) else []:
            d = os.path.join(docker_host.CGROUP_ROOT, ctrl)
            for cg in os.listdir(d) if os.path.isdir(d) else []:
                if cg.startswith(f"{self.name}-"):
                    docker_host.kill_cgroup(cg)
        # anything else still running from our folder (agents, daemons of a crashed run)
        _kill_matching(self.workdir)
        if os.path.isdir(self.workdir):
            for label in os.listdir(self.workdir):
                d = os.path.join(self.workdir, label)
                if os.path.isdir(d):
                    for name in ("ovs-vswitchd", "ovsdb-server"):
                        kill_pidfile(os.path.join(d, f"{name}.pid"))
        prefix = f"{self.name}-"
        for ns in _netns_list():
            if ns.startswith(prefix):
                _kill_netns_pids(ns)
                sh("ip", "netns", "del", ns, check=False)
        for link in _links():
            if link.startswith(prefix):
                sh("ip", "link", "del", link, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.state.update(hosts={}, endpoints={}, netmaster_pid=None, own_netmaster=False, members={},
                          proxy_pid=None, etcd_pids=[])


# ---------------------------------------------------------------- helpers
def _url_host(url: str) -> str:
    from urllib.parse import urlparse
    return urlparse(url).hostname or "127.0.0.1"


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def _links() -> list[str]:
    out = sh("ip", "-o", "link", "show", check=False)
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def _netns_list() -> list[str]:
    out = sh("ip", "netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _kill_netns_pids(ns: str) -> None:
    out = sh("ip", "netns", "pids", ns, check=False)
    for pid in out.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def _kill_matching(text: str) -> None:
    me = os.getpid()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        try:                              # reap our own child if it is one
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- CLI
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m topologies.cluster", description="simulated netweave cluster")
    p.add_argument("--name", default=os.environ.get("NETWEAVE_CLUSTER", "nw"), help="cluster name (prefix)")
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up")
    u.add_argument("--hosts", type=int, default=3)
    u.add_argument("--netmaster", default=None, help="use this netmaster instead of starting one")
    u.add_argument("--underlay", default="10.99.0.0/24")
    u.add_argument("--rest-port", type=int, default=9999)
    u.add_argument("--of-port", type=int, default=6653)
    u.add_argument("--netmasters", type=int, default=1,
                   help="several netmasters (each in its namespace) over a 3-member etcd cluster")
    u.add_argument("--docker", action="store_true",
                   help="a dockerd per host, with netplugin as its network and IPAM driver")
    sub.add_parser("down")
    d = sub.add_parser("docker", help="run the docker CLI against a host's dockerd")
    d.add_argument("host"); d.add_argument("command", nargs=argparse.REMAINDER)
    r = sub.add_parser("run")
    r.add_argument("host"); r.add_argument("ep")
    r.add_argument("--net", required=True); r.add_argument("--tenant", default="default")
    r.add_argument("--group", default="")
    r.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="a label of the endpoint (services select providers by them); repeatable")
    sub.add_parser("rm").add_argument("ep")
    e = sub.add_parser("exec")
    e.add_argument("target"); e.add_argument("command", nargs=argparse.REMAINDER)
    ls = sub.add_parser("ls")
    ls.add_argument("--json", action="store_true")
    n = sub.add_parser("netmaster")
    n.add_argument("action", choices=["stop", "start", "restart", "kill"])
    n.add_argument("index", nargs="?", type=int, default=0,
                   help="which netmaster (1..N) of a cluster made with --netmasters N")
    args = p.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(message)s")
    try:
        if args.cmd == "up":
            c = Cluster(args.name, underlay=args.underlay, rest_port=args.rest_port, of_port=args.of_port,
                        netmaster=args.netmaster, docker=args.docker, netmasters=args.netmasters)
            c.up(args.hosts)
            print(f"cluster {c.name}: {len(c.state['hosts'])} hosts up and connected; netmaster {c.url}; "
                  f"outside {c.outside_ip} (cluster exec outside -- CMD)")
            return 0
        c = Cluster(args.name)
        if args.cmd == "down":
            c.down()
            print(f"cluster {c.name}: removed")
        elif args.cmd == "run":
            ep = c.run(args.host, args.ep, args.net, args.tenant, args.group, args.label)
            print(" ".join(a for a in (ep["ip"], ep.get("ip6")) if a))
        elif args.cmd == "rm":
            c.rm(args.ep)
        elif args.cmd == "docker":
            if not c.state.get("docker") or args.host not in c.state["hosts"]:
                raise ClusterError(f"no dockerd on {args.host} (cluster up --docker makes one per host)")
            cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
            return subprocess.call([docker_host.CLIENT, "-H", c.docker(args.host).host, *cmd])
        elif args.cmd == "exec":
            cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
            ns = (c.state["endpoints"].get(args.target) or c.state["hosts"].get(args.target) or {}).get("ns")
            if args.target == "outside":
                ns = c.outside_ns
            if not ns:
                raise ClusterError(f"no endpoint or host named {args.target}")
            return subprocess.call(["ip", "netns", "exec", ns, *cmd])
        elif args.cmd == "ls":
            data = c.ls()
            if args.json:
                print(json.dumps(data, indent=1))
            else:
                print(f"netmaster: {data['netmaster']}")
                for m in (data.get("netmasters") or {}).get("members", []):
                    print(f"  netmaster {m['index']} {m['address']:<15} {m['state']}"
                          + (f" generation {m['generation']}" if m.get("generation") else ""))
                print("hosts:")
                for h in data["hosts"]:
                    print(f"  {h['name']:<6} {h['vtep']:<15} {h['state']}")
                print("endpoints:")
                for e in data["endpoints"]:
                    print(f"  {e['name']:<12} {e['host']:<6} {e['tenant']:<10} {e['network']:<14} "
                          f"{e['group'] or '-':<12} {e['ip']}" + (f" {e['ip6']}" if e.get("ip6") else ""))
        elif args.cmd == "netmaster" and c.clustered:
            k = args.index
            if not 1 <= k <= c.state["netmasters"]:
                raise ClusterError(f"netmaster index: 1 to {c.state['netmasters']}")
            if args.action in ("stop", "restart", "kill"):
                c.member_stop(k, signal.SIGKILL if args.action == "kill" else signal.SIGTERM)
            if args.action in ("start", "restart"):
                c.member_start(k)
        elif args.cmd == "netmaster":
            if args.action == "kill":
                c.netmaster_stop(signal.SIGKILL)
            if args.action in ("stop", "restart"):
                c.netmaster_stop()
            if args.action in ("start", "restart"):
                c.netmaster_start()
            print(f"netmaster {args.action}: done")
        return 0
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

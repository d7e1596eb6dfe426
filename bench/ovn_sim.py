"""OVN 23.03 on simulated hosts, shaped like topologies/cluster.py's: a Linux bridge as the
underlay in the root namespace, one network namespace per host with its own ovsdb-server and
ovs-vswitchd (userspace datapath, `br-phy` holding the VTEP address) and its own ovn-controller;
the NB and SB databases and ovn-northd in the root namespace. Used by bench/ovn.py only.

Everything is named after the prefix (`nwoo` by default: bridge nwoo-ul, namespaces nwoo-h1,
nwoo-e-NAME, host-side veths nwooNAME), the daemons' files live in one temp dir, and down()
removes all of it whatever state it is in (also what a crashed run left, by the prefix).
"""
from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import subprocess
import tempfile
import time

from topologies.cluster import _kill_netns_pids, _links, _netns_list
from topologies.ovs import OvsInstance, kill_pidfile, sh

log = logging.getLogger("bench.ovn_sim")
NB_SCHEMA = "/usr/share/ovn/ovn-nb.ovsschema"
SB_SCHEMA = "/usr/share/ovn/ovn-sb.ovsschema"
BINARIES = ("ovn-northd", "ovn-controller", "ovn-nbctl", "ovn-sbctl")
MTU = 1442                  # Geneve's 58 bytes on a 1500 underlay (platform.md)


class OvnError(Exception):
    pass


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None] + \
        [f for f in (NB_SCHEMA, SB_SCHEMA) if not os.path.exists(f)]


class OvnCluster:
    def __init__(self, prefix: str = "nwoo", underlay: str = "10.93.0.0/24", sb_port: int = 16642):
        self.prefix = prefix
        self.net = ipaddress.IPv4Network(underlay)
        self.root_ip = str(self.net.network_address + 254)
        self.sb_port = sb_port
        self.dir = ""
        self.nb_daemon = ""                       # the ovn-nbctl daemon's control socket
        self.hosts: dict[str, dict] = {}          # label -> {ns, vtep, ovs}
        self.endpoints: dict[str, dict] = {}      # name -> {host, ns, veth, ip, mac}

    # ------------------------------------------------------------ names and commands
    @property
    def bridge(self) -> str:
        return f"{self.prefix}-ul"

    def host_ns(self, label: str) -> str:
        return f"{self.prefix}-{label}"

    def ep_ns(self, name: str) -> str:
        return f"{self.prefix}-e-{name}"

    def _env(self, rundir: str) -> dict:
        return dict(os.environ, OVN_RUNDIR=rundir, OVN_LOGDIR=rundir, OVN_DBDIR=rundir, OVN_PKGDATADIR=rundir,
                    OVS_RUNDIR=rundir, OVS_LOGDIR=rundir, OVS_DBDIR=rundir)

    def nbctl(self, *args, timeout=600, input=None) -> str:
        """Through the ovn-nbctl daemon once up() started it: a CMS keeps a replica of the NB
        database (neutron through ovsdbapp's IDL), while a plain ovn-nbctl downloads the tables
        its commands touch on every call: 0.3 s of each port add at 10k ports here."""
        env = self._env(self.dir)
        if self.nb_daemon:
            env["OVN_NB_DAEMON"] = self.nb_daemon
            db = []
        else:
            db = [f"--db=unix:{self.dir}/nb.sock"]
        return sh("ovn-nbctl", *db, "--timeout=300", *args, env=env, timeout=timeout, input=input)

    def sbctl(self, *args) -> str:
        return sh("ovn-sbctl", f"--db=unix:{self.dir}/sb.sock", "--timeout=60", *args, env=self._env(self.dir))

    def nb_batch(self, commands: list[list[str]], chunk: int = 500) -> None:
        """Many ovn-nbctl commands, `chunk` to a transaction (one process each)."""
        for i in range(0, len(commands), chunk):
            argv = []
            for c in commands[i:i + chunk]:
                argv += ["--", *c]
            self.nbctl(*argv)

    # ------------------------------------------------------------ up
    def up(self, hosts: int = 3, wait: float = 60.0) -> None:
        self.down()                                           # what a crashed run left
        self.dir = tempfile.mkdtemp(prefix=f"{self.prefix}-")
        for route in sh("ip", "-o", "route", "show", "to", "match", str(self.net.network_address + 1),
                        check=False).splitlines():
            if route.split()[:1] != ["default"]:
                raise OvnError(f"underlay {self.net} is already routed ({route.strip()}): choose another")
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.root_ip}/{self.net.prefixlen}", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        env = self._env(self.dir)
        for db, schema, remote in (("nb", NB_SCHEMA, []), ("sb", SB_SCHEMA, [f"--remote=ptcp:{self.sb_port}:{self.root_ip}"])):
            sh("ovsdb-tool", "create", f"{self.dir}/{db}.db", schema, env=env)
            sh("ovsdb-server", f"{self.dir}/{db}.db", f"--remote=punix:{self.dir}/{db}.sock", *remote,
               "-vconsole:off", f"--pidfile={self.dir}/{db}.pid", "--detach", f"--log-file={self.dir}/{db}.log",
               f"--unixctl={self.dir}/{db}.ctl", env=env)
        self.nbctl("init")
        self.nb_daemon = sh("ovn-nbctl", f"--db=unix:{self.dir}/nb.sock", "--detach", "-vconsole:off",
                            f"--pidfile={self.dir}/nbctl.pid", f"--log-file={self.dir}/nbctl.log", env=env).strip()
        sh("ovn-northd", f"--ovnnb-db=unix:{self.dir}/nb.sock", f"--ovnsb-db=unix:{self.dir}/sb.sock",
           "-vconsole:off", f"--pidfile={self.dir}/northd.pid", "--detach", f"--log-file={self.dir}/northd.log",
           env=env)
        for i in range(1, hosts + 1):
            self._host_up(f"h{i}", i)
        deadline = time.monotonic() + wait
        while True:
            names = set(self.sbctl("--bare", "--columns=name", "list", "chassis").split())
            ready = names >= set(self.hosts) and all(
                "br-int" in h["ovs"].vsctl("list-br", check=False) for h in self.hosts.values())
            if ready:
                break
            if time.monotonic() > deadline:
                raise OvnError(f"chassis not ready after {wait:.0f}s (registered: {sorted(names)}; "
                               f"see {self.dir}/*/ovn-controller.log)")
            time.sleep(0.2)
        log.info("event=ovn_up hosts=%d dir=%s", hosts, self.dir)

    def _host_up(self, label: str, i: int) -> None:
        ns, veth, vtep = self.host_ns(label), f"{self.prefix}-{label}u", str(self.net.network_address + i)
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "set", "lo", "up", netns=ns)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth1", "netns", ns)
        sh("ip", "link", "set", veth, "master", self.bridge, "up")
        # the userspace datapath forwards partial checksums as they are: TCP to the SB needs this
        sh("ethtool", "-K", veth, "tx", "off", check=False)
        sh("ip", "link", "set", "eth1", "up", netns=ns)
        sh("ethtool", "-K", "eth1", "tx", "off", check=False, netns=ns)
        hdir = os.path.join(self.dir, label)
        ovs = OvsInstance(hdir, netns=ns).start()
        self.hosts[label] = {"ns": ns, "vtep": vtep, "ovs": ovs, "dir": hdir}
        ovs.vsctl("--may-exist", "add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
                  "fail_mode=standalone", "--", "--may-exist", "add-port", "br-phy", "eth1")
        sh("ip", "addr", "add", f"{vtep}/{self.net.prefixlen}", "dev", "br-phy", netns=ns)
        sh("ip", "link", "set", "br-phy", "up", netns=ns)
        sh("ethtool", "-K", "br-phy", "tx", "off", check=False, netns=ns)
        ovs.vsctl("set", "open_vswitch", ".", f"external_ids:system-id={label}",
                  f"external_ids:ovn-remote=tcp:{self.root_ip}:{self.sb_port}", "external_ids:ovn-encap-type=geneve",
                  f"external_ids:ovn-encap-ip={vtep}", "external_ids:ovn-bridge=br-int",
                  "external_ids:ovn-bridge-datapath-type=netdev")
        # 23.03 refuses --unixctl: OVN_RUNDIR puts its control socket in the host's folder
        sh("ovn-controller", ovs.remote, "-vconsole:off", f"--pidfile={hdir}/ovn-controller.pid", "--detach",
           f"--log-file={hdir}/ovn-controller.log", netns=ns, env=self._env(hdir))

    # ------------------------------------------------------------ ports
    def plug(self, host: str, name: str, ip: str, mac: str, prefixlen: int, gateway: str) -> None:
        """A namespace with a veth whose host end is on the host's br-int with iface-id=name
        (the logical port must be made by the caller, as a CMS would, before or after)."""
        h = self.hosts[host]
        ns, veth = self.ep_ns(name), f"{self.prefix}{name}"[:15]
        self.endpoints[name] = {"host": host, "ns": ns, "veth": veth, "ip": ip, "mac": mac}
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns, netns=h["ns"])
        sh("ip", "-n", ns, "-batch", "-", input="\n".join([
            f"link set eth0 address {mac} mtu {MTU}", f"addr add {ip}/{prefixlen} dev eth0",
            "link set lo up", "link set eth0 up", f"route add default via {gateway}", ""]))
        sh("ethtool", "-K", "eth0", "tx", "off", netns=ns)
        sh("ip", "link", "set", veth, "up", netns=h["ns"])
        h["ovs"].vsctl("add-port", "br-int", veth, "--", "set", "interface", veth, f"external_ids:iface-id={name}")

    def unplug(self, name: str) -> None:
        e = self.endpoints.pop(name)
        h = self.hosts[e["host"]]
        h["ovs"].vsctl("--if-exists", "del-port", "br-int", e["veth"], check=False)
        sh("ip", "netns", "del", e["ns"], check=False)

    def exec(self, name: str, *cmd, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.endpoints[name]["ns"], *cmd], capture_output=True,
                              text=True, timeout=kw.get("timeout", 60), check=kw.get("check", False))

    def flow_count(self, host: str) -> int:
        out = self.hosts[host]["ovs"].ofctl("dump-aggregate", check=False)
        for word in out.split():
            if word.startswith("flow_count="):
                return int(word.split("=")[1])
        return -1

    # ------------------------------------------------------------ down
    def down(self) -> None:
        """Remove everything with this prefix: daemons (by pid file, then by namespace),
        namespaces, links, the temp dir; also what a crashed earlier run left."""
        dirs = [self.dir] if self.dir else []
        tmp = tempfile.gettempdir()
        dirs += [os.path.join(tmp, d) for d in os.listdir(tmp) if d.startswith(f"{self.prefix}-")
                 and os.path.join(tmp, d) != self.dir]
        for d in dirs:
            if not os.path.isdir(d):
                continue
            for sub in [d] + [os.path.join(d, s) for s in os.listdir(d) if os.path.isdir(os.path.join(d, s))]:
                for pidfile in ("nbctl.pid", "ovn-controller.pid", "northd.pid", "ovs-vswitchd.pid", "ovsdb-server.pid",
                                "nb.pid", "sb.pid"):
                    kill_pidfile(os.path.join(sub, pidfile))
        for ns in _netns_list():
            if ns.startswith(f"{self.prefix}-"):
                _kill_netns_pids(ns)
                sh("ip", "netns", "del", ns, check=False)
        for link in _links():
            if link.startswith(self.prefix):
                sh("ip", "link", "del", link, check=False)
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.hosts.clear()
        self.endpoints.clear()
        self.nb_daemon = ""

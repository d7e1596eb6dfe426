"""netweave on Mininet: Mininet hosts are compute hosts, Mininet links are the underlay.

Every compute host (``nwm1``, ``nwm2``, ...) is a Mininet host running its own Open vSwitch
(userspace datapath) and a netplugin; its Mininet address is its VTEP, on ``br-phy``, so the
VXLAN overlay crosses the Mininet links and TCLink's bandwidth, delay and loss shape it.
netmaster runs on ``nwm0``, a Mininet node in the root namespace linked to the underlay: the
compute hosts reach it over Mininet, the machine's shell at http://127.0.0.1:REST_PORT.
The underlay switches (``nwms1``, ...) are Open vSwitch userspace bridges in standalone mode
(learning switches), with STP on the leaf-spine, which has loops.

Topologies (``--topo NAME,ARGS``; keyword arguments: ``bw`` Mbit/s, ``delay`` such as ``5ms``,
``loss`` percent, on every underlay link but nwm0's; ``prefix``, ``subnet``, ``rest_port``,
``of_port``):

    star,N               N compute hosts on one switch
    linear,N             a chain of N switches, one compute host on each
    leafspine,S,L,H      S spines, L leaves (each linked to every spine), H hosts per leaf

From the shell (Mininet's ``mn`` under the interpreter that has os-ken, so it is the same
Mininet package as the Python API)::

    .venv/bin/python $(which mn) --custom topologies/mininet_topos.py --topo star,3 \\
        --switch ovs,datapath=user --controller none --link tc

From Python::

    from topologies.mininet_topos import NetweaveNet, StarTopo
    with NetweaveNet(StarTopo(2, delay="5ms")) as nw:     # start() ... stop()
        nw.create_network("contiv-net", "10.1.2.0/24", "10.1.2.1")
        a = nw.run_endpoint("nwm1", "web1", "contiv-net")
        b = nw.run_endpoint("nwm2", "web2", "contiv-net")
        print(nw.exec("web1", "ping", "-c1", b["ip"]).stdout)

While a network runs, from another shell::

    python -m topologies.mininet_topos run nwm1 web1 --net contiv-net
    python -m topologies.mininet_topos exec web1 -- ping -c1 10.1.2.3
    python -m topologies.mininet_topos ls
    python -m topologies.mininet_topos clean [--prefix nwm]     # a crashed run's leftovers only
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
import sys
import time

try:
    _HERE = os.path.abspath(__file__)
    _MN_CUSTOM = False
except NameError:                         # exec'd by `mn --custom`: no __file__
    import inspect
    _HERE = os.path.abspath(inspect.currentframe().f_code.co_filename)
    _MN_CUSTOM = True
_ROOT = os.path.dirname(os.path.dirname(_HERE))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from mininet.link import Link, TCLink  # noqa: E402
from mininet.net import Mininet  # noqa: E402
from mininet.topo import Topo  # noqa: E402

from topologies.mininet_nodes import (PREFIX_RE, ComputeHost, NetmasterNode, NwConfig, NwSwitch,  # noqa: E402
                                      cleanup, delay_ms, http_json, kernel_has_netem, netweave_python,
                                      workdir_of)
from topologies import launch  # noqa: E402
from topologies.common import free_port  # noqa: E402
from topologies.ovs import sh  # noqa: E402

_PREFIXES_SEEN: set[str] = set()


class NetweaveError(Exception):
    pass


# ------------------------------------------------------------------ topologies
class NetweaveTopo(Topo):
    """Base: names, addresses, link shaping, netmaster node.  Subclasses call ``compute(i)``,
    ``switch(i)``, ``ulink(a, b)`` in ``build``."""

    def __init__(self, *args, prefix: str = "nwm", subnet: str = "10.213.0.0/24", rest_port: int = 0,
                 of_port: int = 0, bw=None, delay=None, loss=None, max_queue_size=None, netem: str = "auto",
                 **params):
        if not PREFIX_RE.match(prefix):
            raise NetweaveError(f"prefix {prefix!r}: 2 to 5 lower-case letters (it prefixes interface names)")
        if run_active(prefix):
            raise NetweaveError(f"a netweave Mininet network with prefix {prefix} is running "
                                f"(netmaster pid in {workdir_of(prefix)}): stop it, or choose another prefix=")
        cleanup(prefix)                   # what a crashed or killed run with this prefix left
        self.subnet = ipaddress.IPv4Network(subnet)
        self.nw = NwConfig(prefix=prefix, subnet=str(self.subnet), rest_port=int(rest_port) or free_port(),
                           of_port=int(of_port) or free_port(), python=netweave_python(),
                           netmaster_ip=str(self.subnet.network_address + 254))
        if netem == "auto":
            netem = "kernel" if kernel_has_netem() else "user"
        if netem not in ("kernel", "user"):
            raise NetweaveError(f"netem {netem!r}: auto, kernel or user")
        self.nw["netem"] = netem
        shaping = {k: v for k, v in (("bw", bw), ("delay", delay), ("loss", loss),
                                     ("max_queue_size", max_queue_size)) if v not in (None, "", 0)}
        if netem == "user":
            # the kernel cannot delay or drop: compute hosts' links get mininet_netem, tc keeps bw
            self.nw["user_shaping"] = {"delay_ms": delay_ms(shaping.pop("delay", 0)),
                                       "loss_pct": float(shaping.pop("loss", 0) or 0),
                                       "limit": int(shaping.pop("max_queue_size", 0) or 10000)}
        self.shaping = shaping
        _PREFIXES_SEEN.add(prefix)
        super().__init__(*args, **params)

    @property
    def prefix(self) -> str:
        return self.nw.prefix

    def compute(self, i: int) -> str:
        return self.addHost(f"{self.prefix}{i}", cls=ComputeHost, nw=self.nw,
                            ip=f"{self.subnet.network_address + i}/{self.subnet.prefixlen}")

    def netmaster(self, attach_to: str) -> str:
        n = self.addHost(f"{self.prefix}0", cls=NetmasterNode, nw=self.nw,
                         ip=f"{self.nw['netmaster_ip']}/{self.subnet.prefixlen}")
        # the control link is not shaped: the experiment is about the overlay's data path
        self.addLink(n, attach_to, cls=TCLink, txo=False)
        return n

    def switch(self, i: int, stp: bool = False) -> str:
        return self.addSwitch(f"{self.prefix}s{i}", cls=NwSwitch, stp=stp,
                              dpid="4e57%04x%08x" % (sum(map(ord, self.prefix)) & 0xFFFF, i))

    def ulink(self, a: str, b: str) -> None:
        self.addLink(a, b, cls=TCLink, txo=False, **self.shaping)


class StarTopo(NetweaveTopo):
    """N compute hosts on one switch."""

    def build(self, n: int = 3):
        s = self.switch(1)
        self.netmaster(s)
        for i in range(1, int(n) + 1):
            self.ulink(self.compute(i), s)


class LinearTopo(NetweaveTopo):
    """A chain of N switches with one compute host on each (host i's traffic to host j
    crosses |i - j| switch-to-switch links)."""

    def build(self, n: int = 3):
        n = int(n)
        sw = [self.switch(i) for i in range(1, n + 1)]
        self.netmaster(sw[0])
        for i in range(1, n + 1):
            self.ulink(self.compute(i), sw[i - 1])
            if i > 1:
                self.ulink(sw[i - 2], sw[i - 1])


class LeafSpineTopo(NetweaveTopo):
    """Two tiers: S spines, L leaves, each leaf linked to every spine, H compute hosts per
    leaf.  It has loops: every switch runs STP (short timers) and ``NetweaveNet.start`` waits
    until no port is listening or learning."""

    def build(self, spines: int = 2, leaves: int = 2, hosts_per_leaf: int = 1):
        spines, leaves, hpl = int(spines), int(leaves), int(hosts_per_leaf)
        sp = [self.switch(i, stp=True) for i in range(1, spines + 1)]
        lf = [self.switch(spines + i, stp=True) for i in range(1, leaves + 1)]
        for leaf in lf:
            for spine in sp:
                self.ulink(leaf, spine)
        self.netmaster(lf[0])
        h = 1
        for leaf in lf:
            for _ in range(hpl):
                self.ulink(self.compute(h), leaf)
                h += 1


topos = {"star": StarTopo, "linear": LinearTopo, "leafspine": LeafSpineTopo}


# ------------------------------------------------------------------ running it
class NetweaveNet:
    """A Mininet network whose hosts are netweave compute hosts, with netmaster on ``nwm0``.

    ``start()`` builds and starts Mininet, waits for STP (if any) and for every compute host to
    be registered and its br-int connected to netmaster; ``stop()`` (always, also after a failed
    start) removes endpoints, netplugins, OVS instances, netmaster, Mininet's nodes, links and
    switches, and then anything else carrying this run's prefix."""

    def __init__(self, topo: NetweaveTopo, ready_timeout: float = 90.0, keep_files: bool = False):
        self.topo = topo
        self.nw: NwConfig = topo.nw
        self.ready_timeout = ready_timeout
        self.keep_files = keep_files
        self.net: Mininet | None = None

    # -- lifecycle
    @property
    def prefix(self) -> str:
        return self.nw.prefix

    @property
    def url(self) -> str:
        return self.nw.rest_url

    def start(self) -> "NetweaveNet":
        cleanup(self.prefix)                               # an earlier crashed run with this prefix
        subprocess.run(["bash", os.path.join(_ROOT, "scripts", "ovs.sh")], check=True, capture_output=True)
        try:
            self.net = Mininet(topo=self.topo, controller=None, switch=NwSwitch, link=Link, build=False,
                               autoSetMacs=False, waitConnected=False)
            self.net.build()
            self.net.start()
            self.wait_ready(self.ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        try:
            if self.net is not None:
                self.net.stop()
        finally:
            self.net = None
            if self.keep_files:
                keep = workdir_of(self.prefix) + ".last"
                sh("rm", "-rf", keep, check=False)
                sh("cp", "-a", workdir_of(self.prefix), keep, check=False)
            cleanup(self.prefix)

    @property
    def computes(self) -> list:
        return [h for h in self.net.hosts if isinstance(h, ComputeHost)]

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        stp = [s for s in self.net.switches if getattr(s, "stp", False)]
        pending = {h.name for h in self.computes}
        while time.monotonic() < deadline:
            if stp:
                stp = [s for s in stp if not s.stp_settled()]
            try:
                up = {h["hostLabel"] for h in http_json(self.url + "/api/v1/hosts/") if h.get("state") == "up"}
            except Exception:  # noqa: BLE001
                up = set()
            for h in self.computes:
                if h.name in pending and h.name in up and h.switch_connected():
                    pending.discard(h.name)
            if not pending and not stp:
                return
            time.sleep(0.25)
        raise NetweaveError(f"not ready after {timeout:.0f}s: hosts {sorted(pending)}, STP on "
                            f"{[s.name for s in stp]} (logs under {self.nw.workdir})")

    # -- REST
    def rest(self, method: str, path: str, body: dict | None = None):
        return http_json(self.url + path, timeout=10, data=body, method=method)

    def create_network(self, name: str, subnet: str, gateway: str, tenant: str = "default", encap: str = "vxlan"):
        return self.rest("POST", f"/api/v1/networks/{tenant}:{name}/",
                         {"tenantName": tenant, "networkName": name, "subnet": subnet, "gateway": gateway,
                          "encap": encap})

    # -- endpoints
    def run_endpoint(self, host: str, name: str, net: str, tenant: str = "default", group: str = "") -> dict:
        return run_endpoint(self.nw, host, name, net, tenant, group)

    def rm_endpoint(self, name: str) -> None:
        rm_endpoint(self.nw, name)

    def endpoints(self) -> dict:
        return _load_eps(self.nw)

    def ip(self, endpoint: str) -> str:
        return _load_eps(self.nw)[endpoint]["ip"]

    def exec(self, target: str, *cmd, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess:
        """Run a command in an endpoint's namespace (or a compute host's), wait, return it."""
        return subprocess.run(["ip", "netns", "exec", _ns_of(self.nw, target), *cmd], capture_output=True,
                              text=True, timeout=timeout, check=check)

    def popen(self, target: str, *cmd, **kw) -> subprocess.Popen:
        """Start a command in an endpoint's namespace (or a compute host's); the caller ends it."""
        return subprocess.Popen(["ip", "netns", "exec", _ns_of(self.nw, target), *cmd], **kw)

    def host(self, name: str):
        return self.net.get(name)

    def set_shaping(self, bw=None, delay=None, loss=None, max_queue_size=None) -> None:
        """Change bw/delay/loss on every shaped underlay link of the running network (with
        netem=user, delay and loss apply to the compute hosts' links, in both directions)."""
        shaping = {"bw": bw, "delay": delay, "loss": loss, "max_queue_size": max_queue_size}
        if self.nw.get("netem") == "user":
            for h in self.computes:
                h.set_netem({"delay_ms": delay_ms(delay), "loss_pct": float(loss or 0),
                             "limit": int(max_queue_size or 10000)})
            shaping.update(delay=None, loss=None, max_queue_size=None)
        for link in self.net.links:
            n1, n2 = link.intf1.node, link.intf2.node
            if isinstance(n1, NetmasterNode) or isinstance(n2, NetmasterNode):
                continue
            for intf in (link.intf1, link.intf2):
                params = {k: v for k, v in intf.params.items() if k not in ("bw", "delay", "loss", "max_queue_size")}
                params.update({k: v for k, v in shaping.items() if v not in (None, "", 0)})
                params["txo"] = False
                intf.params = params
                intf.cmd("tc qdisc del dev", intf.name, "root")
                intf.config(**params)


# ------------------------------------------------------------------ endpoints (API and CLI)
def _eps_path(nw: NwConfig) -> str:
    return os.path.join(nw.workdir, "endpoints.json")


def _load_eps(nw: NwConfig) -> dict:
    try:
        with open(_eps_path(nw)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _save_eps(nw: NwConfig, eps: dict) -> None:
    tmp = _eps_path(nw) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(eps, f, indent=1)
    os.replace(tmp, _eps_path(nw))


def _ns_of(nw: NwConfig, target: str) -> str:
    ep = _load_eps(nw).get(target)
    if ep:
        return ep["ns"]
    if os.path.isdir(os.path.join(nw.workdir, target)) and os.path.exists(f"/var/run/netns/{target}"):
        return target
    raise NetweaveError(f"no endpoint or compute host named {target}")


def _cni(nw: NwConfig, host: str, command: str, ep: str, ns: str, conf: dict) -> dict:
    rc, out, err = launch.cni(nw.get("python") or netweave_python(), host, command, f"{nw.prefix}-{ep}", ns, conf)
    if rc != 0:
        raise NetweaveError(f"CNI {command} on {host} failed: {out.get('msg') or err} (code {out.get('code')})")
    return out


def _net_conf(nw: NwConfig, host: str, net: str, tenant: str, group: str) -> dict:
    return launch.net_conf(nw.hosts_url, tenant, net, group, f"unix:{os.path.join(nw.workdir, host, 'db.sock')}", host)


def run_endpoint(nw: NwConfig, host: str, name: str, net: str, tenant: str = "default", group: str = "") -> dict:
    """A namespace ``PREFIXe-NAME`` attached to ``host``'s br-int by the CNI plugin run inside
    ``host``; returns {"host", "ns", "ip", "mac", ...}."""
    if not os.path.exists(os.path.join(nw.workdir, host, "db.sock")):
        raise NetweaveError(f"{host} is not a running compute host of {nw.prefix}")
    eps = _load_eps(nw)
    if name in eps:
        raise NetweaveError(f"endpoint {name} already exists")
    ns = f"{nw.prefix}e-{name}"
    sh("ip", "netns", "add", ns)
    eps[name] = {"host": host, "ns": ns, "net": net, "tenant": tenant, "group": group}
    _save_eps(nw, eps)
    try:
        res = _cni(nw, host, "ADD", name, ns, _net_conf(nw, host, net, tenant, group))
    except BaseException:
        eps.pop(name, None)
        _save_eps(nw, eps)
        sh("ip", "netns", "delete", ns, check=False)
        raise
    sh("ip", "link", "set", "lo", "up", netns=ns)
    eps[name].update(ip=res["ips"][0]["address"].split("/")[0], mac=res["interfaces"][0].get("mac", ""))
    _save_eps(nw, eps)
    return eps[name]


def rm_endpoint(nw: NwConfig, name: str) -> None:
    eps = _load_eps(nw)
    e = eps.get(name)
    if e is None:
        raise NetweaveError(f"no endpoint {name}")
    _cni(nw, e["host"], "DEL", name, e["ns"], _net_conf(nw, e["host"], e["net"], e["tenant"], e["group"]))
    sh("ip", "netns", "delete", e["ns"], check=False)
    del eps[name]
    _save_eps(nw, eps)


def run_active(prefix: str) -> bool:
    try:
        pid = int(open(os.path.join(workdir_of(prefix), "netmaster.pid")).read())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return os.path.exists(os.path.join(workdir_of(prefix), "net.json"))


def load_config(prefix: str) -> NwConfig:
    try:
        with open(os.path.join(workdir_of(prefix), "net.json")) as f:
            return NwConfig(json.load(f))
    except (OSError, ValueError):
        raise NetweaveError(f"no running netweave Mininet network with prefix {prefix} "
                            f"({workdir_of(prefix)}/net.json)") from None


# ------------------------------------------------------------------ under `mn`
def nwdemo(net, *args, **kwargs):
    """``mn ... --test nwdemo``: wait until the compute hosts are ready, make a network, put an
    endpoint on the first two compute hosts and ping between them."""
    computes = [h for h in net.hosts if isinstance(h, ComputeHost)]
    nw = computes[0].nw
    wrapper = NetweaveNet.__new__(NetweaveNet)
    wrapper.topo, wrapper.nw, wrapper.net, wrapper.keep_files = None, nw, net, False
    wrapper.wait_ready(90)
    wrapper.create_network("demo-net", "10.1.2.0/24", "10.1.2.1")
    a = wrapper.run_endpoint(computes[0].name, "demo1", "demo-net")
    b = wrapper.run_endpoint(computes[1].name, "demo2", "demo-net")
    p = wrapper.exec("demo1", "ping", "-c", "3", "-i", "0.2", b["ip"])
    print(p.stdout, flush=True)
    print(f"*** nwdemo: {a['ip']} on {computes[0].name} -> {b['ip']} on {computes[1].name}: "
          f"{'ok' if p.returncode == 0 else 'FAILED'}", flush=True)


tests = {"nwdemo": nwdemo}


def prefix_cleanup() -> None:
    """What `mn` calls instead of Mininet's global cleanup when this file is its --custom file."""
    for prefix in sorted(_PREFIXES_SEEN) or ["nwm"]:
        print(f"*** netweave: removing what prefix {prefix} left (not Mininet's global cleanup)", flush=True)
        cleanup(prefix)


# ------------------------------------------------------------------ CLI
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m topologies.mininet_topos",
                                description="endpoints on a running netweave Mininet network")
    p.add_argument("--prefix", default=os.environ.get("NETWEAVE_MININET_PREFIX", "nwm"),
                   help="the run's prefix (default nwm, or $NETWEAVE_MININET_PREFIX)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--prefix", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="cmd", required=True)
    _add = sub.add_parser
    sub.add_parser = lambda *a, **k: _add(*a, parents=[common], **k)     # --prefix after the command too
    r = sub.add_parser("run", help="attach an endpoint namespace to a compute host")
    r.add_argument("host"); r.add_argument("ep")
    r.add_argument("--net", required=True); r.add_argument("--tenant", default="default")
    r.add_argument("--group", default="")
    sub.add_parser("rm").add_argument("ep")
    e = sub.add_parser("exec")
    e.add_argument("target"); e.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("ls")
    sub.add_parser("clean", help="remove a crashed run's leftovers (this prefix only)")
    args = p.parse_args(argv)
    try:
        if args.cmd == "clean":
            cleanup(args.prefix)
            print(f"netweave mininet {args.prefix}: cleaned")
            return 0
        nw = load_config(args.prefix)
        if args.cmd == "run":
            print(run_endpoint(nw, args.host, args.ep, args.net, args.tenant, args.group)["ip"])
        elif args.cmd == "rm":
            rm_endpoint(nw, args.ep)
        elif args.cmd == "exec":
            cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
            return subprocess.call(["ip", "netns", "exec", _ns_of(nw, args.target), *cmd])
        elif args.cmd == "ls":
            print(f"netmaster: {nw.rest_url} (shell), {nw.hosts_url} (underlay), OpenFlow :{nw['of_port']}")
            for name, ep in sorted(_load_eps(nw).items()):
                print(f"  {name:<12} {ep['host']:<8} {ep['tenant']:<10} {ep['net']:<14} {ep.get('ip', '')}")
        return 0
    except NetweaveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _as_mn_custom(ns: dict) -> None:
    """`mn --custom FILE` exec's FILE and copies EVERY top-level name into mn's own globals, so
    this file's `cleanup`, `main`, `sh`... would replace mn's.  Leave mn only what it should
    see, taken from the properly imported module: `topos`, `tests`, and `cleanup` (mn calls it
    on an exception, Ctrl-C or -c: Mininet's global cleanup deletes EVERY OVS bridge of the
    machine and kills every Mininet shell; this one removes only this run's prefix)."""
    import importlib
    mod = importlib.import_module("topologies.mininet_topos")
    for k in [k for k in ns if not k.startswith("__")]:
        del ns[k]
    ns.update(topos=mod.topos, tests=mod.tests, cleanup=mod.prefix_cleanup)


if _MN_CUSTOM:
    _as_mn_custom(globals())
elif __name__ == "__main__":
    sys.exit(main())

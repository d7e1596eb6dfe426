"""Flow push against the limit: N flows delivered by netmaster's OpenFlow app
(controller.ofapp: diff, one atomic bundle, barrier, commit) versus
`ovs-ofctl --bundle add-flows` of the very same flows, each to a fresh,
identical bridge of one private OVS (netdev, OpenFlow13, fail_mode secure),
alternated and repeated; then the reconcile of an unchanged switch after a
controller restart.

    python -m bench.flow_push [--quick] [--sizes 10000,50000] [--repeat 3]
"""
import os

os.environ["OSKEN_HUB_TYPE"] = "eventlet"
import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import logging  # noqa: E402
import pstats  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench import common  # noqa: E402
from controller import ofserver  # noqa: E402
from flows.entry import COOKIE_MARK, FlowEntry  # noqa: E402
from topologies.common import free_port  # noqa: E402
from topologies.ovs import OvsInstance  # noqa: E402

log = logging.getLogger("bench.flow_push")
DPID = 0x4E0000000000B1
# The netdev datapath makes a tap device "ovs-netdev": one per network namespace,
# so our OVS runs in its own namespace and reaches the controller over a veth.
NS, VETH_ROOT, VETH_NS = "nwbfp", "nwbfpr", "nwbfpn"
CTRL_IP, NS_IP = "10.95.254.1", "10.95.254.2"


def make_flows(n: int) -> set:
    """L2-like flows in table 40: distinct (metadata network, eth_dst) -> output."""
    out = set()
    for i in range(n):
        net, k = 1 + i // 50000, i % 50000
        mac = f"02:00:{(k >> 24) & 0xff:02x}:{(k >> 16) & 0xff:02x}:{(k >> 8) & 0xff:02x}:{k & 0xff:02x}"
        out.add(FlowEntry.make(40, 100, {"metadata": (net, 0xFFFFFFFF), "eth_dst": mac},
                               [("output", 1 + i % 48)], COOKIE_MARK | (5 << 48) | (i + 1)))
    return out


class StaticFabric:
    """The OpenFlow app's Fabric: one switch, a fixed desired set (None = leave it alone)."""

    def __init__(self):
        self.flows = None

    def desired(self, dpid):
        return None if self.flows is None or dpid != DPID else (self.flows, set())

    def switch_up(self, dpid, ports):
        pass

    def port_changed(self, dpid, name, ofport):
        pass

    def switch_down(self, dpid):
        pass


class Bench:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="nwb-fp-ovs-")
        self.ovs = OvsInstance(self.dir, netns=NS)
        self.br_app, self.br_ofctl = "nwbA", "nwbB"
        self.port = free_port()
        self.fabric = StaticFabric()
        self.handle = None

    def start(self):
        common.controller_link(NS, VETH_ROOT, VETH_NS, CTRL_IP, NS_IP)
        self.ovs.start()
        self.handle = ofserver.start(self.fabric, CTRL_IP, self.port)
        return self

    def stop(self):
        try:
            if self.handle is not None:
                self.handle.stop()
            for b in (self.br_app, self.br_ofctl):
                self.ovs.vsctl("--if-exists", "del-br", b, check=False)
        finally:
            self.ovs.stop()
            subprocess.run(["ip", "netns", "del", NS], capture_output=True)
            subprocess.run(["ip", "link", "del", VETH_ROOT], capture_output=True)
            subprocess.run(["rm", "-rf", self.dir])

    def mgmt(self, br):
        return f"unix:{self.dir}/{br}.mgmt"

    def fresh_bridges(self):
        """Both bridges deleted and made again, empty; the app's bridge connected (and left alone)."""
        self.fabric.flows = None
        for b in (self.br_app, self.br_ofctl):
            self.ovs.vsctl("--if-exists", "del-br", b)
        common_args = ["datapath_type=netdev", "protocols=OpenFlow13", "fail_mode=secure",
                       "other_config:disable-in-band=true"]
        self.ovs.vsctl("add-br", self.br_ofctl, "--", "set", "bridge", self.br_ofctl, *common_args,
                       "other_config:datapath-id=00000000000000b2")
        self.ovs.vsctl("add-br", self.br_app, "--", "set", "bridge", self.br_app, *common_args,
                       f"other_config:datapath-id={DPID:016x}",
                       "--", "--id=@c", "create", "Controller", f'target="tcp:{CTRL_IP}:{self.port}"',
                       "connection_mode=out-of-band", "max_backoff=1000", "inactivity_probe=30000",
                       "--", "set", "bridge", self.br_app, "controller=@c")
        self.wait_connected()

    def wait_connected(self, timeout=30):
        deadline = time.monotonic() + timeout
        while DPID not in self.handle.app.datapaths:
            if time.monotonic() > deadline:
                raise RuntimeError("the bridge did not connect to the OpenFlow app")
            eventlet.sleep(0.02)
        while not self.handle.app.idle():           # its first (skipped) reconcile
            eventlet.sleep(0.02)

    def count(self, br) -> int:
        out = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-aggregate", self.mgmt(br)],
                             capture_output=True, text=True, env=self.ovs.env, check=True).stdout
        return int(out.split("flow_count=")[1].split()[0])

    def push_app(self, flows, profile=False):
        self.fabric.flows = flows
        pr = cProfile.Profile() if profile else None
        t = time.perf_counter()
        if pr:
            pr.enable()
        res = self.handle.app.reconcile(DPID)
        if pr:
            pr.disable()
        dt = time.perf_counter() - t
        if res.outcome != "committed" or res.added != len(flows):
            raise RuntimeError(f"reconcile: {res}")
        n = self.count(self.br_app)
        if n != len(flows):
            raise RuntimeError(f"app bridge holds {n} flows, not {len(flows)}")
        prof = ""
        if pr:
            s = io.StringIO()
            pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(15)
            prof = s.getvalue()
        return dt, prof

    def push_ofctl(self, text_file, n):
        t = time.perf_counter()
        p = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "--bundle", "add-flows", self.mgmt(self.br_ofctl),
                            text_file], capture_output=True, text=True, env=self.ovs.env)
        dt = time.perf_counter() - t
        if p.returncode != 0:
            raise RuntimeError(f"ovs-ofctl refused the flows: {p.stderr[:300]}")
        got = self.count(self.br_ofctl)
        if got != n:
            raise RuntimeError(f"ofctl bridge holds {got} flows, not {n}")
        return dt

    def restart(self, flows) -> dict:
        """Stop the app, start it again; the switch (holding `flows`) reconnects:
        time until its reconcile says noop with nothing added, deleted or modified."""
        self.handle.stop()
        t0 = time.perf_counter()
        self.handle = ofserver.start(self.fabric, CTRL_IP, self.port)
        self.fabric.flows = flows
        app = self.handle.app
        deadline = time.monotonic() + 180
        t_conn = None
        while True:
            if t_conn is None and DPID in app.datapaths:
                t_conn = time.perf_counter() - t0
            r = app.result(DPID)
            if r is not None:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("no reconcile after the restart")
            eventlet.sleep(0.01)
        total = time.perf_counter() - t0
        # the reconcile alone, once more on the unchanged switch
        t = time.perf_counter()
        again = app.reconcile(DPID)
        direct = time.perf_counter() - t
        return {"until_result_s": total, "connect_s": t_conn, "reconcile_s": total - (t_conn or 0),
                "direct_reconcile_s": direct, "outcome": r.outcome, "added": r.added, "deleted": r.deleted,
                "modified": r.modified, "unchanged": r.unchanged, "again_outcome": again.outcome,
                "rewritten": r.added + r.deleted + r.modified}


def run(sizes=(10000, 50000), repeat=3, profile=False) -> dict:
    b = Bench()
    out = {"sizes": []}
    tmp = tempfile.mkdtemp(prefix="nwb-fp-")
    try:
        b.start()
        for n in sizes:
            flows = make_flows(n)
            path = os.path.join(tmp, f"flows{n}.txt")
            with open(path, "w") as f:
                f.write("".join(e.to_ofctl() + "\n" for e in sorted(flows)))
            app_t, ofctl_t, prof = [], [], ""
            for i in range(repeat):                 # alternated: app, ofctl, app, ofctl ...
                b.fresh_bridges()
                dt, p = b.push_app(flows, profile and i == 0 and n == max(sizes))
                prof = prof or p
                app_t.append(dt)
                ofctl_t.append(b.push_ofctl(path, n))
                log.info("n=%d trial %d: app %.2fs (%.0f/s), ovs-ofctl %.2fs (%.0f/s)", n, i + 1, dt, n / dt,
                         ofctl_t[-1], n / ofctl_t[-1])
            r = {"flows": n, "app_s": app_t, "ofctl_s": ofctl_t, "app_median_s": common.median(app_t),
                 "ofctl_median_s": common.median(ofctl_t)}
            r["app_rate"] = n / r["app_median_s"]
            r["ofctl_rate"] = n / r["ofctl_median_s"]
            r["ratio"] = r["app_rate"] / r["ofctl_rate"]
            if prof:
                r["profile_app"] = prof
            if n == max(sizes):                     # the app's bridge holds n flows now
                r["restart"] = b.restart(flows)
                log.info("restart with %d flows: %s", n, r["restart"])
            out["sizes"].append(r)
    finally:
        b.stop()
        subprocess.run(["rm", "-rf", tmp])
    out["rows"] = rows(out)
    return out


def rows(out) -> list:
    r = []
    for s in out["sizes"]:
        r.append((f"flow push {s['flows']} flows: ofapp / ovs-ofctl --bundle",
                  f"{s['app_rate']:.0f}/s ({s['app_median_s']:.2f} s) vs {s['ofctl_rate']:.0f}/s "
                  f"({s['ofctl_median_s']:.2f} s) = {s['ratio']:.2f}", ">= 0.5", common.verdict(s["ratio"] >= 0.5)))
        if "restart" in s:
            x = s["restart"]
            r.append((f"restart, unchanged {s['flows']}-flow switch",
                      f"{x['outcome']}, {x['rewritten']} rewritten, {x['until_result_s']:.2f} s from start "
                      f"(connect {x['connect_s']:.2f} s + reconcile {x['reconcile_s']:.2f} s)",
                      "0 rewritten, < 2 s",
                      common.verdict(x["rewritten"] == 0 and x["outcome"] == "noop" and x["until_result_s"] < 2)))
    return r


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.flow_push")
    p.add_argument("--sizes", default="10000,50000")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="2,000 and 5,000 flows, once")
    p.add_argument("--profile", action="store_true", help="cProfile the app's first push of the largest size")
    a = p.parse_args(argv)
    common.setup_logging()
    logging.getLogger("controller").setLevel(logging.WARNING)
    sizes = (2000, 5000) if a.quick else tuple(int(x) for x in a.sizes.split(","))
    out = run(sizes, 1 if a.quick else a.repeat, a.profile)
    common.save("flow_push", out)
    print(common.rows_table(out["rows"]))
    for s in out["sizes"]:
        if "profile_app" in s:
            print(f"--- ofapp push profile ({s['flows']} flows)\n{s['profile_app']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

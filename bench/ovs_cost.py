"""Where an attach's time goes inside ovs-vswitchd (issue 12, the attach-at-10k gap).

One private OVS (namespace `nwboc`, netdev bridge br-int, OpenFlow 1.3) is given host h0's
compiled table of `scale_snapshot(N, 40, 0, n_hosts=3)` (what bench.attach's populated tenant
looks like: 10 networks, every endpoint's flows on every host, one flood group per network
and direction whose buckets are the local ports). Then, for R new endpoints of h0 in turn, the
steps of an attach are timed one by one, each with ovs-ofctl / ovs-vsctl (so each figure
includes one process start, `noop` below):

  port     ovs-vsctl add-port (internal port, ofport_request = the endpoint's port): waits
           until ovs-vswitchd has reconfigured the bridge
  flows    one bundle of the endpoint's own flows (9 adds)
  groups   one bundle modifying the network's 2 flood groups (their compiled buckets)
  both     one bundle of flows and groups, as netmaster sends them (the flows deleted first)

  veth     as netplugin plugs: a veth made and set up, then add-port; `after_veth` the
           bundle of flows and groups sent right after it
  link_event / after_link   a tap link added in the namespace, then an empty bundle

and, first, one getifaddrs() in the switch's namespace (median of 9): what ovs-vswitchd 3.1
runs after each burst of link changes (its route table resync refreshes its address list),
a dump of every link there (with --taps, bench.attach's one tap link per populated endpoint).

    python -m bench.ovs_cost [--endpoints 10002,300] [--taps 3334] [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time

from flows.compiler import compile_switch
from tests.unit.scale import scale_snapshot
from topologies.ovs import OvsInstance

NS = "nwboc"


# What ovs-vswitchd 3.1 does after every link change in its namespace (its route table
# resync refreshes its address list): one getifaddrs(), a dump of every link.
GETIFADDRS = """
import ctypes, time
libc, p, ts = ctypes.CDLL("libc.so.6"), ctypes.c_void_p(), []
for _ in range(9):
    t = time.perf_counter(); libc.getifaddrs(ctypes.byref(p)); ts.append(time.perf_counter() - t)
    libc.freeifaddrs(p)
print(sorted(ts)[4] * 1000)
"""


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def write(d: str, name: str, lines) -> str:
    p = os.path.join(d, name)
    with open(p, "w") as f:
        f.write("\n".join(lines) + "\n")
    return p


def measure(n: int, repeat: int, taps: int = 0) -> dict:
    snap_a = scale_snapshot(n, 40, 0, n_hosts=3)
    flows_a, groups_a = compile_switch(snap_a, "h0")
    # n + 3*repeat endpoints: `repeat` more on h0 (j % 3 == 0 when n % 3 == 0)
    n0 = n + (-n) % 3
    snap_b = scale_snapshot(n0 + 3 * repeat, 40, 0, n_hosts=3)
    flows_b, groups_b = compile_switch(snap_b, "h0")
    new_eps = [e for e in snap_b.endpoints if e.host == "h0" and int(e.endpoint_id[2:]) >= n0][:repeat]
    ports_b = snap_b.ofports["h0"]
    by_cookie = {}
    for f in flows_b - flows_a:
        by_cookie.setdefault(f.cookie, []).append(f)
    d = tempfile.mkdtemp(prefix="nwb-oc-")
    ovs = OvsInstance(netns=NS, create_netns=True)
    res = {"flows_on_switch": len(flows_a), "groups": len(groups_a)}
    try:
        ovs.start()
        ovs.vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev",
                  "protocols=OpenFlow13", "fail_mode=secure", "other_config:disable-in-band=true")
        ovs.vsctl("add-port", "br-int", "vxlan0", "--", "set", "interface", "vxlan0", "type=vxlan",
                  "options:remote_ip=flow", "options:key=flow", "ofport_request=100")
        if taps:      # bench.attach's populated hosts hold one (down) tap link per endpoint
            ovs.ns("ip", "-batch", "-", input="".join(f"tuntap add dev nwbq{j} mode tap\n"
                                                      for j in range(taps)))
        res["getifaddrs_ms"] = float(ovs.ns("python3", "-c", GETIFADDRS).stdout)
        gfile = write(d, "groups", [g.to_ofctl() for g in sorted(groups_a)])
        ffile = write(d, "flows", [f.to_ofctl() for f in flows_a])
        t = time.perf_counter()
        ovs.ofctl("add-groups", gfile, opts=("--bundle",))
        ovs.ofctl("add-flows", ffile, opts=("--bundle",))
        res["fill_s"] = time.perf_counter() - t
        held = int(ovs.ofctl("dump-aggregate").split("flow_count=")[1].split()[0])
        if held != len(flows_a):
            raise RuntimeError(f"the switch holds {held} flows, not {len(flows_a)}")
        empty = write(d, "empty", [])
        steps = {k: [] for k in ("noop", "port", "flows", "groups", "both", "veth", "after_veth",
                                 "link_event", "after_link")}

        def step(kind, fn):
            steps[kind].append(timed(fn))

        for i, ep in enumerate(new_eps):
            ofport = ports_b[ep.port_name]
            mine = next(fl for fl in by_cookie.values()
                        if any(a == ("output", ofport) for f in fl for a in f.actions))
            gb = {g.group_id: g for g in groups_b}
            # the flood groups that hold this endpoint's port
            mods = [g for g in gb.values() if any(("output", ofport) in b for b in g.buckets)]
            fl_file = write(d, f"f{i}", [f.to_ofctl() for f in mine])
            gr_file = write(d, f"g{i}", ["group modify " + g.to_ofctl() for g in mods])
            both_file = write(d, f"b{i}", ["flow add " + f.to_ofctl() for f in mine]
                              + ["group modify " + g.to_ofctl() for g in mods])
            step("noop", lambda: ovs.ofctl("add-flows", empty, opts=("--bundle",)))
            name = f"nwoc{i}"
            step("port", lambda: ovs.vsctl("add-port", "br-int", name, "--", "set", "interface", name,
                                           "type=internal", f"ofport_request={ofport}"))
            step("flows", lambda: ovs.ofctl("add-flows", fl_file, opts=("--bundle",)))
            step("groups", lambda: ovs.ofctl("bundle", gr_file))
            cookie = mine[0].cookie
            ovs.ofctl("del-flows", f"cookie={cookie:#x}/-1")
            step("both", lambda: ovs.ofctl("bundle", both_file))
            ovs.ofctl("del-flows", f"cookie={cookie:#x}/-1")
            # as netplugin plugs: a veth made and set up, then the port; the bundle right after
            va, vb = f"nwov{i}a", f"nwov{i}b"
            step("veth", lambda: (ovs.ns("ip", "link", "add", va, "type", "veth", "peer", "name", vb),
                                  ovs.ns("ip", "link", "set", va, "up"), ovs.ns("ip", "link", "set", vb, "up"),
                                  ovs.vsctl("add-port", "br-int", va)))
            step("after_veth", lambda: ovs.ofctl("bundle", both_file))
            # any link event in the namespace, then a bundle right after
            step("link_event", lambda: ovs.ns("ip", "tuntap", "add", "dev", f"nwod{i}", "mode", "tap"))
            step("after_link", lambda: ovs.ofctl("add-flows", empty, opts=("--bundle",)))
            res.setdefault("group_buckets", [len(g.buckets) for g in mods])
        res["ms"] = {k: statistics.median(v) for k, v in steps.items()}
        res["ms_max"] = {k: max(v) for k, v in steps.items()}
    finally:
        ovs.stop()
        subprocess.run(["rm", "-rf", d])
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoints", default="10002,300")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--taps", type=int, default=0, help="tap links in the switch's namespace")
    a = ap.parse_args()
    for n in (int(x) for x in a.endpoints.split(",")):
        r = measure(n, a.repeat, a.taps)
        print(f"endpoints={n} taps={a.taps} flows_on_switch={r['flows_on_switch']} groups={r['groups']} "
              f"fill={r['fill_s']:.1f}s getifaddrs={r['getifaddrs_ms']:.1f}ms buckets_of_modified_groups={r.get('group_buckets')}")
        for k, v in r["ms"].items():
            print(f"  {k:7s} median {v:7.1f} ms  max {r['ms_max'][k]:7.1f} ms")


if __name__ == "__main__":
    main()

"""What a CNI ADD's link plumbing costs, and what ovs-vswitchd sees of it (issue 12, agent side).

One private OVS (namespace `nwbpl`, netdev bridge br-int) whose namespace holds T tap links
(bench.attach's populated hosts hold 3,334: each burst of link changes there costs
ovs-vswitchd one getifaddrs(), a dump of every link), and a container namespace `nwbplc`.
R times, alternating, each variant plumbs one veth as CNI ADD does on a userspace datapath
(IPv4 address, default route, checksum offload off), then `ovs-vsctl add-port` and an empty
OpenFlow bundle right after it (how long the switch keeps netmaster waiting):

  old   agent/cni.py before this branch: `ip -j link show` x3 (the name checks), `ip link add`
        (peer in the container), `nsenter ip -batch` (rename, MAC, MTU, address, up, route),
        `nsenter ethtool -K tx off`, `ip link set up` (host end), `ip -j link show` x2 (MACs)
  new   agent/netlink.plumb_veth: no process; rtnetlink, one ioctl, sysctl files
  portfirst the port row written first (`ovs-vsctl --no-wait add-port`, for a link that does
        not exist yet), then new's link work, then `wait-until` ovs-vswitchd gave it an ofport
        (it retries opening a missing device when links change): one pass of OVS for both?
  settled   new, then 0.5 s before add-port: what the port add and the bundle cost once
        ovs-vswitchd is done with the link changes (the times exclude the pause)

Per attach it reports: processes spawned, the plumbing's ms, add-port ms, the bundle after
it, the link messages `ip monitor link` shows in the switch's namespace and how many bursts
they make (messages more than 2 ms apart start a new one), and the deltas of ovs-vswitchd's
coverage counters (nln_changed: netlink notifications handled, each link change making it
re-read its route table and, once, its address list with a getifaddrs; bridge_reconfigure;
every other counter that moved), read 1.5 s after the attach (late events, e.g. an IPv6
link-local becoming valid after DAD, count too).

    python -m bench.plumb [--taps 3334] [--repeat 10]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time

from agent import netlink
from bench import common
from topologies.ovs import OvsInstance, run

NS, CTR = "nwbpl", "nwbplc"
COUNTERS = ("nln_changed", "bridge_reconfigure", "rev_reconfigure")
MTU, GW = 1450, "10.78.0.1"


def coverage(ovs) -> dict:
    """Every counter ovs-vswitchd shows (it hides those still at 0)."""
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(r"^(\w+)\s.*total: (\d+)", ovs.appctl("coverage/show"), re.M)}


def old_plumb(netns, ifname, port, ip, calls):
    """The old ADD's link steps, process by process (run in the host's namespace)."""
    def sh(cmd, ns=None, **kw):
        if ns:
            cmd = ["nsenter", "--net=" + ns] + cmd
        t = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30, **kw)
        calls.append((re.sub(r"\bnw\w+|\bnt\w+|\beth\d+", "X", " ".join(c for c in cmd[:6] if not c.startswith("--net"))),
                      1000 * (time.perf_counter() - t)))
        return res
    tmp = "nt" + port[2:13]
    sh(["ip", "-j", "-d", "link", "show", "dev", ifname], netns)
    for stale in (port, tmp):
        sh(["ip", "-j", "-d", "link", "show", "dev", stale])
    sh(["ip", "link", "add", port, "mtu", str(MTU), "type", "veth", "peer", "name", tmp,
        "mtu", str(MTU), "netns", netns])
    batch = ["link set dev %s name %s" % (tmp, ifname), "link set dev %s mtu %d" % (ifname, MTU),
             "addr add %s/22 dev %s" % (ip, ifname), "link set dev %s up" % ifname,
             "route replace default via %s dev %s" % (GW, ifname)]
    sh(["ip", "-batch", "-"], netns, input="\n".join(batch) + "\n")
    sh(["ethtool", "-K", ifname, "tx", "off"], netns)
    sh(["ip", "link", "set", "dev", port, "up"])
    sh(["ip", "-j", "-d", "link", "show", "dev", ifname], netns)
    sh(["ip", "-j", "-d", "link", "show", "dev", port])


def new_plumb(netns, ifname, port, ip, calls):
    netlink.in_netns(netns, netlink.index_of, ifname)
    for stale in (port, "nt" + port[2:13]):
        netlink.delete_link(stale)
    netlink.plumb_veth(netns, ifname, port, MTU, "", [(ip + "/22", False)], [GW],
                       tx_csum_off=True)


def bursts(stamps, gap=0.002) -> int:
    n, last = 0, None
    for t in stamps:
        if last is None or t - last > gap:
            n += 1
        last = t
    return n


def parse_monitor(text, port):
    """(timestamps of the link messages about ``port``, all link messages' timestamps)."""
    mine, every, stamp = [], [], None
    for line in text.splitlines():
        m = re.match(r"Timestamp: .* (\d+):(\d+):(\d+) \d+ (\d+) usec", line)
        if m:
            h, mi, s, us = map(int, m.groups())
            stamp = h * 3600 + mi * 60 + s + us / 1e6
            continue
        if stamp is not None and re.match(r"^(Deleted )?\d+: ", line):
            every.append(stamp)
            if re.match(r"^\d+: %s[@:]" % port, line):
                mine.append(stamp)
    return mine, every


def measure(taps: int, repeat: int) -> dict:
    d = tempfile.mkdtemp(prefix="nwb-pl-")
    ovs = OvsInstance(netns=NS, create_netns=True)
    ctr_path = "/var/run/netns/" + CTR
    host_path = "/var/run/netns/" + NS
    variants = ("old", "new", "portfirst", "settled")
    rows = {v: [] for v in variants}
    failed = []
    try:
        ovs.start()
        ovs.vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev",
                  "protocols=OpenFlow13", "fail_mode=secure", "other_config:disable-in-band=true")
        if taps:
            ovs.ns("ip", "-batch", "-", input="".join("tuntap add dev nwbt%d mode tap\n" % j
                                                      for j in range(taps)))
        run("ip", "netns", "add", CTR)
        empty = os.path.join(d, "empty")
        open(empty, "w").close()
        for i, variant in enumerate(variants * repeat):
            if variant == "portfirst" and failed:
                continue
            port, ifname, ip = "nwpl%04d" % i, "eth%d" % i, "10.78.0.%d" % (i + 2)
            before = coverage(ovs)
            mon = subprocess.Popen(["ip", "netns", "exec", NS, "ip", "-timestamp", "monitor", "link"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                time.sleep(0.2)             # the monitor subscribed
                calls = []
                t0 = time.perf_counter()
                if variant == "portfirst":
                    ovs.vsctl("--no-wait", "add-port", "br-int", port)
                netlink.in_netns(host_path, old_plumb if variant == "old" else new_plumb,
                                 ctr_path, ifname, port, ip, calls)
                t1 = time.perf_counter()
                if variant == "settled":
                    time.sleep(0.5)
                    t0 += time.perf_counter() - t1
                    t1 = time.perf_counter()
                if variant == "portfirst":
                    ovs.vsctl("--timeout=10", "wait-until", "Interface", port, "ofport>0",
                              check=False)
                    if not int(ovs.vsctl("get", "Interface", port, "ofport")) > 0:
                        failed.append(port)      # ovs-vswitchd did not retry: not comparable
                else:
                    ovs.vsctl("add-port", "br-int", port)
                t2 = time.perf_counter()
                ovs.ofctl("add-flows", empty, opts=("--bundle",))
                t3 = time.perf_counter()
                time.sleep(1.5)             # late events (IPv6 DAD of a link-local: ~1 s)
            finally:
                mon.terminate()
                text = mon.communicate()[0]
            after = coverage(ovs)
            mine, every = parse_monitor(text, port)
            if not (variant == "portfirst" and failed):
                rows[variant].append({
                    "processes": len(calls), "calls": calls,
                    "plumb_ms": 1000 * (t1 - t0), "add_port_ms": 1000 * (t2 - t1),
                    "bundle_after_ms": 1000 * (t3 - t2), "total_ms": 1000 * (t3 - t0),
                    "link_msgs": len(every), "port_msgs": len(mine), "bursts": bursts(every),
                    "coverage": {k: v - before.get(k, 0) for k, v in after.items()
                                 if v != before.get(k, 0)},
                    **{k: after.get(k, 0) - before.get(k, 0) for k in COUNTERS}})
            ovs.vsctl("del-port", "br-int", port)
            ovs.ns("ip", "link", "del", "dev", port)
            time.sleep(1.2)     # ovs-vswitchd sums its threads' counters about once a second
    finally:
        ovs.stop()
        run("ip", "netns", "del", CTR, check=False)
        subprocess.run(["rm", "-rf", d])
    rows = {v: rs for v, rs in rows.items() if rs}
    out = {"taps": taps, "repeat": repeat, "samples": rows, "portfirst_no_ofport": failed}
    keys = ("processes", "plumb_ms", "add_port_ms", "bundle_after_ms", "total_ms", "link_msgs",
            "port_msgs", "bursts") + COUNTERS
    out["median"] = {v: {k: statistics.median(r[k] for r in rs) for k in keys} for v, rs in rows.items()}
    out["max"] = {v: {k: max(r[k] for r in rs) for k in keys} for v, rs in rows.items()}
    calls = {}
    for r in rows["old"]:
        for name, ms in r["calls"]:
            calls.setdefault(name, []).append(ms)
    out["old_calls_median_ms"] = {k: statistics.median(v) for k, v in calls.items()}
    for v, rs in rows.items():      # the median delta of every counter that moved (first skipped: the taps)
        names = {k for r in rs[1:] for k in r["coverage"]}
        out.setdefault("coverage_median", {})[v] = {
            k: statistics.median(r["coverage"].get(k, 0) for r in rs[1:]) for k in sorted(names)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.plumb")
    p.add_argument("--taps", type=int, default=3334)
    p.add_argument("--repeat", type=int, default=10)
    a = p.parse_args()
    r = measure(a.taps, a.repeat)
    print("taps=%d repeat=%d (medians; max in brackets)" % (r["taps"], r["repeat"]))
    vs = list(r["median"])
    print("%-18s" % "" + "".join("%15s" % v for v in vs))
    for k in r["median"]["old"]:
        print("%-18s" % k + "".join("%15s" % ("%.1f [%.1f]" % (r["median"][v][k], r["max"][v][k]))
                                    for v in vs))
    print("old ADD's processes, median ms each:")
    for k, v in r["old_calls_median_ms"].items():
        print("  %-42s %6.1f" % (k, v))
    print("ovs-vswitchd coverage counters that moved, median delta per attach (%s):" % " / ".join(vs))
    for k in sorted(set().union(*(r["coverage_median"][v] for v in vs))):
        print("  %-28s" % k + "".join("%9s" % r["coverage_median"][v].get(k, 0) for v in vs))
    common.save("plumb", {k: v for k, v in r.items() if k != "samples"})

if __name__ == "__main__":
    main()

"""Per-sample timelines for bench.attach (--trace): what happened between an attach's start
and its first remote reply, to find where a slow sample's time went.

One `tcpdump -i any` per host namespace (ICMP, ARP, and VXLAN on the underlay, whose inner
packets tcpdump decodes on port 4789) sees the new endpoint's host-side veth from the moment it exists, since an `any`
capture is not bound to an interface.  netmaster's log gives port_status / port_up / reconcile
lines (wall clock, ms).  A sample's timeline is every such line between its start and its reply,
in ms from its start."""
from __future__ import annotations

import datetime
import os
import re
import signal
import subprocess

ASCTIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ \S+ (.*)$")
NM_EVENTS = ("event=port_status", "event=port_up", "event=reconcile ", "event=delta", "event=endpoint")


class Capture:
    def __init__(self, cluster, hosts, folder):
        self.c, self.hosts, self.folder = cluster, hosts, folder
        self.procs = {}

    def start(self) -> None:
        os.makedirs(self.folder, exist_ok=True)
        for h in self.hosts:
            f = open(os.path.join(self.folder, f"{h}.pcap.txt"), "w")
            self.procs[h] = subprocess.Popen(
                ["ip", "netns", "exec", self.c.host_ns(h), "tcpdump", "-i", "any", "-nn", "-tt", "-l",
                 "-U", "icmp or arp or udp port 4789"], stdout=f, stderr=subprocess.DEVNULL, start_new_session=True)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(10)

    def packets(self):
        """(wall time, host, line) of every captured packet."""
        out = []
        for h in self.hosts:
            try:
                lines = open(os.path.join(self.folder, f"{h}.pcap.txt")).read().splitlines()
            except OSError:
                continue
            for ln in lines:
                t, _, rest = ln.partition(" ")
                try:
                    out.append((float(t), h, rest))
                except ValueError:                # a VXLAN packet's inner one, on its own line
                    if out and out[-1][1] == h and "VXLAN" in out[-1][2]:
                        out[-1] = (out[-1][0], h, out[-1][2] + " | " + ln)
        return out


def netmaster_lines(path):
    out = []
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError:
        return out
    for ln in lines:
        m = ASCTIME.match(ln)
        if m and any(e in m.group(2) for e in NM_EVENTS):
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append((t, "netmaster", m.group(2)))
    return out


def timeline(sample, packets, nm_lines, margin=0.5):
    """sample: dict(ip, t0 (wall), cni (wall), reply (wall)) -> lines 'ms  who  what'."""
    lo, hi = sample["t0"], (sample["reply"] if sample["reply"] else sample["cni"] + 20) + 0.01
    ip = re.escape(sample["ip"])
    mine = [x for x in packets if lo - 0.01 <= x[0] <= hi and re.search(ip + r"\b", x[2])]
    nm = [x for x in nm_lines if lo - 0.01 <= x[0] <= hi]
    marks = [(sample["cni"], "bench", "CNI ADD returned")]
    if sample["reply"]:
        marks.append((sample["reply"], "bench", "prober got its first reply"))
    # keep the echo requests short: the first and last of each run of requests only
    rows, last_req = [], None
    for t, who, what in sorted(mine + nm + marks):
        if "ICMP echo request" in what and last_req is not None and last_req[1] == (who, what.split(",")[0]):
            last_req = (t, last_req[1], last_req[2] + 1)
            continue
        if last_req is not None and last_req[2] > 1:
            rows.append(f"{1000 * (last_req[0] - lo):8.1f}  {last_req[1][0]:9s}  ... {last_req[2]} echo requests")
        last_req = ((t, (who, what.split(",")[0]), 1) if "ICMP echo request" in what else None)
        rows.append(f"{1000 * (t - lo):8.1f}  {who:9s}  {what[:320]}")
    return rows

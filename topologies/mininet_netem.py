"""A user-space link emulator (delay, loss, rate) for kernels without ``sch_netem``.

Mininet's TCLink shapes links with tc: ``htb``/``tbf`` for bandwidth and ``netem`` for delay and
loss.  Kernels built without CONFIG_NET_SCH_NETEM (this project's machines: "Specified qdisc
kind is unknown") cannot delay or drop.  This process sits between two interfaces of one
namespace and forwards every frame both ways through AF_PACKET sockets, holding each frame for
``delay`` and dropping it with probability ``loss`` (independently per direction, as netem does
on each end of a TCLink), optionally pacing to ``rate`` Mbit/s.

    python -m topologies.mininet_netem A B --params FILE

FILE holds JSON ``{"delay_ms": 5, "loss_pct": 1, "rate_mbit": 0, "limit": 10000}``; the process
re-reads it on SIGHUP, so a running link can be reshaped, and writes its counters (frames received,
lost, over the limit, sent; by interface) to FILE.stats on SIGUSR1.  One thread, one select loop: frames
are queued in arrival order with their release time (constant delay keeps the order).
Limits: VLAN tags the kernel strips into packet metadata are not re-inserted (the overlay here
is VXLAN on an untagged underlay); it runs at Python speed (tens of thousands of frames/s).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import select
import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23


def open_sock(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)     # not our own transmissions
    except OSError:
        pass
    for force, plain in ((33, socket.SO_RCVBUF), (32, socket.SO_SNDBUF)):   # SO_*BUFFORCE: past rmem_max
        try:
            s.setsockopt(socket.SOL_SOCKET, force, 16 << 20)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, plain, 16 << 20)
    s.bind((ifname, 0))
    s.setblocking(False)
    return s


class Shaper:
    def __init__(self, path: str | None):
        self.path = path
        self.delay = 0.0
        self.loss = 0.0
        self.rate = 0.0
        self.limit = 10000
        self.load()

    def load(self) -> None:
        p = {}
        if self.path:
            try:
                with open(self.path) as f:
                    p = json.load(f)
            except (OSError, ValueError):
                p = {}
        self.delay = float(p.get("delay_ms") or 0) / 1000.0
        self.loss = float(p.get("loss_pct") or 0) / 100.0
        self.rate = float(p.get("rate_mbit") or 0) * 1e6
        self.limit = int(p.get("limit") or 10000)


def run(a: str, b: str, params: str | None) -> None:
    shaper = Shaper(params)
    signal.signal(signal.SIGHUP, lambda *_: shaper.load())        # takes effect for the next frame
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    stats = {f"{x}_{n}": 0 for x in ("rx", "lost", "overflow", "tx") for n in (a, b)}

    def dump(*_):
        if params:
            with open(params + ".stats", "w") as f:
                json.dump(stats, f)
    signal.signal(signal.SIGUSR1, dump)                             # counters, by receiving interface
    socks = {a: open_sock(a), b: open_sock(b)}
    peer = {a: b, b: a}
    queues = {a: collections.deque(), b: collections.deque()}      # frames to send OUT of this intf
    free_at = {a: 0.0, b: 0.0}                                       # pacing: when the "wire" is free
    by_fd = {s.fileno(): name for name, s in socks.items()}
    rnd = random.Random()
    while True:
        now = time.monotonic()
        # send what is due
        for out, q in queues.items():
            s = socks[out]
            while q and q[0][0] <= now:
                try:
                    s.send(q[0][1])
                    stats["tx_" + out] += 1
                except BlockingIOError:
                    break
                except OSError:
                    pass
                q.popleft()
        nxt = min((q[0][0] for q in queues.values() if q), default=None)
        timeout = None if nxt is None else max(0.0, nxt - time.monotonic())
        try:
            ready, _, _ = select.select(list(socks.values()), [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for s in ready:
            src = by_fd[s.fileno()]
            out = peer[src]
            q = queues[out]
            for _ in range(256):
                try:
                    data, addr = s.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                stats["rx_" + src] += 1
                if shaper.loss and rnd.random() < shaper.loss:
                    stats["lost_" + src] += 1
                    continue
                if len(q) >= shaper.limit:
                    stats["overflow_" + src] += 1
                    continue
                t = now + shaper.delay
                if shaper.rate:
                    start = max(now, free_at[out])
                    free_at[out] = start + len(data) * 8 / shaper.rate
                    t = free_at[out] + shaper.delay
                q.append((t, data))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m topologies.mininet_netem")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--params", default=None, help="JSON file with delay_ms, loss_pct, rate_mbit, limit")
    args = p.parse_args(argv)
    try:
        os.nice(-5)
    except OSError:
        pass
    run(args.a, args.b, args.params)
    return 0


if __name__ == "__main__":
    sys.exit(main())

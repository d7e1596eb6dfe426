"""Run inside an endpoint's namespace (bench/ovn.py): TCP reachability probes, one per line
read on stdin, each answered with one line of CLOCK_MONOTONIC time or "timeout".

    open IP PORT     a new connection attempt (fresh source port) every INTERVAL s until one
                     is established; prints when it was
    closed IP PORT   one attempt after another, 5 ms apart, each given HOLD s; prints when the first
                     attempt that got no answer started, once CONFIRM in a row got none

A new source port per attempt, so a SYN dropped before the rule changed (whose retransmission
waits a second) never hides the first one sent after it."""
import os
import select
import socket
import sys
import time

INTERVAL = 0.005
HOLD = 0.3
CONFIRM = 3
TIMEOUT = float(os.environ.get("PROBE_TIMEOUT", "30"))


def first_open(ip: str, port: int):
    deadline = time.monotonic() + TIMEOUT
    pending = {}                      # socket -> time sent
    next_try = 0.0
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                try:
                    s.connect((ip, port))
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
                    s = None
                if s is not None:
                    pending[s] = now
                next_try = now + INTERVAL
                for old in [k for k, t in pending.items() if now - t > 2.0]:     # keep fds bounded
                    old.close()
                    del pending[old]
            _, w, _ = select.select([], list(pending), [], max(0.0, next_try - time.monotonic()))
            for s in w:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    return time.monotonic()
                s.close()
                del pending[s]
        return None
    finally:
        for s in pending:
            s.close()


def first_closed(ip: str, port: int):
    """The start of the first of CONFIRM failed attempts in a row: one attempt alone can miss
    its HOLD while the switch is busy (an upcall behind a big bundle), not refused."""
    deadline = time.monotonic() + TIMEOUT
    first, fails = None, 0
    while time.monotonic() < deadline:
        t = time.monotonic()
        try:
            with socket.create_connection((ip, port), timeout=HOLD):
                pass
            first, fails = None, 0
        except OSError:
            first, fails = (first if fails else t), fails + 1
            if fails >= CONFIRM:
                return first
        time.sleep(0.005)
    return None


def main():
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if len(words) != 3:
            continue
        fn = first_open if words[0] == "open" else first_closed
        got = fn(words[1], int(words[2]))
        print(f"{got:.6f}" if got is not None else "timeout", flush=True)


if __name__ == "__main__":
    main()

"""What a test run left behind: network namespaces and root-namespace links that
were not there when it began, and processes it started (they carry TAG in their
environment, inherited from the pytest process) still running at its end.
tests/conftest.py checks it once, at the end of the session.

Namespaces and links carry no owner: they are counted only when no other run held
the machine's test lock (LOCK, `flock -o LOCK pytest ...`) at the start or the end,
so that a unit-test run beside someone's locked OVS run blames nobody."""
from __future__ import annotations

import os
import subprocess

from topologies.common import WaitTimeout, wait_until

TAG = "NETWEAVE_TEST_SESSION"
LOCK = "/tmp/nw-test.lock"
# the machine's own Open vSwitch (scripts/ovs.sh): a service that make test starts first and the
# Mininet topology starts when it is not running, for its root-namespace switches; not the suite's
MACHINE_OVS = "--pidfile=/var/run/openvswitch/"


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def others_hold_lock() -> bool:
    """Whether a process that is not this run (or its flock) holds LOCK now."""
    try:
        inode = os.stat(LOCK).st_ino
    except OSError:
        return False
    holders = set()
    for line in open("/proc/locks"):
        f = line.split()
        if len(f) >= 6 and f[1] == "FLOCK" and f[5].endswith(f":{inode}"):   # waiters are "-> FLOCK"
            holders.add(int(f[4]))
    return bool(holders - _ancestors())


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def _tagged_processes() -> list[str]:
    mark = f"{TAG}={os.getpid()}\0".encode()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if mark not in f.read() + b"\0":
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:                  # gone meanwhile
            continue
        if cmd and MACHINE_OVS not in cmd:   # a zombie has none: it is only waiting to be reaped
            found.append(f"process {pid}: {cmd[:200]}")
    return found


def snapshot() -> dict:
    return {"netns": _netns(), "links": _links(), "shared": others_hold_lock()}


def _now(before: dict, shared: bool) -> list[str]:
    left = [] if shared else (
        [f"network namespace {n}" for n in sorted(_netns() - before["netns"])]
        + [f"link {n} (root namespace)" for n in sorted(_links() - before["links"])])
    return left + _tagged_processes()


def find(before: dict, grace: float = 5.0) -> list[str]:
    """What is still there `grace` seconds on (a process stopped a moment ago may
    still be on its way out)."""
    left: list[str] = []
    shared = before["shared"] or others_hold_lock()

    def clean() -> bool:
        left[:] = _now(before, shared)
        return not left
    try:
        wait_until(clean, grace, interval=0.2, what="the suite's leftovers to go")
    except WaitTimeout:
        pass
    return left

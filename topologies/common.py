"""The two small helpers every harness here needs, in one place: the tests, the
simulated cluster, the Mininet topologies and the benchmarks all pick ports with
`free_port` and poll with `wait_until`."""
from __future__ import annotations

import random
import socket
import time


def free_port(host: str = "0.0.0.0") -> int:
    """A TCP port nothing listens on, picked below the kernel's ephemeral range
    (32768-60999): a port the kernel hands out there may be taken by some outgoing
    connection before the server binds it (seen: netmaster's listen_failed, Address
    already in use, in a full test run)."""
    for _ in range(500):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


class WaitTimeout(AssertionError, TimeoutError):
    """A condition that did not come true in time: an assertion failure to pytest,
    a TimeoutError to the tools that catch one."""


def wait_until(pred, timeout: float = 20.0, interval: float = 0.05, what: str = "condition",
               detail=None):
    """Poll pred() until it returns something true and return that. An exception
    from pred() counts as not yet (a server still starting refuses connections);
    at the deadline raise WaitTimeout naming `what`, the last value or exception,
    and detail() when given (a log tail, say)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = pred()
            if last:
                return last
        except Exception as exc:       # noqa: BLE001 - keep polling until the deadline
            last = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    msg = f"timed out after {timeout:g} s waiting for {what} (last: {last!r})"
    if detail is not None:
        try:
            msg += "\n" + str(detail())
        except Exception as exc:       # noqa: BLE001 - the timeout is the news, not this
            msg += f"\n(no detail: {exc!r})"
    raise WaitTimeout(msg)

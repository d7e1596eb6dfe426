"""How many wrong passwords a login may try: a password login without a limit
invites guessing. Failed logins are counted per source address and per user name
over a sliding window; once either count reaches its limit, further logins from
that address or for that user are refused with 429 and Retry-After (before the
password is checked, so a limited client costs no scrypt) until the oldest
failure leaves the window. A successful login forgets the user's failures.

In memory, per netmaster process: several netmasters on one etcd each keep
their own counts (an attacker spreading over them gets each one's limit).
The table is bounded: at MAX_KEYS entries, the stalest are dropped.
"""
from __future__ import annotations

import math
import time
from collections import deque

WINDOW = 300.0            # seconds a failure counts
PER_ADDRESS = 20          # failures per address per window (a shared NAT's users, typos)
PER_USER = 5              # failures per user name per window: 60 guesses an hour at most
MAX_KEYS = 10000


class LoginLimiter:
    def __init__(self, clock=time.time, window: float = WINDOW, per_address: int = PER_ADDRESS,
                 per_user: int = PER_USER):
        self.clock, self.window = clock, window
        self.limits = {"address": per_address, "user": per_user}
        self._fails: dict[tuple, deque] = {}

    def _recent(self, key: tuple, now: float) -> deque:
        q = self._fails.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._fails[key]
        return q

    def check(self, address: str, user: str) -> tuple[str, float] | None:
        """None when a login may be tried; else (what is limited, seconds to wait)."""
        now = self.clock()
        for kind, value in (("user", user), ("address", address)):
            q = self._recent((kind, value), now)
            if len(q) >= self.limits[kind]:
                return f"{kind} {value}", max(1.0, q[0] + self.window - now)
        return None

    def failed(self, address: str, user: str) -> None:
        now = self.clock()
        for key in (("address", address), ("user", user)):
            self._fails.setdefault(key, deque()).append(now)
        if len(self._fails) > MAX_KEYS:
            self._prune(now)

    def succeeded(self, user: str) -> None:
        self._fails.pop(("user", user), None)

    def _prune(self, now: float) -> None:
        for key in list(self._fails):
            self._recent(key, now)
        if len(self._fails) > MAX_KEYS:
            stalest = sorted(self._fails, key=lambda k: self._fails[k][-1])
            for key in stalest[:len(self._fails) - MAX_KEYS]:
                del self._fails[key]


def retry_after(seconds: float) -> str:
    return str(int(math.ceil(seconds)))

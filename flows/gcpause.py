"""Pausing Python's cyclic garbage collector around bulk work.

Compiling, encoding and decoding flows allocate ~10^5-10^6 acyclic tuples;
the cyclic GC rescanning the growing heap cost 30-50 % of each of them and
found nothing to collect.  Counted, so that pauses of several green threads
may overlap and the collector comes back when the last one ends."""
from __future__ import annotations

import contextlib
import gc

_holders = 0
_was_enabled = True


def hold() -> None:
    """Pause the collector until the matching release() (for a pause that spans
    green threads, e.g. netmaster's whole start; else use paused())."""
    global _holders, _was_enabled
    if _holders == 0:
        _was_enabled = gc.isenabled()
        gc.disable()
    _holders += 1


def release() -> None:
    global _holders
    _holders -= 1
    if _holders == 0 and _was_enabled:
        gc.enable()


@contextlib.contextmanager
def paused():
    hold()
    try:
        yield
    finally:
        release()

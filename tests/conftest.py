import os
import sys

import pytest
# hypothesis's pytest plugin imports this at the end of the session, and it pulls in
# trio, which fails to import once a test module has monkey-patched sockets (eventlet)
import hypothesis.internal.observability  # noqa: F401

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.procs import Etcd, Netmaster  # noqa: E402


@pytest.fixture
def netmaster():
    nm = Netmaster(extra=["--no-openflow"])
    try:
        yield nm.start()
    finally:
        nm.cleanup()


@pytest.fixture(scope="module")
def shared_netmaster():
    """One netmaster for a module of independent tests (each uses its own names)."""
    nm = Netmaster(extra=["--no-openflow"])
    try:
        yield nm.start()
    finally:
        nm.cleanup()


@pytest.fixture
def etcd():
    e = Etcd()
    try:
        yield e.start()
    finally:
        e.cleanup()

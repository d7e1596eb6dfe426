import os
import sys

# hypothesis's pytest plugin imports this at the end of the session, and it pulls in
# trio, which fails to import once a test module has monkey-patched sockets (eventlet)
import hypothesis.internal.observability  # noqa: F401


def _patch_eventlet() -> bool:
    """Several modules run os-ken in this process and monkey-patch eventlet when
    imported. Patching after ssl is imported (requests, here) makes every new
    SSLContext recurse in its setters (RecursionError on the first HTTPS request),
    so the main run patches first. Mininet (select.poll) and selenium cannot live
    with the patching: scripts/test.sh runs them apart with NETWEAVE_NO_EVENTLET=1,
    and a run naming only their folders is left alone too."""
    if os.environ.get("NETWEAVE_NO_EVENTLET") == "1":
        return False
    paths = [a for a in sys.argv[1:] if a.startswith("tests") or os.path.exists(a.split("::")[0])]
    apart = ("tests/mininet", "tests/browser")
    return not paths or not all(os.path.normpath(a).startswith(apart) for a in paths)


if _patch_eventlet():
    import eventlet
    eventlet.monkey_patch()

import pytest  # noqa: E402

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

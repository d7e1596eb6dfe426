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

from tests import leftovers  # noqa: E402
from tests.procs import Etcd, Netmaster  # noqa: E402

# every process the suite starts inherits this, which is how the session-end check
# below finds the ones left running (detached OVS daemons included)
os.environ[leftovers.TAG] = str(os.getpid())


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    """Fails the session's last test (an error at teardown) when the suite left a
    namespace, a root-namespace link or a process of its own behind."""
    before = leftovers.snapshot()
    yield
    left = leftovers.find(before)
    if left:
        pytest.fail("the test suite left these behind (remove what a test makes, on failure "
                    "too):\n" + "\n".join(left), pytrace=False)


@pytest.fixture
def netmaster_options():
    """Netmaster(**options) of the `netmaster` fixture: REST only here; the agent tests
    (tests/agent_fixtures.py) give theirs OpenFlow and a listener the hosts reach."""
    return {"extra": ["--no-openflow"]}


@pytest.fixture
def netmaster(netmaster_options, request):
    nm = Netmaster(**netmaster_options)
    try:
        yield nm.start()
    finally:
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            sys.stderr.write(nm.log_tail() + "\n")      # shown with the failure's report
        nm.cleanup()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """item.rep_call: whether the test itself failed (the netmaster fixture prints its log then)."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call = rep


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

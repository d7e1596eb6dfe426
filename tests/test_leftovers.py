"""The session-end check of tests/conftest.py (tests/leftovers.py) sees what a test
leaves behind: a namespace, a root-namespace veth, a detached process the suite
started; and, once they are removed, nothing. Needs root (namespaces)."""
import os
import subprocess

import pytest

from tests import leftovers
from tests.procs import linked_ovs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


def test_leftovers_are_found_then_gone():
    before = dict(leftovers.snapshot(), shared=False)   # named below, whoever holds the lock
    ovs = linked_ovs("left")                             # a namespace, a veth, two detached daemons
    link = ovs.links[0]
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        left = "\n".join(leftovers._now(before, shared=False))
        assert f"network namespace {ovs.netns}" in left
        assert f"link {link} (root namespace)" in left
        assert "ovsdb-server" in left and "ovs-vswitchd" in left
        assert f"process {sleeper.pid}: sleep 60" in left
    finally:
        sleeper.kill()
        sleeper.wait()
        ovs.stop()
    mine = [x for x in leftovers.find(before)
            if any(k in x for k in (ovs.netns, link, ovs.dir, f"process {sleeper.pid}:"))]
    assert mine == []

"""Transition only (issue 12 item 6): `run` for tests written against the old helper;
topologies.ovs.run is the one. Removed once no module imports this."""
from topologies.ovs import run as _run


def run(cmd, check=True, env=None, timeout=30, input=None):
    return _run(*cmd, check=check, env=env, timeout=timeout, input=input)

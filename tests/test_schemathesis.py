"""schemathesis against a real netmaster (SQLite, no OpenFlow), driven by the
server's own OpenAPI document: every operation in examples, coverage and
fuzzing phases, then stateful sequences along the document's links (create
-> read, inspect, delete). A bounded number of cases with a fixed seed, so a
run costs about 20 s and is the same run every time.

Checks: all of schemathesis' but `positive_data_acceptance`: a schema-valid
request may still break one of Contiv's rules the schema cannot say (a
network's tenant must exist, a key in the path must match the body), and
the server is right to refuse it with a 4xx.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.procs import Netmaster

MAX_EXAMPLES = 25          # per operation and phase; ~4,700 cases in all
TLS_MAX_EXAMPLES = 8       # the HTTPS run: the same routes, fewer cases (~30 s more in all)
SEED = 1


@pytest.fixture(scope="module")
def nm():
    n = Netmaster(extra=["--no-openflow"]).start()
    try:
        yield n
    finally:
        n.cleanup()


def _schemathesis(nm, base, examples, extra, exclude):
    work = tempfile.mkdtemp(prefix="nwtest-schemathesis-")
    try:
        exe = os.path.join(os.path.dirname(sys.executable), "schemathesis")
        cmd = [exe, "run", base + "/api/v1/openapi.json", "--url", base,
               "--phases", "examples,coverage,fuzzing,stateful",
               "-n", str(examples), "--seed", str(SEED), "--generation-database", "none",
               "--checks", "all", "--exclude-checks", ",".join(exclude),
               "--request-timeout", "10",            # a request that hangs is a failure
               "-w", "1", "--no-color", *extra]
        run = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=240)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = run.stdout + run.stderr
    cases = re.search(r"(\d+) generated", out)
    found = out[out.find("= FAILURES ="):out.find("= WARNINGS =")] if "= FAILURES =" in out else out[-6000:]
    assert run.returncode == 0, found[:8000]
    assert cases and int(cases.group(1)) >= 300, out[-3000:]
    assert "✅  Stateful" in out, out[-3000:]          # the links were followed
    log = nm.log()
    assert "Traceback" not in log and "event=rest_internal_error" not in log, log[-3000:]
    return int(cases.group(1)), out


def test_schemathesis_finds_nothing(nm):
    # the loopback door is the local administrator's: it asks for no token, on purpose,
    # so the check that secured operations refuse a missing one (ignored_auth) is the
    # HTTPS run's
    cases, _ = _schemathesis(nm, nm.url, MAX_EXAMPLES, [], ["positive_data_acceptance", "ignored_auth"])
    print(f"schemathesis: {cases} cases, no failure")


def test_schemathesis_over_https_with_a_token(nm):
    """The authenticated door (HTTPS, netmaster's CA) with the admin's token: every
    check, ignored_auth included (each operation the document secures is sent
    without, and with a wrong, token and must refuse)."""
    token = open(os.path.join(nm.pki, "admin.token")).read().strip()
    cases, out = _schemathesis(nm, nm.tls_url, TLS_MAX_EXAMPLES,
                               ["--tls-verify", os.path.join(nm.pki, "ca.crt"),
                                "-H", f"Authorization: Bearer {token}"], ["positive_data_acceptance"])
    print(f"schemathesis over HTTPS: {cases} cases, no failure")

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

from tests.procs import Netmaster

MAX_EXAMPLES = 25          # per operation and phase; ~4,700 cases in all
SEED = 1


def test_schemathesis_finds_nothing():
    nm = Netmaster(extra=["--no-openflow"]).start()
    work = tempfile.mkdtemp(prefix="nwtest-schemathesis-")
    try:
        exe = os.path.join(os.path.dirname(sys.executable), "schemathesis")
        cmd = [exe, "run", nm.url + "/api/v1/openapi.json", "--url", nm.url,
               "--phases", "examples,coverage,fuzzing,stateful",
               "-n", str(MAX_EXAMPLES), "--seed", str(SEED), "--generation-database", "none",
               "--checks", "all", "--exclude-checks", "positive_data_acceptance",
               "--request-timeout", "10",            # a request that hangs is a failure
               "-w", "1", "--no-color"]
        run = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=240)
        out = run.stdout + run.stderr
        cases = re.search(r"(\d+) generated", out)
        found = out[out.find("= FAILURES ="):out.find("= WARNINGS =")] if "= FAILURES =" in out else out[-6000:]
        assert run.returncode == 0, found[:8000]
        assert cases and int(cases.group(1)) >= 300, out[-3000:]
        assert "✅  Stateful" in out, out[-3000:]          # the links were followed
        print(f"schemathesis: {cases.group(1)} cases, no failure")
        log = nm.log()
        assert "Traceback" not in log and "event=rest_internal_error" not in log, log[-3000:]
    finally:
        nm.cleanup()
        shutil.rmtree(work, ignore_errors=True)

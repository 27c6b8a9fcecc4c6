"""schemathesis against a live daemon: no 500, no answer that breaks the OpenAPI document."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

ST = Path(sys.executable).parent / "st"


@pytest.mark.timeout(400)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(daemon_factory):
    daemon = daemon_factory("--token", "fuzz", "--start-timeout-s", "20", "--max-running-objects", "4")
    result = subprocess.run(
        [str(ST), "run", f"{daemon.url}/openapi.json", "-H", "Authorization: Bearer fuzz",
         "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
         "--exclude-path", "/events",  # an endless stream by design
         # Deterministic and bounded by count, not time: the same cases on every run and machine.
         "--generation-deterministic", "--max-examples", "60", "--request-timeout", "30", "--workers", "1"],  # one worker: two interleave differently each run
        capture_output=True, text=True, timeout=300,
        # Hostile values the document alone never draws (see schemathesis_hooks.py).
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks", "PYTHONPATH": str(REPO)},
    )
    tail = "\n".join(result.stdout.splitlines()[-60:])
    assert result.returncode == 0, tail
    assert "unexpected error" not in daemon.log_text()  # what jinad logs for a 500
    assert " ERROR " not in daemon.log_text()  # nor anything else a client caused

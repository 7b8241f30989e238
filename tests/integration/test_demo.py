"""The quickstart's demo, as a new user runs it: embedded PostgreSQL, simulator, two runs, queries."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest


@pytest.mark.embedded
@pytest.mark.slow
def test_demo_runs_end_to_end_on_the_embedded_database(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMMCARE_", "DATABASE_URL", "DATA_EXPLORER_"))}
    env["DATA_EXPLORER_HOME"] = str(tmp_path / "home")
    result = subprocess.run(
        [sys.executable, "-m", "data_explorer.cli", "demo", "--cases", "300", "--no-serve"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "PostgreSQL: embedded" in out
    assert out.count("Succeeded in") == 2
    second = out.split("2. Ten cases change")[1]
    assert re.search(r"load cases\s+10 rows\s+incremental", second)
    assert "case_types" in out and "case_patient" in out and "form_submissions" in out
    pgdata = tmp_path / "home" / "postgres"
    assert (pgdata / "PG_VERSION").exists() and not (pgdata / "postmaster.pid").exists()

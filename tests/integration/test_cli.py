"""The command line: help for every command, and clear failures for bad settings and input."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _cli(*args, env=None, timeout=120):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("COMMCARE_", "DATABASE_URL", "DATA_EXPLORER_"))}
    return subprocess.run(
        [sys.executable, "-m", "data_explorer.cli", *args], env={**base, **(env or {})},
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.mark.parametrize("command", [[], ["demo"], ["materialize"], ["simulator"]])
def test_every_command_has_help(command):
    result = _cli(*command, "--help")
    assert result.returncode == 0
    assert "usage: data-explorer" in result.stdout
    if command == ["materialize"]:
        for name in ("--domain", "--full", "DATABASE_URL", "COMMCARE_BASE_URL", "COMMCARE_API_KEY", "DATA_EXPLORER_HOME"):
            assert name in result.stdout


def test_missing_settings_fail_at_start_naming_them(tmp_path):
    result = _cli("materialize", "--domain", "demo", env={"DATA_EXPLORER_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "COMMCARE_BASE_URL is not set" in result.stderr
    result = _cli("materialize", "--domain", "demo", env={"DATA_EXPLORER_HOME": str(tmp_path), "COMMCARE_BASE_URL": "nope"})
    assert result.returncode == 2 and "COMMCARE_BASE_URL" in result.stderr and "http(s) URL" in result.stderr


def test_a_bad_domain_is_refused(tmp_path):
    env = {"DATA_EXPLORER_HOME": str(tmp_path), "COMMCARE_BASE_URL": "http://127.0.0.1:9", "COMMCARE_OAUTH_TOKEN": "t"}
    result = _cli("materialize", "--domain", "x;drop table", env=env)
    assert result.returncode == 2 and "not a CommCare project space name" in result.stderr


def test_materialize_prints_progress_and_a_summary(space, database_url, session_tag, tmp_path):
    env = {**space.env, "DATABASE_URL": database_url, "DATA_EXPLORER_ROLE_PREFIX": session_tag, "DATA_EXPLORER_HOME": str(tmp_path)}
    result = _cli("materialize", "--domain", space.domain, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Loading" in result.stderr and "[100%] Succeeded" in result.stderr
    for line in ("load cases", "load forms", "load users", "model cases", "Succeeded in"):
        assert line in result.stdout
    space.sim.set_faults({"rules": [{"kind": "unauthorized", "rate": 1.0}]})
    result = _cli("materialize", "--domain", space.domain, env=env)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("data-explorer: failed: AUTH_FAILED: CommCare refused")


def test_a_tenant_provisioned_under_another_role_prefix_fails_in_one_line(space, database_url, session_tag, tmp_path):
    env = {**space.env, "DATABASE_URL": database_url, "DATA_EXPLORER_ROLE_PREFIX": session_tag, "DATA_EXPLORER_HOME": str(tmp_path)}
    assert _cli("materialize", "--domain", space.domain, env=env).returncode == 0
    result = _cli("materialize", "--domain", space.domain, env={**env, "DATA_EXPLORER_ROLE_PREFIX": session_tag[:-1] + "z"})
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "DATA_EXPLORER_ROLE_PREFIX" in result.stderr and "Traceback" not in result.stderr

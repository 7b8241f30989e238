#!/usr/bin/env python3
"""Set up and run Data Explorer from a fresh clone, with nothing but Python 3.11+.

    python3 dev.py demo      # set up, then run the embedded demo end to end
    python3 dev.py test      # set up, then run the test suite but its slow suites (arguments go to pytest instead)
    python3 dev.py test -m slow   # the slow suites (fault suite, kills, gateway runs): CI runs both

Setting up means: a virtual environment in .venv with this project installed
(editable, with its test dependencies). It is reused when it is up to date.
The tests find their PostgreSQL as README.md says (TEST_DATABASE_URL=embedded:
the embedded server, whatever answers on 5432).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".installed"
DEFAULT_TEST_ARGS = ["-m", "not slow"]


def _python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _fingerprint() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def setup() -> Path:
    if sys.version_info < (3, 11):
        sys.exit(f"Data Explorer needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    if not _python().exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if not STAMP.exists() or STAMP.read_text() != _fingerprint():
        print("installing data-explorer and its dependencies into .venv ...", flush=True)
        pip = [str(_python()), "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
        subprocess.run(pip + ["--upgrade", "pip"], check=True)
        subprocess.run(pip + ["--editable", f"{ROOT}[test]"], check=True)
        STAMP.write_text(_fingerprint())
    return _python()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "setup"):
        print(__doc__.strip())
        return 2
    command, rest = argv[0], argv[1:]
    python = setup()
    if command == "setup":
        return 0
    if command == "demo":
        return subprocess.call([str(python), "-m", "data_explorer.cli", "demo", *rest], cwd=ROOT)
    # the slow suites run apart so that each part stays well within a CI step on two cores
    command = [str(python), "-m", "pytest", *(rest or DEFAULT_TEST_ARGS)]
    print("running:", " ".join(command), flush=True)
    return subprocess.call(command, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

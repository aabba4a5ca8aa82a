"""The linter and the type checker are part of the suite (issue 13 item 7): ruff over src/, tests/ and bench/ with
the rule set in pyproject.toml, and mypy over the packages pyproject.toml names (the protocol core, storage and
primitives). A finding fails the test and is printed, so `make test` fails on it."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _tool(name: str) -> str:
    # The venv's own copy first (the one `pip install -e .[test]` put next to this Python), then PATH.
    here = os.path.join(os.path.dirname(sys.executable), name)
    found = here if os.access(here, os.X_OK) else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (it is in the [test] extra: pip install -e '.[test]')")
    return found


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean():
    r = _run([_tool("ruff"), "check", "--no-cache", "--output-format", "concise", "src", "tests", "bench"])
    assert r.returncode == 0, f"ruff findings:\n{r.stdout}{r.stderr}"


def test_mypy_is_clean():
    # The cache lives under the tree (ignored by git): the second run takes a fraction of a second.
    r = _run([_tool("mypy"), "--cache-dir", os.path.join(ROOT, ".mypy_cache")])
    assert r.returncode == 0, f"mypy findings:\n{r.stdout}{r.stderr}"
    assert "Success" in r.stdout, r.stdout

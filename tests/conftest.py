"""Suite-wide fixtures: real ampd nodes (and, with the chain issue, amp-chaind)."""

from __future__ import annotations

import json
import os
import tempfile

import pytest

from ampere.testing.nodes import NodeFactory

SCHEMAS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "cln-schemas")


@pytest.fixture
def node_factory():
    # Unix socket paths are limited to ~108 bytes: keep node directories short, not under tmp_path.
    base = tempfile.mkdtemp(prefix="amp-")
    factory = NodeFactory(base)
    yield factory
    factory.cleanup()


def _schema_dir() -> str | None:
    for cand in (os.environ.get("AMPERE_CLN_SCHEMAS"), SCHEMAS, "/work/shared/cln-schemas"):
        if cand and os.path.isdir(cand):
            return cand
    return None


@pytest.fixture(scope="session")
def cln_schema():
    """cln_schema(command) -> the response schema of CLN's command (or None when not available)."""
    d = _schema_dir()

    def load(name: str, part: str = "response"):
        if d is None:
            pytest.skip("CLN schemas not available")
        with open(os.path.join(d, f"{name}.json")) as f:
            return json.load(f)[part]

    return load

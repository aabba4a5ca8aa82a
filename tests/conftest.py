"""Suite-wide fixtures: real ampd nodes (and, with the chain issue, amp-chaind)."""

from __future__ import annotations

import tempfile

import pytest

from ampere.testing.nodes import NodeFactory

@pytest.fixture
def node_factory():
    # Unix socket paths are limited to ~108 bytes: keep node directories short, not under tmp_path.
    base = tempfile.mkdtemp(prefix="amp-")
    factory = NodeFactory(base)
    yield factory
    factory.cleanup()

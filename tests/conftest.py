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
    problems = factory.check_clean_exit()
    factory.cleanup()
    if problems:
        pytest.fail("nodes did not end cleanly:\n" + "\n".join(problems))


@pytest.fixture
def chaind(tmp_path):
    """A fresh amp-chaind (regtest, password auth, free port) for one test; stopped afterwards."""
    from ampere.testing.chain import ChainD

    node = ChainD(tmp_path)
    node.start()
    yield node
    node.stop()


@pytest.fixture
def node_factory_chain(chaind):
    """Like node_factory, but nodes follow `chaind` (no --disable-chain)."""
    base = tempfile.mkdtemp(prefix="amp-")
    factory = NodeFactory(base, chaind=chaind)
    yield factory
    problems = factory.check_clean_exit()
    factory.cleanup()
    if problems:
        pytest.fail("nodes did not end cleanly:\n" + "\n".join(problems))

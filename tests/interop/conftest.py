"""Interoperability with Core Lightning: every test here runs real `lightningd` ($CLN_LIGHTNINGD) next to real
`ampd` on one amp-chaind, and is skipped (marker `cln`) when CLN_LIGHTNINGD is unset.

Besides its own assertions, every test ends by reading both implementations' logs: a warning or error sent or
received on the wire, or an UNUSUAL/BROKEN line, fails it unless the test declared it (node.allow_complaints)."""

from __future__ import annotations

import pytest


@pytest.fixture
def node_factory(node_factory_chain):
    """Here every node follows the test's amp-chaind (CLN cannot run without a chain)."""
    return node_factory_chain


@pytest.fixture(autouse=True)
def no_protocol_complaints(request, node_factory_chain):
    yield
    if getattr(request.node, "rep_call_failed", False):
        return  # the test's own failure says more
    problems = node_factory_chain.protocol_complaints()
    if problems:
        pytest.fail("warnings/errors or UNUSUAL/BROKEN lines in the logs:\n" + "\n".join(problems[:30]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call_failed = rep.failed

"""pytest fixtures for testing Ampere and plugins on real nodes, as pyln-testing offers for CLN.

In a plugin's test suite:

    # conftest.py
    pytest_plugins = ["ampere.testing.fixtures"]

    # test_myplugin.py
    def test_hello(node_factory):
        l1 = node_factory.get_node(plugin="/path/to/myplugin.py", greeting="hi")
        assert l1.rpc.call("hello", ["you"]) == "hi you"

    def test_pay_through(node_factory_chain):           # nodes on a real regtest chain (amp-chaind)
        l1, l2, l3 = node_factory_chain.line_graph(3)    # channels l1 -> l2 -> l3, CHANNELD_NORMAL
        inv = l3.rpc.invoice(10_000, "x", "x")["bolt11"]
        assert l1.rpc.pay(inv)["status"] == "complete"

No bitcoind is needed: `chaind` runs amp-chaind, whose blocks are validated by libbitcoinkernel.
Every node is stopped at teardown, and a test fails if a node exited uncleanly or logged BROKEN.
Every `node.rpc` result is checked against Core Lightning's JSON schema of the same command.

Interoperability: `node_factory_chain.get_cln_node(**options)` starts Core Lightning (`$CLN_LIGHTNINGD`) on the
same chain, and `line_graph(["ampere", "cln", "ampere"])` mixes implementations. Tests marked `cln` are skipped,
saying why, when CLN_LIGHTNINGD is unset.
"""

from __future__ import annotations

import tempfile

import pytest

from .nodes import NodeFactory


def pytest_configure(config):
    config.addinivalue_line("markers", "cln: needs Core Lightning's lightningd named by $CLN_LIGHTNINGD")


def pytest_runtest_setup(item):
    if item.get_closest_marker("cln") is not None:
        from .cln import SKIP_REASON, lightningd_path

        if lightningd_path() is None:
            pytest.skip(SKIP_REASON)


def _finish(factory: NodeFactory) -> None:
    problems = factory.check_clean_exit()
    factory.cleanup()
    if problems:
        pytest.fail("nodes did not end cleanly:\n" + "\n".join(problems))


@pytest.fixture
def node_factory():
    """Nodes without a chain backend (RPC, plugins, peers): fast."""
    # Unix socket paths are limited to ~108 bytes: keep node directories short, not under tmp_path.
    factory = NodeFactory(tempfile.mkdtemp(prefix="amp-"))
    yield factory
    _finish(factory)


@pytest.fixture
def chaind(tmp_path):
    """A fresh amp-chaind (regtest, password auth, free port) for one test; stopped afterwards."""
    from .chain import ChainD

    node = ChainD(tmp_path)
    node.start()
    yield node
    node.stop()


@pytest.fixture
def node_factory_chain(chaind):
    """Like node_factory, but nodes follow `chaind`: wallets, channels, payments."""
    factory = NodeFactory(tempfile.mkdtemp(prefix="amp-"), chaind=chaind)
    yield factory
    _finish(factory)

"""pyln-testing's fixtures on Ampere: a plugin's existing CLN test suite runs against ampd and amp-chaind.

    # conftest.py
    pytest_plugins = ["ampere.testing.pyln"]

That is the whole change.  pyln-testing's own `node_factory`, `bitcoind`, `executor`, `directory`, ...
fixtures are used as they are; only the two programs they start differ: `lightningd` is `ampd` and
`bitcoind` is `amp-chaind`, each started with exactly the command line pyln-testing builds for CLN and
bitcoind (no translating wrapper).  `--version` reads as the CLN release Ampere follows, so pyln-testing
turns on what it does for that release (--developer, the mnemonic hsm_secret, ...).

Set AMPERE_AMPD / AMPERE_CHAIND to use other programs (default: `ampd` and `amp-chaind` beside the running
Python, else on PATH).  CLN's JSON schemas are checked when the tests run from a directory holding
doc/schemas (as in CLN's tree) or when CLN_SCHEMAS names a directory of them.
"""
from __future__ import annotations

import os
import shutil
import sys

import pytest
from pyln.testing import fixtures as _pyln_fixtures
from pyln.testing.fixtures import *  # noqa: F401,F403  (pyln-testing's fixtures, as a conftest would import them)
from pyln.testing.utils import BitcoinD, LightningNode


def _program(env_name: str, name: str) -> str:
    path = os.environ.get(env_name)
    if path:
        return path
    beside = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.exists(beside):
        return beside
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install ampere, or set {env_name}")
    return found


AMPD = _program("AMPERE_AMPD", "ampd")
AMP_CHAIND = _program("AMPERE_CHAIND", "amp-chaind")

# Plugins started by ampd with `#!/usr/bin/env python3` must find the interpreter that has pyln-client.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


class AmpChainD(BitcoinD):
    """pyln-testing's BitcoinD, running amp-chaind with bitcoind's command line and bitcoin.conf."""

    def __init__(self, bitcoin_dir: str = "/tmp/bitcoind-test", rpcport: int | None = None) -> None:
        super().__init__(bitcoin_dir, rpcport)
        self.cmd_line[0] = AMP_CHAIND


class AmpereNode(LightningNode):
    """pyln-testing's LightningNode with ampd as its lightningd."""

    def __init__(self, *args, executable: str | None = None, **kwargs) -> None:
        super().__init__(*args, executable=executable or AMPD, **kwargs)


# The `bitcoind` fixture picks its class from this table by TEST_NETWORK.
_pyln_fixtures.network_daemons["regtest"] = AmpChainD


@pytest.fixture
def node_cls():
    return AmpereNode


@pytest.fixture(autouse=True)
def jsonschemas():
    """CLN's schemas from doc/schemas (pyln-testing's default) or from CLN_SCHEMAS."""
    base = os.environ.get("CLN_SCHEMAS") or "doc/schemas"
    schemas = {}
    if os.path.isdir(base):
        for fname in os.listdir(base):
            if fname.endswith(".json"):
                name = fname.replace("lightning-", "").replace(".json", "")
                schemas[name] = _pyln_fixtures._load_schema(os.path.join(base, fname))
    return schemas


_pyln_check_plugin_json = _pyln_fixtures.checkPluginJSON
_schema_cwd: list[str] = []


def _check_plugin_json(node) -> int:
    """pyln-testing checks the notifications a node saved (--dev-save-plugin-io) against the schemas in
    `doc/schemas/notification`, relative to the working directory (CLN's tree); outside it, against
    CLN_SCHEMAS: the check runs from a directory whose doc/schemas is that one."""
    base = os.environ.get("CLN_SCHEMAS")
    if not base or os.path.isdir("doc/schemas/notification") or not os.path.isdir(os.path.join(base, "notification")):
        return _pyln_check_plugin_json(node)
    if not _schema_cwd:
        import tempfile

        d = tempfile.mkdtemp(prefix="ampere-schemas-")
        os.makedirs(os.path.join(d, "doc"))
        os.symlink(os.path.abspath(base), os.path.join(d, "doc", "schemas"))
        _schema_cwd.append(d)
    cwd = os.getcwd()
    os.chdir(_schema_cwd[0])
    try:
        return _pyln_check_plugin_json(node)
    finally:
        os.chdir(cwd)


_pyln_fixtures.checkPluginJSON = _check_plugin_json


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """What CLN's own conftest adds: pyln-testing's `directory` fixture keeps a failed test's files."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)

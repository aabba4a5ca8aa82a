"""pyln-testing's fixtures on Ampere: a plugin's existing CLN test suite runs against ampd and amp-chaind.

    # conftest.py
    pytest_plugins = ["ampere.testing.pyln"]

That is the whole change.  pyln-testing's own `node_factory`, `bitcoind`, `executor`, `directory`, ...
fixtures are used as they are; only the two programs they start differ: `lightningd` is `ampd` and
`bitcoind` is `amp-chaind`, each started with exactly the command line pyln-testing builds for CLN and
bitcoind (no translating wrapper).  `--version` reads as the CLN release Ampere follows, so pyln-testing
turns on what it does for that release (--developer, the mnemonic hsm_secret, ...).

TEST_DB_PROVIDER=postgres (as in CLN's suite) gives every node its own PostgreSQL database (`--wallet=postgres://...`)
on a server started for the test; without PostgreSQL such tests are skipped, saying why.

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


class AmperePostgresDb:
    """A node's database for TEST_DB_PROVIDER=postgres, as pyln-testing's PostgresDb: `get_dsn()` is the
    `--wallet` the node gets; `query`/`execute` run on it (Ampere's schema, not CLN's)."""

    def __init__(self, server, dbname: str) -> None:
        self.server, self.dbname = server, dbname
        self.dsn = server.create_db(dbname)
        self.provider = None

    def get_dsn(self) -> str:
        return self.dsn

    def _connect(self):
        import psycopg

        return psycopg.connect(self.server.admin_dsn(self.dbname), autocommit=True)

    def query(self, query: str) -> list[dict]:
        with self._connect() as conn:
            cur = conn.execute(query)
            names = [c.name for c in cur.description or []]
            return [dict(zip(names, row)) for row in cur.fetchall()] if cur.description else []

    def execute(self, query: str, params: tuple = ()) -> None:
        with self._connect() as conn:
            conn.execute(query, params)

    def executemany(self, query: str, seq_of_params: list[tuple]) -> None:
        with self._connect() as conn:
            conn.cursor().executemany(query.replace("?", "%s"), seq_of_params)

    def stop(self) -> None:
        self.server.sql(f'DROP DATABASE IF EXISTS "{self.dbname}"')

    def wipe_db(self) -> None:
        self.server.sql(f'DROP DATABASE IF EXISTS "{self.dbname}"')
        self.server.sql(f'CREATE DATABASE "{self.dbname}"')


class AmperePostgresDbProvider:
    """pyln-testing's PostgresDbProvider for TEST_DB_PROVIDER=postgres, on ampere.testing.postgres's server (which
    runs PostgreSQL as the `postgres` user when the tests run as root -- initdb refuses root -- and is stopped
    even if the test process is killed).  Without PostgreSQL the test is skipped, saying why."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.server = None

    def start(self) -> None:
        from .postgres import PostgresServer, unavailable_reason

        reason = unavailable_reason()
        if reason:
            pytest.skip(f"TEST_DB_PROVIDER=postgres: {reason}")
        self.server = PostgresServer().start()

    def get_db(self, node_directory: str, testname: str, node_id: int) -> AmperePostgresDb:
        import re
        import secrets

        # PostgreSQL names: at most 63 bytes; parametrised test names carry brackets.
        name = f"{re.sub(r'[^a-z0-9_]', '_', testname.lower())[:40]}_{node_id}_{secrets.token_hex(4)}"
        return AmperePostgresDb(self.server, name)

    def stop(self) -> None:
        if self.server is not None:
            self.server.destroy()
            self.server = None


_pyln_fixtures.providers["postgres"] = AmperePostgresDbProvider


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
        import atexit
        import shutil
        import tempfile

        d = tempfile.mkdtemp(prefix="ampere-schemas-")
        # Gone with the test process (each pytest worker makes one): only a symlink inside, never the schemas.
        atexit.register(shutil.rmtree, d, True)
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

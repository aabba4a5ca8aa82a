"""pyln-testing's TEST_DB_PROVIDER: with `postgres` every node gets `--wallet=postgres://...` on a PostgreSQL server
started for the test (ampere.testing.pyln's provider; skipped with the reason when PostgreSQL is absent), and
ampd keeps its state there; with the default (sqlite3) it keeps it in its own SQLite file."""
import os

from pyln.testing.utils import only_one


def test_node_state_lives_where_the_db_provider_says(node_factory):
    l1 = node_factory.get_node()
    l1.rpc.invoice(1000, "kept", "across a restart")
    l1.restart()
    assert only_one(l1.rpc.listinvoices("kept")["invoices"])["description"] == "across a restart"
    sqlite_file = os.path.join(l1.daemon.lightning_dir, "regtest", "ampere.sqlite3")
    if os.environ.get("TEST_DB_PROVIDER", "sqlite3") == "postgres":
        assert l1.db.get_dsn().startswith("postgres://")
        # The invoice is in the node's own PostgreSQL database, and no SQLite file was made.
        assert [r["label"] for r in l1.db.query("SELECT label FROM invoices")] == ["kept"]
        assert not os.path.exists(sqlite_file)
    else:
        assert l1.db.get_dsn() is None and os.path.exists(sqlite_file)

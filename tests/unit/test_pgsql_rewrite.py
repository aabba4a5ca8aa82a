"""SQLite's SQL rewritten for PostgreSQL (ampere.store.pgsql): the statements, and which table's serial key
an INSERT returns (the store gives those keys back when it undoes a batch)."""

from ampere.store.pgsql import Rewriter

RW = Rewriter({"vars": ["name"], "invoices": ["id"], "wallet_outputs": ["txid", "outnum"]}, {"invoices": "id"})


def test_insert_into_a_serial_table_returns_its_key_and_names_the_table():
    q, table = RW.rewrite("INSERT INTO invoices (label) VALUES (?)", True)
    assert q == "INSERT INTO invoices (label) VALUES (%s) RETURNING id" and table == "invoices"


def test_other_statements_return_nothing():
    for sql in ("INSERT INTO vars (name, val) VALUES (?, ?)", "UPDATE invoices SET label = ? WHERE id = ?",
                "SELECT id FROM invoices WHERE label LIKE 'a%'"):
        assert RW.rewrite(sql, True)[1] is None


def test_or_replace_and_or_ignore():
    q, _ = RW.rewrite("INSERT OR REPLACE INTO vars (name, val) VALUES (?, ?)", True)
    assert q == "INSERT INTO vars (name, val) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE SET val = EXCLUDED.val"
    q, _ = RW.rewrite("INSERT OR IGNORE INTO wallet_outputs (txid, outnum) VALUES (?, ?)", True)
    assert q == "INSERT INTO wallet_outputs (txid, outnum) VALUES (%s, %s) ON CONFLICT DO NOTHING"

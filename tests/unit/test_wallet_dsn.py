"""--wallet DSNs in Core Lightning's forms, and the password never shown."""

import pytest

from ampere.store.dsn import DsnError, parse_wallet_dsn, redact


def test_default_is_sqlite_in_the_network_dir():
    d = parse_wallet_dsn(None, "/n/regtest/ampere.sqlite3")
    assert (d.engine, d.path, d.backup) == ("sqlite3", "/n/regtest/ampere.sqlite3", None)


def test_sqlite_forms():
    d = parse_wallet_dsn("sqlite3:///data/l.sqlite3", "x")
    assert (d.engine, d.path, d.backup) == ("sqlite3", "/data/l.sqlite3", None)
    d = parse_wallet_dsn("sqlite3:///data/l.sqlite3:/backup/l.sqlite3", "x")
    assert (d.path, d.backup) == ("/data/l.sqlite3", "/backup/l.sqlite3")
    for bad in ("sqlite3://", "sqlite3:///a:", "sqlite3:///a:/a"):
        with pytest.raises(DsnError):
            parse_wallet_dsn(bad, "x")


def test_postgres_forms_and_redaction():
    d = parse_wallet_dsn("postgres://user:s3cr3t@db1:5432,db2:5432/lightning?target_session_attrs=read-write", "x")
    assert d.engine == "postgres" and d.conninfo.startswith("postgres://user:s3cr3t@")
    assert d.redacted() == "postgres://user:***@db1:5432,db2:5432/lightning?target_session_attrs=read-write"
    assert "s3cr3t" not in redact("postgresql://u@h/db?sslmode=require&password=s3cr3t")
    assert redact("postgres://u@h/db") == "postgres://u@h/db"
    assert redact("host=a password='x y' dbname=b") == "host=a password=*** dbname=b"
    with pytest.raises(DsnError) as e:
        parse_wallet_dsn("mysql://u:s3cr3t@h/db", "x")
    assert "s3cr3t" not in str(e.value)

"""`--wallet=DSN`: which database the node keeps its state in, in Core Lightning's forms.

    sqlite3:///path/to/lightningd.sqlite3       one SQLite file
    sqlite3:///path/main.sqlite3:/path/backup     SQLite with a synchronous replica: every write goes to both
    postgres://user:pass@host:5432/dbname         PostgreSQL (a libpq URI: multi-host `host1:5432,host2:5432`
                                                 and `?target_session_attrs=read-write` work as in libpq)

The password of a PostgreSQL DSN never appears in logs or `listconfigs`: `redact()` gives the form to show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class DsnError(ValueError):
    pass


@dataclass(frozen=True)
class WalletDsn:
    engine: str  # "sqlite3" | "postgres"
    path: str = ""  # sqlite3: the main file
    backup: str | None = None  # sqlite3: the synchronous replica
    conninfo: str = ""  # postgres: the libpq URI, as given

    def redacted(self) -> str:
        if self.engine == "postgres":
            return redact(self.conninfo)
        return f"sqlite3://{self.path}" + (f":{self.backup}" if self.backup else "")


def parse_wallet_dsn(value: str | None, default_path: str) -> WalletDsn:
    if not value:
        return WalletDsn("sqlite3", path=default_path)
    if value.startswith("sqlite3://"):
        rest = value[len("sqlite3://"):]
        if not rest:
            raise DsnError(f"--wallet={value}: no database file after sqlite3://")
        # As lightningd: the first ':' separates the main file from its backup.
        main, sep, backup = rest.partition(":")
        if not main or (sep and not backup):
            raise DsnError(f"--wallet={value}: expected sqlite3:///path or sqlite3:///main:/backup")
        if sep and backup == main:
            raise DsnError(f"--wallet={value}: the backup must be another file than the main database")
        return WalletDsn("sqlite3", path=main, backup=backup or None)
    if value.startswith(("postgres://", "postgresql://")):
        if value.split("://", 1)[1] in ("", "/"):
            raise DsnError(f"--wallet={redact(value)}: no server or database in the DSN")
        return WalletDsn("postgres", conninfo=value)
    scheme = value.split("://", 1)[0] if "://" in value else value
    raise DsnError(f"--wallet={redact(value)}: unknown database {scheme!r}: expected sqlite3:// or postgres://")


_URI_PASSWORD = re.compile(r"^(?P<scheme>[a-z0-9+]+://)(?P<user>[^:@/]*):(?P<pw>[^@]*)@")
_PARAM_PASSWORD = re.compile(r"(?P<k>[?&]password=)[^&]*", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(r"(?P<k>\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(dsn: str) -> str:
    """The DSN with any password replaced by `***` (in the URI's userinfo, a `password=` parameter, or a
    keyword/value conninfo)."""
    if "://" in dsn:
        out = _URI_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", dsn, count=1)
        return _PARAM_PASSWORD.sub(lambda m: f"{m['k']}***", out)
    return _KEYWORD_PASSWORD.sub(lambda m: f"{m['k']}***", dsn)

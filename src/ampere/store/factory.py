"""The store a `--wallet` DSN names."""

from __future__ import annotations

from typing import Callable

from .dsn import WalletDsn
from .store import Store


def make_store(dsn: WalletDsn, log: Callable[[str, str], None] | None = None,
               on_fatal: Callable[[str], None] | None = None) -> Store:
    if dsn.engine == "postgres":
        from .postgres import PostgresStore

        return PostgresStore(dsn.conninfo, log=log, on_fatal=on_fatal)
    from .sqlite import SqliteStore

    return SqliteStore(dsn.path, backup=dsn.backup)

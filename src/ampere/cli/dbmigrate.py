"""amp-dbmigrate: copy a stopped node's database to another backend, and check the copy table by table.

    amp-dbmigrate --from=sqlite3:///home/me/.ampere/bitcoin/ampere.sqlite3 --to=postgres://u:p@db/ampere
    amp-dbmigrate --from=postgres://u:p@db/ampere --to=sqlite3:///tmp/ampere.sqlite3

Then start ampd with `--wallet=` the destination.  The destination must be empty (a new SQLite file or an
empty PostgreSQL database); the node must be stopped (on PostgreSQL, a running node's lock makes this fail).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..store.dsn import DsnError, parse_wallet_dsn


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="amp-dbmigrate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="src", required=True, help="the stopped node's --wallet DSN")
    ap.add_argument("--to", dest="dst", required=True, help="the empty destination, as a --wallet DSN")
    args = ap.parse_args(argv)
    try:
        src = parse_wallet_dsn(args.src, "")
        dst = parse_wallet_dsn(args.dst, "")
    except DsnError as e:
        print(f"amp-dbmigrate: {e}", file=sys.stderr)
        return 1
    try:
        counts = asyncio.run(_run(src, dst))
    except Exception as e:
        print(f"amp-dbmigrate: {e}", file=sys.stderr)
        return 1
    total = sum(counts.values())
    print(f"copied {total} rows from {src.redacted()} to {dst.redacted()}; every table compared equal")
    for table, n in counts.items():
        print(f"  {table}: {n}")
    return 0


async def _run(src_dsn, dst_dsn) -> dict[str, int]:
    from ..store.copy import copy_database
    from ..store.postgres import PostgresStore
    from ..store.sqlite import SqliteStore

    def open_store(dsn, role):
        if dsn.engine == "postgres":
            # Never wait as a standby: a node running on it means it is not stopped.
            return PostgresStore(dsn.conninfo, standby=False, on_fatal=lambda msg: None)
        if role == "source":
            import os

            if not os.path.exists(dsn.path):
                raise RuntimeError(f"no database at {dsn.path}")
        return SqliteStore(dsn.path, backup=dsn.backup)

    src = open_store(src_dsn, "source")
    dst = open_store(dst_dsn, "destination")
    await src.open()
    try:
        await dst.open()
        try:
            return await copy_database(src, dst)
        finally:
            await dst.close()
    finally:
        await src.close()


if __name__ == "__main__":
    sys.exit(main())

"""The database schema, as an append-only list of migrations.

Never edit or reorder an entry that has shipped: a database records how many it has applied
(`PRAGMA user_version`), and a new version only appends.  A step no longer wanted is replaced by a
no-op ("tombstone"), never removed, so the numbering stays stable.
"""

MIGRATIONS: list[str] = [
    # 1: key-value datastore (CLN's datastore RPCs).  Keys are arrays of strings, stored joined by
    # NUL bytes so that prefix queries are range scans.
    """
    CREATE TABLE datastore (
        key BLOB PRIMARY KEY,
        data BLOB NOT NULL,
        generation INTEGER NOT NULL
    );
    """,
    # 2: node-wide variables (schema notes, counters).
    """
    CREATE TABLE vars (
        name TEXT PRIMARY KEY,
        val TEXT NOT NULL
    );
    """,
]

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
    # 3: the chain watcher's processed blocks (height -> hash), to resume and to detect reorgs.
    """
    CREATE TABLE chain_blocks (
        height INTEGER PRIMARY KEY,
        hash BLOB NOT NULL
    );
    """,
    # 4: the on-chain wallet: issued addresses, our outputs, transactions touching them.
    # Outputs: blockheight NULL = unconfirmed; spend_txid set = spent (spend_height NULL while the
    # spend is unconfirmed); reserved_til = block height until which the output is reserved.
    """
    CREATE TABLE wallet_addresses (
        keyidx INTEGER PRIMARY KEY,
        addrtype TEXT NOT NULL
    );
    CREATE TABLE wallet_outputs (
        txid BLOB NOT NULL,
        outnum INTEGER NOT NULL,
        value INTEGER NOT NULL,
        scriptpubkey BLOB NOT NULL,
        keyidx INTEGER NOT NULL,
        coinbase INTEGER NOT NULL DEFAULT 0,
        blockheight INTEGER,
        spend_txid BLOB,
        spend_height INTEGER,
        reserved_til INTEGER,
        deposit_noted INTEGER NOT NULL DEFAULT 0,
        withdrawal_noted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (txid, outnum)
    );
    CREATE TABLE wallet_txs (
        txid BLOB PRIMARY KEY,
        rawtx BLOB NOT NULL,
        blockheight INTEGER,
        txindex INTEGER
    );
    """,
    # 5: our invoices (ampere.node.invoices).  id is created_index (AUTOINCREMENT: never reused);
    # state 0 unpaid, 1 paid, 2 expired; amount_msat NULL = "any"; updated_index 0 = never updated;
    # the updated_index and pay_index counters live in `vars`.
    """
    CREATE TABLE invoices (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        label TEXT NOT NULL UNIQUE,
        payment_hash BLOB NOT NULL UNIQUE,
        preimage BLOB NOT NULL,
        payment_secret BLOB,
        state INTEGER NOT NULL,
        amount_msat INTEGER,
        expires_at INTEGER NOT NULL,
        bolt11 TEXT NOT NULL,
        description TEXT,
        features BLOB NOT NULL,
        min_final_cltv_expiry INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        pay_index INTEGER UNIQUE,
        amount_received_msat INTEGER,
        paid_at INTEGER,
        updated_index INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX invoices_updated_index ON invoices (updated_index);
    CREATE INDEX invoices_state_expiry ON invoices (state, expires_at);
    """,
]

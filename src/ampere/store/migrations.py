"""The database schema, as an append-only list of migrations.

Never edit or reorder an entry that has shipped: a database records how many it has applied
(`PRAGMA user_version`), and a new version only appends.  A step no longer wanted is replaced by a
no-op ("tombstone"), never removed, so the numbering stays stable.

One list serves both engines.  An entry is SQLite's SQL, which `ampere.store.pgsql.ddl_for_postgres` rewrites
for PostgreSQL (BLOB -> BYTEA, INTEGER -> BIGINT, AUTOINCREMENT keys -> BIGSERIAL), as Core Lightning
rewrites its own schema; where the two engines need different statements, the entry is a dict
`{"sqlite3": ..., "postgres": ...}` with both variants side by side (tests/unit/test_store.py applies every
entry on both engines).
"""

from __future__ import annotations

from typing import Union

Migration = Union[str, dict]


def migration_sql(entry: Migration, engine: str) -> str:
    """The SQL of one migration for `engine` ("sqlite3" or "postgres")."""
    if isinstance(entry, dict):
        return entry[engine]
    if engine == "sqlite3":
        return entry
    from .pgsql import ddl_for_postgres

    return ddl_for_postgres(entry)


def split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _pg(sql: str) -> str:
    from .pgsql import ddl_for_postgres

    return ddl_for_postgres(sql)


_M12 = """
ALTER TABLE channels ADD COLUMN layout INTEGER NOT NULL DEFAULT 0;
CREATE TABLE channel_state (
    dbid INTEGER PRIMARY KEY,
    update_id INTEGER NOT NULL,
    record BLOB NOT NULL
);
CREATE TABLE channel_sigs (
    dbid INTEGER PRIMARY KEY,
    sigs TEXT NOT NULL
);
CREATE TABLE channel_htlcs (
    dbid INTEGER NOT NULL,
    offerer TEXT NOT NULL,
    htlc_id INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    htlc TEXT NOT NULL,
    PRIMARY KEY (dbid, offerer, htlc_id)
);
CREATE TABLE channel_htlc_onions (
    dbid INTEGER NOT NULL,
    offerer TEXT NOT NULL,
    htlc_id INTEGER NOT NULL,
    onion BLOB NOT NULL,
    PRIMARY KEY (dbid, offerer, htlc_id)
)
"""

_M13 = """
CREATE TABLE channel_onions (
    k INTEGER PRIMARY KEY,
    onion BLOB NOT NULL
);
INSERT INTO channel_onions (k, onion)
    SELECT h.dbid * 1099511627776 + h.pos, o.onion FROM channel_htlc_onions o JOIN channel_htlcs h
    ON h.dbid = o.dbid AND h.offerer = o.offerer AND h.htlc_id = o.htlc_id;
DROP TABLE channel_htlc_onions
"""

_M13_STUBS = """
ALTER TABLE channel_htlc_stubs RENAME TO channel_htlc_stubs_old;
CREATE TABLE channel_htlc_stubs (
    channel_id BLOB NOT NULL,
    offerer TEXT NOT NULL,
    htlc_id INTEGER NOT NULL,
    amount_msat INTEGER NOT NULL,
    payment_hash BLOB NOT NULL,
    cltv_expiry INTEGER NOT NULL,
    PRIMARY KEY (channel_id, offerer, htlc_id)
) WITHOUT ROWID;
INSERT INTO channel_htlc_stubs SELECT channel_id, offerer, htlc_id, amount_msat, payment_hash, cltv_expiry
    FROM channel_htlc_stubs_old;
DROP TABLE channel_htlc_stubs_old
"""

_M14_COLUMNS = ("id, payment_hash, partid, groupid, status, amount_msat, amount_sent_msat, total_msat, destination, "
                "created_at, completed_at, label, bolt11, description, preimage, route, shared_secrets, first_scid, "
                "channel_id, htlc_id, cltv_expiry, failure, erroronion, updated_index")

# The old table is renamed first, so the new one takes its place in schema_tables()' order (as _M13_STUBS does); its
# indexes and its sqlite_sequence row go with it.
_M14_SQLITE = """
ALTER TABLE payments RENAME TO payments_old;
CREATE TABLE payments (
    id INTEGER PRIMARY KEY,
    payment_hash BLOB NOT NULL,
    partid INTEGER NOT NULL,
    groupid INTEGER NOT NULL,
    status INTEGER NOT NULL,
    amount_msat INTEGER,
    amount_sent_msat INTEGER NOT NULL,
    total_msat INTEGER NOT NULL,
    destination BLOB,
    created_at INTEGER NOT NULL,
    completed_at INTEGER,
    label TEXT,
    bolt11 TEXT,
    description TEXT,
    preimage BLOB,
    route TEXT,
    shared_secrets BLOB,
    first_scid INTEGER,
    channel_id BLOB,
    htlc_id INTEGER,
    cltv_expiry INTEGER NOT NULL,
    failure TEXT,
    erroronion BLOB,
    updated_index INTEGER NOT NULL DEFAULT 0
);
INSERT INTO payments (""" + _M14_COLUMNS + """) SELECT """ + _M14_COLUMNS + """ FROM payments_old;
DROP TABLE payments_old
"""


MIGRATIONS: list[Migration] = [
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
    # 5: our invoices (ampere.node.payments.invoices).  id is created_index (AUTOINCREMENT: never reused);
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
    # 6: channels (ampere.node.channels.manager).  One row per channel past funding_signed; `snapshot` is the
    # channel core's whole durable record (ampere.ln.channel.state, versioned JSON), replaced atomically on
    # every step before any message revealing it goes out.  dbid keys the channel's secrets (hsm.channel_seed).
    # `funding_tx` (opener) is kept to rebroadcast after a crash; `meta` holds closer, close cause, lost state and
    # the funding spend.  channel_peers: where we last reached a peer we share channels with (reconnection).
    """
    CREATE TABLE channels (
        dbid INTEGER PRIMARY KEY,
        peer_id BLOB NOT NULL,
        channel_id BLOB NOT NULL UNIQUE,
        state TEXT NOT NULL,
        update_id INTEGER NOT NULL,
        snapshot BLOB NOT NULL,
        funding_tx BLOB,
        funding_height INTEGER,
        funding_txindex INTEGER,
        mindepth INTEGER NOT NULL,
        settings TEXT NOT NULL,
        state_changes TEXT NOT NULL,
        meta TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX channels_peer ON channels (peer_id);
    CREATE TABLE channel_peers (
        peer_id BLOB PRIMARY KEY,
        address TEXT NOT NULL
    );
    """,
    # 7: outgoing payment parts (ampere.node.payments.sendpay): CLN's `payments`, keyed by (payment_hash, partid,
    # groupid); id is created_index (never reused); status 0 pending, 1 complete, 2 failed; route is JSON
    # {nodes, channels}; shared_secrets the onion's (32 bytes each) to decode failures; failure the JSON
    # routing failure; (channel_id, htlc_id) the HTLC that carries the part.
    """
    CREATE TABLE payments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        payment_hash BLOB NOT NULL,
        partid INTEGER NOT NULL,
        groupid INTEGER NOT NULL,
        status INTEGER NOT NULL,
        amount_msat INTEGER,
        amount_sent_msat INTEGER NOT NULL,
        total_msat INTEGER NOT NULL,
        destination BLOB,
        created_at INTEGER NOT NULL,
        completed_at INTEGER,
        label TEXT,
        bolt11 TEXT,
        description TEXT,
        preimage BLOB,
        route TEXT,
        shared_secrets BLOB,
        first_scid INTEGER,
        channel_id BLOB,
        htlc_id INTEGER,
        cltv_expiry INTEGER NOT NULL,
        failure TEXT,
        erroronion BLOB,
        updated_index INTEGER NOT NULL DEFAULT 0,
        UNIQUE (payment_hash, partid, groupid)
    );
    CREATE INDEX payments_status ON payments (status);
    """,
    # 8: on-chain resolution of closed channels (ampere.node.onchain.resolver).  One row per channel whose funding
    # output was spent (spend_height NULL while unconfirmed; kind NULL until analysed; closed = 1 once
    # every output is resolved and buried), and one per output of that spend that concerns us (state:
    # sweep / unresolved / wallet / external / dust; sweep_tx is persisted before its first broadcast;
    # resolved_* = the transaction that spent the output and its block).
    """
    CREATE TABLE onchain_channels (
        channel_id BLOB PRIMARY KEY,
        funding_txid BLOB NOT NULL,
        funding_vout INTEGER NOT NULL,
        spend_tx BLOB NOT NULL,
        spend_height INTEGER,
        kind TEXT,
        commitment_number INTEGER,
        closed INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE onchain_outputs (
        channel_id BLOB NOT NULL,
        vout INTEGER NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        value INTEGER NOT NULL,
        scriptpubkey BLOB NOT NULL,
        csv INTEGER NOT NULL,
        witness_script BLOB,
        point BLOB,
        sweep_tx BLOB,
        resolved_txid BLOB,
        resolved_height INTEGER,
        PRIMARY KEY (channel_id, vout)
    );
    """,
    # The HTLC switch's forwards (listforwards; the in->out mapping persisted before the offer).
    # IF NOT EXISTS: early development databases created this table outside the migrations.
    """
CREATE TABLE IF NOT EXISTS forwards (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    in_channel_id BLOB NOT NULL,
    in_htlc_id INTEGER NOT NULL,
    in_scid INTEGER,
    in_msat INTEGER NOT NULL,
    in_cltv INTEGER NOT NULL,
    payment_hash BLOB NOT NULL,
    out_scid INTEGER,
    out_channel_id BLOB,
    out_htlc_id INTEGER,
    out_msat INTEGER,
    out_cltv INTEGER,
    status INTEGER NOT NULL,
    failcode INTEGER,
    received_time REAL NOT NULL,
    resolved_time REAL,
    shared_secret BLOB,
    preimage BLOB,
    fail_message BLOB,
    fail_onion BLOB,
    updated_index INTEGER NOT NULL DEFAULT 0,
    UNIQUE (in_channel_id, in_htlc_id)
)
    """,
    # 10: on-chain enforcement (BOLT 5).  Outputs followed by the resolver are now keyed by (txid, vout): a
    # second-stage HTLC transaction's output is followed too (txid x'' = an output of the funding spend itself,
    # as every row of the table it replaces); `info` holds the HTLC an output belongs to (JSON).  And every
    # HTLC ever committed in a channel (payment_hash, cltv_expiry, direction, amount): a revoked commitment of
    # the peer may hold HTLCs long gone from the channel state, and their scripts must be rebuilt to claim
    # them; and the preimages of HTLCs to claim on-chain (learned downstream or from our invoices after the
    # close); onchain_channels.info: HTLCs we offered with no output in the close (JSON).
    """
CREATE TABLE onchain_txouts (
    channel_id BLOB NOT NULL,
    txid BLOB NOT NULL,
    vout INTEGER NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    value INTEGER NOT NULL,
    scriptpubkey BLOB NOT NULL,
    csv INTEGER NOT NULL,
    witness_script BLOB,
    point BLOB,
    sweep_tx BLOB,
    resolved_txid BLOB,
    resolved_height INTEGER,
    info TEXT,
    PRIMARY KEY (channel_id, txid, vout)
);
INSERT INTO onchain_txouts (channel_id, txid, vout, kind, state, value, scriptpubkey, csv, witness_script, point,
    sweep_tx, resolved_txid, resolved_height)
    SELECT channel_id, x'', vout, kind, state, value, scriptpubkey, csv, witness_script, point, sweep_tx,
    resolved_txid, resolved_height FROM onchain_outputs;
DROP TABLE onchain_outputs;
CREATE TABLE channel_htlc_stubs (
    channel_id BLOB NOT NULL,
    offerer TEXT NOT NULL,
    htlc_id INTEGER NOT NULL,
    amount_msat INTEGER NOT NULL,
    payment_hash BLOB NOT NULL,
    cltv_expiry INTEGER NOT NULL,
    PRIMARY KEY (channel_id, offerer, htlc_id)
);
ALTER TABLE onchain_channels ADD COLUMN info TEXT;
CREATE TABLE onchain_preimages (
    payment_hash BLOB PRIMARY KEY,
    preimage BLOB NOT NULL
)
    """,
    # 11: our BOLT 12 offers (ampere.node.payments.offers): offer_id is CLN's (SHA256 of the offer's records); the invoices
    # answering them live in `invoices` with their lni1 string in `bolt11`.
    """
CREATE TABLE IF NOT EXISTS offers (
    offer_id BLOB PRIMARY KEY,
    bolt12 TEXT NOT NULL,
    label TEXT UNIQUE,
    active INTEGER NOT NULL,
    single_use INTEGER NOT NULL,
    created_at INTEGER NOT NULL
)
    """,
    # 12: channels stored in parts (ampere.node.channels.storage, issue 18): a write touches what changed, not the
    # whole record. channels.layout 1: `snapshot` holds only the part fixed at opening; channel_state the rest of
    # the record but its HTLCs and the peer's signatures (one small row per channel, rewritten per step);
    # channel_sigs the peer's signatures on our latest commitment and its HTLC transactions (rewritten when a
    # commitment_signed is received); channel_htlcs one row per HTLC of the record, in order (`pos`);
    # channel_htlc_onions its onion, written once. Rows of layout 0 (the whole record
    # in `snapshot`) are converted by the channel manager at start-up.
    # SQLite keeps the two HTLC tables WITHOUT ROWID (one b-tree each instead of the rowid table plus the index of
    # its primary key: an HTLC added or removed touches half the pages); PostgreSQL has no such option.
    {"sqlite3": _M12.replace("PRIMARY KEY (dbid, offerer, htlc_id)\n)", "PRIMARY KEY (dbid, offerer, htlc_id)\n) WITHOUT ROWID"),
     "postgres": _pg(_M12)},
    # 13: pages written per HTLC (issue 18). A 1,366-byte onion does not fit in a WITHOUT ROWID b-tree's cell
    # (at most ~1,000 bytes of a 4 kB page): every onion took an overflow page, taken from and given back to the
    # freelist, so adding and removing an HTLC also rewrote page 1 and a freelist page (~3.5 pages of a payment's
    # ~25). channel_onions is a rowid table (a cell holds up to ~4,060 bytes) keyed by the HTLC's place,
    # k = dbid * 2^40 + channel_htlcs.pos (pos counts a channel's HTLCs: 2^40 is never reached), so no index
    # b-tree either: one page per onion written or deleted. channel_htlc_stubs (one row per HTLC ever held,
    # ~80 bytes) becomes WITHOUT ROWID in SQLite: its rows went to the table and to its key's index, two pages.
    {"sqlite3": _M13 + ";\n" + _M13_STUBS, "postgres": _pg(_M13)},
    # 14: pages written per payment on the payer (issue 18). Of a payment's ~5.5 WAL pages, ~1.3 were the payment
    # row's indexes and key counter, none of which anything reads: the engine loads every row at start
    # (ORDER BY id) and keeps (payment_hash, partid, groupid) unique itself (PaymentEngine._send serialises the
    # parts of one key and checks them against the others), so `UNIQUE (payment_hash, partid, groupid)` (a random
    # leaf of its index per payment: the hash is random), `payments_status` (a leaf per insert and two per status
    # change) and AUTOINCREMENT's sqlite_sequence row go. An id is still never reused: SQLite gives a new row
    # max(id) + 1, and the only delete (a failed part replaced by its retry, sendpay._insert_op) runs in the
    # transaction that first inserts the retry, so max(id) never goes down. PostgreSQL keeps its BIGSERIAL key
    # (a sequence: nothing to rebuild) and loses the same two indexes.
    {"sqlite3": _M14_SQLITE,
     "postgres": "DROP INDEX IF EXISTS payments_status;\n"
                 "ALTER TABLE payments DROP CONSTRAINT IF EXISTS payments_payment_hash_partid_groupid_key"},
    # 15: no statement; the version alone (issue 18, session 13). An HTLC's state, removal and preimage-reported
    # flag now live in channel_state (`htlc_states`, `htlc_removals`, `htlc_reported`) and its channel_htlcs row is
    # never rewritten (ampere.node.channels.storage): a version that reads them from the row must not open such a database,
    # and a version check is what stops it ("newer than this Ampere"). This version reads either form.
    {"sqlite3": "", "postgres": ""},
]


def schema_tables() -> list[str]:
    """Every table the migrations create, in creation order (for copying and comparing databases)."""
    import re

    tables: list[str] = []
    for entry in MIGRATIONS:
        for m in re.finditer(r"(CREATE|DROP)\s+TABLE\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?(\w+)",
                             migration_sql(entry, "sqlite3"), re.I):
            if m[1].upper() == "CREATE" and m[2] not in tables:
                tables.append(m[2])
            elif m[1].upper() == "DROP" and m[2] in tables:
                tables.remove(m[2])
    return tables

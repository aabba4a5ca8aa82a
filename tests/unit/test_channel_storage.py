"""The channel record stored in parts (ampere.node.channels.storage, issue 18) on both engines: every record a
real channel produces reads back equal after its delta, a step writes what changed (not the whole channel), and
an onion is written once and deleted when its HTLC leaves the record."""

import asyncio
import json

import pytest

from ampere.ln.channel import core
from ampere.ln.channel.state import encode_record
from ampere.node.channels import storage
from ampere.primitives.crypto import sha256
from ampere.store.sqlite import SqliteStore
from ampere.testing.channel_pair import Pair

N_HTLCS = 30  # the default max_accepted_htlcs of the test pair
DBID = 7


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(params=["sqlite3", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    if request.param == "sqlite3":
        s = SqliteStore(str(tmp_path / "db.sqlite3"))
    else:
        from ampere.store.postgres import PostgresStore

        s = PostgresStore(request.getfixturevalue("postgres_shared").create_db(), on_fatal=lambda msg: None)
    run(s.open())
    yield s
    s.close_sync()


def _payments() -> list:
    """Every record party b (the payee) persisted while N_HTLCS payments were offered, held, then settled."""
    pair = Pair.open(funding_sat=5_000_000)
    a, b = pair.a, pair.b
    preimages = [bytes([i + 1]) * 32 for i in range(N_HTLCS)]
    for i, pre in enumerate(preimages):
        a.apply(core.offer_htlc(a.ch, a.signer, 1_000_000 + i, sha256(pre), 700, bytes([i]) * 1366))
    pair.pump()
    assert len(b.ch.htlcs) == N_HTLCS
    for i, pre in enumerate(preimages):
        b.apply(core.fulfill_htlc(b.ch, b.signer, i, pre))
        pair.pump()
    assert b.ch.htlcs == ()
    return [u.record for u in b.updates]


def _param_bytes(d: storage.Delta, skip: tuple[str, ...] = ()) -> int:
    return sum(len(p) for sql, params in d.statements if not sql.startswith(skip)
               for p in params if isinstance(p, (bytes, str)))


def test_every_record_reads_back_and_writes_are_proportional(store):
    records = _payments()
    written = None
    onions_written = 0
    biggest_whole = 0
    for record in records:
        d = storage.first_write(DBID, record, ()) if written is None else storage.delta(DBID, record, written, None, ())
        store.run_sync(d.apply)
        written = d.after
        parts = store.run_sync(storage.read_parts)[DBID]
        static = written.static
        assert storage.assemble(static, parts[0], parts[1], parts[2]) == record
        onions = [s for s, _ in d.statements if s.startswith("INSERT INTO channel_onions")]
        onions_written += len(onions)
        whole = len(encode_record(record))
        biggest_whole = max(biggest_whole, whole)
        if written is not None and d is not None and record is not records[0]:
            # What a step writes: the state row, the signatures when a commitment_signed replaced them, the
            # HTLC rows that changed, the onions of HTLCs new to the record; never the untouched HTLCs.
            small = _param_bytes(d, ("INSERT INTO channel_onions", "UPDATE channel_sigs"))
            assert small <= 1_500 + 300 * d.htlc_rows, (small, d.htlc_rows, len(record["htlcs"]))
    assert onions_written == N_HTLCS  # once each
    assert biggest_whole > 50_000     # the whole record with 30 HTLCs in flight, which a step used to write
    counts = store.run_sync(lambda db: [db.query(f"SELECT COUNT(*) FROM {t} WHERE dbid = ?", (DBID,))[0][0]
                                        for t in ("channel_htlcs", "channel_state", "channel_sigs")]
                            + [db.query("SELECT COUNT(*) FROM channel_onions WHERE k >= ? AND k < ?",
                                        (storage.onion_key(DBID, 0), storage.onion_key(DBID + 1, 0)))[0][0]])
    assert counts == [0, 1, 1, 0]


def test_unchanged_record_writes_nothing_but_a_changed_htlc_writes_one_row(store):
    records = _payments()
    full = max(records, key=lambda r: len(r["htlcs"]))
    d = storage.first_write(DBID, full, ())
    store.run_sync(d.apply)
    again = storage.delta(DBID, full, d.after, None, ())
    assert again.statements == []
    # An HTLC's state moved (four times in its life): only channel_state, which holds the states, is rewritten.
    moved = dict(full, htlcs=list(full["htlcs"]), update_id=full["update_id"] + 1)
    moved["htlcs"][5] = dict(moved["htlcs"][5], s=moved["htlcs"][5]["s"] + 1)
    state_only = storage.delta(DBID, moved, d.after, None, ())
    assert [s.split(" SET")[0] for s, _ in state_only.statements] == ["UPDATE channel_state"]
    store.run_sync(state_only.apply)
    parts = store.run_sync(storage.read_parts)[DBID]
    assert storage.assemble(d.after.static, *parts[:3]) == moved
    # So do its removal and the flag that its preimage was reported; and a removal can go again (the peer's
    # uncommitted fulfil forgotten at a disconnection): the rows stay as update_add_htlc made them.
    removal = [1, 9, "11" * 32, "", "", 0]
    changed = dict(moved, htlcs=list(moved["htlcs"]), update_id=moved["update_id"] + 1)
    changed["htlcs"][5] = dict(changed["htlcs"][5], pr=1, rm=removal)
    changed["htlcs"][7] = dict(changed["htlcs"][7], rm=removal)
    one = storage.delta(DBID, changed, state_only.after, None, ())
    assert [s.split(" SET")[0] for s, _ in one.statements] == ["UPDATE channel_state"]
    assert one.htlc_rows == 0
    store.run_sync(one.apply)
    parts = store.run_sync(storage.read_parts)[DBID]
    assert storage.assemble(d.after.static, *parts[:3]) == changed
    reverted = dict(changed, htlcs=list(changed["htlcs"]), update_id=changed["update_id"] + 1)
    reverted["htlcs"][7] = moved["htlcs"][7]
    back = storage.delta(DBID, reverted, one.after, None, ())
    assert [s.split(" SET")[0] for s, _ in back.statements] == ["UPDATE channel_state"]
    store.run_sync(back.apply)
    parts = store.run_sync(storage.read_parts)[DBID]
    assert storage.assemble(d.after.static, *parts[:3]) == reverted
    # What update_add_htlc fixed never changes; if it did, the row would be rewritten, not the change dropped.
    odd = dict(reverted, htlcs=list(reverted["htlcs"]), update_id=reverted["update_id"] + 1)
    odd["htlcs"][2] = dict(odd["htlcs"][2], c=odd["htlcs"][2]["c"] + 1)
    assert [s.split(" SET")[0] for s, _ in storage.delta(DBID, odd, back.after, None, ()).statements] == [
        "UPDATE channel_htlcs", "UPDATE channel_state"]
    changed = reverted
    # The signatures and the static part changed: written (they are compared by value, not by their encoding).
    sigs = dict(changed, local_sigs=["00" * 64], update_id=changed["update_id"] + 1)
    assert "UPDATE channel_sigs" in [s.split(" SET")[0] for s, _ in storage.delta(DBID, sigs, one.after, None,
                                                                                  ()).statements]
    static = dict(changed, announce=not changed["announce"])
    assert "UPDATE channels" in [s.split(" SET")[0] for s, _ in storage.delta(DBID, static, one.after, None,
                                                                              ()).statements]


def test_rows_of_schema_14_read_with_their_own_states_until_htlc_states_is_written(store):
    """A channel stored before the HTLC states moved to channel_state: every row carries its state (and removal,
    and reported flag) and channel_state has none of the lists; that reads back as it was, and the first write under
    this version makes the lists the ones read, without rewriting the rows."""
    records = _payments()
    # the record with the most HTLCs being removed: rows of schema 14 carrying their removal
    full = max(records, key=lambda r: (sum("rm" in h for h in r["htlcs"]), len(r["htlcs"])))
    assert any("rm" in h for h in full["htlcs"])
    d = storage.first_write(DBID, full, ())
    store.run_sync(d.apply)
    state = {k: v for k, v in full.items() if k not in storage._NOT_STATE}   # schema 14's channel_state
    store.run_sync(lambda db: db.execute("UPDATE channel_state SET record=? WHERE dbid=?",
                                         (storage._dumps(state).encode(), DBID)))
    for h in full["htlcs"]:                                                   # and its rows, state included
        store.run_sync(lambda db, h=h: db.execute(
            "UPDATE channel_htlcs SET htlc=? WHERE dbid=? AND offerer=? AND htlc_id=?",
            (storage._dumps({k: v for k, v in h.items() if k != "on"}), DBID, h["o"], h["id"])))
    parts = store.run_sync(storage.read_parts)[DBID]
    ch, written = storage.restore(d.after.static, parts, ())
    assert storage.assemble(d.after.static, *parts[:3]) == full
    assert len(ch.htlcs) == len(full["htlcs"])
    moved = dict(full, htlcs=list(full["htlcs"]), update_id=full["update_id"] + 1)
    moved["htlcs"][3] = dict(moved["htlcs"][3], s=moved["htlcs"][3]["s"] + 1)
    gone = next(i for i, h in enumerate(moved["htlcs"]) if "rm" in h)   # a removal forgotten: stale in its row
    moved["htlcs"][gone] = {k: v for k, v in moved["htlcs"][gone].items() if k != "rm"}
    step = storage.delta(DBID, moved, written, None, ())
    assert [s.split(" SET")[0] for s, _ in step.statements] == ["UPDATE channel_state"]
    store.run_sync(step.apply)
    parts = store.run_sync(storage.read_parts)[DBID]
    assert storage.assemble(d.after.static, *parts[:3]) == moved   # the row's stale state is not the one read


def test_htlc_states_not_matching_the_rows_is_refused(store):
    records = _payments()
    full = max(records, key=lambda r: len(r["htlcs"]))
    d = storage.first_write(DBID, full, ())
    store.run_sync(d.apply)
    store.run_sync(lambda db: db.execute("DELETE FROM channel_htlcs WHERE dbid=? AND htlc_id=?", (DBID, 0)))
    parts = store.run_sync(storage.read_parts)[DBID]
    with pytest.raises(ValueError, match="HTLC states for"):
        storage.restore(d.after.static, parts, ())
    state = json.loads(parts[0])
    gone = next(e[:2] for e in state["htlc_states"] if e[1] == 0)   # the HTLC whose row was deleted
    state["htlc_states"] = [e for e in state["htlc_states"] if e[:2] != gone]
    state["htlc_removals"] = [[*gone, [1, 9, "11" * 32, "", "", 0]]]
    with pytest.raises(ValueError, match="which has no row"):
        storage.restore(d.after.static, (json.dumps(state).encode(), *parts[1:]), ())


def test_states_follow_their_htlc_whatever_order_the_rows_were_written_in(store):
    """The rows' pos order is the order HTLCs entered the stored record, not the record's own: the peer's HTLC
    enters it when committed, after ours offered later but first in the record. Each state, removal and flag
    belongs to its HTLC by key (an interop run against Core Lightning caught them applied by position: an
    incoming HTLC read back with the outgoing one's state)."""
    records = _payments()
    full = next(r for r in records if len(r["htlcs"]) >= 3)
    first, second, third = (dict(h) for h in full["htlcs"][:3])
    first["o"], second["o"] = "r", "l"
    first["s"], second["s"], third["s"] = 3, 7, 11
    earlier = dict(full, htlcs=[second, third])               # these two stored first: pos 0 and 1
    d = storage.first_write(DBID, earlier, ())
    store.run_sync(d.apply)
    later = dict(full, htlcs=[first, dict(second, s=8), dict(third, rm=[1, 9, "22" * 32, "", "", 0], pr=1)],
                 update_id=full["update_id"] + 1)               # `first` enters the stored record now: pos 2
    step = storage.delta(DBID, later, d.after, None, ())
    store.run_sync(step.apply)
    parts = store.run_sync(storage.read_parts)[DBID]
    assert [json.loads(text)["id"] for text, _ in parts[2]] == [second["id"], third["id"], first["id"]]  # pos order
    got = storage.assemble(d.after.static, *parts[:3])
    assert got == later
    assert [(h["o"], h["s"]) for h in got["htlcs"]] == [("r", 3), ("l", 8), (third["o"], 11)]


def test_channels_row_columns_follow_in_place_changes():
    """ChannelRecord.cold() (the channels row's own columns) is cached, yet follows what setchannel, the meta
    fields and state changes do to the record in place: a change is never left unwritten."""
    from ampere.node.channels.manager import ChannelRecord, ChannelSettings

    pair = Pair.open()
    rec = ChannelRecord(DBID, bytes(33), pair.a.signer, pair.a.ch, mindepth=1,
                        settings=ChannelSettings(1, 10, 0, 10**9))
    first = rec.cold()
    assert rec.cold() is first  # nothing changed: not encoded again
    rec.settings.fee_ppm = 11   # as setchannel does
    second = rec.cold()
    assert second != first and '"fee_ppm": 11' in second[3]
    rec.meta["closer"] = "local"
    third = rec.cold()
    assert third != second and "closer" in third[5]
    rec.state_changes.append({"new_state": "X"})
    assert "X" in rec.cold()[4]


def test_migration_13_moves_onions_and_stubs(tmp_path):
    """A database at schema 12 with HTLCs in flight: onions move to channel_onions under their HTLC's place and
    read back with it, orphan onions are dropped, HTLC stubs are kept (SQLite: now WITHOUT ROWID)."""
    import sqlite3

    from ampere.store.migrations import MIGRATIONS, migration_sql, split_sql

    path = str(tmp_path / "old.sqlite3")
    conn = sqlite3.connect(path, isolation_level=None)
    for version in range(12):
        for stmt in split_sql(migration_sql(MIGRATIONS[version], "sqlite3")):
            conn.execute(stmt)
    conn.execute("PRAGMA user_version=12")
    conn.execute("INSERT INTO channel_state (dbid, update_id, record) VALUES (?, 1, ?)", (DBID, b"{}"))
    conn.execute("INSERT INTO channel_sigs (dbid, sigs) VALUES (?, '[]')", (DBID,))
    for pos, (offerer, hid) in enumerate([("l", 4), ("r", 9)], start=3):
        conn.execute("INSERT INTO channel_htlcs (dbid, offerer, htlc_id, pos, htlc) VALUES (?,?,?,?,?)",
                     (DBID, offerer, hid, pos, f'{{"o":"{offerer}","id":{hid}}}'))
        conn.execute("INSERT INTO channel_htlc_onions (dbid, offerer, htlc_id, onion) VALUES (?,?,?,?)",
                     (DBID, offerer, hid, bytes([hid]) * 1366))
    conn.execute("INSERT INTO channel_htlc_onions (dbid, offerer, htlc_id, onion) VALUES (?, 'l', 99, x'00')", (DBID,))
    conn.execute("INSERT INTO channel_htlc_stubs VALUES (x'01', 'l', 4, 1000, x'02', 700)")
    conn.close()

    s = SqliteStore(path)
    run(s.open())
    try:
        parts = s.run_sync(storage.read_parts)[DBID]
        assert parts[2] == [('{"o":"l","id":4}', bytes([4]) * 1366), ('{"o":"r","id":9}', bytes([9]) * 1366)]
        assert parts[3] == 5
        assert s.run_sync(lambda db: db.query("SELECT COUNT(*) FROM channel_onions"))[0][0] == 2
        assert s.run_sync(lambda db: db.query("SELECT * FROM channel_htlc_stubs")) == [
            (b"\x01", "l", 4, 1000, b"\x02", 700)]
        sql = s.run_sync(lambda db: db.query("SELECT sql FROM sqlite_schema WHERE name = 'channel_htlc_stubs'"))[0][0]
        assert "WITHOUT ROWID" in sql
    finally:
        s.close_sync()

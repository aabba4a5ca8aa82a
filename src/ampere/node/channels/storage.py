"""How a channel's durable record lies in the store, and what one write of it changes (issue 18).

The channel core hands the runtime its whole durable record (`Channel.persisted_record`, a JSON-ready dict built
once per write from the last step's StoredForm); writing all of it each time (~5 kB + 2.7 kB per HTLC, onions
inline) made a step cost what the channel holds, not what changed. So the record is stored in parts, and a write
touches only the parts that differ from what the store already holds (`ChannelRows.delta`, against `Written`, the last committed form):

  channels.snapshot      the part fixed at opening (funding, both pubkey sets, both configs: "static"),
                         written when the channel is inserted; `channels` is rewritten only when one of its own
                         columns changes (state, settings, meta, funding position, ...), not on every step.
  channel_state          one small row per channel: update_id and the rest of the record without its HTLCs
                         and signatures (balances, commitment numbers, points, shachain, flags).
  channel_sigs           the peer's signatures on our latest commitment and its HTLC transactions (64 bytes
                         each, so as many as HTLCs): rewritten only when a commitment_signed replaced them.
  channel_htlcs          one row per HTLC of the record: what its update_add_htlc fixed (amount, hash, expiry,
                         ids, blinding point; not the onion, see below), inserted when the HTLC enters the record
                         and deleted when it leaves (settled into the balances); never rewritten. `pos` counts
                         the HTLCs in the order they entered the STORED record, which is not always the record's
                         (a peer's HTLC enters it once committed, after ours offered meanwhile).
                         What moves during an HTLC's life is in channel_state, each entry naming its HTLC by
                         (offerer, id): `htlc_states` (the state, four moves per HTLC; in the record's order, which
                         it gives back), `htlc_removals` (the removal of those being fulfilled or failed) and
                         `htlc_reported` (those whose preimage was reported). Each move
                         comes with a step that rewrites channel_state anyway, so it costs a few bytes of that row,
                         not a statement and a ~250-byte row (the payer made 14.8 statements per payment in the
                         ten-channel case with them in the rows, 11.0 without; session 13). Rows written before
                         (schema 14) still carry their own state, removal and flag; each of the three lists, once
                         written, is the one read (schema 15 keeps older versions from opening such a database).
  channel_onions         the HTLC's onion_routing_packet (1,366 bytes), written once with the HTLC's row and
                         deleted with it; keyed by `onion_key(dbid, pos)` in a rowid table, where the onion
                         fits in one cell (migration 13: no overflow page, no index b-tree).

Why rows and not an append-only log of deltas with checkpoints: an UPDATE of the rows that changed IS a delta,
but one the database applies in place, so loading needs no replay, there is no checkpoint policy to tune or
log to compact, a crash can never leave a log longer than its checkpoint can absorb, and the same SQL runs on
SQLite and PostgreSQL. The sizes are the same order: a step that changes one HTLC's state writes that HTLC's
~250-byte row plus the ~1 kB channel_state row.

Durability is unchanged: every part of one record is written in the same transaction (the store's write), so a
crash leaves the previous record or the new one, whole; the runtime answers/sends nothing before that write
returns. Records stored whole by earlier versions (`channels.layout` 0) are converted at start-up, in one
transaction, before anything else reads them.
"""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass, field
from typing import Any, Callable

from ampere.ln.channel.state import Channel, onion_bytes

LAYOUT_WHOLE = 0   # channels.snapshot is the whole record (before issue 18)
LAYOUT_PARTS = 1   # the record in parts, as above

# The record's keys fixed at opening (ampere.ln.channel.state._static_json); "v" goes with them.
STATIC_KEYS = frozenset(("v", "channel_id", "funding", "opener", "channel_type", "local_pubkeys", "remote_pubkeys",
                         "local", "remote", "announce", "minimum_depth"))

HtlcKey = tuple[str, int]   # (offerer "l"/"r", htlc_id)
# channel_onions.k = dbid * 2^40 + the HTLC's pos (pos counts the HTLCs a channel ever stored: 2^40 of them, a
# thousand a second for 35 years, is never reached; the check below refuses rather than collide).
_POS_BITS = 40
_ONION_K = f"dbid * {1 << _POS_BITS} + pos"


def onion_key(dbid: int, pos: int) -> int:
    if not 0 <= pos < 1 << _POS_BITS:
        raise ValueError(f"HTLC position {pos} out of range for channel {dbid}")
    return (dbid << _POS_BITS) + pos
_APART = frozenset(("htlcs", "local_sigs"))
# channel_state's lists of what moves in an HTLC's life, each entry naming its HTLC (not keys of the record itself).
HTLC_STATES, HTLC_REMOVALS, HTLC_REPORTED = "htlc_states", "htlc_removals", "htlc_reported"
_MOVING = frozenset(("s", "rm", "pr"))        # an HTLC dict's keys kept in channel_state
_NOT_IN_ROW = _MOVING | {"on"}                 # nor is its onion in its row (channel_onions)
_ABSENT = object()
_NOT_STATE = STATIC_KEYS | _APART
# The static part's values in a fixed order: a write compares them with those last written (the same objects while
# the core's static cache holds: compared by identity) instead of building the part's dict.
_static_values = operator.itemgetter(*sorted(STATIC_KEYS))


# One encoder for every part: json.dumps with arguments builds a JSONEncoder per call (a quarter of its time for
# a ~1 kB state part). The same bytes as json.dumps(obj, separators=(",", ":"), sort_keys=True); no circular check
# (a record is plain JSON data, built by the core).
_ENCODE = json.JSONEncoder(separators=(",", ":"), sort_keys=True, check_circular=False).encode


def _dumps(obj: Any) -> str:
    return _ENCODE(obj)


def _static(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k in STATIC_KEYS}


def static_part(record: dict[str, Any]) -> bytes:
    return _dumps(_static(record)).encode()


def state_part(record: dict[str, Any]) -> bytes:
    part = {k: v for k, v in record.items() if k not in _NOT_STATE}
    htlcs = record["htlcs"]
    # Each entry names its HTLC: the rows' `pos` order is the order HTLCs entered the STORED record, which need not
    # be the record's (a peer's update_add_htlc enters it only once committed, after ours that came later), so
    # htlc_states, in the record's order, also gives that order back.
    part[HTLC_STATES] = [[h["o"], h["id"], h["s"]] for h in htlcs]
    part[HTLC_REMOVALS] = [[h["o"], h["id"], h["rm"]] for h in htlcs if "rm" in h]
    part[HTLC_REPORTED] = [[h["o"], h["id"]] for h in htlcs if h.get("pr")]
    return _dumps(part).encode()


def sigs_part(record: dict[str, Any]) -> str:
    return _dumps(record["local_sigs"])


def htlc_part(h: dict[str, Any]) -> str:
    return _dumps({k: v for k, v in h.items() if k not in _NOT_IN_ROW})


def _row_changed(prev: dict[str, Any], h: dict[str, Any]) -> bool:
    """Whether an HTLC's row must be rewritten: what its update_add_htlc fixed differs (never expected; written
    rather than dropped if it happens). What moves is in channel_state."""
    if prev == h:
        return False
    return any(k not in _MOVING and prev.get(k, _ABSENT) != v for k, v in h.items()) or any(
        k not in _MOVING and k not in h for k in prev)


@dataclass
class Written:
    """What the store holds for one channel (layout 1), as of the last committed write."""

    static: bytes
    state: bytes
    sigs: str
    htlcs: dict[HtlcKey, dict[str, Any]]   # the HTLC dicts of the record last written (compared by value)
    next_pos: int
    cold: tuple = ()                       # the channels row's own columns last written
    # The values `static` (`_static_values` of the record) and `sigs` were encoded from, when known: a write
    # compares the record's values with them (no JSON encoding of parts that did not change: the static part never
    # does after opening).
    static_obj: tuple | None = None
    sigs_obj: Any = None


@dataclass
class Delta:
    """The statements of one write and the Written it leaves behind once committed."""

    statements: list[tuple[str, tuple]] = field(default_factory=list)
    after: Written | None = None
    htlc_rows: int = 0       # HTLC rows inserted or updated (for tests and benchmarks)

    def apply(self, db: Any, between: Callable[[], None] | None = None) -> None:
        """Run on the database thread inside the store's transaction. `between` runs after the HTLC and signature
        rows, before channel_state (a --dev-crash-before point: a kill there must leave the previous record whole)."""
        for sql, params in self.statements:
            if between is not None and sql.startswith(("UPDATE channel_state", "INSERT INTO channel_state")):
                between()
            db.execute(sql, params)


def _key(h: dict[str, Any]) -> HtlcKey:
    return (h["o"], int(h["id"]))


def delta(dbid: int, record: dict[str, Any], written: Written | None, cold_sql: tuple[str, tuple] | None,
          cold: tuple) -> Delta:
    """The statements taking the stored form from `written` (None: nothing stored for this channel in layout 1
    yet, beyond the channels row) to `record`. `cold_sql` writes the channels row (its INSERT when the channel is
    new, else its UPDATE, issued only when `cold` differs from what was written)."""
    d = Delta()
    st = d.statements
    static_obj = _static_values(record)
    if written is None:
        static = static_part(record)
    else:
        static = written.static
        if (written.static_obj is None or static_obj != written.static_obj) \
                and static != (new_static := static_part(record)):
            static = new_static   # not expected after opening, but never silently dropped
            st.append(("UPDATE channels SET snapshot=? WHERE dbid=?", (static, dbid)))
    if cold_sql is not None and (written is None or written.cold != cold):
        st.append(cold_sql)
    old_htlcs = {} if written is None else written.htlcs
    new_htlcs: dict[HtlcKey, dict[str, Any]] = {}
    pos = 0 if written is None else written.next_pos
    for h in record["htlcs"]:
        key = (h["o"], h["id"])   # (_key, inline: once per HTLC per write)
        new_htlcs[key] = h
        prev = old_htlcs.get(key)
        if prev is None:
            st.append(("INSERT INTO channel_htlcs (dbid, offerer, htlc_id, pos, htlc) VALUES (?,?,?,?,?)",
                       (dbid, key[0], key[1], pos, htlc_part(h))))
            st.append(("INSERT INTO channel_onions (k, onion) VALUES (?,?)",
                       (onion_key(dbid, pos), onion_bytes(h["on"]))))
            pos += 1
            d.htlc_rows += 1
        elif prev is not h and _row_changed(prev, h):
            st.append(("UPDATE channel_htlcs SET htlc=? WHERE dbid=? AND offerer=? AND htlc_id=?",
                       (htlc_part(h), dbid, key[0], key[1])))
            d.htlc_rows += 1
    for key in old_htlcs.keys() - new_htlcs.keys():
        # Settled into the balances (or an uncommitted add forgotten): its onion and its row go (the onion first:
        # its key is the row's pos).
        st.append((f"DELETE FROM channel_onions WHERE k = (SELECT {_ONION_K} FROM channel_htlcs WHERE dbid=? AND "
                   "offerer=? AND htlc_id=?)", (dbid, *key)))
        st.append(("DELETE FROM channel_htlcs WHERE dbid=? AND offerer=? AND htlc_id=?", (dbid, *key)))
    sigs_obj = record["local_sigs"]
    sigs = written.sigs if written is not None and written.sigs_obj is not None and sigs_obj == written.sigs_obj \
        else sigs_part(record)
    if written is None:
        st.append(("INSERT INTO channel_sigs (dbid, sigs) VALUES (?,?)", (dbid, sigs)))
    elif sigs != written.sigs:
        st.append(("UPDATE channel_sigs SET sigs=? WHERE dbid=?", (sigs, dbid)))
    state = state_part(record)
    if written is None:
        st.append(("INSERT INTO channel_state (dbid, update_id, record) VALUES (?,?,?)",
                   (dbid, int(record["update_id"]), state)))
    elif state != written.state:
        st.append(("UPDATE channel_state SET update_id=?, record=? WHERE dbid=?",
                   (int(record["update_id"]), state, dbid)))
    d.after = Written(static, state, sigs, new_htlcs, pos, cold, static_obj, sigs_obj)
    return d


def first_write(dbid: int, record: dict[str, Any], cold: tuple) -> Delta:
    """Every part of a channel whose old rows (if any) are cleared first: a new channel, or a conversion."""
    d = delta(dbid, record, None, None, cold)
    d.statements[:0] = [("DELETE FROM channel_htlcs WHERE dbid=?", (dbid,)),
                        ("DELETE FROM channel_onions WHERE k >= ? AND k < ?",
                         (onion_key(dbid, 0), onion_key(dbid + 1, 0))),
                        ("DELETE FROM channel_sigs WHERE dbid=?", (dbid,)),
                        ("DELETE FROM channel_state WHERE dbid=?", (dbid,))]
    return d


Parts = tuple[bytes, str, list[tuple[str, bytes]], int]


def read_parts(db: Any) -> dict[int, Parts]:
    """dbid -> (channel_state.record, channel_sigs.sigs, [(htlc row JSON, onion)] in pos order, next pos), for
    every channel stored in parts."""
    out: dict[int, Parts] = {}
    for dbid, rec, sigs in db.query("SELECT s.dbid, s.record, g.sigs FROM channel_state s JOIN channel_sigs g "
                                    "ON g.dbid = s.dbid"):
        out[int(dbid)] = (bytes(rec), sigs, [], 0)
    rows = db.query(f"SELECT h.dbid, h.pos, h.htlc, o.onion FROM channel_htlcs h JOIN channel_onions o "
                    f"ON o.k = h.dbid * {1 << _POS_BITS} + h.pos "
                    "ORDER BY h.dbid, h.pos")
    for dbid, pos, htlc, onion in rows:
        entry = out.get(int(dbid))
        if entry is None:
            continue
        entry[2].append((htlc, bytes(onion)))
        out[int(dbid)] = (entry[0], entry[1], entry[2], int(pos) + 1)
    return out


def assemble(static: bytes, state: bytes, sigs: str, htlcs: list[tuple[str, bytes]]) -> dict[str, Any]:
    """The whole record from its parts (the inverse of static_part/state_part/sigs_part/htlc_part)."""
    record = json.loads(static)
    state_obj = json.loads(state)
    states = state_obj.pop(HTLC_STATES, None)
    removals = state_obj.pop(HTLC_REMOVALS, None)
    reported = state_obj.pop(HTLC_REPORTED, None)
    record.update(state_obj)
    record["local_sigs"] = json.loads(sigs)
    items = []
    for text, onion in htlcs:
        h = json.loads(text)
        h["on"] = onion.hex()
        items.append(h)
    # A row of schema 14 carries its own state, removal and flag: each is stale once its list exists. Written in
    # one transaction with the rows, so any mismatch is a damaged database, never a state to guess.
    if states is not None or removals is not None or reported is not None:
        by_key = {_key(h): h for h in items}
        if len(by_key) != len(items):
            raise ValueError("channel record holds two HTLC rows with the same key")

        def row(o: Any, hid: Any) -> dict[str, Any]:
            h = by_key.get((o, hid))
            if h is None:
                raise ValueError(f"channel record names HTLC {o}/{hid}, which has no row")
            return h
        if states is not None:
            if len(states) != len(items):
                raise ValueError(f"channel record holds {len(states)} HTLC states for {len(items)} HTLC rows")
            ordered = []
            for o, hid, st in states:
                h = row(o, hid)
                h["s"] = st
                ordered.append(h)
            if len({id(h) for h in ordered}) != len(items):
                raise ValueError("channel record holds two states for one HTLC")
            items = ordered   # the record's order (see state_part)
        if removals is not None:
            for h in items:
                h.pop("rm", None)
            for o, hid, rm in removals:
                row(o, hid)["rm"] = rm
        if reported is not None:
            for h in items:
                h.pop("pr", None)
            for o, hid in reported:
                row(o, hid)["pr"] = 1
    record["htlcs"] = items
    return record


def restore(static: bytes, parts: Parts, cold: tuple) -> tuple[Channel, Written]:
    """The channel and its Written from a layout-1 row and its parts."""
    state, sigs, htlcs, next_pos = parts
    record = assemble(static, state, sigs, htlcs)
    ch = Channel.from_record(record)
    return ch, Written(static, state, sigs, {_key(h): h for h in record["htlcs"]}, next_pos, cold,
                       _static_values(record), record["local_sigs"])

"""Persisted channel state: storage round trip, versioning, state transitions, HTLC state table."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from ampere.ln.channel import core
from ampere.ln.channel.commitment import Side
from ampere.ln.channel.htlcs import HtlcState, Status, on_recv_commit, on_recv_revoke, on_send_commit, on_send_revoke, status
from ampere.testing.channel_pair import Pair
from ampere.ln.channel.state import (
    TRANSITIONS,
    Channel,
    ChannelState,
    StateTransitionError,
    StorageError,
    set_state,
)
from ampere.primitives.crypto import sha256

ONION = bytes(range(256)) * 5 + bytes(86)


def busy_pair() -> Pair:
    """A channel with HTLCs in several states, fee updates, secrets and a shutdown script."""
    pair = Pair.open(push_msat=300_000_000)
    a, b = pair.a, pair.b
    for i in range(3):
        a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000 + i, sha256(bytes([i]) * 32), 700 + i, ONION))
    b.apply(core.offer_htlc(b.ch, b.signer, 7_000_000, sha256(b"\x09" * 32), 800, ONION))
    pair.pump()
    b.apply(core.fulfill_htlc(b.ch, b.signer, 0, bytes([0]) * 32))
    b.apply(core.fail_htlc(b.ch, b.signer, 1, b"\x01\x02"))
    a.apply(core.update_fee(a.ch, a.signer, 3000))
    pair.deliver(b)
    pair.deliver(b)
    pair.commit(b)
    return pair


def test_round_trip_through_bytes():
    pair = busy_pair()
    for p in (pair.a, pair.b):
        data = p.ch.to_bytes()
        back = Channel.from_bytes(data)
        assert back.to_bytes() == data
        assert json.loads(data)["v"] == 1
        # Transient fields come back as after a disconnection.
        assert not back.connected and not back.reestablished and back.closing is None
        assert back.htlcs == p.ch.htlcs or any(h.state in (HtlcState.RCVD_ADD_HTLC, HtlcState.RCVD_REMOVE_HTLC)
                                               for h in p.ch.htlcs)
        assert (back.local_ctn, back.remote_ctn, back.remote_secrets, back.params) == (
            p.ch.local_ctn, p.ch.remote_ctn, p.ch.remote_secrets, p.ch.params)
        # The runtime's copy is what the last Persist carried.
        assert p.stored == data


def test_restored_channel_continues():
    pair = busy_pair()
    for p in (pair.a, pair.b):
        pair.disconnect()
        p.crash()
    pair.reconnect()
    pair.pump()
    a, b = pair.a, pair.b
    assert core.local_commitment_tx(a.ch, a.signer).txid() == core.remote_commitment_tx(b.ch).txid


def test_storage_errors_are_typed():
    pair = Pair.open()
    data = json.loads(pair.a.ch.to_bytes())
    with pytest.raises(StorageError):
        Channel.from_bytes(b"not json")
    with pytest.raises(StorageError):
        Channel.from_bytes(json.dumps({**data, "v": 2}).encode())
    broken = dict(data)
    del broken["ctn"]
    with pytest.raises(StorageError):
        Channel.from_bytes(json.dumps(broken).encode())


def test_transition_table_is_checked():
    pair = Pair.open()
    ch = pair.a.ch
    assert set_state(ch, ChannelState.CHANNELD_SHUTTING_DOWN).state is ChannelState.CHANNELD_SHUTTING_DOWN
    with pytest.raises(StateTransitionError):
        set_state(ch, ChannelState.CLOSINGD_COMPLETE)
    with pytest.raises(StateTransitionError):
        set_state(replace(ch, state=ChannelState.CLOSED), ChannelState.CHANNELD_NORMAL)
    assert TRANSITIONS[ChannelState.CLOSED] == frozenset()
    assert {s.value for s in ChannelState} >= {"CHANNELD_AWAITING_LOCKIN", "CHANNELD_NORMAL", "CHANNELD_SHUTTING_DOWN",
                                               "CLOSINGD_SIGEXCHANGE", "CLOSINGD_COMPLETE", "AWAITING_UNILATERAL",
                                               "FUNDING_SPEND_SEEN", "ONCHAIN", "CLOSED"}


def test_htlc_states_keep_cln_numbering_and_walk_both_commitments():
    # Stored values: CLN common/htlc_state.h order.
    assert [s.value for s in HtlcState] == list(range(20))
    assert HtlcState.SENT_ADD_HTLC == 0 and HtlcState.RCVD_ADD_HTLC == 10 and HtlcState.SENT_REMOVE_ACK_REVOCATION == 19
    # An HTLC we offer: sent -> in theirs -> they revoke -> in ours -> we revoke.
    s = HtlcState.SENT_ADD_HTLC
    trail = []
    for ev in (on_send_commit, on_recv_revoke, on_recv_commit, on_send_revoke):
        s = ev(s)
        trail.append((s.name, status(s, Side.LOCAL), status(s, Side.REMOTE)))
    assert trail == [("SENT_ADD_COMMIT", Status.PENDING, Status.IN),
                     ("RCVD_ADD_REVOCATION", Status.PENDING, Status.IN),
                     ("RCVD_ADD_ACK_COMMIT", Status.IN, Status.IN),
                     ("SENT_ADD_ACK_REVOCATION", Status.IN, Status.IN)]
    # Their removal of it: out of ours first, then out of theirs.
    s = HtlcState.RCVD_REMOVE_HTLC
    for ev in (on_recv_commit, on_send_revoke, on_send_commit, on_recv_revoke):
        s = ev(s)
    assert s is HtlcState.RCVD_REMOVE_ACK_REVOCATION
    # Events that do not concern a state leave it alone.
    assert on_recv_commit(HtlcState.SENT_ADD_HTLC) is HtlcState.SENT_ADD_HTLC


def test_stored_form_key_is_exactly_what_the_record_reads():
    """persist.finish decides whether to persist by comparing the durable fields (state.durable_key), not the records:
    a field the record reads but the key missed would be a change never written."""
    from ampere.ln.channel import state as st

    read: set[str] = set()

    class Spy:
        def __init__(self, ch):
            self._ch = ch

        def __getattr__(self, name):
            read.add(name)
            return getattr(self._ch, name)

    ch = busy_pair().b.ch
    assert st._to_json(Spy(ch)) == st._to_json(ch)
    assert read == set(st._DURABLE) | {"update_id"}


def test_finish_persists_a_change_of_any_durable_field_and_builds_the_record_of_the_final_state():
    from ampere.ln.channel.persist import finish

    ch = busy_pair().b.ch
    same = finish(ch, replace(ch, connected=not ch.connected, reestablished=True))
    assert not same.persists and same.state.update_id == ch.update_id
    assert same.state.persisted_record == ch.persisted_record
    moved = finish(ch, replace(ch, short_channel_id=(ch.short_channel_id or 0) + 1))
    (update,) = moved.persists
    assert update.update_id == moved.state.update_id == ch.update_id + 1
    assert update.record == moved.state.persisted_record == moved.state.to_record()
    assert update.snapshot == moved.state.to_bytes()
    assert Channel.from_bytes(update.snapshot).short_channel_id == (ch.short_channel_id or 0) + 1

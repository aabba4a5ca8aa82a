"""The prefix memos of views.view and state.revert_peer_uncommitted give what a computation from scratch gives.

Both remember their last result per channel and, when a channel's HTLC tuple starts with the one they saw, look
only at the HTLCs added since (a burst of update_add_htlc). A stale memo would misstate a commitment's balances
or HTLCs (a wrong signature, a limit checked against the wrong set) or the stored form: every step of random
sequences of adds, fulfils, fails, commitments and reconnections is checked against the memos cleared.
"""
from __future__ import annotations

import random

import pytest

from ampere.ln.channel import core, state, views
from ampere.ln.channel.commitment import Side
from ampere.ln.channel.htlcs import HtlcState, on_recv_commit, on_send_commit
from ampere.ln.channel.normal import _all_in
from ampere.primitives.crypto import sha256
from ampere.testing.channel_pair import Pair

ONION = bytes(1366)
TRANSITIONS = (None, on_send_commit, on_recv_commit, _all_in)


def _fresh(fn):
    memos = (views._MEMO.entries, state._REVERT_MEMO.entries)
    saved = [dict(m) for m in memos]
    for m in memos:
        m.clear()
    try:
        return fn()
    finally:
        for m, s in zip(memos, saved):
            m.clear()
            m.update(s)


def _check(ch) -> None:
    for owner in (Side.LOCAL, Side.REMOTE):
        for tr in TRANSITIONS:
            memo = views.view(ch, owner, tr)
            assert memo == _fresh(lambda: views.view(ch, owner, tr)), (owner, tr)
    reverted = state.revert_peer_uncommitted(ch)
    fresh = _fresh(lambda: state.revert_peer_uncommitted(ch))
    assert (reverted.htlcs, reverted.next_htlc_id_remote) == (fresh.htlcs, fresh.next_htlc_id_remote)


def _preimage(i: int) -> bytes:
    return i.to_bytes(32, "big")


@pytest.mark.parametrize("seed", range(6))
def test_memoised_views_and_stored_form_match_a_fresh_computation(seed):
    rng = random.Random(seed)
    pair = Pair.open(funding_sat=2_000_000, push_msat=800_000_000, wire=False)
    parties = (pair.a, pair.b)
    next_preimage = 1
    preimage_of: dict[bytes, bytes] = {}
    checked = 0
    for _ in range(220):
        p = rng.choice(parties)
        roll = rng.random()
        if roll < 0.35:  # a burst of adds: the case the memos are for
            for _k in range(rng.randint(1, 6)):
                pre = _preimage(next_preimage)
                next_preimage += 1
                preimage_of[sha256(pre)] = pre
                p.apply(core.offer_htlc(p.ch, p.signer, 1_000_000 + rng.randint(0, 5_000_000), sha256(pre),
                                        700, ONION))
                _check(p.ch)
        elif roll < 0.55:
            theirs = [h for h in p.ch.htlcs if h.offerer is Side.REMOTE
                      and h.state is HtlcState.RCVD_ADD_ACK_REVOCATION and h.removal is None]
            if theirs:
                h = rng.choice(theirs)
                if rng.random() < 0.7:
                    p.apply(core.fulfill_htlc(p.ch, p.signer, h.htlc_id, preimage_of[h.payment_hash]))
                else:
                    p.apply(core.fail_htlc(p.ch, p.signer, h.htlc_id, b"\x00" * 32))
        elif roll < 0.85:
            other = pair.other(p)
            for _k in range(rng.randint(1, 4)):
                if pair.deliver(other) is None:
                    break
                _check(p.ch)
        elif roll < 0.97:
            if p.commit_pending and pair.connected and core.needs_commitment(p.ch):
                pair.commit(p)
        else:
            pair.reconnect()
        for q in parties:
            _check(q.ch)
            checked += 1
    pair.pump()
    for q in parties:
        _check(q.ch)
    assert checked > 400
    # The sequences did exercise the memos: HTLCs were in flight together.
    assert next_preimage > 100


def test_a_view_after_an_append_reuses_the_prefix_and_stays_exact():
    pair = Pair.open(funding_sat=2_000_000, push_msat=800_000_000, wire=False)
    a = pair.a
    for i in range(1, 30):
        a.apply(core.offer_htlc(a.ch, a.signer, 1_000_000 * i, sha256(_preimage(i)), 700, ONION))
        v = views.next_view(a.ch, Side.REMOTE)
        # Every one of our adds is in the peer's next commitment, and paid out of our balance.
        assert [h.htlc_id for h in v.htlcs] == list(range(i))
        assert v.local_msat == a.ch.balance_local_msat - sum(1_000_000 * k for k in range(1, i + 1))
        assert views._MEMO.entries[(a.ch.channel_id, Side.REMOTE, on_send_commit)][0] is a.ch.htlcs

"""Normal operation: HTLC round trips, every BOLT 2 limit in both directions, update_fee, bad peer input."""
from __future__ import annotations

from dataclasses import replace

import pytest

from ampere.ln.channel import core, opening
from ampere.ln.channel.actions import (
    ActionOrderError,
    Broadcast,
    CommitmentNeeded,
    Disconnect,
    ErrorKind,
    HtlcFailed,
    HtlcFulfilled,
    NewPeerHtlc,
    Persist,
    Refusal,
    RefusalCode,
    SendMessage,
    Step,
)
from ampere.ln.channel.htlcs import HtlcState
from ampere.testing.channel_pair import Pair
from ampere.ln.channel.state import ChannelState
from ampere.primitives.crypto import sha256
from ampere.wire import messages as m

ONION = bytes(1366)
PRE = b"\x05" * 32
HASH = sha256(PRE)
SPK_A = b"\x00\x14" + b"\xaa" * 20
SPK_B = b"\x00\x14" + b"\xbb" * 20


def limited_pair(**b_params) -> Pair:
    pb = opening.LocalParams(shutdown_scriptpubkey=SPK_B, **b_params)
    pa = opening.LocalParams(shutdown_scriptpubkey=SPK_A, max_accepted_htlcs=4, htlc_minimum_msat=2000,
                             max_htlc_value_in_flight_msat=100_000_000)
    return Pair.open(funding_sat=1_000_000, push_msat=300_000_000, params_a=pa, params_b=pb)


def add_msg(ch, htlc_id, amount=10_000_000, cltv=600, payment_hash=HASH):
    return m.UpdateAddHtlc(channel_id=ch.channel_id, id=htlc_id, amount_msat=amount, payment_hash=payment_hash,
                           cltv_expiry=cltv, onion_routing_packet=ONION)


def assert_warn_disconnect(step: Step, text: str) -> None:
    assert step.error is not None and step.error.kind is ErrorKind.WARN_AND_DISCONNECT, step.error
    assert text in step.error.message
    assert isinstance(step.messages[0], m.Warning)
    assert any(isinstance(a, Disconnect) for a in step.actions)
    assert not any(isinstance(a, Persist) for a in step.actions)


def test_add_and_fulfill_round_trip_events_and_balances():
    pair = Pair.open()
    a, b = pair.a, pair.b
    step = a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, HASH, 700, ONION))
    kinds = [type(x) for x in step.actions]
    assert kinds[0] is Persist and SendMessage in kinds and CommitmentNeeded in [type(e) for e in step.events]
    pair.pump()
    new = [e for e in b.events if isinstance(e, NewPeerHtlc)]
    assert len(new) == 1 and new[0].amount_msat == 10_000_000 and new[0].onion == ONION
    assert a.ch.htlcs[0].state is HtlcState.SENT_ADD_ACK_REVOCATION
    assert b.ch.htlcs[0].state is HtlcState.RCVD_ADD_ACK_REVOCATION
    assert core.pending_incoming_htlcs(b.ch)[0].htlc_id == 0
    b.apply(core.fulfill_htlc(b.ch, b.signer, 0, PRE))
    pair.pump()
    assert [e.preimage for e in a.events if isinstance(e, HtlcFulfilled)] == [PRE]
    assert a.ch.htlcs == () and b.ch.htlcs == ()
    assert a.ch.balance_local_msat == 990_000_000 and b.ch.balance_local_msat == 10_000_000
    assert a.ch.local_ctn == b.ch.remote_ctn == 2


def test_fail_and_fail_malformed_are_reported_once_committed():
    pair = Pair.open()
    a, b = pair.a, pair.b
    for _ in range(2):
        a.apply(core.offer_htlc(a.ch, a.signer, 5_000_000, HASH, 700, ONION))
    pair.pump()
    b.apply(core.fail_htlc(b.ch, b.signer, 0, b"\x99" * 30))
    b.apply(core.fail_malformed_htlc(b.ch, b.signer, 1, sha256(ONION), 0x8000 | 0x4000 | 5))
    assert not any(isinstance(e, HtlcFailed) for e in a.events)
    pair.deliver(b)
    pair.deliver(b)
    assert not any(isinstance(e, HtlcFailed) for e in a.events)   # not before it is irrevocably committed
    pair.pump()
    failed = {e.htlc_id: e for e in a.events if isinstance(e, HtlcFailed)}
    assert failed[0].reason == b"\x99" * 30 and failed[1].failure_code == 0xC005
    assert a.ch.balance_local_msat == 1_000_000_000
    # A malformed failure needs the BADONION bit (local refusal).
    a.apply(core.offer_htlc(a.ch, a.signer, 5_000_000, HASH, 700, ONION))
    pair.pump()
    assert core.fail_malformed_htlc(b.ch, b.signer, 2, sha256(ONION), 0x4000 | 5).code is RefusalCode.BAD_ONION


def test_several_updates_share_one_commitment():
    pair = Pair.open()
    a = pair.a
    for i in range(3):
        a.apply(core.offer_htlc(a.ch, a.signer, 20_000_000 + i, HASH, 700, ONION))
    while a.outbox:
        pair.deliver(a)
    step = pair.commit(a)
    assert len([x for x in step.messages if isinstance(x, m.CommitmentSigned)]) == 1
    assert len(step.messages[0].htlc_signature) == 3
    assert not core.needs_commitment(a.ch)  # awaiting revoke_and_ack
    pair.pump()
    assert (a.ch.remote_ctn, a.ch.local_ctn) == (1, 1) and len(pair.b.events) > 0


# --- limits, sender side (typed refusals with the BOLT 4 failure) ---------------------------------

def test_sender_limits():
    pair = limited_pair(max_accepted_htlcs=3, htlc_minimum_msat=5000, max_htlc_value_in_flight_msat=50_000_000)
    a, b = pair.a, pair.b
    r = core.offer_htlc(a.ch, a.signer, 4999, HASH, 700, ONION)
    assert isinstance(r, Refusal) and r.code is RefusalCode.AMOUNT_BELOW_MINIMUM and r.failure_code == 0x1000 | 11
    r = core.offer_htlc(a.ch, a.signer, 60_000_000, HASH, 700, ONION)
    assert r.code is RefusalCode.MAX_IN_FLIGHT and r.failure_code == 0x1000 | 7
    r = core.offer_htlc(a.ch, a.signer, 10_000, HASH, 500_000_000, ONION)
    assert r.code is RefusalCode.BAD_CLTV
    assert core.offer_htlc(a.ch, a.signer, 0, HASH, 700, ONION).code is RefusalCode.BAD_AMOUNT
    assert core.offer_htlc(a.ch, a.signer, 10_000, HASH, 700, ONION[:-1]).code is RefusalCode.BAD_ONION
    for _ in range(3):
        assert not isinstance(a.apply(core.offer_htlc(a.ch, a.signer, 10_000, HASH, 700, ONION)), Refusal)
    r = core.offer_htlc(a.ch, a.signer, 10_000, HASH, 700, ONION)
    assert r.code is RefusalCode.TOO_MANY_HTLCS
    # The other direction: A's limits bind B.
    assert core.offer_htlc(b.ch, b.signer, 1999, HASH, 700, ONION).code is RefusalCode.AMOUNT_BELOW_MINIMUM
    assert core.offer_htlc(b.ch, b.signer, 100_000_001, HASH, 700, ONION).code is RefusalCode.MAX_IN_FLIGHT
    for _ in range(4):
        assert not isinstance(b.apply(core.offer_htlc(b.ch, b.signer, 10_000, HASH, 700, ONION)), Refusal)
    assert core.offer_htlc(b.ch, b.signer, 10_000, HASH, 700, ONION).code is RefusalCode.TOO_MANY_HTLCS
    pair.pump()
    assert len(a.ch.htlcs) == 7


def test_reserve_and_fee_payer_limits():
    # B (not the opener) holds 20k sat; A requires it to keep 1% = 10k sat.
    pair = Pair.open(funding_sat=1_000_000, push_msat=20_000_000)
    b = pair.b
    r = core.offer_htlc(b.ch, b.signer, 10_000_001, HASH, 700, ONION)
    assert r.code is RefusalCode.CANNOT_AFFORD and r.failure_code == 0x1000 | 7
    assert not isinstance(core.offer_htlc(b.ch, b.signer, 10_000_000, HASH, 700, ONION), Refusal)
    # A (the opener) must keep its reserve plus the commitment fee plus a fee spike buffer.
    pair2 = Pair.open(funding_sat=1_000_000, push_msat=985_000_000, feerate_per_kw=2500)
    a2, b2 = pair2.a, pair2.b
    assert core.offer_htlc(a2.ch, a2.signer, 2_000_000, HASH, 700, ONION).code is RefusalCode.CANNOT_AFFORD
    # ... and B may not add an HTLC that A could not pay the fee for (A has 15k sat: reserve 10k + fees).
    for _ in range(20):
        step = core.offer_htlc(b2.ch, b2.signer, 20_000_000, HASH, 700, ONION)
        if isinstance(step, Refusal):
            break
        b2.apply(step)
    assert isinstance(step, Refusal) and step.code is RefusalCode.FEE_PAYER_CANNOT_AFFORD


# --- limits, receiver side (the peer ignored them: warning and disconnect) ------------------------------

def test_receiver_enforces_htlc_minimum_cltv_and_ids():
    pair = limited_pair(htlc_minimum_msat=5000)
    b = pair.b
    assert_warn_disconnect(core.handle_message(b.ch, b.signer, add_msg(b.ch, 0, amount=4999)), "below our minimum")
    assert_warn_disconnect(core.handle_message(b.ch, b.signer, add_msg(b.ch, 0, amount=0)), "below our minimum")
    assert_warn_disconnect(core.handle_message(b.ch, b.signer, add_msg(b.ch, 0, cltv=500_000_000)), "block height")
    assert_warn_disconnect(core.handle_message(b.ch, b.signer, add_msg(b.ch, 1)), "expected 0")


def test_receiver_enforces_max_accepted_and_in_flight():
    pair = limited_pair(max_accepted_htlcs=2, max_htlc_value_in_flight_msat=30_000_000)
    b = pair.b
    ch = b.ch
    for i in range(2):
        step = core.handle_message(ch, b.signer, add_msg(ch, i))
        assert step.error is None
        ch = step.state
    assert_warn_disconnect(core.handle_message(ch, b.signer, add_msg(ch, 2)), "max_accepted_htlcs")
    assert_warn_disconnect(core.handle_message(ch, b.signer, add_msg(ch, 2, amount=10_000_001)), "max_accepted")
    ch = b.ch
    step = core.handle_message(ch, b.signer, add_msg(ch, 0, amount=25_000_000))
    assert_warn_disconnect(core.handle_message(step.state, b.signer, add_msg(ch, 1, amount=5_000_001)),
                           "max_htlc_value_in_flight")


def test_receiver_enforces_the_senders_reserve_and_fee():
    pair = Pair.open(funding_sat=1_000_000, push_msat=20_000_000)
    a = pair.a
    assert_warn_disconnect(core.handle_message(a.ch, a.signer, add_msg(a.ch, 0, amount=10_000_001)), "cannot afford")
    assert core.handle_message(a.ch, a.signer, add_msg(a.ch, 0, amount=10_000_000)).error is None
    # The opener must also pay the fee for its own HTLC at the current feerate.
    pair2 = Pair.open(funding_sat=1_000_000, push_msat=985_000_000, feerate_per_kw=2500)
    b2 = pair2.b
    assert_warn_disconnect(core.handle_message(b2.ch, b2.signer, add_msg(b2.ch, 0, amount=4_000_000)), "afford")


def test_trimmed_htlcs_are_in_no_output_and_both_sides_agree():
    pair = Pair.open(feerate_per_kw=2500)
    a, b = pair.a, pair.b
    a.apply(core.offer_htlc(a.ch, a.signer, 500_000, HASH, 700, ONION))       # 500 sat: below dust + fee
    a.apply(core.offer_htlc(a.ch, a.signer, 50_000_000, HASH, 701, ONION))
    pair.pump()
    ctx = core.remote_commitment_tx(a.ch)
    assert len(ctx.trimmed_htlcs) == 1 and len(ctx.htlc_outputs) == 1
    assert core.local_commitment_tx(b.ch, b.signer).txid() == ctx.txid


# --- update_fee ---------------------------------------------------------------------------------

def test_update_fee_flow_and_checks():
    pair = Pair.open(feerate_per_kw=2500)
    a, b = pair.a, pair.b
    assert core.update_fee(b.ch, b.signer, 3000).code is RefusalCode.NOT_OPENER
    assert core.update_fee(a.ch, a.signer, 252).code is RefusalCode.BAD_FEERATE
    assert core.update_fee(a.ch, a.signer, 10_000_000).code is RefusalCode.CANNOT_AFFORD
    a.apply(core.update_fee(a.ch, a.signer, 5000))
    pair.pump()
    assert a.ch.feerate_per_kw == b.ch.feerate_per_kw == 5000 and not a.ch.fee_updates
    assert core.remote_commitment_tx(a.ch).feerate_per_kw == 5000
    # Receiving side: from the non-opener, or outside our bounds.
    bad = m.UpdateFee(channel_id=a.ch.channel_id, feerate_per_kw=3000)
    assert_warn_disconnect(core.handle_message(a.ch, a.signer, bad), "does not pay the fee")
    env = core.Env(min_feerate_per_kw=1000, max_feerate_per_kw=20_000)
    too_high = m.UpdateFee(channel_id=b.ch.channel_id, feerate_per_kw=20_001)
    assert_warn_disconnect(core.handle_message(b.ch, b.signer, too_high, env), "outside")
    huge = m.UpdateFee(channel_id=b.ch.channel_id, feerate_per_kw=2_000_000)
    assert_warn_disconnect(core.handle_message(b.ch, b.signer, huge, core.Env(max_feerate_per_kw=10**9)), "afford")


def test_update_fee_low_bound_only_the_floor_on_anchor_channels():
    """option_anchors: a commitment below our estimates is CPFP'd when it must confirm, so an opener's low
    update_fee (CLN keeps anchor commitments at its 100-block estimate) is accepted down to the relay floor;
    static_remotekey channels keep our lower bound."""
    from ampere.ln.channel.scripts import ChannelType

    env = core.Env(min_feerate_per_kw=5000, max_feerate_per_kw=50_000)
    for ct, accepted in ((ChannelType.ANCHORS, True), (ChannelType.STATIC_REMOTEKEY, False)):
        pair = Pair.open(feerate_per_kw=6000, channel_type=ct)
        b = pair.b
        low = m.UpdateFee(channel_id=b.ch.channel_id, feerate_per_kw=1250)
        step = core.handle_message(b.ch, b.signer, low, env)
        if accepted:
            assert not any(isinstance(x, Disconnect) for x in step.actions) and step.error is None
        else:
            assert_warn_disconnect(step, "outside")
        floor = m.UpdateFee(channel_id=b.ch.channel_id, feerate_per_kw=252)
        assert_warn_disconnect(core.handle_message(b.ch, b.signer, floor, env), "outside")


# --- bad peer input: typed errors, never an exception ----------------------------------------------

def test_bad_signatures_and_secrets():
    pair = Pair.open()
    a, b = pair.a, pair.b
    a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, HASH, 700, ONION))
    pair.deliver(a)
    cs = pair.commit(a).messages[0]
    assert_warn_disconnect(core.handle_message(b.ch, b.signer, replace(cs, signature=bytes(64))), "bad commitment")
    assert_warn_disconnect(core.handle_message(b.ch, b.signer, replace(cs, htlc_signature=())), "HTLC signatures")
    wrong = replace(cs, htlc_signature=(cs.signature,))
    assert_warn_disconnect(core.handle_message(b.ch, b.signer, wrong), "bad HTLC signature")
    pair.deliver(a)  # the real commitment_signed
    raa = b.outbox[0]
    assert isinstance(raa, m.RevokeAndAck)
    step = core.handle_message(a.ch, a.signer, replace(raa, per_commitment_secret=b"\x01" * 32))
    assert step.error.kind is ErrorKind.CLOSE and "does not match" in step.error.message
    assert isinstance(step.messages[0], m.Error) and any(isinstance(x, Broadcast) for x in step.actions)
    assert step.state.state is ChannelState.AWAITING_UNILATERAL
    kinds = [type(x) for x in step.actions]
    assert kinds.index(Persist) < kinds.index(SendMessage)
    step = core.handle_message(a.ch, a.signer, replace(raa, per_commitment_secret=bytes(32)))
    assert step.error.kind is ErrorKind.CLOSE and "not a valid secret" in step.error.message


def test_bad_removals_and_unexpected_messages():
    pair = Pair.open()
    a = pair.a
    a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, HASH, 700, ONION))
    pair.pump()
    cid = a.ch.channel_id
    assert_warn_disconnect(core.handle_message(a.ch, a.signer, m.UpdateFulfillHtlc(
        channel_id=cid, id=0, payment_preimage=b"\x06" * 32)), "preimage does not match")
    assert_warn_disconnect(core.handle_message(a.ch, a.signer, m.UpdateFulfillHtlc(
        channel_id=cid, id=7, payment_preimage=PRE)), "not committed")
    assert_warn_disconnect(core.handle_message(a.ch, a.signer, m.UpdateFailMalformedHtlc(
        channel_id=cid, id=0, sha256_of_onion=bytes(32), failure_code=0x4000 | 5)), "BADONION")
    assert_warn_disconnect(core.handle_message(a.ch, a.signer, m.RevokeAndAck(
        channel_id=cid, per_commitment_secret=bytes(32), next_per_commitment_point=a.signer.commitment_point(0))),
        "unexpected revoke_and_ack")
    assert_warn_disconnect(core.handle_message(a.ch, a.signer, m.ClosingSigned(
        channel_id=cid, fee_satoshis=100, signature=bytes(64))), "closing_signed in state")
    assert_warn_disconnect(core.handle_message(a.ch, a.signer, m.FundingSigned(
        channel_id=cid, signature=bytes(64))), "unexpected FundingSigned")
    # Before channel_reestablish nothing else is accepted.
    pair.disconnect()
    a.apply(core.on_reconnect(a.ch, a.signer))
    assert_warn_disconnect(core.handle_message(a.ch, a.signer, m.UpdateFee(channel_id=cid, feerate_per_kw=300)),
                           "before channel_reestablish")
    # Another channel's message is ignored; the peer's error fails the channel and broadcasts our commitment.
    step = core.handle_message(a.ch, a.signer, m.UpdateFee(channel_id=b"\x00" * 32, feerate_per_kw=300))
    assert step.error.kind is ErrorKind.IGNORE and step.actions == ()
    step = core.handle_message(a.ch, a.signer, m.Error(channel_id=cid, data=b"bye"))
    assert step.state.state is ChannelState.AWAITING_UNILATERAL
    assert [type(x) for x in step.actions if not hasattr(x, "channel_id")][:2] == [Persist, Broadcast]


def test_local_requests_on_unknown_or_uncommitted_htlcs_are_refused():
    pair = Pair.open()
    a, b = pair.a, pair.b
    assert core.fulfill_htlc(b.ch, b.signer, 0, PRE).code is RefusalCode.UNKNOWN_HTLC
    a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, HASH, 700, ONION))
    pair.deliver(a)
    # BOLT 2: no fulfill before the HTLC is irrevocably committed.
    assert core.fulfill_htlc(b.ch, b.signer, 0, PRE).code is RefusalCode.BAD_HTLC_STATE
    pair.pump()
    assert core.fulfill_htlc(b.ch, b.signer, 0, b"\x07" * 32).code is RefusalCode.BAD_PREIMAGE
    assert not isinstance(core.fulfill_htlc(b.ch, b.signer, 0, PRE), Refusal)


def test_step_refuses_to_speak_before_persisting():
    from ampere.ln.channel.actions import ChannelUpdate
    upd = ChannelUpdate(b"\x00" * 32, 1, b"{}", ())
    with pytest.raises(ActionOrderError):
        Step(None, (SendMessage(m.Warning(channel_id=b"\x00" * 32, data=b"")), Persist(upd)))
    with pytest.raises(ActionOrderError):
        Step(None, (Broadcast(None), Persist(upd)))
    Step(None, (Persist(upd), SendMessage(None)))


def test_persist_precedes_every_signature_in_a_full_exchange():
    pair = Pair.open()
    a, b = pair.a, pair.b
    steps = []
    orig_apply = a.apply.__func__

    def recording(self, step):
        steps.append(step)
        return orig_apply(self, step)

    for p in (a, b):
        p.apply = recording.__get__(p)
    a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, HASH, 700, ONION))
    pair.pump()
    b.apply(core.fulfill_htlc(b.ch, b.signer, 0, PRE))
    pair.pump()
    revealing = (m.CommitmentSigned, m.RevokeAndAck, m.UpdateFulfillHtlc, m.UpdateAddHtlc)
    seen = 0
    for step in steps:
        if isinstance(step, Refusal):
            continue
        kinds = step.actions
        for i, act in enumerate(kinds):
            if isinstance(act, SendMessage) and isinstance(act.msg, revealing):
                seen += 1
                assert any(isinstance(x, Persist) for x in kinds[:i]), type(act.msg).__name__
    assert seen >= 6
    # Each record's typed changes (computed when asked) name what the round trip did.
    changed = {c.kind for step in steps if not isinstance(step, Refusal) for x in step.actions
               if isinstance(x, Persist) for c in x.update.changes}
    assert {"htlc", "local_commitment", "remote_commitment", "revocation_secret", "preimage",
            "htlc_removed"} <= changed, changed


def test_htlc_deadlines_fail_the_channel():
    pair = Pair.open()
    a, b = pair.a, pair.b
    a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, HASH, 700, ONION))
    pair.pump()
    assert core.on_block(a.ch, a.signer, 701).actions == ()
    step = core.on_block(a.ch, a.signer, 702)   # cltv_expiry + 2 blocks of grace
    assert step.state.state is ChannelState.AWAITING_UNILATERAL
    assert any(isinstance(x, Broadcast) for x in step.actions) and isinstance(step.messages[0], m.Error)
    # The receiver that fulfilled must go on-chain 18 blocks before cltv_expiry if the fulfill is stuck.
    b.apply(core.fulfill_htlc(b.ch, b.signer, 0, PRE))
    assert core.on_block(b.ch, b.signer, 681).actions == ()
    assert core.on_block(b.ch, b.signer, 682).state.state is ChannelState.AWAITING_UNILATERAL


# --- no exception escapes, whatever well-formed message arrives in whatever state ---------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

_POINT = bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
_u64 = st.integers(0, 2**64 - 1)
_small = st.integers(0, 5)


def _messages(cid: bytes):
    b32, b64 = st.binary(min_size=32, max_size=32), st.binary(min_size=64, max_size=64)
    return st.one_of(
        st.builds(m.UpdateAddHtlc, channel_id=st.just(cid), id=_small, amount_msat=st.one_of(_small, _u64),
                  payment_hash=b32, cltv_expiry=st.integers(0, 2**32 - 1), onion_routing_packet=st.just(ONION)),
        st.builds(m.UpdateFulfillHtlc, channel_id=st.just(cid), id=_small, payment_preimage=b32),
        st.builds(m.UpdateFailHtlc, channel_id=st.just(cid), id=_small, reason=st.binary(max_size=20)),
        st.builds(m.UpdateFailMalformedHtlc, channel_id=st.just(cid), id=_small, sha256_of_onion=b32,
                  failure_code=st.integers(0, 0xFFFF)),
        st.builds(m.UpdateFee, channel_id=st.just(cid), feerate_per_kw=st.integers(0, 2**32 - 1)),
        st.builds(m.CommitmentSigned, channel_id=st.just(cid), signature=b64,
                  htlc_signature=st.lists(b64, max_size=2).map(tuple)),
        st.builds(m.RevokeAndAck, channel_id=st.just(cid), per_commitment_secret=b32,
                  next_per_commitment_point=st.just(_POINT)),
        st.builds(m.ChannelReestablish, channel_id=st.just(cid), next_commitment_number=_small,
                  next_revocation_number=_small, your_last_per_commitment_secret=b32,
                  my_current_per_commitment_point=st.just(_POINT)),
        st.builds(m.Shutdown, channel_id=st.just(cid), scriptpubkey=st.one_of(st.binary(max_size=40),
                                                                                st.just(b"\x00\x14" + bytes(20)))),
        st.builds(m.ClosingSigned, channel_id=st.just(cid), fee_satoshis=st.one_of(_small, _u64), signature=b64),
        st.builds(m.ChannelReady, channel_id=st.just(cid), second_per_commitment_point=st.just(_POINT)),
        st.builds(m.Warning, channel_id=st.just(cid), data=st.binary(max_size=10)),
    )


_BASE = Pair.open(push_msat=200_000_000)
_BASE.a.apply(core.offer_htlc(_BASE.a.ch, _BASE.a.signer, 10_000_000, HASH, 700, ONION))
_BASE.pump()


@settings(max_examples=int(__import__("os").environ.get("AMPERE_FUZZ_EXAMPLES", "150")), deadline=None)
@given(data=st.data(), side=st.sampled_from("ab"), disconnected=st.booleans())
def test_no_exception_escapes_for_any_message(data, side, disconnected):
    p = getattr(_BASE, side)
    ch = p.ch
    if disconnected:
        ch = core.on_reconnect(ch, p.signer).state
    msgs = data.draw(st.lists(_messages(ch.channel_id), min_size=1, max_size=4))
    for msg in msgs:
        step = core.handle_message(ch, p.signer, msg)
        assert isinstance(step, Step)
        ch = step.state

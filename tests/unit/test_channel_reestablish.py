"""channel_reestablish (BOLT 2 "Message Retransmission") with option_data_loss_protect, and restarts."""
from __future__ import annotations

from dataclasses import replace

from ampere.ln.channel import core
from ampere.ln.channel.actions import Broadcast, DataLossDetected, ErrorKind, NewPeerHtlc
from ampere.testing.channel_pair import Pair
from ampere.ln.channel.state import ChannelState
from ampere.primitives.crypto import sha256
from ampere.wire import messages as m

ONION = bytes(1366)
PRE = b"\x05" * 32
HASH = sha256(PRE)


def names(msgs) -> list[str]:
    return [type(x).__name__ for x in msgs]


def reconnect_and_capture(pair: Pair, keep_ready: bool = False) -> tuple[list, list]:
    """Reconnect, exchange channel_reestablish, return what each side sent after it."""
    pair.reconnect()
    a_re, b_re = pair.a.outbox.popleft(), pair.b.outbox.popleft()
    assert isinstance(a_re, m.ChannelReestablish) and isinstance(b_re, m.ChannelReestablish)
    sa = pair.a.apply(core.handle_message(pair.a.ch, pair.a.signer, b_re))
    sb = pair.b.apply(core.handle_message(pair.b.ch, pair.b.signer, a_re))
    assert sa.error is None and sb.error is None, (sa.error, sb.error)
    if not keep_ready:
        # BOLT 2 retransmits channel_ready while no commitment was signed yet (next_commitment_number 1).
        for p in (pair.a, pair.b):
            p.outbox = type(p.outbox)(x for x in p.outbox if not isinstance(x, m.ChannelReady))
    return list(pair.a.outbox), list(pair.b.outbox)


def agree(pair: Pair) -> None:
    pair.pump()
    a, b = pair.a, pair.b
    assert core.local_commitment_tx(a.ch, a.signer).txid() == core.remote_commitment_tx(b.ch).txid
    assert core.local_commitment_tx(b.ch, b.signer).txid() == core.remote_commitment_tx(a.ch).txid


def test_reestablish_message_fields():
    pair = Pair.open()
    a = pair.a
    msg = core.on_reconnect(a.ch, a.signer).messages[0]
    # BOLT #2: next_commitment_number is the next commitment_signed expected; revocation 0 means zero secret.
    assert (msg.next_commitment_number, msg.next_revocation_number) == (1, 0)
    assert msg.your_last_per_commitment_secret == bytes(32)
    assert msg.my_current_per_commitment_point == a.signer.commitment_point(0)
    a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, HASH, 700, ONION))
    pair.pump()
    msg = core.on_reconnect(a.ch, a.signer).messages[0]
    assert (msg.next_commitment_number, msg.next_revocation_number) == (2, 1)
    assert msg.your_last_per_commitment_secret == pair.b.signer.commitment_secret(0)


def test_retransmit_updates_and_commitment_signed():
    pair = Pair.open()
    a, b = pair.a, pair.b
    a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, HASH, 700, ONION))
    a.apply(core.offer_htlc(a.ch, a.signer, 20_000_000, HASH, 701, ONION))
    lost = [*a.outbox, *pair.commit(a).messages]
    assert names(lost) == ["UpdateAddHtlc", "UpdateAddHtlc", "CommitmentSigned"]
    pair.disconnect()  # all three lost
    a.apply(core.offer_htlc(a.ch, a.signer, 1, HASH, 700, ONION))   # refused while disconnected
    sent_a, sent_b = reconnect_and_capture(pair)
    # BOLT #2: the commitment_signed is retransmitted with the updates it covered, identically.
    assert sent_a == lost
    assert sent_b == []
    agree(pair)
    assert len([e for e in b.events if isinstance(e, NewPeerHtlc)]) == 2


def test_retransmit_revoke_and_ack():
    pair = Pair.open()
    a, b = pair.a, pair.b
    a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, HASH, 700, ONION))
    pair.deliver(a)
    pair.commit(a)
    pair.deliver(a)                       # B gets commitment_signed, answers revoke_and_ack
    lost = list(b.outbox)
    assert names(lost) == ["RevokeAndAck"]
    pair.disconnect()
    sent_a, sent_b = reconnect_and_capture(pair)
    assert sent_b == lost and sent_a == []
    agree(pair)


def test_retransmit_both_in_the_original_order():
    for commit_first in (True, False):
        pair = Pair.open(push_msat=300_000_000)
        a, b = pair.a, pair.b
        a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, HASH, 700, ONION))
        b.apply(core.offer_htlc(b.ch, b.signer, 11_000_000, HASH, 700, ONION))
        pair.deliver(a)
        pair.deliver(b)
        pair.commit(a)
        if commit_first:
            pair.commit(b)                    # B: commitment_signed ...
            pair.deliver(a)                   # ... then revoke_and_ack for A's commitment_signed
        else:
            pair.deliver(a)                   # B: revoke_and_ack ...
            pair.commit(b)                    # ... then commitment_signed
        lost_b = list(b.outbox)
        expected = ["CommitmentSigned", "RevokeAndAck"] if commit_first else ["RevokeAndAck", "CommitmentSigned"]
        assert names(lost_b) == expected
        pair.disconnect()
        sent_a, sent_b = reconnect_and_capture(pair)
        # B's own update is re-sent before its commitment_signed; the order of CS/RAA is kept.
        assert names(sent_b) == (["UpdateAddHtlc", *expected] if commit_first else
                                 ["RevokeAndAck", "UpdateAddHtlc", "CommitmentSigned"])
        assert [x for x in sent_b if not isinstance(x, m.UpdateAddHtlc)] == lost_b
        agree(pair)


def test_crash_after_persist_before_send_then_resume():
    pair = Pair.open()
    a, b = pair.a, pair.b
    a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, HASH, 700, ONION))
    pair.deliver(a)
    pair.commit(a)
    pair.deliver(a)           # B persisted its new commitment and the revocation it reveals ...
    pair.disconnect()
    b.crash()                 # ... and died before the revoke_and_ack left
    assert b.ch.local_ctn == 1
    sent_a, sent_b = reconnect_and_capture(pair)
    assert names(sent_b) == ["RevokeAndAck"]
    agree(pair)
    b.apply(core.fulfill_htlc(b.ch, b.signer, 0, PRE))
    pair.disconnect()
    b.crash()                 # the preimage was persisted before update_fulfill_htlc left
    assert core.pending_incoming_htlcs(b.ch) == []
    sent_a, sent_b = reconnect_and_capture(pair)
    assert names(sent_b) == ["UpdateFulfillHtlc"]
    agree(pair)
    assert a.ch.balance_local_msat == 990_000_000


def test_peer_uncommitted_updates_are_forgotten_on_disconnect():
    pair = Pair.open()
    a, b = pair.a, pair.b
    a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, HASH, 700, ONION))
    pair.deliver(a)
    assert len(b.ch.htlcs) == 1 and b.ch.next_htlc_id_remote == 1
    pair.disconnect()
    assert b.ch.htlcs == () and b.ch.next_htlc_id_remote == 0
    assert len(a.ch.htlcs) == 1   # ours is kept and will be retransmitted
    sent_a, _ = reconnect_and_capture(pair)
    assert names(sent_a) == ["UpdateAddHtlc"]
    agree(pair)


def test_data_loss_protect_detects_that_we_are_behind():
    pair = Pair.open()
    a, b = pair.a, pair.b
    old_b = b.stored
    for i in range(2):
        pre = bytes([i]) * 32
        a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, sha256(pre), 700, ONION))
        pair.pump()
        b.apply(core.fulfill_htlc(b.ch, b.signer, i, pre))
        pair.pump()
    pair.disconnect()
    b.stored = old_b          # B restored an old backup
    b.crash()
    pair.reconnect()
    a_re, b_re = a.outbox.popleft(), b.outbox.popleft()
    step = b.apply(core.handle_message(b.ch, b.signer, a_re))
    # BOLT #2: "MUST NOT broadcast its commitment transaction. SHOULD send an error to request the peer to fail
    # the channel."
    assert step.error.kind is ErrorKind.CLOSE and not step.error.broadcast
    assert any(isinstance(e, DataLossDetected) for e in step.events)
    assert not any(isinstance(x, Broadcast) for x in step.actions)
    assert isinstance(step.messages[-1], m.Error)
    assert b.ch.state is ChannelState.AWAITING_UNILATERAL
    # A, the up-to-date side, sees B's stale channel_reestablish: it fails the channel with its latest
    # commitment (the peer's error that follows changes nothing more).
    step = a.apply(core.handle_message(a.ch, a.signer, b_re))
    assert step.error.kind is ErrorKind.CLOSE and "next_revocation_number" in step.error.message
    assert [x.tx.txid() for x in step.actions if isinstance(x, Broadcast)] == [
        core.local_commitment_tx(a.ch, a.signer).txid()]
    assert a.ch.state is ChannelState.AWAITING_UNILATERAL
    step = a.apply(core.handle_message(a.ch, a.signer, b.outbox[-1]))
    assert not any(isinstance(x, Broadcast) for x in step.actions)


def test_bad_reestablish_values_fail_the_channel():
    pair = Pair.open()
    a, b = pair.a, pair.b
    a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, HASH, 700, ONION))
    pair.pump()
    pair.disconnect()
    pair.reconnect()
    a_re = a.outbox.popleft()
    for bad, text in [(replace(a_re, next_commitment_number=0), "next_commitment_number 0"),
                      (replace(a_re, your_last_per_commitment_secret=b"\x01" * 32), "your_last_per_commitment_secret"),
                      (replace(a_re, next_revocation_number=5, your_last_per_commitment_secret=b"\x01" * 32),
                       "bad next_revocation_number"),
                      (replace(a_re, next_commitment_number=1), "next_commitment_number 1")]:
        step = core.handle_message(b.ch, b.signer, bad)
        assert step.error is not None and step.error.kind is ErrorKind.CLOSE, text
        assert text in step.error.message
        assert step.error.broadcast and any(isinstance(x, Broadcast) for x in step.actions)
    # A second reestablish on one connection is a protocol violation.
    step = b.apply(core.handle_message(b.ch, b.signer, a_re))
    assert step.error is None
    step = core.handle_message(b.ch, b.signer, a_re)
    assert step.error.kind is ErrorKind.WARN_AND_DISCONNECT


def test_channel_ready_is_retransmitted_when_no_commitment_yet():
    from ampere.testing.channel_pair import SCID
    pair = Pair.open(confirm=False)
    a, b = pair.a, pair.b
    a.apply(core.funding_depth(a.ch, a.signer, 3, SCID))
    b.apply(core.funding_depth(b.ch, b.signer, 3, SCID))
    pair.disconnect()         # both channel_ready lost
    sent_a, sent_b = reconnect_and_capture(pair, keep_ready=True)
    assert names(sent_a) == names(sent_b) == ["ChannelReady"]
    pair.pump()
    assert a.ch.state is b.ch.state is ChannelState.CHANNELD_NORMAL
    # Redundant channel_ready after reconnection is ignored.
    pair.disconnect()
    sent_a, sent_b = reconnect_and_capture(pair, keep_ready=True)
    assert names(sent_a) == ["ChannelReady"]   # still commitment number 1 on both sides
    pair.pump()
    assert a.ch.state is ChannelState.CHANNELD_NORMAL


def test_preimage_survives_a_crash_of_the_payer():
    pair = Pair.open()
    a, b = pair.a, pair.b
    a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, HASH, 700, ONION))
    pair.pump()
    b.apply(core.fulfill_htlc(b.ch, b.signer, 0, PRE))
    pair.deliver(b)                 # A learns the preimage (persisted), then dies
    assert core.known_preimages(a.ch) == [(0, PRE)]
    pair.disconnect()
    a.crash()
    assert core.known_preimages(a.ch) == [(0, PRE)]
    reconnect_and_capture(pair)
    agree(pair)
    # The retransmitted fulfill is not reported a second time.
    from ampere.ln.channel.actions import HtlcFulfilled
    assert len([e for e in a.events if isinstance(e, HtlcFulfilled)]) == 1
    assert core.known_preimages(a.ch) == [] and a.ch.balance_local_msat == 990_000_000

"""Mutual close (shutdown, closing_signed negotiation) and unilateral close."""
from __future__ import annotations

from dataclasses import replace

import pbk

from ampere.ln.channel import core
from ampere.ln.channel.actions import ErrorKind, MutualCloseAgreed, Refusal, RefusalCode
from ampere.ln.channel.env import Env
from ampere.testing.channel_pair import Pair
from ampere.ln.channel.state import ChannelState
from ampere.primitives.crypto import sha256
from ampere.primitives.script import p2wsh
from ampere.primitives.tx import Transaction
from ampere.wire import messages as m

FLAGS = (pbk.ScriptVerificationFlags.P2SH | pbk.ScriptVerificationFlags.DERSIG
         | pbk.ScriptVerificationFlags.NULLDUMMY | pbk.ScriptVerificationFlags.CHECKLOCKTIMEVERIFY
         | pbk.ScriptVerificationFlags.CHECKSEQUENCEVERIFY | pbk.ScriptVerificationFlags.WITNESS)
ONION = bytes(1366)
PRE = b"\x05" * 32
SPK_A = b"\x00\x14" + b"\xaa" * 20
SPK_B = b"\x00\x14" + b"\xbb" * 20
CS = ChannelState


def spends_funding(tx: Transaction, ch) -> bool:
    return pbk.ScriptPubkey(p2wsh(ch.params.funding_script)).verify(
        ch.funding_sat, pbk.Transaction(tx.serialize()), None, 0, FLAGS)


def test_mutual_close_converges_and_pays_both():
    pair = Pair.open(push_msat=100_000_000, env=Env(closing_feerate_per_kw=1000))
    a, b = pair.a, pair.b
    step = a.apply(core.start_shutdown(a.ch, a.signer, pair.env))
    assert isinstance(step.messages[0], m.Shutdown) and a.ch.state is CS.CHANNELD_SHUTTING_DOWN
    pair.pump()
    assert a.ch.state is b.ch.state is CS.CLOSINGD_COMPLETE
    assert a.ch.closing_tx == b.ch.closing_tx
    tx = Transaction.parse(a.ch.closing_tx)
    assert a.broadcasts[-1].txid() == b.broadcasts[-1].txid() == tx.txid()
    assert spends_funding(tx, a.ch)
    fee = [e.fee_sat for e in a.events if isinstance(e, MutualCloseAgreed)][0]
    assert fee > 0
    outs = {o.script_pubkey: o.value for o in tx.outputs}
    assert outs[SPK_B] == 100_000                     # the non-opener pays no fee
    assert outs[SPK_A] == 900_000 - fee               # the opener pays it
    # After closing: HTLCs and updates are refused.
    assert core.offer_htlc(a.ch, a.signer, 10_000, sha256(PRE), 700, ONION).code is RefusalCode.SHUTTING_DOWN


def test_shutdown_waits_for_htlcs_and_refuses_new_ones():
    pair = Pair.open(push_msat=100_000_000)
    a, b = pair.a, pair.b
    a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, sha256(PRE), 700, ONION))
    pair.pump()
    b.apply(core.start_shutdown(b.ch, b.signer, pair.env))
    pair.pump()
    assert a.ch.state is b.ch.state is CS.CHANNELD_SHUTTING_DOWN
    # BOLT #2: "MUST NOT send an update_add_htlc after a shutdown."
    r = core.offer_htlc(a.ch, a.signer, 10_000, sha256(PRE), 700, ONION)
    assert isinstance(r, Refusal) and r.code is RefusalCode.SHUTTING_DOWN and r.failure_code == 0x4000 | 8
    bad = m.UpdateAddHtlc(channel_id=a.ch.channel_id, id=1, amount_msat=10_000, payment_hash=sha256(PRE),
                          cltv_expiry=700, onion_routing_packet=ONION)
    step = core.handle_message(b.ch, b.signer, bad)
    assert step.error.kind is ErrorKind.WARN_AND_DISCONNECT
    # The pending HTLC still resolves, then negotiation starts.
    b.apply(core.fulfill_htlc(b.ch, b.signer, 0, PRE))
    pair.pump()
    assert a.ch.state is b.ch.state is CS.CLOSINGD_COMPLETE
    outs = {o.script_pubkey: o.value for o in Transaction.parse(a.ch.closing_tx).outputs}
    assert outs[SPK_B] == 110_000


def test_fee_ranges_are_negotiated():
    # A (opener) wants 3000/kw, B wants 1000/kw: B accepts A's fee because it lies in its range.
    pair = Pair.open(push_msat=100_000_000)
    a, b = pair.a, pair.b
    a.apply(core.start_shutdown(a.ch, a.signer, Env(closing_feerate_per_kw=3000)))
    a_env, b_env = Env(closing_feerate_per_kw=3000), Env(closing_feerate_per_kw=1000)
    while a.outbox or b.outbox:
        if a.outbox:
            b.apply(core.handle_message(b.ch, b.signer, a.outbox.popleft(), b_env))
        if b.outbox:
            a.apply(core.handle_message(a.ch, a.signer, b.outbox.popleft(), a_env))
    assert a.ch.state is b.ch.state is CS.CLOSINGD_COMPLETE
    fee = [e.fee_sat for e in b.events if isinstance(e, MutualCloseAgreed)][0]
    assert fee >= 3000 * 600 // 1000


def test_legacy_closing_signed_without_fee_range_and_bad_signatures():
    pair = Pair.open(push_msat=100_000_000)
    a, b = pair.a, pair.b
    a.apply(core.start_shutdown(a.ch, a.signer, pair.env))
    pair.deliver(a)             # shutdown
    pair.deliver(b)             # shutdown reply
    cs = a.outbox.popleft()
    assert isinstance(cs, m.ClosingSigned) and cs.tlvs.fee_range is not None
    step = core.handle_message(b.ch, b.signer, replace(cs, signature=bytes(64)))
    assert step.error.kind is ErrorKind.WARN_AND_DISCONNECT and "bad closing_signed" in step.error.message
    # Without a fee_range B accepts a fee inside its own range and replies with the same fee.
    legacy = replace(cs, tlvs=m.ClosingSignedTlvs())
    step = b.apply(core.handle_message(b.ch, b.signer, legacy))
    assert step.error is None and b.ch.state is CS.CLOSINGD_COMPLETE
    assert step.messages[0].fee_satoshis == cs.fee_satoshis


def test_closing_negotiation_restarts_after_reconnection():
    pair = Pair.open(push_msat=100_000_000)
    a, b = pair.a, pair.b
    a.apply(core.start_shutdown(a.ch, a.signer, pair.env))
    pair.deliver(a)
    pair.deliver(b)
    assert a.ch.state is CS.CLOSINGD_SIGEXCHANGE and isinstance(a.outbox[0], m.ClosingSigned)
    pair.disconnect()           # closing_signed lost
    b.crash()
    pair.reconnect()
    pair.pump()
    assert a.ch.state is b.ch.state is CS.CLOSINGD_COMPLETE


def test_invalid_shutdown_scripts():
    pair = Pair.open()
    a, b = pair.a, pair.b
    assert core.start_shutdown(a.ch, a.signer, pair.env, b"\x76\xa9").code is RefusalCode.BAD_SCRIPT
    bad = m.Shutdown(channel_id=a.ch.channel_id, scriptpubkey=b"\x6a\x01\x00")
    step = core.handle_message(b.ch, b.signer, bad)
    assert step.error.kind is ErrorKind.WARN_AND_DISCONNECT and "not a valid form" in step.error.message
    # anysegwit (v1, 32 bytes) is accepted
    ok = m.Shutdown(channel_id=a.ch.channel_id, scriptpubkey=b"\x51\x20" + b"\x01" * 32)
    assert core.handle_message(b.ch, b.signer, ok).error is None


def test_force_close_broadcasts_our_signed_commitment():
    pair = Pair.open(push_msat=100_000_000)
    a, b = pair.a, pair.b
    a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, sha256(PRE), 700, ONION))
    pair.pump()
    step = b.apply(core.force_close(b.ch, b.signer, "timeout"))
    assert b.ch.state is CS.AWAITING_UNILATERAL
    tx = b.broadcasts[-1]
    assert spends_funding(tx, b.ch)
    assert tx.txid() == core.remote_commitment_tx(a.ch).txid
    assert isinstance(step.messages[0], m.Error)
    # Persisted, then on its way to the chain, and only then the error: the peer that fails the channel on
    # our error must not get its own commitment into the mempool before ours.
    kinds = [type(x).__name__ for x in step.actions if type(x).__name__ in ("Persist", "Broadcast", "SendMessage")]
    assert kinds == ["Persist", "Broadcast", "SendMessage"]
    assert core.force_close(b.ch, b.signer).code is RefusalCode.NOT_READY
    step = b.apply(core.funding_spent(b.ch, tx.txid()))
    assert b.ch.state is CS.FUNDING_SPEND_SEEN
    # A channel in an error state answers reestablish with the error again.
    step = core.handle_message(b.ch, b.signer, core.on_reconnect(a.ch, a.signer).messages[0])
    assert isinstance(step.messages[0], m.Error)

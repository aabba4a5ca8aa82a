"""Channel establishment v1: both roles, the funding output, first commitment signatures, BOLT 2 checks."""
from __future__ import annotations

from dataclasses import replace

import pbk
import pytest

from ampere.ln.channel import core, opening
from ampere.ln.channel.actions import ErrorKind, FundingTxNeeded, Persist, SendMessage
from ampere.ln.channel.actions import ChannelReady as ChannelReadyEvent
from ampere.testing.channel_pair import REGTEST_CHAIN_HASH, SCID, Pair
from ampere.ln.channel.scripts import ChannelType, funding_script
from ampere.ln.channel.signer import LocalChannelSigner, SignerError
from ampere.ln.channel.state import ChannelState
from ampere.primitives.script import p2wsh
from ampere.wire import messages as m

FLAGS = (pbk.ScriptVerificationFlags.P2SH | pbk.ScriptVerificationFlags.DERSIG
         | pbk.ScriptVerificationFlags.NULLDUMMY | pbk.ScriptVerificationFlags.CHECKLOCKTIMEVERIFY
         | pbk.ScriptVerificationFlags.CHECKSEQUENCEVERIFY | pbk.ScriptVerificationFlags.WITNESS)
SPK_A = b"\x00\x14" + b"\xaa" * 20
SPK_B = b"\x00\x14" + b"\xbb" * 20
POLICY = opening.OpenPolicy(chain_hash=REGTEST_CHAIN_HASH)


def spends_funding(tx, ch) -> bool:
    spk = p2wsh(ch.params.funding_script)
    return pbk.ScriptPubkey(spk).verify(ch.funding_sat, pbk.Transaction(tx.serialize()), None, 0, FLAGS)


@pytest.mark.parametrize("ct", [ChannelType.STATIC_REMOTEKEY, ChannelType.ANCHORS])
def test_open_both_roles_and_first_commitments_spend_the_funding_output(ct):
    pair = Pair.open(funding_sat=500_000, push_msat=100_000_000, channel_type=ct)
    a, b = pair.a, pair.b
    assert a.ch.state is b.ch.state is ChannelState.CHANNELD_NORMAL
    assert a.ch.channel_id == b.ch.channel_id
    # The funding output is the BOLT 3 2-of-2 of both funding keys, paying exactly funding_satoshis.
    funding_tx = a.broadcasts[0]
    out = funding_tx.outputs[a.ch.params.funding_outpoint.vout]
    assert out.script_pubkey == p2wsh(funding_script(a.signer.pubkeys.funding_pubkey, b.signer.pubkeys.funding_pubkey))
    assert out.value == 500_000
    # Each side's first commitment carries the peer's valid signature: Bitcoin Core's interpreter accepts it.
    for p in (a, b):
        tx = core.local_commitment_tx(p.ch, p.signer)
        assert spends_funding(tx, p.ch)
    assert core.local_commitment_tx(a.ch, a.signer).txid() == core.remote_commitment_tx(b.ch).txid
    # Balances: the opener funded, pushed 100k sat.
    assert (a.ch.balance_local_msat, a.ch.balance_remote_msat) == (400_000_000, 100_000_000)
    assert (b.ch.balance_local_msat, b.ch.balance_remote_msat) == (100_000_000, 400_000_000)
    # Persist came before funding_signed (acceptor) and before the funding broadcast (opener).
    assert a.updates[0].update_id == 0 and b.updates[0].update_id == 0


def test_acceptor_persists_before_funding_signed_and_opener_before_broadcast():
    a, b = LocalChannelSigner(b"\x01" * 32), LocalChannelSigner(b"\x02" * 32)
    step = opening.open_channel(a, temporary_channel_id=b"\x07" * 32, chain_hash=REGTEST_CHAIN_HASH,
                                funding_sat=200_000, push_msat=0, feerate_per_kw=1000,
                                ours=opening.LocalParams(shutdown_scriptpubkey=SPK_A))
    neg_a, open_msg = step.state, step.messages[0]
    assert open_msg.tlvs.channel_type == b"\x10\x00"   # bit 12: static_remotekey, smallest bitmap
    step = opening.on_open_channel(b, open_msg, opening.LocalParams(shutdown_scriptpubkey=SPK_B), POLICY)
    neg_b = step.state
    step = neg_a.on_accept_channel(step.messages[0], POLICY)
    need = next(e for e in step.actions if isinstance(e, FundingTxNeeded))
    from ampere.primitives.tx import OutPoint, Transaction, TxIn, TxOut
    ftx = Transaction(2, [TxIn(OutPoint(b"\x33" * 32, 1), b"", 0xFFFFFFFF)], [TxOut(5000, SPK_A),
                      TxOut(need.amount_sat, need.script_pubkey)], 0)
    step = step.state.funding_tx_ready(a, ftx)
    created = step.messages[0]
    assert created.funding_output_index == 1
    step_b = neg_b.on_funding_created(b, created)
    kinds = [type(x) for x in step_b.actions]
    assert kinds.index(Persist) < kinds.index(SendMessage)
    step_a = step.state.on_funding_signed(a, step_b.messages[0])
    from ampere.ln.channel.actions import Broadcast
    kinds = [type(x) for x in step_a.actions]
    assert kinds.index(Persist) < kinds.index(Broadcast)
    assert step_a.state.state is ChannelState.CHANNELD_AWAITING_LOCKIN
    # channel_id = funding txid XOR output index (BOLT 2)
    cid = bytearray(ftx.txid())
    cid[31] ^= 1
    assert step_a.state.channel_id == bytes(cid)


def _open_msg(**changes):
    a = LocalChannelSigner(b"\x01" * 32)
    step = opening.open_channel(a, temporary_channel_id=b"\x07" * 32, chain_hash=REGTEST_CHAIN_HASH,
                                funding_sat=200_000, push_msat=0, feerate_per_kw=1000,
                                ours=opening.LocalParams(shutdown_scriptpubkey=SPK_A))
    return replace(step.messages[0], **changes)


@pytest.mark.parametrize("changes, text", [
    ({"chain_hash": b"\x00" * 32}, "unknown chain"),
    ({"push_msat": 200_000_001}, "push_msat"),
    ({"to_self_delay": 5000}, "to_self_delay"),
    ({"max_accepted_htlcs": 484}, "483"),
    ({"feerate_per_kw": 252}, "feerate_per_kw"),
    ({"dust_limit_satoshis": 353, "channel_reserve_satoshis": 2000}, "354"),
    ({"dust_limit_satoshis": 3000, "channel_reserve_satoshis": 2000}, "greater than channel_reserve"),
    ({"tlvs": m.OpenChannelTlvs()}, "without channel_type"),
    ({"tlvs": m.OpenChannelTlvs(channel_type=b"\x40\x10\x00")}, "not supported"),   # anchors not allowed by policy
    ({"tlvs": m.OpenChannelTlvs(channel_type=b"\x01\x00\x00\x00\x00\x00\x00\x10\x00")}, "not supported"),
    ({"funding_satoshis": 1000}, "below our minimum"),
    ({"feerate_per_kw": 300_000}, "initial commitment fee"),
    ({"feerate_per_kw": 275_000}, "at or below the channel reserve"),
])
def test_acceptor_rejects_bad_open_channel(changes, text):
    policy = replace(POLICY, max_feerate_per_kw=1_000_000)
    step = opening.on_open_channel(LocalChannelSigner(b"\x02" * 32), _open_msg(**changes),
                                   opening.LocalParams(shutdown_scriptpubkey=SPK_B), policy)
    assert step.error is not None and step.error.kind is ErrorKind.CLOSE
    assert not step.error.broadcast
    assert text in step.error.message
    assert step.actions == ()


def test_opener_rejects_bad_accept_channel():
    a = LocalChannelSigner(b"\x01" * 32)
    start = opening.open_channel(a, temporary_channel_id=b"\x07" * 32, chain_hash=REGTEST_CHAIN_HASH,
                                 funding_sat=200_000, push_msat=0, feerate_per_kw=1000,
                                 ours=opening.LocalParams(shutdown_scriptpubkey=SPK_A))
    acc = opening.on_open_channel(LocalChannelSigner(b"\x02" * 32), start.messages[0],
                                  opening.LocalParams(shutdown_scriptpubkey=SPK_B), POLICY).messages[0]
    neg = start.state
    cases = [
        (replace(acc, tlvs=m.AcceptChannelTlvs()), "without channel_type"),
        (replace(acc, tlvs=m.AcceptChannelTlvs(channel_type=b"\x40\x10\x00")), "differs"),
        (replace(acc, temporary_channel_id=b"\x08" * 32), "temporary_channel_id"),
        (replace(acc, minimum_depth=1000), "minimum_depth"),
        (replace(acc, channel_reserve_satoshis=100), "reserve"),
        (replace(acc, max_accepted_htlcs=500), "483"),
    ]
    for msg, text in cases:
        step = neg.on_accept_channel(msg, POLICY)
        assert step.error is not None and step.error.kind is ErrorKind.CLOSE, text
        assert text in step.error.message
    assert neg.on_accept_channel(acc, POLICY).error is None


def test_bad_funding_signatures_are_refused():
    a, b = LocalChannelSigner(b"\x01" * 32), LocalChannelSigner(b"\x02" * 32)
    start = opening.open_channel(a, temporary_channel_id=b"\x07" * 32, chain_hash=REGTEST_CHAIN_HASH,
                                 funding_sat=200_000, push_msat=0, feerate_per_kw=1000,
                                 ours=opening.LocalParams(shutdown_scriptpubkey=SPK_A))
    acc = opening.on_open_channel(b, start.messages[0], opening.LocalParams(shutdown_scriptpubkey=SPK_B), POLICY)
    step = start.state.on_accept_channel(acc.messages[0], POLICY)
    need = step.events[0]
    from ampere.primitives.tx import OutPoint, Transaction, TxIn, TxOut
    ftx = Transaction(2, [TxIn(OutPoint(b"\x33" * 32, 1), b"", 0xFFFFFFFF)], [TxOut(need.amount_sat, need.script_pubkey)], 0)
    created_step = step.state.funding_tx_ready(a, ftx)
    created = created_step.messages[0]
    bad = replace(created, signature=bytes(64))
    res = acc.state.on_funding_created(b, bad)
    assert res.error is not None and "bad signature" in res.error.message and res.actions == ()
    good = acc.state.on_funding_created(b, created)
    signed = good.messages[0]
    res = created_step.state.on_funding_signed(a, replace(signed, signature=created.signature))
    assert res.error is not None and res.actions == ()   # no broadcast of the funding tx


def test_channel_ready_waits_for_minimum_depth_and_both_sides():
    pair = Pair.open(confirm=False)
    a, b = pair.a, pair.b
    assert a.ch.minimum_depth == b.ch.minimum_depth == 3
    assert core.funding_depth(a.ch, a.signer, 2, SCID).actions == ()
    a.apply(core.funding_depth(a.ch, a.signer, 3, SCID))
    assert [type(x).__name__ for x in a.outbox] == ["ChannelReady"]
    assert a.ch.state is ChannelState.CHANNELD_AWAITING_LOCKIN
    pair.pump()
    assert b.ch.channel_ready_received and b.ch.state is ChannelState.CHANNELD_AWAITING_LOCKIN
    b.apply(core.funding_depth(b.ch, b.signer, 4, SCID))
    pair.pump()
    assert a.ch.state is b.ch.state is ChannelState.CHANNELD_NORMAL
    assert any(isinstance(e, ChannelReadyEvent) for e in a.events)
    # A second confirmation report changes nothing.
    assert core.funding_depth(a.ch, a.signer, 10, SCID).actions == ()


def test_signer_is_deterministic_and_checks_seed():
    s1, s2 = LocalChannelSigner(b"\x05" * 32), LocalChannelSigner(b"\x05" * 32)
    assert s1.pubkeys == s2.pubkeys
    assert s1.commitment_point(7) == s2.commitment_point(7)
    assert LocalChannelSigner(b"\x06" * 32).pubkeys != s1.pubkeys
    with pytest.raises(SignerError):
        LocalChannelSigner(b"\x01" * 31)


def test_channel_type_bytes():
    assert opening.channel_type_bytes(ChannelType.STATIC_REMOTEKEY) == b"\x10\x00"
    assert opening.channel_type_bytes(ChannelType.ANCHORS) == b"\x40\x10\x00"
    assert opening.channel_type_from_bytes(b"\x00\x10\x00") is ChannelType.STATIC_REMOTEKEY
    assert opening.channel_type_from_bytes(b"\x10") is None

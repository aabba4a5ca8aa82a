"""Recognising a funding spend and building the sweeps and penalties of our outputs (ampere.ln.onchain), without a
chain.

Sweeps are checked with Bitcoin Core's script interpreter (libbitcoinkernel): signatures, the CSV delay against the
input's nSequence, and the witness layout BOLT 3 gives.
"""
from __future__ import annotations

from dataclasses import replace

import pbk
import pytest

from ampere.ln.channel import core
from ampere.testing.channel_pair import Pair
from ampere.ln.channel.scripts import ChannelType
from ampere.ln.channel.htlc_tx import HtlcTxKind
from ampere.ln.channel.keys import secret_index
from ampere.ln.onchain.htlc import build_htlc_claim, local_htlc_txs, sign_htlc_claim, signed_local_htlc_txs
from ampere.ln.onchain.classify import (
    Action,
    HtlcStub,
    htlc_tx_delayed_output,
    OnchainError,
    OutputKind,
    SpendKind,
    SweepNotWorthIt,
    build_sweep,
    classify_spend,
    obscured_number_of,
    preimage_from_witness,
    second_stage_output,
    sign_sweep,
)
from ampere.primitives.crypto import sha256
from ampere.primitives.tx import OutPoint, Transaction, TxIn, TxOut

FLAGS = (pbk.ScriptVerificationFlags.P2SH | pbk.ScriptVerificationFlags.DERSIG
         | pbk.ScriptVerificationFlags.NULLDUMMY | pbk.ScriptVerificationFlags.CHECKLOCKTIMEVERIFY
         | pbk.ScriptVerificationFlags.CHECKSEQUENCEVERIFY | pbk.ScriptVerificationFlags.WITNESS)
ONION = bytes(1366)
PRE = b"\x05" * 32
DEST = b"\x51\x20" + b"\x33" * 32  # a P2TR wallet output
SPK_A = b"\x00\x14" + b"\xaa" * 20
SPK_B = b"\x00\x14" + b"\xbb" * 20


def verifies(tx: Transaction, spent: TxOut) -> bool:
    return pbk.ScriptPubkey(spent.script_pubkey).verify(spent.value, pbk.Transaction(tx.serialize()), None, 0, FLAGS)


def pay(pair: Pair, amount_msat: int) -> None:
    a, b = pair.a, pair.b
    a.apply(core.offer_htlc(a.ch, a.signer, amount_msat, sha256(PRE), 700, ONION))
    pair.pump()
    b.apply(core.fulfill_htlc(b.ch, b.signer, b.ch.htlcs[0].htlc_id, PRE))
    pair.pump()


def analyse(party, tx):
    local_txid = core.local_commitment(party.ch, party.signer).txid
    return classify_spend(party.ch, party.signer.commitment_point, tx, local_txid)


@pytest.mark.parametrize("ct", [ChannelType.STATIC_REMOTEKEY, ChannelType.ANCHORS])
def test_commitments_are_told_apart_and_sweeps_satisfy_the_scripts(ct):
    pair = Pair.open(funding_sat=1_000_000, push_msat=300_000_000, channel_type=ct)
    pay(pair, 50_000_000)
    a, b = pair.a, pair.b
    tx = core.local_commitment_tx(a.ch, a.signer)
    ours, theirs = analyse(a, tx), analyse(b, tx)
    assert (ours.kind, theirs.kind) == (SpendKind.LOCAL, SpendKind.REMOTE)
    number = obscured_number_of(tx) ^ a.ch.params.obscuring_factor
    assert ours.commitment_number == theirs.commitment_number == number == 2
    assert ours.notes == theirs.notes == ()
    [to_local] = ours.outputs
    [to_remote] = theirs.outputs
    assert (to_local.kind, to_local.action, to_local.csv) == (OutputKind.TO_LOCAL, Action.SWEEP,
                                                              a.ch.params.local_to_self_delay)
    assert (to_remote.kind, to_remote.csv, to_remote.value_sat) == (OutputKind.TO_REMOTE, 1 if ct.anchors else 0,
                                                                    350_000)
    # The same transaction, seen from B's side, is B's when B broadcasts its own.
    tx_b = core.local_commitment_tx(b.ch, b.signer)
    assert analyse(b, tx_b).kind is SpendKind.LOCAL and analyse(a, tx_b).kind is SpendKind.REMOTE

    for party, out in ((a, to_local), (b, to_remote)):
        sweep = sign_sweep(build_sweep(tx.txid(), out, ct, DEST, 2000), out, ct, party.signer)
        spent = tx.outputs[out.vout]
        assert verifies(sweep, spent)
        assert sweep.inputs[0].prevout == OutPoint(tx.txid(), out.vout) and sweep.outputs[0].script_pubkey == DEST
        fee = spent.value - sweep.outputs[0].value
        # The fee pays the feerate for the signed weight (estimated with the largest signature: a few WU over).
        assert 0 <= fee - (2000 * sweep.weight() + 999) // 1000 <= 2000 * 4 // 1000
        # BIP68 is enforced by the interpreter's CHECKSEQUENCEVERIFY: one block less than the delay fails.
        if out.csv:
            early = replace(out, csv=out.csv - 1)
            bad = sign_sweep(build_sweep(tx.txid(), early, ct, DEST, 2000), early, ct, party.signer)
            assert not verifies(bad, spent)
        # Signed by the wrong party's keys: rejected.
        wrong = b if party is a else a
        assert not verifies(sign_sweep(build_sweep(tx.txid(), out, ct, DEST, 2000), out, ct, wrong.signer), spent)


def test_revoked_commitments_are_recognised():
    pair = Pair.open(funding_sat=1_000_000, push_msat=300_000_000)
    a, b = pair.a, pair.b
    old = core.local_commitment_tx(a.ch, a.signer)       # A's commitment #0, revoked by the payment below
    pay(pair, 50_000_000)
    theirs = analyse(b, old)
    assert theirs.kind is SpendKind.REVOKED and theirs.commitment_number == 0
    kinds = {o.kind: o for o in theirs.outputs}
    assert kinds[OutputKind.TO_REMOTE].value_sat == 300_000 and kinds[OutputKind.TO_REMOTE].action is Action.SWEEP
    assert kinds[OutputKind.REVOKED_TO_LOCAL].action is Action.PENALTY
    assert kinds[OutputKind.REVOKED_TO_LOCAL].value_sat == old.outputs[kinds[OutputKind.REVOKED_TO_LOCAL].vout].value
    [(level, text)] = theirs.notes
    assert level == "unusual" and "REVOKED" in text and "revocation key" in text
    # The one who broadcast its own revoked state hears about it too.
    ours = analyse(a, old)
    assert ours.kind is SpendKind.LOCAL and ours.notes[0][0] == "broken" and "REVOKED" in ours.notes[0][1]


def stubs_of(party) -> list[HtlcStub]:
    return [HtlcStub(h.offerer, h.htlc_id, h.amount_msat, h.payment_hash, h.cltv_expiry) for h in party.ch.htlcs]


@pytest.mark.parametrize("ct", [ChannelType.STATIC_REMOTEKEY, ChannelType.ANCHORS])
def test_penalty_takes_every_output_of_a_revoked_commitment_and_its_second_stage(ct):
    """A's commitment holds an HTLC each way; A revokes it, then broadcasts it and its HTLC transactions: B takes
    to_local, both HTLC outputs and both second-stage outputs with the revocation key (Bitcoin Core's
    interpreter checks each spend), and learns the preimage from A's HTLC-success."""
    pair = Pair.open(funding_sat=1_000_000, push_msat=300_000_000, channel_type=ct)
    a, b = pair.a, pair.b
    pre_a, pre_b = b"\x0a" * 32, b"\x0b" * 32
    a.apply(core.offer_htlc(a.ch, a.signer, 40_000_000, sha256(pre_a), 700, ONION))   # A -> B
    b.apply(core.offer_htlc(b.ch, b.signer, 60_000_000, sha256(pre_b), 710, ONION))   # B -> A
    pair.pump()
    stubs = stubs_of(b)
    assert len(stubs) == 2
    cheat_ch = a.ch
    old_ctx = core.local_commitment(cheat_ch, a.signer)
    old = core.local_commitment_tx(cheat_ch, a.signer)
    # A's second-stage transactions of that commitment: the timeout of what it offered, the success (it knows
    # pre_b) of what it received.
    second = signed_local_htlc_txs(old_ctx, cheat_ch.local_htlc_sigs, a.signer, {sha256(pre_b): pre_b})
    assert [tx is not None for _, tx in second] == [True, True]
    for _, tx in second:
        spent = old.outputs[tx.inputs[0].prevout.vout]
        assert verifies(tx, spent)  # the cheater's transactions are valid: the penalty must beat them
    # Both HTLCs resolve off-chain: A's commitment is revoked.
    b.apply(core.fulfill_htlc(b.ch, b.signer, next(h.htlc_id for h in b.ch.htlcs if h.offerer.value == "remote"),
                              pre_a))
    a.apply(core.fail_htlc(a.ch, a.signer, next(h.htlc_id for h in a.ch.htlcs if h.offerer.value == "remote"),
                           bytes(256)))
    pair.pump()
    assert a.ch.htlcs == () and b.ch.local_ctn > 2

    res = classify_spend(b.ch, b.signer.commitment_point, old, core.local_commitment(b.ch, b.signer).txid, stubs)
    assert res.kind is SpendKind.REVOKED
    penal = [o for o in res.outputs if o.action is Action.PENALTY]
    assert sorted((o.kind.value, o.value_sat) for o in penal) == sorted(
        [("revoked_htlc", 40_000), ("revoked_htlc", 60_000),
         ("revoked_to_local", old.outputs[old_ctx.to_local_output_index].value)])
    # Without the stubs the HTLC outputs cannot be claimed (their scripts are unknown): said loudly.
    blind = classify_spend(b.ch, b.signer.commitment_point, old)
    assert any(level == "broken" and "match no HTLC" in text for level, text in blind.notes)
    secret = b.ch.remote_secrets.get_secret(secret_index(res.commitment_number))
    for o in penal:
        tx = sign_sweep(build_sweep(old.txid(), o, ct, DEST, 2000), o, ct, b.signer, secret)
        assert verifies(tx, old.outputs[o.vout]), o.kind
        assert tx.outputs[0].script_pubkey == DEST and tx.inputs[0].sequence == 0xFFFFFFFD  # replaceable
        # The wrong secret (another commitment's) does not sign for this one.
        bad = sign_sweep(build_sweep(old.txid(), o, ct, DEST, 2000), o, ct, b.signer,
                         b.ch.remote_secrets.get_secret(secret_index(res.commitment_number - 1)))
        assert not verifies(bad, old.outputs[o.vout])
    # A's second-stage transactions win the race for the HTLC outputs: their outputs are B's too.
    by_vout = {o.vout: o for o in penal}
    for htx, tx in second:
        revoked_htlc = by_vout[tx.inputs[0].prevout.vout]
        out = second_stage_output(b.ch, revoked_htlc, tx)
        assert out is not None and out.kind is OutputKind.REVOKED_HTLC_TX and out.value_sat == tx.outputs[0].value
        pen = sign_sweep(build_sweep(tx.txid(), out, ct, DEST, 2000), out, ct, b.signer, secret)
        assert verifies(pen, tx.outputs[0])
        learned = preimage_from_witness(tx.inputs[0].witness, revoked_htlc.htlc.payment_hash)
        assert learned == (pre_b if htx.kind is HtlcTxKind.SUCCESS else None)
    # Our own penalty spending an HTLC output is not a second stage.
    o = by_vout[second[0][1].inputs[0].prevout.vout]
    mine = sign_sweep(build_sweep(old.txid(), o, ct, DEST, 2000), o, ct, b.signer, secret)
    assert second_stage_output(b.ch, o, mine) is None


def test_unknown_htlc_outputs_are_reported_unresolved_on_both_commitments():
    pair = Pair.open(funding_sat=1_000_000, push_msat=300_000_000)
    a, b = pair.a, pair.b
    a.apply(core.offer_htlc(a.ch, a.signer, 20_000_000, sha256(PRE), 700, ONION))
    b.apply(core.offer_htlc(b.ch, b.signer, 30_000_000, sha256(PRE), 700, ONION))
    pair.pump()
    assert len(a.ch.htlcs) == 2
    for tx in (core.local_commitment_tx(a.ch, a.signer), core.local_commitment_tx(b.ch, b.signer)):
        for party in (a, b):
            res = analyse(party, tx)
            htlcs = sorted(o.value_sat for o in res.outputs if o.kind is OutputKind.HTLC)
            assert htlcs == [20_000, 30_000]
            assert all(o.action is Action.UNRESOLVED for o in res.outputs if o.kind is OutputKind.HTLC)
            # Without the HTLCs' data (stubs) their scripts are unknown: reported as broken, never guessed.
            assert any(level == "broken" and "match no HTLC" in text for level, text in res.notes)
            assert sum(1 for o in res.outputs if o.action is Action.SWEEP) == 1


def test_mutual_close_and_foreign_transactions():
    pair = Pair.open(funding_sat=1_000_000, push_msat=300_000_000)
    a, b = pair.a, pair.b
    a.apply(core.start_shutdown(a.ch, a.signer, pair.env))
    pair.pump()
    closing = Transaction.parse(a.ch.closing_tx)
    for party, spk in ((a, SPK_A), (b, SPK_B)):
        res = analyse(party, closing)
        assert res.kind is SpendKind.MUTUAL and res.commitment_number is None
        [out] = res.outputs
        assert (out.kind, out.action, out.script_pubkey) == (OutputKind.MUTUAL, Action.WALLET, spk)
        assert out.value_sat == closing.outputs[out.vout].value
    # A transaction that does not spend the funding output is refused with a typed error.
    other = Transaction(2, [TxIn(OutPoint(b"\x44" * 32, 0), b"", 0)], [TxOut(1000, SPK_A)], 0)
    with pytest.raises(OnchainError):
        analyse(a, other)


def test_dust_outputs_are_not_swept():
    pair = Pair.open(funding_sat=1_000_000, push_msat=300_000_000)
    b = pair.b
    res = analyse(b, core.local_commitment_tx(pair.a.ch, pair.a.signer))
    [out] = res.outputs
    tiny = replace(out, value_sat=700)
    with pytest.raises(SweepNotWorthIt):
        build_sweep(b"\x01" * 32, tiny, ChannelType.STATIC_REMOTEKEY, DEST, 2000)
    # Outputs that are not ours to sweep are refused rather than built.
    with pytest.raises(ValueError):
        build_sweep(b"\x01" * 32, replace(out, action=Action.UNRESOLVED), ChannelType.STATIC_REMOTEKEY, DEST, 2000)


@pytest.mark.parametrize("ct", [ChannelType.STATIC_REMOTEKEY, ChannelType.ANCHORS])
def test_htlc_outputs_of_current_commitments_are_claimed(ct):
    """An HTLC each way on A's commitment. A (its own commitment): the HTLC-timeout (peer-signed) and, with the
    preimage, the HTLC-success, then the delayed outputs of both. B (the peer's commitment): its HTLC directly
    after cltv_expiry, A's with the preimage. Each spend is checked by Bitcoin Core's interpreter, and so is what
    must fail (no preimage, the wrong one, a locktime before cltv_expiry, a sweep before to_self_delay)."""
    pair = Pair.open(funding_sat=1_000_000, push_msat=300_000_000, channel_type=ct)
    a, b = pair.a, pair.b
    pre_a, pre_b = b"\x0a" * 32, b"\x0b" * 32
    a.apply(core.offer_htlc(a.ch, a.signer, 40_000_000, sha256(pre_a), 700, ONION))   # A -> B
    b.apply(core.offer_htlc(b.ch, b.signer, 60_000_000, sha256(pre_b), 710, ONION))   # B -> A
    pair.pump()
    ctx = core.local_commitment(a.ch, a.signer)
    tx = core.local_commitment_tx(a.ch, a.signer)

    # A, its own commitment.
    ours = classify_spend(a.ch, a.signer.commitment_point, tx, ctx.txid, stubs_of(a))
    assert ours.kind is SpendKind.LOCAL and ours.notes == ()
    by_kind = {o.kind: o for o in ours.outputs}
    mine, theirs = by_kind[OutputKind.OUR_HTLC], by_kind[OutputKind.THEIR_HTLC]
    assert (mine.value_sat, mine.action, mine.htlc.cltv_expiry) == (40_000, Action.HTLC_TIMEOUT, 700)
    assert (theirs.value_sat, theirs.action, theirs.htlc.cltv_expiry) == (60_000, Action.HTLC_SUCCESS, 710)
    second = {t.output_index: t for t in local_htlc_txs(ctx, a.ch.local_htlc_sigs, a.signer)}
    timeout = second[mine.vout].complete()
    assert timeout.locktime == 700 and verifies(timeout, tx.outputs[mine.vout])
    success = second[theirs.vout].complete(pre_b)
    assert verifies(success, tx.outputs[theirs.vout])
    assert not verifies(second[theirs.vout].complete(b"\x0c" * 32), tx.outputs[theirs.vout])
    with pytest.raises(ValueError):
        second[theirs.vout].complete()
    for htlc_out, stage in ((mine, timeout), (theirs, success)):
        delayed = htlc_tx_delayed_output(a.ch, htlc_out, stage)
        assert delayed.script_pubkey == stage.outputs[0].script_pubkey and delayed.csv == a.ch.params.local_to_self_delay
        sweep = sign_sweep(build_sweep(stage.txid(), delayed, ct, DEST, 2000), delayed, ct, a.signer)
        assert verifies(sweep, stage.outputs[0])
        early = replace(delayed, csv=delayed.csv - 1)
        assert not verifies(sign_sweep(build_sweep(stage.txid(), early, ct, DEST, 2000), early, ct, a.signer),
                            stage.outputs[0])

    # B, the peer's commitment: spent directly.
    res = classify_spend(b.ch, b.signer.commitment_point, tx, core.local_commitment(b.ch, b.signer).txid,
                         stubs_of(b))
    assert res.kind is SpendKind.REMOTE and res.notes == ()
    by_kind = {o.kind: o for o in res.outputs}
    mine, theirs = by_kind[OutputKind.OUR_HTLC], by_kind[OutputKind.THEIR_HTLC]
    assert (mine.value_sat, theirs.value_sat) == (60_000, 40_000)
    claim = sign_htlc_claim(build_htlc_claim(tx.txid(), mine, ct, DEST, 2000), mine, b.signer)
    assert claim.locktime == 710 and verifies(claim, tx.outputs[mine.vout])
    early = build_htlc_claim(tx.txid(), mine, ct, DEST, 2000)
    early.locktime = 709
    assert not verifies(sign_htlc_claim(early, mine, b.signer), tx.outputs[mine.vout])
    claim = sign_htlc_claim(build_htlc_claim(tx.txid(), theirs, ct, DEST, 2000), theirs, b.signer, pre_a)
    assert verifies(claim, tx.outputs[theirs.vout]) and claim.outputs[0].script_pubkey == DEST
    assert preimage_from_witness(claim.inputs[0].witness, sha256(pre_a)) == pre_a
    assert not verifies(sign_htlc_claim(build_htlc_claim(tx.txid(), theirs, ct, DEST, 2000), theirs, b.signer,
                                        b"\x0c" * 32), tx.outputs[theirs.vout])
    # A's signature does not claim B's outputs.
    assert not verifies(sign_htlc_claim(build_htlc_claim(tx.txid(), theirs, ct, DEST, 2000), theirs, a.signer, pre_a),
                        tx.outputs[theirs.vout])


def test_deadline_feerate_tightens_and_bumps():
    from ampere.ln.onchain.fees import deadline_feerate, worth_replacing

    estimates = {1: 20_000, 2: 10_000, 3: 8000, 6: 5000, 12: 2000}

    def estimate(target):
        return estimates[max(t for t in estimates if t <= target)]

    # Aim at half the blocks left: far from the deadline cheap, at the deadline the next block.
    assert deadline_feerate(estimate, 253, 24, 0) == 2000
    assert deadline_feerate(estimate, 253, 12, 0) == 5000
    assert deadline_feerate(estimate, 253, 2, 0) == 20_000
    assert deadline_feerate(estimate, 253, 0, 0) == 20_000
    assert deadline_feerate(lambda t: 0, 253, 10, 0) == 253          # no estimate: the floor
    # Each block spent waiting raises it enough to replace the previous version (BIP125).
    r0, r1, r2 = (deadline_feerate(estimate, 253, 12, w) for w in (0, 1, 2))
    assert worth_replacing(r0, r1) and worth_replacing(r1, r2) and not worth_replacing(r0, r0 + 1)


def test_peer_previous_commitment_not_yet_revoked_is_claimed_directly():
    """BOLT 5: the peer may broadcast its previous commitment while our new one awaits its revoke_and_ack: not a
    cheat; its HTLCs are claimed directly, with the previous per_commitment_point."""
    pair = Pair.open(funding_sat=1_000_000, push_msat=300_000_000)
    a, b = pair.a, pair.b
    pre = b"\x0d" * 32
    b.apply(core.offer_htlc(b.ch, b.signer, 30_000_000, sha256(pre), 720, ONION))   # B -> A
    pair.pump()
    prev = core.local_commitment_tx(b.ch, b.signer)          # B's commitment #k, holding the HTLC
    a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, sha256(b"\x0e" * 32), 730, ONION))
    pair.commit(a)                                            # A signs B's #k+1 ...
    while a.outbox:
        pair.deliver(a)
    assert a.ch.awaiting_revoke                               # ... and B's revoke_and_ack has not arrived
    res = classify_spend(a.ch, a.signer.commitment_point, prev, core.local_commitment(a.ch, a.signer).txid,
                         stubs_of(a))
    assert res.kind is SpendKind.REMOTE and res.commitment_number == a.ch.remote_ctn - 1
    [theirs] = [o for o in res.outputs if o.kind is OutputKind.THEIR_HTLC]
    claim = sign_htlc_claim(build_htlc_claim(prev.txid(), theirs, ChannelType.STATIC_REMOTEKEY, DEST, 2000), theirs,
                            a.signer, pre)
    assert verifies(claim, prev.outputs[theirs.vout])

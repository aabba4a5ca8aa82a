"""BOLT 2 on an open channel with ampd (the accepter, all funds ours): reestablish, HTLCs, update_fee, close."""
import hashlib
from typing import Any

from bitcoin.core import CMutableTransaction, COutPoint, CTxIn, CTxOut, Hash160
from bitcoin.core import script as bscript
from lnprototest import (HTLC, Connect, Disconnect, Event, ExpectMsg, ExpectTx, Msg, MustNotMsg, Runner, Side,
                         Sig, UpdateCommit, remote_per_commitment_point, remote_per_commitment_secret)
from lnprototest.stash import (channel_id, commitsig_to_recv, commitsig_to_send, htlc_sigs_to_recv, htlc_sigs_to_send,
                               sent)
from lnprototest.utils import privkey_expand, pubkey_of, run_runner

from lnpt_common import FEERATE, LOCAL_FUNDING_PRIVKEY, LOCAL_KEYSET, connect, open_to_ready
from lnpt_events import ExpectErrorOrWarning


def reconnect() -> list:
    return [Disconnect(), Connect(connprivkey="02"), ExpectMsg("init"),
            Msg("init", globalfeatures="", features=sent("init.features"))]


def test_reestablish_after_reconnect(runner: Runner) -> None:
    run_runner(runner, [
        *connect(runner), *open_to_ready(runner), *reconnect(),
        # BOLT #2: next_commitment_number 1 (no commitment_signed yet), next_revocation_number 0, and
        # (option_data_loss_protect) the last secret it received from us (none: zeros) and its current point.
        ExpectMsg("channel_reestablish", channel_id=channel_id(), next_commitment_number=1, next_revocation_number=0,
                  your_last_per_commitment_secret="00" * 32,
                  my_current_per_commitment_point=remote_per_commitment_point(0), ignore=ExpectMsg.ignore_all_gossip),
        Msg("channel_reestablish", channel_id=channel_id(), next_commitment_number=1, next_revocation_number=0,
            your_last_per_commitment_secret="00" * 32, my_current_per_commitment_point=LOCAL_KEYSET.per_commit_point(0)),
        # "if next_commitment_number is 1 in both the channel_reestablish it sent and received: MUST retransmit
        # channel_ready"
        ExpectMsg("channel_ready", channel_id=channel_id(), second_per_commitment_point=remote_per_commitment_point(1),
                  ignore=ExpectMsg.ignore_all_gossip),
    ])


def test_reestablish_claiming_unknown_revocation_fails_channel(runner: Runner) -> None:
    # BOLT #2: "if next_revocation_number is not equal to 1 greater than the commitment number of the last
    # revoke_and_ack the receiving node has sent: SHOULD send an error and fail the channel."  (It must also
    # not broadcast its commitment: the peer may be the one that lost data.)
    run_runner(runner, [
        *connect(runner), *open_to_ready(runner), *reconnect(),
        ExpectMsg("channel_reestablish", channel_id=channel_id(), ignore=ExpectMsg.ignore_all_gossip),
        MustNotMsg("channel_ready"),
        Msg("channel_reestablish", channel_id=channel_id(), next_commitment_number=1, next_revocation_number=3,
            your_last_per_commitment_secret="00" * 32, my_current_per_commitment_point=LOCAL_KEYSET.per_commit_point(0)),
        ExpectErrorOrWarning(),
    ])


# An onion of the right size whose HMAC is wrong (version 0, a valid ephemeral key): the node can only fail the
# HTLC back as malformed once it is committed.
BAD_ONION = "00" + pubkey_of("42") + "00" * 1300 + "00" * 32
HTLC_SAT = 5000  # above both sides' dust threshold at FEERATE: the commitments carry an HTLC output


def test_htlc_add_commit_revoke_then_fail_malformed(runner: Runner) -> None:
    htlc = HTLC(owner=Side.local, amount_msat=HTLC_SAT * 1000, payment_secret="00" * 32, cltv_expiry=200,
                onion_routing_packet=BAD_ONION)
    run_runner(runner, [
        *connect(runner), *open_to_ready(runner),
        Msg("update_add_htlc", channel_id=channel_id(), id=0, amount_msat=htlc.amount_msat,
            payment_hash=htlc.payment_hash(), cltv_expiry=htlc.cltv_expiry, onion_routing_packet=BAD_ONION),
        UpdateCommit(new_htlcs=[(htlc, 0)]),
        # Our signatures of its commitment #1 (with the HTLC output and its HTLC-success transaction).
        Msg("commitment_signed", channel_id=channel_id(), signature=commitsig_to_send(),
            htlc_signature=htlc_sigs_to_send()),
        # BOLT #2: it revokes commitment #0 (secret of #0, point of #2) and signs ours (#1, with the HTLC).
        ExpectMsg("revoke_and_ack", channel_id=channel_id(), per_commitment_secret=remote_per_commitment_secret(0),
                  next_per_commitment_point=remote_per_commitment_point(2), ignore=ExpectMsg.ignore_all_gossip),
        ExpectMsg("commitment_signed", channel_id=channel_id(), signature=commitsig_to_recv(),
                  htlc_signature=htlc_sigs_to_recv(), ignore=ExpectMsg.ignore_all_gossip),
        Msg("revoke_and_ack", channel_id=channel_id(), per_commitment_secret=LOCAL_KEYSET.per_commit_secret(0),
            next_per_commitment_point=LOCAL_KEYSET.per_commit_point(2)),
        # BOLT #2 / #4: an onion it cannot parse (bad HMAC) is failed back with update_fail_malformed_htlc,
        # failure_code BADONION|PERM|5 (invalid_onion_hmac) and the SHA256 of the onion it received.
        ExpectMsg("update_fail_malformed_htlc", channel_id=channel_id(), id=0,
                  sha256_of_onion=hashlib.sha256(bytes.fromhex(BAD_ONION)).hexdigest(), failure_code=0xC005,
                  ignore=ExpectMsg.ignore_all_gossip),
        UpdateCommit(failed_htlcs=[htlc]),
        ExpectMsg("commitment_signed", channel_id=channel_id(), signature=commitsig_to_recv(), htlc_signature="[]",
                  ignore=ExpectMsg.ignore_all_gossip),
        Msg("revoke_and_ack", channel_id=channel_id(), per_commitment_secret=LOCAL_KEYSET.per_commit_secret(1),
            next_per_commitment_point=LOCAL_KEYSET.per_commit_point(3)),
        Msg("commitment_signed", channel_id=channel_id(), signature=commitsig_to_send(), htlc_signature="[]"),
        ExpectMsg("revoke_and_ack", channel_id=channel_id(), per_commitment_secret=remote_per_commitment_secret(1),
                  next_per_commitment_point=remote_per_commitment_point(3), ignore=ExpectMsg.ignore_all_gossip),
    ])


def test_uncommitted_htlc_forgotten_on_reconnect(runner: Runner) -> None:
    # BOLT #2: "upon disconnection: MUST reverse any uncommitted updates sent by the other side (i.e. all messages
    # beginning with update_ for which no commitment_signed has been received)."  So after a reconnect the same
    # HTLC id 0 is new again, and commits as if the first never happened.
    htlc = HTLC(owner=Side.local, amount_msat=HTLC_SAT * 1000, payment_secret="00" * 32, cltv_expiry=200,
                onion_routing_packet=BAD_ONION)
    add = Msg("update_add_htlc", channel_id=channel_id(), id=0, amount_msat=htlc.amount_msat,
              payment_hash=htlc.payment_hash(), cltv_expiry=htlc.cltv_expiry, onion_routing_packet=BAD_ONION)
    run_runner(runner, [
        *connect(runner), *open_to_ready(runner),
        add,
        *reconnect(),
        ExpectMsg("channel_reestablish", channel_id=channel_id(), next_commitment_number=1, next_revocation_number=0,
                  ignore=ExpectMsg.ignore_all_gossip),
        Msg("channel_reestablish", channel_id=channel_id(), next_commitment_number=1, next_revocation_number=0,
            your_last_per_commitment_secret="00" * 32, my_current_per_commitment_point=LOCAL_KEYSET.per_commit_point(0)),
        ExpectMsg("channel_ready", channel_id=channel_id(), ignore=ExpectMsg.ignore_all_gossip),
        add,
        UpdateCommit(new_htlcs=[(htlc, 0)]),
        Msg("commitment_signed", channel_id=channel_id(), signature=commitsig_to_send(),
            htlc_signature=htlc_sigs_to_send()),
        ExpectMsg("revoke_and_ack", channel_id=channel_id(), per_commitment_secret=remote_per_commitment_secret(0),
                  next_per_commitment_point=remote_per_commitment_point(2), ignore=ExpectMsg.ignore_all_gossip),
        ExpectMsg("commitment_signed", channel_id=channel_id(), signature=commitsig_to_recv(),
                  htlc_signature=htlc_sigs_to_recv(), ignore=ExpectMsg.ignore_all_gossip),
    ])


def test_reestablish_retransmits_revoke_and_commit(runner: Runner) -> None:
    # The node revoked #0 and signed our #1, but (we say) neither reached us.  BOLT #2 channel_reestablish:
    # "if next_revocation_number is equal to the commitment number of the last revoke_and_ack the receiving node
    # sent ...: MUST re-send the revoke_and_ack"; "if next_commitment_number is equal to the commitment number of
    # the last commitment_signed message the receiving node has sent: MUST reuse the same commitment number for
    # its next commitment_signed" -- in the order it first sent them.
    htlc = HTLC(owner=Side.local, amount_msat=HTLC_SAT * 1000, payment_secret="00" * 32, cltv_expiry=200,
                onion_routing_packet=BAD_ONION)
    run_runner(runner, [
        *connect(runner), *open_to_ready(runner),
        Msg("update_add_htlc", channel_id=channel_id(), id=0, amount_msat=htlc.amount_msat,
            payment_hash=htlc.payment_hash(), cltv_expiry=htlc.cltv_expiry, onion_routing_packet=BAD_ONION),
        UpdateCommit(new_htlcs=[(htlc, 0)]),
        Msg("commitment_signed", channel_id=channel_id(), signature=commitsig_to_send(),
            htlc_signature=htlc_sigs_to_send()),
        ExpectMsg("revoke_and_ack", channel_id=channel_id(), ignore=ExpectMsg.ignore_all_gossip),
        ExpectMsg("commitment_signed", channel_id=channel_id(), ignore=ExpectMsg.ignore_all_gossip),
        *reconnect(),
        # It got our commitment #1 (expects #2 next) and has no revocation from us yet.
        ExpectMsg("channel_reestablish", channel_id=channel_id(), next_commitment_number=2, next_revocation_number=0,
                  your_last_per_commitment_secret="00" * 32,
                  my_current_per_commitment_point=remote_per_commitment_point(1), ignore=ExpectMsg.ignore_all_gossip),
        Msg("channel_reestablish", channel_id=channel_id(), next_commitment_number=1, next_revocation_number=0,
            your_last_per_commitment_secret="00" * 32, my_current_per_commitment_point=LOCAL_KEYSET.per_commit_point(0)),
        ExpectMsg("revoke_and_ack", channel_id=channel_id(), per_commitment_secret=remote_per_commitment_secret(0),
                  next_per_commitment_point=remote_per_commitment_point(2), ignore=ExpectMsg.ignore_all_gossip),
        ExpectMsg("commitment_signed", channel_id=channel_id(), signature=commitsig_to_recv(),
                  htlc_signature=htlc_sigs_to_recv(), ignore=ExpectMsg.ignore_all_gossip),
        # And the dance completes: our revocation, then the malformed onion is failed back.
        Msg("revoke_and_ack", channel_id=channel_id(), per_commitment_secret=LOCAL_KEYSET.per_commit_secret(0),
            next_per_commitment_point=LOCAL_KEYSET.per_commit_point(2)),
        ExpectMsg("update_fail_malformed_htlc", channel_id=channel_id(), id=0, failure_code=0xC005,
                  ignore=ExpectMsg.ignore_all_gossip),
    ])


def test_htlc_bad_commitment_signature_fails_channel(runner: Runner) -> None:
    # BOLT #2 commitment_signed: "if signature is not valid for its local commitment transaction OR non-compliant
    # with LOW-S-standard rule: MUST send a warning and close the connection, or send an error and fail the
    # channel."  We sign its commitment WITHOUT the HTLC we just added.
    htlc = HTLC(owner=Side.local, amount_msat=HTLC_SAT * 1000, payment_secret="00" * 32, cltv_expiry=200,
                onion_routing_packet=BAD_ONION)
    run_runner(runner, [
        *connect(runner), *open_to_ready(runner),
        Msg("update_add_htlc", channel_id=channel_id(), id=0, amount_msat=htlc.amount_msat,
            payment_hash=htlc.payment_hash(), cltv_expiry=htlc.cltv_expiry, onion_routing_packet=BAD_ONION),
        UpdateCommit(),
        MustNotMsg("revoke_and_ack"),
        Msg("commitment_signed", channel_id=channel_id(), signature=commitsig_to_send(), htlc_signature="[]"),
        ExpectErrorOrWarning(),
    ])


def test_update_fee(runner: Runner) -> None:
    # BOLT #2: the opener (us) changes the commitment feerate; both commitments at the new rate are signed.
    new_rate = FEERATE + 1000
    run_runner(runner, [
        *connect(runner), *open_to_ready(runner),
        Msg("update_fee", channel_id=channel_id(), feerate_per_kw=new_rate),
        UpdateCommit(new_feerate=new_rate),
        Msg("commitment_signed", channel_id=channel_id(), signature=commitsig_to_send(), htlc_signature="[]"),
        ExpectMsg("revoke_and_ack", channel_id=channel_id(), per_commitment_secret=remote_per_commitment_secret(0),
                  next_per_commitment_point=remote_per_commitment_point(2), ignore=ExpectMsg.ignore_all_gossip),
        ExpectMsg("commitment_signed", channel_id=channel_id(), signature=commitsig_to_recv(), htlc_signature="[]",
                  ignore=ExpectMsg.ignore_all_gossip),
        Msg("revoke_and_ack", channel_id=channel_id(), per_commitment_secret=LOCAL_KEYSET.per_commit_secret(0),
            next_per_commitment_point=LOCAL_KEYSET.per_commit_point(2)),
    ])


def test_update_fee_unreasonable_fails_channel(runner: Runner) -> None:
    # BOLT #2 update_fee: "if update_fee is too low for timely processing, OR is unreasonably large: MUST send a
    # warning and close the connection, or send an error and fail the channel."
    run_runner(runner, [
        *connect(runner), *open_to_ready(runner),
        MustNotMsg("revoke_and_ack"),
        Msg("update_fee", channel_id=channel_id(), feerate_per_kw=50_000_000),
        ExpectErrorOrWarning(),
    ])


# ---- mutual close -------------------------------------------------------------------------------------------
CLOSE_PRIVKEY = "99"
CLOSE_SCRIPT = bscript.CScript([bscript.OP_0, Hash160(bytes.fromhex(pubkey_of(CLOSE_PRIVKEY)))])
CLOSE_FEE = 3000


class SignClosing(Event):
    """BOLT 3 closing transaction for fee CLOSE_FEE: version 2, locktime 0, the funding input with sequence
    0xFFFFFFFF, one output (the node's balance is zero, so it has none) to our shutdown script.  Stashes the
    sighash, so our signature and the check of the node's can be made."""

    def action(self, runner: Runner) -> bool:
        super().action(runner)
        funding = runner.get_stash(self, "Funding")
        tx = CMutableTransaction(vin=[CTxIn(COutPoint(bytes.fromhex(funding.txid), funding.output_index),
                                            nSequence=0xFFFFFFFF)],
                                 vout=[CTxOut(funding.amount - CLOSE_FEE, CLOSE_SCRIPT)], nLockTime=0, nVersion=2)
        sighash = bscript.SignatureHash(funding.redeemscript(), tx, inIdx=0, hashtype=bscript.SIGHASH_ALL,
                                        amount=funding.amount, sigversion=bscript.SIGVERSION_WITNESS_V0)
        runner.add_stash("closing", {"sighash": sighash.hex(), "txid": tx.GetTxid().hex()})
        return True


def closing_sig(privkey: Any) -> Any:
    def _sig(runner: Runner, event: Event, field: str) -> Sig:
        key = privkey(runner) if callable(privkey) else privkey
        return Sig(privkey_expand(key).secret.hex(), runner.get_stash(event, "closing")["sighash"])
    return _sig


def closing_txid(runner: Runner, event: Event, field: str) -> str:
    return runner.get_stash(event, "closing")["txid"]


def test_shutdown_and_closing_signed(runner: Runner) -> None:
    run_runner(runner, [
        *connect(runner), *open_to_ready(runner),
        Msg("shutdown", channel_id=channel_id(), scriptpubkey=CLOSE_SCRIPT.hex()),
        # BOLT #2: "A receiving node: ... if it hasn't sent a shutdown, MUST reply to a shutdown message with
        # a shutdown" -- and no new HTLC after it.
        MustNotMsg("update_add_htlc"),
        ExpectMsg("shutdown", channel_id=channel_id(), ignore=ExpectMsg.ignore_all_gossip),
        SignClosing(),
        # We (the opener) propose first, with a fee_range around our fee.
        Msg("closing_signed", channel_id=channel_id(), fee_satoshis=CLOSE_FEE,
            signature=closing_sig(LOCAL_FUNDING_PRIVKEY),
            tlvs="{fee_range={min_fee_satoshis=" + str(CLOSE_FEE // 2) + ",max_fee_satoshis="
                 + str(CLOSE_FEE * 4) + "}}"),
        # BOLT #2: "if fee_satoshis is ... within its own fee range ... SHOULD/MUST reply with closing_signed with
        # the same fee_satoshis": its signature must be valid (key 0x10) for this very transaction...
        ExpectMsg("closing_signed", channel_id=channel_id(), fee_satoshis=CLOSE_FEE,
                  signature=closing_sig(lambda r: r.get_node_bitcoinkey()), ignore=ExpectMsg.ignore_all_gossip),
        # ... which it then broadcasts.
        ExpectTx(closing_txid),
    ])


def test_shutdown_bad_script_refused(runner: Runner) -> None:
    # BOLT #2 shutdown: "if the scriptpubkey is not in one of the above forms: SHOULD send a warning" (a bare
    # P2PK script is not one of them).  The channel stays open: no shutdown from the node.
    run_runner(runner, [
        *connect(runner), *open_to_ready(runner),
        MustNotMsg("shutdown"),
        Msg("shutdown", channel_id=channel_id(),
            scriptpubkey=bscript.CScript([bytes.fromhex(pubkey_of(CLOSE_PRIVKEY)), bscript.OP_CHECKSIG]).hex()),
        ExpectErrorOrWarning(),
    ])

"""Cheating between Ampere and Core Lightning, with an HTLC pending each way on the revoked commitment.

- CLN cheats: its commitment is signed (CLN's `dev-sign-last-tx`) while an HTLC each way is held by a plugin, the
  channel moves on (one HTLC settled, one failed, one more payment), and the old commitment is broadcast. Ampere
  takes CLN's to_local and both HTLC outputs with the revocation key, its penalties broadcast as soon as it sees
  the cheat's block, and ends with every satoshi of the commitment in its wallet less its penalties' fees; on a
  static_remotekey and on an anchor channel (whose two anchors it leaves).
- Ampere cheats: the same with Ampere's `dev-sign-last-tx`. CLN's onchaind takes Ampere's to_local and both HTLC
  outputs with its penalty transactions, which it could not do unless Ampere's commitment and HTLC output scripts
  were exactly BOLT #3's (revocation pubkey, per-commitment point, HTLC scripts with their CLTVs); and, when
  Ampere also broadcasts its HTLC-success transaction (`dev-sign-last-htlc-txs`) for the HTLC CLN offered, that
  transaction is valid on-chain with CLN's signature and CLN takes its output too.
"""

from __future__ import annotations

import os

import pytest

from ampere.primitives.tx import Transaction
from ampere.testing.nodes import wait_for

pytestmark = pytest.mark.cln

HODL = os.path.join(os.path.dirname(os.path.dirname(__file__)), "plugins", "hodl.py")
CAPACITY = 1_000_000
PUSH_MSAT = 400_000_000
HELD_BY_CLN_MSAT = 30_000_000     # offered by Ampere
HELD_BY_AMPERE_MSAT = 50_000_000  # offered by CLN
PREIMAGE_A = "a5" * 32           # of the HTLC Ampere holds (a cheating Ampere may claim it on-chain)
# CLN logs any spend of the funding output as a permanent failure of the channel (UNUSUAL lines).
FUNDING_SPENT = ("Funding transaction spent: onchain txid",
                 "Not dropping our unilateral close onchain since we already saw")


def wallet(node) -> dict[tuple[str, int], int]:
    """Confirmed wallet outputs: (txid, vout) -> sat."""
    return {(o["txid"], o["output"]): o["amount_msat"] // 1000 for o in node.rpc.listfunds()["outputs"]
            if o["status"] == "confirmed"}


def spenders(chaind, txid: str, first: int) -> list[Transaction]:
    """Mined transactions from height `first` on that spend an output of `txid`."""
    found = []
    for h in range(first, chaind.rpc("getblockcount") + 1):
        bh = chaind.rpc("getblockhash", h)
        for t in chaind.rpc("getblock", bh)["tx"]:
            tx = Transaction.parse_hex(chaind.rpc("getrawtransaction", t, False, bh))
            if any(i.prevout.txid_hex() == txid for i in tx.inputs):
                found.append(tx)
    return found


def mempool_spenders(chaind, txid: str) -> list[Transaction]:
    txs = [Transaction.parse_hex(chaind.rpc("getrawtransaction", t)) for t in chaind.rpc("getrawmempool")]
    return [tx for tx in txs if any(i.prevout.txid_hex() == txid for i in tx.inputs)]


def spent_vouts(txs: list[Transaction], txid: str) -> set[int]:
    return {i.prevout.vout for tx in txs for i in tx.inputs if i.prevout.txid_hex() == txid}


ANCHOR_SAT = 330   # BOLT #3: each anchor output of an option_anchors commitment


def ampere_took_everything(chaind, amp, cln, old: Transaction, claimed: set[int], first: int,
                           amp_before: dict) -> tuple[list[Transaction], int, int, int]:
    """After the cheat `old`: the transactions mined from height `first` on that spend it claim exactly `claimed`
    (to_local, the HTLC outputs, Ampere's to_remote), their outputs reach Ampere's wallet, and its wallet gained
    every satoshi of the commitment (the channel less the commitment's fee and anchors) less only its sweeps' fees;
    its status shows three penalties, two of them on HTLC outputs. (sweeps, gained, sweep fees, commitment fee)."""
    txid = old.txid_hex()
    sweeps = spenders(chaind, txid, first)
    assert spent_vouts(sweeps, txid) == claimed
    mine = {(tx.txid_hex(), v): o.value for tx in sweeps for v, o in enumerate(tx.outputs)}
    wait_for(lambda: set(mine) <= set(wallet(amp)), 30, "the sweeps' outputs in Ampere's wallet")
    status = amp.rpc.listpeerchannels(cln.node_id)["channels"][0]["status"]
    assert sum("taken by our penalty" in s for s in status) == 3, status
    assert sum("revoked_htlc output" in s and "taken by our penalty" in s for s in status) == 2, status
    anchors = sum(o.value == ANCHOR_SAT for o in old.outputs)
    gained = sum(wallet(amp).values()) - sum(amp_before.values())
    sweep_fees = sum(old.outputs[v].value for v in claimed) - sum(mine.values())
    commit_fee = CAPACITY - sum(o.value for o in old.outputs)
    assert gained == sum(mine.values()) == CAPACITY - commit_fee - ANCHOR_SAT * anchors - sweep_fees
    assert 0 < sweep_fees < 20_000, sweep_fees
    return sweeps, gained, sweep_fees, commit_fee


def open_and_hold(node_factory, cheater_kind: str, channel_type: tuple[int, ...] = (12,)):
    """Ampere opens to CLN (pushing some to CLN), then an HTLC each way is held by the receiver's HODL plugin:
    both are irrevocably committed, so each side's latest commitment carries both. Returns (amp, cln, hashes)
    where hashes = (held by CLN, offered by Ampere; held by Ampere, offered by CLN)."""
    amp = node_factory.get_node(listen=True, plugin=HODL, developer=(cheater_kind == "ampere"))
    cln = node_factory.get_cln_node(plugin=HODL)
    # The channel type is asked explicitly (anchors are the default since issue 15).
    node_factory.fundchannel(amp, cln, CAPACITY, announce=False, push_msat=PUSH_MSAT,
                             channel_type=list(channel_type))
    assert amp.rpc.listpeerchannels(cln.node_id)["channels"][0]["channel_type"]["bits"] == list(channel_type)
    scid = amp.rpc.listpeerchannels(cln.node_id)["channels"][0]["short_channel_id"]
    inv_c = cln.rpc.invoice(HELD_BY_CLN_MSAT, "hodl-c", "held by CLN")
    amp.rpc.sendpay([{"id": cln.node_id, "channel": scid, "amount_msat": HELD_BY_CLN_MSAT, "delay": 18}],
                    inv_c["payment_hash"], payment_secret=inv_c["payment_secret"])
    inv_a = amp.rpc.invoice(HELD_BY_AMPERE_MSAT, "hodl-a", "held by Ampere", preimage=PREIMAGE_A)
    cln.rpc.sendpay([{"id": amp.node_id, "channel": scid, "amount_msat": HELD_BY_AMPERE_MSAT, "delay": 18}],
                    inv_a["payment_hash"], payment_secret=inv_a["payment_secret"])
    wait_for(lambda: inv_c["payment_hash"] in cln.rpc.call("listheld")["held"]
             and inv_a["payment_hash"] in amp.rpc.call("listheld")["held"], 30, "both HTLCs held")
    return amp, cln, inv_c["payment_hash"], inv_a["payment_hash"]


def move_on(amp, cln, hash_c: str, hash_a: str) -> None:
    """Settle the HTLC CLN holds, fail the one Ampere holds, then one more payment: the commitments signed while
    both were pending are revoked on both sides."""
    cln.rpc.call("release", {"payment_hash": hash_c})
    amp.rpc.call("release", {"payment_hash": hash_a, "result": "fail"})
    inv = cln.rpc.invoice(10_000_000, "after", "after")["bolt11"]
    assert amp.rpc.pay(inv)["status"] == "complete"
    for a, b in ((amp, cln), (cln, amp)):
        wait_for(lambda a=a, b=b: a.rpc.listpeerchannels(b.node_id)["channels"][0]["htlcs"] == [], 30,
                 f"{a.implementation}: no HTLC left")
    assert amp.rpc.listsendpays(payment_hash=hash_c)["payments"][0]["status"] == "complete"
    wait_for(lambda: cln.rpc.listsendpays(payment_hash=hash_a)["payments"][0]["status"] == "failed", 30,
             "CLN's payment failed")


@pytest.mark.parametrize("channel_type", [(12,), (12, 22)], ids=["static", "anchors"])
def test_cln_cheats_with_htlcs_ampere_takes_everything(node_factory, channel_type):
    """anchors: CLN's commitment also has the two 330-sat anchors and a to_remote with a 1-block CSV (BOLT #3).
    Ampere's penalties take to_local and both HTLC outputs in the block after the cheat, its to_remote is swept
    as soon as the CSV allows (that same next block); the anchors are left: not worth their sweep, and anyone's
    after 16 blocks."""
    chaind = node_factory.chaind
    anchors = 22 in channel_type
    amp, cln, hash_c, hash_a = open_and_hold(node_factory, "cln", channel_type)
    old = Transaction.parse_hex(cln.rpc.call("dev-sign-last-tx", {"id": amp.node_id})["tx"])
    # to_local, to_remote and the two HTLCs (and the two anchors).
    assert len(old.outputs) == (6 if anchors else 4) and {HELD_BY_CLN_MSAT // 1000, HELD_BY_AMPERE_MSAT // 1000} <= \
        {o.value for o in old.outputs}, old
    anchor_vouts = {v for v, o in enumerate(old.outputs) if o.value == ANCHOR_SAT}
    assert len(anchor_vouts) == (2 if anchors else 0)
    claimed = set(range(len(old.outputs))) - anchor_vouts
    move_on(amp, cln, hash_c, hash_a)
    amp_before, cln_before = wallet(amp), wallet(cln)

    # Natural complaints of a cheat: CLN's onchaind finds no resolution for any output of its own revoked
    # commitment (BROKEN "did *we* cheat?"), and CLN logs every funding spend as a permanent failure (UNUSUAL);
    # Ampere reports the peer's cheat (UNUSUAL) as it punishes it.
    cln.allow_broken_log = True
    cln.allow_complaints = ("did *we* cheat?",) + FUNDING_SPENT
    amp.allow_complaints = ("the peer broadcast its REVOKED commitment",)
    txid = chaind.rpc("sendrawtransaction", old.serialize().hex())
    node_factory.mine(1, [amp, cln])
    seen = chaind.rpc("getblockcount")                      # the block holding the cheat
    # BOLT #5: "MUST resolve the _remote node's offered HTLCs_ ... _local node's offered HTLCs_ ... _remote node's
    # main output_ ... using the revocation private key": penalties for the three, broadcast before the next block
    # (and Ampere sweeps its to_remote to its wallet as well).
    wait_for(lambda: spent_vouts(mempool_spenders(chaind, txid), txid) == claimed, 30,
             "Ampere's penalties in the mempool")
    assert chaind.rpc("getblockcount") == seen
    node_factory.mine(1, [amp, cln])
    # Exact accounting: Ampere's wallet gained every sweep output, i.e. the whole commitment (the channel less the
    # commitment's fee and the anchors) less only its sweeps' fees.
    sweeps, gained, sweep_fees, commit_fee = ampere_took_everything(chaind, amp, cln, old, claimed, seen + 1,
                                                                    amp_before)
    # CLN, the cheater, gets nothing: more blocks (its HTLC second stages would need a few; the anchors become
    # anyone's after 16) change nothing; neither side spends an anchor nor complains.
    node_factory.mine(17 if anchors else 3, [amp, cln])
    assert wallet(cln) == cln_before
    assert spenders(chaind, txid, seen + 2) == []
    assert chaind.rpc("getrawmempool") == []
    print(f"{'anchors' if anchors else 'static'}: commitment {old.weight()} WU, fee {commit_fee} sat; Ampere's "
          f"{len(sweeps)} sweeps: {sweep_fees} sat of fees, {sum(len(t.inputs) for t in sweeps)} inputs; "
          f"Ampere gained {gained} sat")


@pytest.mark.parametrize("second_stage", [False, True], ids=["commitment", "with_htlc_success"])
def test_ampere_cheats_with_htlcs_cln_punishes(node_factory, second_stage):
    """with_htlc_success: Ampere also broadcasts, with its revoked commitment, the HTLC-success transaction of
    the HTLC CLN offered (signed with CLN's HTLC signature for that commitment, then Ampere's, with the
    preimage): it confirms, which proves Ampere builds HTLC transactions exactly as CLN does, and CLN takes its
    output (BOLT #5: "MUST resolve the _local node's offered HTLCs_ ... spending the HTLC-success output using
    the revocation private key")."""
    chaind = node_factory.chaind
    amp, cln, hash_c, hash_a = open_and_hold(node_factory, "ampere")
    old = Transaction.parse_hex(amp.rpc.call("dev-sign-last-tx", {"id": cln.node_id})["tx"])
    assert len(old.outputs) == 4 and {HELD_BY_CLN_MSAT // 1000, HELD_BY_AMPERE_MSAT // 1000} <= \
        {o.value for o in old.outputs}, old
    htlc_txs = amp.rpc.call("dev-sign-last-htlc-txs", {"id": cln.node_id, "preimages": [PREIMAGE_A]})["txs"]
    success = [Transaction.parse_hex(t["tx"]) for t in htlc_txs if "success" in t["type"]]
    assert len(success) == 1, htlc_txs
    success = success[0]
    move_on(amp, cln, hash_c, hash_a)
    amp_before = wallet(amp)

    # Natural complaints of this cheat: Ampere sees its own revoked commitment mined (BROKEN: it holds no HTLC
    # signatures for it and the peer can take its outputs) and CLN's penalties spend its to_local and its offered
    # HTLC (UNUSUAL); CLN logs the funding spend as a permanent failure (UNUSUAL).
    amp.allow_broken_log = True
    amp.allow_complaints = ("is not our latest", "our REVOKED commitment", "without a preimage", "not by our sweep")
    cln.allow_complaints = FUNDING_SPENT
    txid = chaind.rpc("sendrawtransaction", old.serialize().hex())
    if second_stage:
        assert success.inputs[0].prevout.txid_hex() == txid
        chaind.rpc("sendrawtransaction", success.serialize().hex())   # valid: signatures and scripts agree
    node_factory.mine(1, [amp, cln])
    seen = chaind.rpc("getblockcount")                      # the block holding the cheat
    # CLN's to_remote on Ampere's commitment pays its wallet directly; CLN's onchaind must take the rest.
    wait_for(lambda: any(t == txid for t, _ in wallet(cln)), 30, "CLN's to_remote in its wallet")
    to_remote = [v for t, v in wallet(cln) if t == txid]
    assert len(to_remote) == 1
    # Every other output of the revoked commitment, and the HTLC-success's output, is CLN's by penalty.
    targets = {(txid, v) for v in range(4) if v not in to_remote}
    if second_stage:
        targets = targets - {(txid, success.inputs[0].prevout.vout)} | {(success.txid_hex(), 0)}

    def spent(txs):
        return {(i.prevout.txid_hex(), i.prevout.vout) for tx in txs for i in tx.inputs} & targets

    def penalties():
        return [tx for tx in spenders(chaind, txid, seen + 1) + mempool_spenders(chaind, txid)
                + (spenders(chaind, success.txid_hex(), seen) + mempool_spenders(chaind, success.txid_hex())
                   if second_stage else [])
                if tx.txid_hex() != success.txid_hex()]
    wait_for(lambda: spent(penalties()) == targets, 60, "CLN's penalties")
    node_factory.mine(1, [amp, cln])
    mined = [tx for tx in penalties() if tx.txid_hex() not in chaind.rpc("getrawmempool")]
    assert spent(mined) == targets
    theirs = {(tx.txid_hex(), v) for tx in mined for v in range(len(tx.outputs))}
    wait_for(lambda: theirs <= set(wallet(cln)), 60, "the penalties' outputs in CLN's wallet")
    # CLN's onchaind recognised each output by its BOLT #3 script (it tries every HTLC it knows against the
    # outputs): none is left unrecognised.
    for what in (("THEIR_HTLC", "DELAYED_CHEAT_OUTPUT_TO_THEM") if second_stage else
                 ("THEIR_HTLC", "OUR_HTLC", "DELAYED_CHEAT_OUTPUT_TO_THEM")):
        cln.wait_for_log(f"Resolved THEIR_REVOKED_UNILATERAL/{what} by our proposal OUR_PENALTY_TX")
    if second_stage:
        # CLN recognised Ampere's HTLC-success spending its offered HTLC, and took that transaction's output.
        cln.wait_for_log("Resolved THEIR_REVOKED_UNILATERAL/OUR_HTLC by OUR_HTLC_FULFILL_TO_THEM")
        cln.wait_for_log("Resolved OUR_HTLC_FULFILL_TO_THEM/DELAYED_CHEAT_OUTPUT_TO_THEM by our proposal "
                         "OUR_PENALTY_TX")
    assert "Could not find resolution" not in cln.logs(since_start=False)
    # Ampere, the cheater, gets nothing: not its to_local once the CSV has passed, nor any HTLC.
    node_factory.mine(8, [amp, cln])
    assert wallet(amp) == amp_before
    assert [tx.txid_hex() for tx in penalties()] == [tx.txid_hex() for tx in mined]


def test_cln_cheats_while_ampere_is_down_ampere_punishes_when_back(node_factory):
    """The classic cheat: CLN broadcasts its revoked commitment (an HTLC each way on it, anchors) while Ampere is
    stopped, and blocks go by: all but two of the to_self_delay Ampere imposed on CLN. Ampere, started again,
    catches up with the blocks it missed, finds the cheat in one of them and takes to_local and both HTLC outputs
    with the revocation key (its own to_remote swept too) before CLN could take its to_local, each penalty built
    once at the tip it caught up with; its wallet ends with the whole commitment less the anchors and the fees."""
    chaind = node_factory.chaind
    amp, cln, hash_c, hash_a = open_and_hold(node_factory, "cln", (12, 22))
    old = Transaction.parse_hex(cln.rpc.call("dev-sign-last-tx", {"id": amp.node_id})["tx"])
    claimed = {v for v, o in enumerate(old.outputs) if o.value != ANCHOR_SAT}
    assert len(claimed) == 4 and len(old.outputs) == 6
    move_on(amp, cln, hash_c, hash_a)
    amp_before = wallet(amp)
    (chan,) = amp.rpc.listpeerchannels(cln.node_id)["channels"]
    delay = chan["their_to_self_delay"]   # the CSV on CLN's to_local: Ampere's deadline for the penalty

    cln.allow_broken_log = True
    # Ampere, back, reconnects: CLN answers that the channel's funding is spent (an error, as it should).
    cln.allow_complaints = ("did *we* cheat?", "peer_out WIRE_ERROR") + FUNDING_SPENT
    amp.allow_complaints = ("the peer broadcast its REVOKED commitment", "Funding transaction spent")
    amp.stop()
    txid = chaind.rpc("sendrawtransaction", old.serialize().hex())
    node_factory.mine(1, [cln])
    cheat_height = chaind.rpc("getblockcount")
    # Down for all but the last two blocks of that delay: CLN could sweep its to_local in block cheat + delay.
    assert delay >= 4, delay
    node_factory.mine(delay - 3, [cln])
    amp.start()
    wait_for(lambda: spent_vouts(mempool_spenders(chaind, txid), txid) == claimed, 60,
             "Ampere's penalties in the mempool after its restart")
    # Built and broadcast once, at the tip it caught up with: not fee-bumped (RBF) as if each had waited through
    # the blocks Ampere missed, which would raise their fee block after block of the catch-up.
    assert "RBF onchain" not in amp.logs(), [ln for ln in amp.logs().splitlines() if "RBF" in ln]
    node_factory.mine(1, [amp, cln])
    ampere_took_everything(chaind, amp, cln, old, claimed, cheat_height + 1, amp_before)

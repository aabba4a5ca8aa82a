"""Anchor channels (option_anchors, issue 15) between real ampd processes on amp-chaind: fee bumping.

- the chain's estimate jumps ten-fold while the peer is away: our unilateral close of a commitment signed at the
  anchor floor (1250perkw, 5 sat/vB) is CPFP'd through our anchor with wallet coins to the new estimate (50 sat/vB)
  and confirms in the next block; then the zero-fee HTLC-success (with the preimage) and HTLC-timeout (after expiry)
  get wallet inputs and change and confirm; the delayed outputs are swept; the wallet ends exact to the fees of
  our own transactions, read from the chain.
- two HTLCs we offered expire at the same block: one HTLC-timeout transaction carries both (input i / output i
  pairs, then a wallet input and change); the estimate jumps while it waits: it is replaced (RBF, CLN's "RBF HTLC
  txid" line) and the replacement confirms; our anchor, 16 blocks after the close, is left alone by the
  to_local sweep at 50 sat/vB (its input costs more than it holds: said once) and rides along the sweep of the
  second stages at 1 sat/vB; the wallet and the books are exact.
- the same two HTLCs, but before our one HTLC-timeout transaction is mined the peer claims one of its outputs
  with the preimage (a block holds the peer's claim instead): ours can never be mined; the other HTLC is timed
  out by a transaction funded anew (the dead one's wallet coins again), its change never counted; then someone
  else takes our anchor while the sweep carrying it waits: swept again without it, its output not counted either.
- the emergency reserve (min-emergency-msat): `withdraw all` leaves it while an anchor channel exists, an explicit
  amount that would eat it is refused, and the reserve pays the CPFP of a close.
- the CPFP child held out of a block (an empty block) while the estimate rises: replaced (RBF) at the new rate,
  the replaced child's change gone from the wallet; and across kill -9 before and after the child's broadcast.
- multifundchannel with a channel_type per destination (anchors and static_remotekey in one transaction).
"""
from __future__ import annotations

import os
import re
import sys
import time

import pytest
from pyln.client import RpcError

from ampere.node.onchain.bumping import package_feerate
from ampere.node.onchain.wallet_psbt import psbt_unsigned_tx
from ampere.primitives.tx import Transaction, TxIn, TxOut

sys.path.insert(0, os.path.dirname(__file__))
from bookcheck import balances, check_books  # noqa: E402
from chainutil import sync, wait_for  # noqa: E402

HODL = os.path.join(os.path.dirname(__file__), "..", "plugins", "hodl.py")
LEDGER = os.path.join(os.path.dirname(__file__), "..", "plugins", "coin_ledger.py")
FUNDING = 1_000_000
PUSH_MSAT = 400_000_000
TO_SELF_DELAY = 5
SLOW_DELAY = 17      # a to_local swept after the anchors' 16 blocks


def channel(node) -> dict:
    [c] = node.rpc.listpeerchannels()["channels"]
    return c


def restart_chain_with_fee(chaind, sat_per_vb: int, *nodes) -> None:
    chaind.stop()
    chaind.extra_args = [a for a in chaind.extra_args if not a.startswith("-fallbackfee=")]
    chaind.extra_args.append(f"-fallbackfee={sat_per_vb / 100_000:.8f}")
    chaind.start()
    for n in nodes:
        n.allow_complaints = ("chainwatch",)   # it says so while amp-chaind is down
    if nodes:
        chaind.mine(1)    # the nodes read the estimates at each block
    for n in nodes:
        wait_for(lambda n=n: n.rpc.feerates("perkw")["perkw"].get("unilateral_close") == max(sat_per_vb * 250, 253),
                 60,
                 f"{n.dir} sees {sat_per_vb} sat/vB")


def mine(chaind, n: int, *nodes) -> int:
    chaind.mine(n)
    for node in nodes:
        sync(node, chaind)
    return chaind.rpc("getblockcount")


def confirmed_sat(node) -> int:
    return sum(o["amount_msat"] for o in node.rpc.listfunds()["outputs"] if o["status"] == "confirmed") // 1000


def tx_of(chaind, txid: str) -> Transaction:
    return Transaction.parse_hex(chaind.rpc("getrawtransaction", txid))


def fee_of(chaind, tx: Transaction) -> int:
    spent = sum(tx_of(chaind, i.prevout.txid[::-1].hex()).outputs[i.prevout.vout].value for i in tx.inputs)
    return spent - sum(o.value for o in tx.outputs)


def height_of(chaind, txid: str) -> int | None:
    info = chaind.rpc("getrawtransaction", txid, True)
    return chaind.rpc("getblock", info["blockhash"])["height"] if info.get("blockhash") else None


def sweeps_since(chaind, height: int, ours: set) -> list[Transaction]:
    """The mined transactions since `height` that spend one of `ours` (txids) and are not one of them."""
    found = []
    for h in range(height, chaind.rpc("getblockcount") + 1):
        for t in chaind.rpc("getblock", chaind.rpc("getblockhash", h))["tx"][1:]:
            tx = tx_of(chaind, t)
            if tx.txid() not in ours and any(i.prevout.txid in ours for i in tx.inputs):
                found.append(tx)
    return found


def mine_until_swept(chaind, node, height: int, ours: set, count: int, max_blocks: int) -> list[Transaction]:
    """Mine a block at a time (at most `max_blocks`) until `count` sweeps of `ours` are mined; those sweeps."""
    for _ in range(max_blocks):
        if len(sweeps_since(chaind, height, ours)) == count:
            break
        mine(chaind, 1, node)
        time.sleep(0.5)
    return sweeps_since(chaind, height, ours)


def held_payment(src, dst, amount_msat: int, label: str) -> str:
    inv = dst.rpc.invoice(amount_msat, label, label)
    route = src.rpc.getroute(dst.node_id, amount_msat, 1, cltv=40)["route"]  # the invoice asks 18; blocks pass
    src.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
    wait_for(lambda: inv["payment_hash"] in dst.rpc.call("listheld")["held"], 30, f"{label} held")
    return inv["payment_hash"]


def test_cpfp_of_low_fee_commitment_then_funded_htlc_txs(node_factory_chain, chaind):
    restart_chain_with_fee(chaind, 1)
    chaind.mine(101)
    l1 = node_factory_chain.get_node({"plugin": HODL, "developer": None}, listen=True)
    l2 = node_factory_chain.get_node({"plugin": HODL, "watchtime-blocks": TO_SELF_DELAY}, listen=True)
    node_factory_chain.fund_wallet(l1, 1_200_000)
    node_factory_chain.fund_wallet(l1, 200_000)     # coins for the fee bumps
    node_factory_chain.connect(l1, l2)
    l1.rpc.fundchannel(l2.node_id, FUNDING, push_msat=PUSH_MSAT)
    mine(chaind, 6, l1, l2)
    for n in (l1, l2):
        wait_for(lambda n=n: channel(n)["state"] == "CHANNELD_NORMAL", 30, "CHANNELD_NORMAL")
    c = channel(l1)
    assert c["channel_type"]["names"] == ["static_remotekey/even", "anchors/even"]
    assert c["feerate"]["perkw"] == 1250     # the anchor commitment's floor (as CLN): 5 sat/vB
    h_in = held_payment(l2, l1, 50_000_000, "hodl-in")       # l2 -> l1: l1 claims it with its preimage
    held_payment(l1, l2, 30_000_000, "hodl-out")             # l1 -> l2: held forever, l1 times it out
    wait_for(lambda: len(channel(l1)["htlcs"]) == 2 and all(h["state"] in ("SENT_ADD_ACK_REVOCATION",
                                                                          "RCVD_ADD_ACK_REVOCATION")
                                                          for h in channel(l1)["htlcs"]), 30, "HTLCs committed")
    expiry = next(h["expiry"] for h in channel(l1)["htlcs"] if h["direction"] == "out")

    # The peer goes away, the chain's estimate jumps to 50 sat/vB: our commitment is stuck at 5 sat/vB.
    l2.stop()
    restart_chain_with_fee(chaind, 50, l1)
    wallet_before = confirmed_sat(l1)
    l1.rpc.call("dev-fail", {"id": l2.node_id})
    try:
        wait_for(lambda: len(chaind.rpc("getrawmempool")) == 2, 30, "the commitment and its CPFP child")
    except TimeoutError:
        raise AssertionError("\n".join(x for x in l1.logs(False).splitlines()[-60:] if "gossip" not in x))
    txs = {t: tx_of(chaind, t) for t in chaind.rpc("getrawmempool")}
    [commit] = [t for t in txs.values() if any(i.prevout.txid[::-1].hex() == c["funding_txid"] for i in t.inputs)]
    [child] = [t for t in txs.values() if t is not commit]
    anchor_in = [i for i in child.inputs if i.prevout.txid == commit.txid()]
    assert len(anchor_in) == 1 and commit.outputs[anchor_in[0].prevout.vout].value == 330
    commit_fee, child_fee = FUNDING - sum(o.value for o in commit.outputs), fee_of(chaind, child)
    assert commit_fee * 1000 // commit.weight() < 1300           # signed at 1250perkw
    package = package_feerate(commit, commit_fee, child, child_fee)
    assert 12_500 <= package < 13_000, package                 # the new estimate, not much more
    wallet_inputs = len(child.inputs) - 1
    print(f"CPFP: commitment {commit.weight()} WU at {commit_fee} sat; child {child.weight()} WU pays {child_fee} "
          f"sat with {wallet_inputs} wallet input(s): package {package}perkw")
    close_height = mine(chaind, 1, l1)
    assert height_of(chaind, commit.txid_hex()) == height_of(chaind, child.txid_hex()) == close_height
    print("blocks to confirmation: 1")

    # The HTLC we received: the preimage is ours (l1's invoice): HTLC-success with a wallet input and change.
    l1.rpc.call("release", {"payment_hash": h_in})
    try:
        wait_for(lambda: "HTLC-success of HTLC" in l1.logs(False), 30, "the HTLC-success")
    except TimeoutError:
        raise AssertionError("\n".join(x for x in l1.logs(False).splitlines()[-40:] if "gossip" not in x))

    def our_spend_of(vout: int) -> Transaction | None:
        for t in chaind.rpc("getrawmempool"):
            tx = tx_of(chaind, t)
            if any(i.prevout.txid == commit.txid() and i.prevout.vout == vout for i in tx.inputs):
                return tx
        return None

    in_vout = next(i for i, o in enumerate(commit.outputs) if o.value == 50_000)
    out_vout = next(i for i, o in enumerate(commit.outputs) if o.value == 30_000)
    success = wait_for(lambda: our_spend_of(in_vout), 30, "the HTLC-success in the mempool")
    assert len(success.inputs) >= 2 and len(success.outputs) == 2 and success.outputs[0].value == 50_000
    assert fee_of(chaind, success) * 1000 // success.weight() >= 12_000
    mine(chaind, 1, l1)
    assert height_of(chaind, success.txid_hex()) is not None
    # The HTLC we offered: after its expiry, the HTLC-timeout, funded the same way.
    mine(chaind, max(0, expiry - chaind.rpc("getblockcount")), l1)
    timeout = wait_for(lambda: our_spend_of(out_vout), 30, "the HTLC-timeout in the mempool")
    assert len(timeout.inputs) >= 2 and timeout.outputs[0].value == 30_000 and timeout.locktime == expiry
    mine(chaind, 1, l1)
    # The delayed outputs (to_local, both second stages) after to_self_delay, swept to the wallet.
    ours = {commit.txid()} | {t.txid() for t in (child, success, timeout)}

    swept = mine_until_swept(chaind, l1, close_height, ours, 3, 3 * TO_SELF_DELAY)
    assert len(swept) == 3      # to_local and the two second-stage outputs
    wait_for(lambda: chaind.rpc("getrawmempool") == [], 30, "nothing left to send")
    fees = child_fee + fee_of(chaind, success) + fee_of(chaind, timeout) + sum(fee_of(chaind, t) for t in swept)
    to_local = max(o.value for o in commit.outputs)         # l1's ~568k (l2's to_remote: 350k)
    gained = confirmed_sat(l1) - wallet_before
    # Our wallet: our balance, both HTLCs and our anchor back, less the fees of our transactions (not the
    # commitment's, paid by the channel).
    assert gained == to_local + 50_000 + 30_000 + 330 - fees, (gained, to_local, fees)
    print(f"fees paid by l1 on-chain: {fees} sat (CPFP child {child_fee})")


def set_chain_fee(chaind, sat_per_vb: int, *nodes) -> None:
    """amp-chaind's estimate becomes `sat_per_vb` (a restart), then an EMPTY block: whatever waits in the
    mempool stays there, and the nodes read the new estimate."""
    chaind.stop()
    chaind.extra_args = [a for a in chaind.extra_args if not a.startswith("-fallbackfee=")]
    chaind.extra_args.append(f"-fallbackfee={sat_per_vb / 100_000:.8f}")
    chaind.start()
    for n in nodes:
        n.allow_complaints = ("chainwatch",)
    chaind.rpc("generateblock", chaind.faucet_address(), [])
    for n in nodes:
        wait_for(lambda n=n: n.rpc.feerates("perkw")["perkw"].get("unilateral_close") == max(sat_per_vb * 250, 253),
                 60,
                 f"{n.dir} sees {sat_per_vb} sat/vB")
        sync(n, chaind)


def two_held_htlcs(node_factory_chain, chaind, l2_delay: int):
    """An anchor channel l1 -> l2 (l2's to_self_delay `l2_delay`) holding two payments l2 holds (hodl-a 30,000 sat,
    hodl-b 20,000 sat), both committed and sent at the same height: the same expiry. Returns
    (l1, l2, channel_id, hash a, hash b, expiry, l1's to_us_msat)."""
    restart_chain_with_fee(chaind, 1)
    chaind.mine(101)
    l1 = node_factory_chain.get_node({"plugin": LEDGER, "developer": None}, listen=True)
    l2 = node_factory_chain.get_node({"plugin": HODL, "watchtime-blocks": l2_delay}, listen=True)
    node_factory_chain.fund_wallet(l1, 1_200_000)
    node_factory_chain.fund_wallet(l1, 200_000)
    node_factory_chain.connect(l1, l2)
    l1.rpc.fundchannel(l2.node_id, FUNDING)
    mine(chaind, 6, l1, l2)
    for n in (l1, l2):
        wait_for(lambda n=n: channel(n)["state"] == "CHANNELD_NORMAL", 30, "CHANNELD_NORMAL")
    cid = channel(l1)["channel_id"]
    h_a = held_payment(l1, l2, 30_000_000, "hodl-a")
    h_b = held_payment(l1, l2, 20_000_000, "hodl-b")
    wait_for(lambda: len(channel(l1)["htlcs"]) == 2 and all(h["state"] == "SENT_ADD_ACK_REVOCATION"
                                                          for h in channel(l1)["htlcs"]), 30, "HTLCs committed")
    [expiry] = {h["expiry"] for h in channel(l1)["htlcs"]}
    return l1, l2, cid, h_a, h_b, expiry, channel(l1)["to_us_msat"]


def test_aggregated_htlc_timeouts_rbf_then_anchor_swept_along(node_factory_chain, chaind):
    l1, l2, cid, _, _, expiry, to_us = two_held_htlcs(node_factory_chain, chaind, SLOW_DELAY)

    l2.stop()
    wallet_before = confirmed_sat(l1)
    l1.rpc.call("dev-fail", {"id": l2.node_id})
    # The commitment's 1250perkw pays more than the 1 sat/vB estimate: no CPFP.
    [ctxid] = wait_for(lambda: chaind.rpc("getrawmempool"), 30, "our commitment")
    commit = tx_of(chaind, ctxid)
    close_height = mine(chaind, 1, l1)
    htlc_vouts = sorted(i for i, o in enumerate(commit.outputs) if o.value in (30_000, 20_000))
    [anchor_vout] = [i for i, o in enumerate(commit.outputs) if o.value == 330 and any(
        m.get("utxo") == f"{ctxid}:{i}" and m["primary_tag"] == "anchor" for m in l1.rpc.call("ledger")["movements"])]

    def spends(vout: int, where: str = "mempool") -> Transaction | None:
        txids = chaind.rpc("getrawmempool") if where == "mempool" else [
            t for h in range(close_height, chaind.rpc("getblockcount") + 1)
            for t in chaind.rpc("getblock", chaind.rpc("getblockhash", h))["tx"][1:]]
        for t in txids:
            tx = tx_of(chaind, t)
            if any(i.prevout.txid == commit.txid() and i.prevout.vout == vout for i in tx.inputs):
                return tx
        return None

    # The estimate jumps to 50 sat/vB: when to_local is swept (after to_self_delay, past the anchor's 16 blocks),
    # adding our anchor would cost more than its 330 sat: it is left alone, and the log says so once.
    set_chain_fee(chaind, 50, l1)
    mine(chaind, close_height + SLOW_DELAY - 1 - chaind.rpc("getblockcount"), l1)
    to_local_vout = max(range(len(commit.outputs)), key=lambda i: commit.outputs[i].value)
    to_local_sweep = wait_for(lambda: spends(to_local_vout), 30, "the to_local sweep")
    assert len(to_local_sweep.inputs) == 1
    assert l1.logs(False).count("not sweeping our anchor") == 1

    # At the expiry both HTLC-timeouts go out as ONE transaction.
    mine(chaind, expiry - chaind.rpc("getblockcount"), l1)
    agg = wait_for(lambda: spends(htlc_vouts[0]), 30, "the HTLC-timeout transaction")
    assert [(i.prevout.txid, i.prevout.vout) for i in agg.inputs[:2]] == [(commit.txid(), v) for v in htlc_vouts]
    assert [o.value for o in agg.outputs[:2]] == [commit.outputs[v].value for v in htlc_vouts]
    assert len(agg.outputs) == 3 and agg.locktime == expiry
    assert len(agg.inputs) >= 3 and all(i.prevout.txid != commit.txid() for i in agg.inputs[2:])
    fee1 = fee_of(chaind, agg)
    logged = re.search(r"in one transaction with (\d+) wallet input\(s\) at (\d+)perkw \(fee (\d+) sat", l1.logs(False))
    assert logged and int(logged.group(3)) == fee1 and int(logged.group(1)) == len(agg.inputs) - 2
    rate1 = int(logged.group(2))
    assert rate1 <= fee1 * 1000 // agg.weight() and fee1 <= (rate1 * (agg.weight() + 8) + 999) // 1000
    print(f"aggregated HTLC-timeout: 2 HTLCs + {len(agg.inputs) - 2} wallet input(s), {agg.weight()} WU, "
          f"fee {fee1} sat at {rate1}perkw")

    # A restart: the transaction and what its replacement needs (its coins, rate, fee) come back from the store.
    l1.restart()
    sync(l1, chaind)
    assert agg.txid_hex() in chaind.rpc("getrawmempool")

    # The estimate jumps to 75 sat/vB and blocks go by without it: replaced (same wallet coins, more fee).
    set_chain_fee(chaind, 75, l1)     # an empty block: our transaction waits
    rbf = re.compile(r"RBF HTLC txid ([0-9a-f]{64}) \(fee (\d+)sat\) with txid ([0-9a-f]{64}) \(fee (\d+)sat\)")

    def latest() -> tuple[str, int]:
        chain = {m.group(1): (m.group(3), int(m.group(4))) for m in rbf.finditer(l1.logs(False))}
        txid, fee = agg.txid_hex(), fee1
        while txid in chain:
            txid, fee = chain[txid]
        return txid, fee

    def replaced_at_estimate() -> bool:
        txid, fee = latest()
        return txid != agg.txid_hex() and txid in chaind.rpc("getrawmempool") and \
            fee * 1000 // tx_of(chaind, txid).weight() >= 18_750

    for _ in range(3):     # the first replacement may come before the node reads the new estimate
        if replaced_at_estimate():
            break
        chaind.rpc("generateblock", chaind.faucet_address(), [])
        sync(l1, chaind)
        wait_for(lambda: latest()[0] in chaind.rpc("getrawmempool"), 30, "the replacement in the mempool")
    assert replaced_at_estimate()
    final_txid, final_fee = latest()
    final = tx_of(chaind, final_txid)
    assert final.inputs[:2] == agg.inputs[:2] or [i.prevout for i in final.inputs[:2]] == \
        [i.prevout for i in agg.inputs[:2]]
    # The same wallet coins first (a replacement conflicts through them too), more if needed.
    assert [i.prevout for i in final.inputs[2:len(agg.inputs)]] == [i.prevout for i in agg.inputs[2:]]
    assert final_fee == fee_of(chaind, final) and final_fee * 1000 // final.weight() >= 18_750
    assert final_fee >= fee1 + (final.weight() + 3) // 4          # BIP125: more, by its own size at 1 sat/vB
    assert agg.txid_hex() not in chaind.rpc("getrawmempool")
    htlc_height = mine(chaind, 1, l1)
    assert height_of(chaind, final_txid) == htlc_height
    assert agg.txid_hex() not in chaind.rpc("getblock", chaind.rpc("getblockhash", htlc_height))["tx"]
    print(f"RBF: {fee1} sat -> {final_fee} sat ({final.weight()} WU), confirmed {htlc_height - expiry} blocks "
          "after the expiry")

    # Cheap again: the second stages' outputs are swept after to_self_delay, and our anchor (16 blocks after the
    # close: its value pays for its input at this rate) rides along one of those sweeps.
    restart_chain_with_fee(chaind, 1, l1)
    ours = {commit.txid(), final.txid()}

    swept = mine_until_swept(chaind, l1, close_height, ours, 3, 3 * SLOW_DELAY)
    assert len(swept) == 3, swept      # to_local and the two second-stage outputs
    anchor_op = (commit.txid(), anchor_vout)
    [rider] = [t for t in swept if any((i.prevout.txid, i.prevout.vout) == anchor_op for i in t.inputs)]
    assert len(rider.inputs) == 2 and rider.inputs[0].prevout.txid == final.txid()
    assert height_of(chaind, rider.txid_hex()) - close_height >= 16
    assert [t.txid() for t in swept if t.inputs[0].prevout.txid == commit.txid()] == [to_local_sweep.txid()]
    assert l1.logs(False).count("not sweeping our anchor") == 1
    wait_for(lambda: chaind.rpc("getrawmempool") == [], 30, "nothing left to send")
    # The replaced versions' change outputs never existed: the wallet forgot them.
    assert [o for o in l1.rpc.listfunds()["outputs"] if o["status"] != "confirmed"] == []
    fees = final_fee + sum(fee_of(chaind, t) for t in swept)
    to_local = commit.outputs[to_local_sweep.inputs[0].prevout.vout].value
    gained = confirmed_sat(l1) - wallet_before
    assert gained == to_local + 30_000 + 20_000 + 330 - fees, (gained, to_local, fees)
    print(f"anchor swept along {rider.txid_hex()} ({rider.weight()} WU, fee {fee_of(chaind, rider)} sat); fees paid "
          f"by l1 on-chain: {fees} sat")

    # The books: our anchor went "external" at the close and comes back with the sweep (tag `anchor`).
    funds = lambda: sum(o["amount_msat"] for o in l1.rpc.listfunds()["outputs"]  # noqa: E731
                        if o["status"] == "confirmed")
    wait_for(lambda: balances(l1.rpc.call("ledger")["movements"]).get("wallet") == funds(), 30, "wallet movements")
    moves = l1.rpc.call("ledger")["movements"]
    check_books(moves, lambda t: chaind.rpc("getrawtransaction", t), cid, ctxid, close_debit_msat=to_us,
                wallet_msat=funds(), open_credit_msat=FUNDING * 1000)
    anchor_moves = [m for m in moves if m["utxo"] == f"{ctxid}:{anchor_vout}"]
    assert [(m["account_id"], m["primary_tag"], m["credit_msat"], m["debit_msat"]) for m in anchor_moves] == [
        ("external", "anchor", 330_000, 0), ("external", "anchor", 0, 330_000)]
    assert anchor_moves[1]["spending_txid"] == rider.txid_hex()


def test_aggregated_htlc_timeout_loses_an_output_to_the_peer(node_factory_chain, chaind):
    """Two HTLCs l1 offered, held by l2, expire at the same block: l1's one HTLC-timeout transaction spends both.
    Before it is mined l2 settles one (its preimage: it claims that output of l1's commitment on-chain) and a block
    holds l2's claim, not l1's transaction: that one can never be mined. l1 funds the other HTLC-timeout anew
    (the dead transaction's wallet coins again), which confirms; the dead transaction's change leaves the wallet;
    l1 learns the preimage (its payment completes), the other payment fails. Then someone else takes our anchor
    while the sweep carrying it waits: swept again without it. l1's wallet and books are exact."""
    l1, l2, cid, h_a, h_b, expiry, to_us = two_held_htlcs(node_factory_chain, chaind, TO_SELF_DELAY)

    wallet_before = confirmed_sat(l1)
    l1.rpc.call("dev-fail", {"id": l2.node_id})
    funding_txid = channel(l1)["funding_txid"]
    commit = wait_for(lambda: next((t for t in mempool_txs(chaind).values()
                                    if t.inputs[0].prevout.txid_hex() == funding_txid), None), 30, "our commitment")
    close_height = mine(chaind, 1, l1, l2)
    assert height_of(chaind, commit.txid_hex()) == close_height
    vout_a, vout_b = (next(i for i, o in enumerate(commit.outputs) if o.value == v) for v in (30_000, 20_000))

    def spending_of(txid: bytes, vout: int) -> list[Transaction]:
        return [t for t in mempool_txs(chaind).values()
                if any((i.prevout.txid, i.prevout.vout) == (txid, vout) for i in t.inputs)]

    def spending(vout: int) -> list[Transaction]:
        return spending_of(commit.txid(), vout)

    # l2 settles hodl-a (while its cltv_expiry is far enough for an invoice): the channel being on-chain, it
    # claims that output of our commitment with the preimage. That claim is kept out of l1's sight until it is
    # mined (l2 goes away and amp-chaind restarts with an empty mempool, as if only miners had seen the claim).
    l2.rpc.call("release", {"payment_hash": h_a})

    def l2_claim() -> Transaction | None:
        for raw in re.findall(r"sendrawtx exit \d+ \(sendrawtransaction ([0-9a-f]+)\)", l2.logs(False)):
            tx = Transaction.parse_hex(raw)
            if any((i.prevout.txid, i.prevout.vout) == (commit.txid(), vout_a) for i in tx.inputs):
                return tx
        return None

    claim = wait_for(l2_claim, 30, "l2's claim with the preimage")
    assert len(claim.inputs) == 1
    l2.stop()
    l1.allow_complaints = ("chainwatch",)     # it says so while amp-chaind is down
    chaind.stop()
    chaind.extra_args.append("-persistmempool=0")
    chaind.start()
    assert chaind.rpc("getrawmempool") == []

    # to_local's sweep goes out once its to_self_delay has passed (at the tip l1 has caught up with: blocks mined
    # at once are followed to their tip, then acted on), alone: our anchor's 16 blocks have not passed.
    mine(chaind, close_height + TO_SELF_DELAY - 1 - chaind.rpc("getblockcount"), l1)
    # At the expiry both HTLC-timeouts go out as ONE transaction (a wallet input and change).
    mine(chaind, expiry - chaind.rpc("getblockcount"), l1)
    [agg] = wait_for(lambda: spending(vout_a), 30, "the aggregated HTLC-timeout transaction")
    assert sorted(i.prevout.vout for i in agg.inputs[:2]) == sorted([vout_a, vout_b]) and len(agg.outputs) == 3
    agg_coins = [i.prevout for i in agg.inputs[2:]]
    wait_for(lambda: (agg.txid_hex(), 2) in {(o["txid"], o["output"]) for o in l1.rpc.listfunds()["outputs"]}, 30,
             "its change in l1's wallet")
    # The next block holds l2's claim, not our transaction.
    chaind.rpc("generateblock", chaind.faucet_address(), [claim.serialize().hex()])
    claim_height = sync(l1, chaind)
    assert height_of(chaind, claim.txid_hex()) == claim_height
    assert agg.txid_hex() not in chaind.rpc("getrawmempool")      # it conflicts with a mined transaction

    # l1: its transaction can never be mined; the other HTLC-timeout goes out alone, funded anew.
    l1.wait_for_log(f"{agg.txid_hex()} can no longer be mined")
    assert "funding the others anew" in l1.logs(False)
    [new] = wait_for(lambda: spending(vout_b), 30, "the new HTLC-timeout transaction")
    assert (new.inputs[0].prevout.txid, new.inputs[0].prevout.vout) == (commit.txid(), vout_b)
    assert [i.prevout for i in new.inputs[1:len(agg_coins) + 1]] == agg_coins   # the dead one's coins again
    assert len(new.outputs) == 2 and new.locktime == expiry
    # The dead transaction's change never will exist: not in the wallet.
    assert all(o["txid"] != agg.txid_hex() for o in l1.rpc.listfunds()["outputs"])
    htlc_height = mine(chaind, 1, l1)
    assert height_of(chaind, new.txid_hex()) == htlc_height

    # l1 learned the preimage from l2's claim: hodl-a is paid; hodl-b fails once its timeout is deep enough.
    assert l1.rpc.waitsendpay(h_a, 30)["status"] == "complete"
    mine(chaind, 3, l1)
    with pytest.raises(RpcError):
        l1.rpc.waitsendpay(h_b, 30)
    l2.start()
    sync(l2, chaind)
    assert [i["status"] for i in l2.rpc.listinvoices("hodl-a")["invoices"]] == ["paid"]
    wait_for(lambda: any(o["txid"] == claim.txid_hex() for o in l2.rpc.listfunds()["outputs"]), 30,
             "l2's claim in its wallet")    # l2 got the HTLC it claimed

    # to_local went to the wallet after to_self_delay, alone (the anchor's 16 blocks had not passed). The new
    # transaction's output is swept after to_self_delay, our anchor riding along; while that sweep is unconfirmed
    # someone else takes our anchor (BOLT #3 to_local_anchor: after 16 blocks anyone may, with an empty signature)
    # and that is mined: l1 sweeps the output again without it.
    [to_local_sweep] = [t for t in sweeps_since(chaind, close_height, {commit.txid()})
                        if t.txid() not in (claim.txid(), new.txid())]
    assert len(to_local_sweep.inputs) == 1
    mine(chaind, htlc_height + TO_SELF_DELAY - 1 - chaind.rpc("getblockcount"), l1)
    [rider] = wait_for(lambda: spending_of(new.txid(), 0), 30, "the sweep of the HTLC-timeout's output")
    [a_in] = [i for i in rider.inputs if i.prevout.txid == commit.txid()]
    thief = Transaction(2, [TxIn(a_in.prevout, b"", 16)], [TxOut(0, b"\x6a\x08" + b"anchored")], 0)
    thief.inputs[0].witness = [b"", a_in.witness[-1]]
    chaind.rpc("generateblock", chaind.faucet_address(), [thief.serialize().hex()])
    sync(l1, chaind)
    l1.wait_for_log(f"{commit.txid_hex()}:{a_in.prevout.vout} was taken by someone else: sweeping htlc_tx_delayed "
                    f"output 0 again without it (replacing {rider.txid_hex()})")
    [sweep2] = wait_for(lambda: spending_of(new.txid(), 0), 30, "the sweep without our anchor")
    assert sweep2.txid() != rider.txid() and len(sweep2.inputs) == 1
    mine(chaind, 1, l1)
    assert chaind.rpc("getrawmempool") == []
    # Neither dead transaction's output is counted (the aggregated one's change, the anchor rider's sweep).
    wait_for(lambda: [o for o in l1.rpc.listfunds()["outputs"] if o["status"] != "confirmed"] == [], 30,
             "every output of l1 confirmed")
    assert {o["txid"] for o in l1.rpc.listfunds()["outputs"]}.isdisjoint({agg.txid_hex(), rider.txid_hex()})
    to_local = commit.outputs[to_local_sweep.inputs[0].prevout.vout].value
    fees = sum(fee_of(chaind, t) for t in (new, to_local_sweep, sweep2))
    wait_for(lambda: confirmed_sat(l1) - wallet_before == to_local + 20_000 - fees, 30,
             f"l1's wallet exact to its fees ({confirmed_sat(l1) - wallet_before})")
    funds = lambda: sum(o["amount_msat"] for o in l1.rpc.listfunds()["outputs"]  # noqa: E731
                        if o["status"] == "confirmed")
    wait_for(lambda: balances(l1.rpc.call("ledger")["movements"]).get("wallet") == funds(), 30, "wallet movements")
    moves = l1.rpc.call("ledger")["movements"]
    check_books(moves, lambda t: chaind.rpc("getrawtransaction", t), cid, commit.txid_hex(), close_debit_msat=to_us,
                wallet_msat=funds(), open_credit_msat=FUNDING * 1000)
    # Our anchor went "external" at the close and stays there (someone else took it).
    assert [(m["account_id"], m["credit_msat"], m["debit_msat"]) for m in moves
            if m["utxo"] == f"{commit.txid_hex()}:{a_in.prevout.vout}"] == [("external", 330_000, 0)]
    print(f"dead aggregated tx {agg.txid_hex()} ({fee_of(chaind, agg)} sat); funded anew: {new.weight()} WU, "
          f"fee {fee_of(chaind, new)} sat, {len(new.inputs) - 1} wallet input(s)")


def test_emergency_reserve(node_factory_chain, chaind):
    l1, l2 = node_factory_chain.line_graph(2, opts={"developer": None})
    assert channel(l1)["channel_type"]["bits"] == [12, 22]
    assert l1.rpc.listconfigs("min-emergency-msat")["configs"]["min-emergency-msat"]["value_msat"] == 25_000_000
    addr = chaind.rpc("getnewaddress")
    total = confirmed_sat(l1)
    assert total > 25_000
    with pytest.raises(RpcError) as err:         # an amount that would leave less than the reserve
        l1.rpc.withdraw(addr, total - 10_000)
    assert "min-emergency-msat" in err.value.error["message"]
    with pytest.raises(RpcError) as err:
        l1.rpc.fundchannel(l2.node_id, total - 10_000)
    assert "min-emergency-msat" in err.value.error["message"]
    res = l1.rpc.withdraw(addr, "all")
    tx = Transaction.parse_hex(res["tx"])
    assert len(tx.outputs) == 2                   # the destination and the reserve, kept as change
    mine(chaind, 1, l1)
    assert 25_000 <= confirmed_sat(l1) < 26_000
    # The reserve pays the CPFP of a close when the commitment is too cheap.
    l2.stop()
    restart_chain_with_fee(chaind, 50, l1)
    l1.rpc.call("dev-fail", {"id": l2.node_id})
    wait_for(lambda: len(chaind.rpc("getrawmempool")) == 2, 30, "the commitment and its CPFP child")
    mine(chaind, 1, l1)
    wait_for(lambda: channel(l1)["state"] in ("ONCHAIN", "FUNDING_SPEND_SEEN"), 30, "ONCHAIN")
    assert chaind.rpc("getrawmempool") == []


def test_multifundchannel_channel_type_per_destination(node_factory_chain, chaind):
    """CLN's per-destination `channel_type` in multifundchannel (its code takes it, though its schema omits it):
    one channel opened as anchors, the other as static_remotekey, in one funding transaction; a type we cannot
    open is refused naming the parameter, and nothing is opened."""
    l1 = node_factory_chain.get_node()
    l2, l3 = (node_factory_chain.get_node(listen=True) for _ in range(2))
    node_factory_chain.fund_wallet(l1, 3_000_000)
    with pytest.raises(RpcError, match="destinations: destination 1: channel_type") as err:
        l1.rpc.multifundchannel([{"id": f"{l2.node_id}@127.0.0.1:{l2.port}", "amount": 400_000},
                                 {"id": f"{l3.node_id}@127.0.0.1:{l3.port}", "amount": 300_000,
                                  "channel_type": [12, 99]}])
    assert err.value.error["code"] == -32602
    assert l1.rpc.listpeerchannels()["channels"] == []
    res = l1.rpc.multifundchannel([{"id": f"{l2.node_id}@127.0.0.1:{l2.port}", "amount": 400_000,
                                    "channel_type": [12, 22]},
                                   {"id": f"{l3.node_id}@127.0.0.1:{l3.port}", "amount": 300_000,
                                    "channel_type": [12]}])
    by_peer = {c["id"]: c for c in res["channel_ids"]}
    assert by_peer[l2.node_id]["channel_type"] == {"bits": [12, 22],
                                                   "names": ["static_remotekey/even", "anchors/even"]}
    assert by_peer[l3.node_id]["channel_type"] == {"bits": [12], "names": ["static_remotekey/even"]}
    wait_for(lambda: res["txid"] in chaind.rpc("getrawmempool"), 30, "the funding transaction")
    mine(chaind, 1, l1, l2, l3)
    for peer, bits in ((l2, [12, 22]), (l3, [12])):
        [mine_] = l1.rpc.listpeerchannels(peer.node_id)["channels"]
        wait_for(lambda peer=peer: channel(peer)["state"] == "CHANNELD_NORMAL", 30, "CHANNELD_NORMAL")
        assert mine_["channel_type"]["bits"] == bits and channel(peer)["channel_type"]["bits"] == bits
    # With an anchor channel open, fundpsbt keeps the emergency reserve without being asked (CLN): "all" leaves
    # exactly min-emergency-msat as change.
    res = l1.rpc.call("fundpsbt", {"satoshi": "all", "feerate": "1000perkw", "startweight": 600, "reserve": 0})
    assert [o.value for o in psbt_unsigned_tx(res["psbt"]).outputs] == [25_000] and res["change_outnum"] == 0


def empty_block(chaind, *nodes) -> int:
    """A block that leaves the mempool alone (generateblock with no transaction): what waits there keeps
    waiting, as when miners prefer better-paying transactions."""
    chaind.rpc("generateblock", chaind.rpc("getnewaddress"), [])
    for node in nodes:
        sync(node, chaind)
    return chaind.rpc("getblockcount")


def anchor_close_setup(node_factory_chain, chaind, l1_opts: dict | None = None):
    """l1 opens an anchor channel to l2 at the 1 sat/vB estimate (so its commitment sits at the 1250perkw floor),
    pushes some to l2, and holds 1,200,000 + 200,000 sat in its wallet beforehand; l2 then goes away."""
    restart_chain_with_fee(chaind, 1)
    chaind.mine(101)
    l1 = node_factory_chain.get_node({"developer": None, **(l1_opts or {})}, listen=True)
    l2 = node_factory_chain.get_node({"watchtime-blocks": TO_SELF_DELAY}, listen=True)
    node_factory_chain.fund_wallet(l1, 1_200_000)
    node_factory_chain.fund_wallet(l1, 200_000)
    node_factory_chain.connect(l1, l2)
    l1.rpc.fundchannel(l2.node_id, FUNDING, push_msat=PUSH_MSAT)
    mine(chaind, 6, l1, l2)
    for n in (l1, l2):
        wait_for(lambda n=n: channel(n)["state"] == "CHANNELD_NORMAL", 30, "CHANNELD_NORMAL")
    assert channel(l1)["feerate"]["perkw"] == 1250
    l2.stop()
    return l1, l2


def mempool_txs(chaind) -> dict[str, Transaction]:
    return {t: tx_of(chaind, t) for t in chaind.rpc("getrawmempool")}


def commitment_and_child(chaind, funding_txid: str) -> tuple[Transaction, Transaction]:
    txs = list(mempool_txs(chaind).values())
    [commit] = [t for t in txs if any(i.prevout.txid_hex() == funding_txid for i in t.inputs)]
    [child] = [t for t in txs if t is not commit]
    assert any(i.prevout.txid == commit.txid() for i in child.inputs)
    return commit, child


def sweep_to_local(chaind, l1, commit: Transaction, close_height: int) -> Transaction:
    """Mine until l1's to_local (after TO_SELF_DELAY) is swept and mined; returns the sweep."""
    def sweep():
        for h in range(close_height, chaind.rpc("getblockcount") + 1):
            for t in chaind.rpc("getblock", chaind.rpc("getblockhash", h))["tx"][1:]:
                tx = tx_of(chaind, t)
                if any(i.prevout.txid == commit.txid() for i in tx.inputs) and len(tx.inputs) == 1:
                    return tx
        return None

    for _ in range(3 * TO_SELF_DELAY):
        if sweep() is not None:
            break
        mine(chaind, 1, l1)
        time.sleep(0.3)
    found = sweep()
    assert found is not None, "to_local never swept"
    wait_for(lambda: chaind.rpc("getrawmempool") == [], 30, "nothing left to send")
    return found


def confirm_together_and_check_wallet(chaind, l1, commit: Transaction, child: Transaction, child_fee: int,
                                      held: int, wallet_before: int) -> None:
    """Mine a block: the commitment and its (last) child confirm in it; then l1's to_local is swept and its wallet
    ends exact to its fees (the child's, the sweep's; our anchor came back through the child)."""
    close_height = mine(chaind, 1, l1)
    assert height_of(chaind, commit.txid_hex()) == height_of(chaind, child.txid_hex()) == close_height
    print(f"blocks to confirmation: {close_height - held + 1} (one block held out)")
    sweep = sweep_to_local(chaind, l1, commit, close_height)
    to_local = max(o.value for o in commit.outputs)
    wait_for(lambda: confirmed_sat(l1) - wallet_before == to_local + 330 - child_fee - fee_of(chaind, sweep), 30,
             f"l1's wallet exact to its fees ({confirmed_sat(l1) - wallet_before})")
    assert all(o["status"] == "confirmed" for o in l1.rpc.listfunds()["outputs"])


def test_cpfp_child_replaced_as_the_estimate_rises(node_factory_chain, chaind):
    """Our commitment at the floor (5 sat/vB) is CPFP'd at the 10 sat/vB estimate; the child is held out of the
    next block (an empty one) while the estimate rises to 50 sat/vB: ampd replaces the child (RBF: same wallet
    coins, one change output) at the new rate; the replaced child's change leaves the wallet at once; the
    commitment and the new child confirm together; l1's wallet ends exact to its fees."""
    l1, l2 = anchor_close_setup(node_factory_chain, chaind)
    funding_txid = channel(l1)["funding_txid"]
    restart_chain_with_fee(chaind, 10, l1)
    wallet_before = confirmed_sat(l1)
    l1.rpc.call("dev-fail", {"id": l2.node_id})
    wait_for(lambda: len(chaind.rpc("getrawmempool")) == 2, 30, "the commitment and its CPFP child")
    commit, child1 = commitment_and_child(chaind, funding_txid)
    commit_fee = FUNDING - sum(o.value for o in commit.outputs)
    fee1 = fee_of(chaind, child1)
    package1 = package_feerate(commit, commit_fee, child1, fee1)
    assert 2_500 <= package1 < 2_700, package1
    change1 = (child1.txid_hex(), 0)
    wait_for(lambda: change1 in {(o["txid"], o["output"]) for o in l1.rpc.listfunds()["outputs"]}, 30,
             "the child's change, unconfirmed, in the wallet")

    # The estimate rises to 50 sat/vB (amp-chaind restarted: its mempool is kept) and a block goes by without
    # our package.
    chaind.stop()
    chaind.extra_args = [a for a in chaind.extra_args if not a.startswith("-fallbackfee=")] + ["-fallbackfee=0.0005"]
    chaind.start()
    l1.allow_complaints = ("chainwatch",)
    assert set(chaind.rpc("getrawmempool")) == {commit.txid_hex(), child1.txid_hex()}
    # (ampd reads the estimates every 30 s, as lightningd; the child is re-examined at each block.)
    wait_for(lambda: l1.rpc.feerates("perkw")["perkw"].get("unilateral_close") == 12_500, 60, "50 sat/vB seen")
    assert set(chaind.rpc("getrawmempool")) == {commit.txid_hex(), child1.txid_hex()}
    held = empty_block(chaind, l1)
    wait_for(lambda: child1.txid_hex() not in chaind.rpc("getrawmempool"), 30, "the child replaced")
    commit_again, child2 = commitment_and_child(chaind, funding_txid)
    assert commit_again.txid() == commit.txid()
    fee2 = fee_of(chaind, child2)
    package2 = package_feerate(commit, commit_fee, child2, fee2)
    assert package2 >= 12_500, package2
    # RBF: the new child spends the same wallet coins (and our anchor), pays more.
    assert {(i.prevout.txid, i.prevout.vout) for i in child1.inputs} <= \
        {(i.prevout.txid, i.prevout.vout) for i in child2.inputs}
    assert fee2 > fee1 and len(child2.outputs) == 1
    # The replaced child's change is gone from the wallet; the new child's change is there, unconfirmed.
    outs = {(o["txid"], o["output"]): o for o in l1.rpc.listfunds()["outputs"]}
    assert change1 not in outs
    assert outs[(child2.txid_hex(), 0)]["status"] == "unconfirmed"
    print(f"CPFP RBF: commitment {commit.weight()} WU, {commit_fee} sat; child 1 {child1.weight()} WU "
          f"{fee1} sat ({len(child1.inputs) - 1} wallet input(s)), package {package1}perkw; after the estimate rose, "
          f"child 2 {child2.weight()} WU {fee2} sat ({len(child2.inputs) - 1} wallet input(s)), package "
          f"{package2}perkw")

    confirm_together_and_check_wallet(chaind, l1, commit, child2, fee2, held, wallet_before)


def test_cpfp_child_across_kill9(node_factory_chain, chaind):
    """kill -9 of ampd with our anchor commitment unconfirmed (AWAITING_UNILATERAL): (1) right after the CPFP child
    is persisted, before its broadcast (--dev-crash-before=onchain): on restart that same child goes out (not a
    new one), and the wallet counts it; (2) after its broadcast, while a block goes by without it: on restart the
    child is replaced at the deadline's rising rate, the replaced one's change leaves the wallet; the commitment
    and the last child confirm together; l1's wallet ends exact to its fees."""
    l1, l2 = anchor_close_setup(node_factory_chain, chaind)
    funding_txid = channel(l1)["funding_txid"]
    restart_chain_with_fee(chaind, 50, l1)
    l1.options.update({"dev-crash-before": "onchain:1"})
    l1.restart()
    wait_for(lambda: l1.rpc.feerates("perkw")["perkw"].get("unilateral_close") == 12_500, 60, "50 sat/vB seen")
    wallet_before = confirmed_sat(l1)
    l1.rpc.call("dev-fail", {"id": l2.node_id})
    wait_for(lambda: not l1.is_running(), 30, "the crash before the CPFP child's broadcast")
    [commit_txid] = chaind.rpc("getrawmempool")                # the commitment went out, the child did not
    m = re.search(r"CPFP of our commitment \w+ .* child (\w+) pays (\d+) sat", l1.logs(False))
    assert m is not None
    persisted = m.group(1)
    l1.options.pop("dev-crash-before")
    l1.start()
    sync(l1, chaind)
    wait_for(lambda: len(chaind.rpc("getrawmempool")) == 2, 30, "the child after the restart")
    commit, child1 = commitment_and_child(chaind, funding_txid)
    assert commit.txid_hex() == commit_txid and child1.txid_hex() == persisted   # re-attached, not rebuilt
    assert channel(l1)["state"] == "AWAITING_UNILATERAL"
    wait_for(lambda: (persisted, 0) in {(o["txid"], o["output"]) for o in l1.rpc.listfunds()["outputs"]}, 30,
             "the child's change in the wallet")
    commit_fee, fee1 = FUNDING - sum(o.value for o in commit.outputs), fee_of(chaind, child1)
    package1 = package_feerate(commit, commit_fee, child1, fee1)
    assert 12_500 <= package1 < 13_000, package1

    # kill -9 with the child out; a block goes by without it; ampd comes back.
    l1.kill()
    held = empty_block(chaind)
    l1.start()
    sync(l1, chaind)
    wait_for(lambda: persisted not in chaind.rpc("getrawmempool"), 30, "the child replaced after the restart")
    _, child2 = commitment_and_child(chaind, funding_txid)
    fee2 = fee_of(chaind, child2)
    package2 = package_feerate(commit, commit_fee, child2, fee2)
    assert package2 > package1 and {i.prevout for i in child1.inputs} <= {i.prevout for i in child2.inputs}
    outs = {(o["txid"], o["output"]) for o in l1.rpc.listfunds()["outputs"]}
    assert (persisted, 0) not in outs and (child2.txid_hex(), 0) in outs
    print(f"kill -9: commitment {commit.weight()} WU {commit_fee} sat; child {fee1} sat ({len(child1.inputs) - 1} "
          f"wallet input(s), package {package1}perkw) rebroadcast after the restart; replaced after a held block "
          f"and a second kill by {fee2} sat ({len(child2.inputs) - 1} wallet input(s), package {package2}perkw)")
    confirm_together_and_check_wallet(chaind, l1, commit, child2, fee2, held, wallet_before)

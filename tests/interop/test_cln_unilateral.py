"""Unilateral closes between Ampere and Core Lightning, by either side, of two channels at once: one without HTLCs
(opened by Ampere) and one (opened by CLN) carrying an HTLC each way: one CLN offered, held by Ampere's HODL plugin,
and one Ampere offered, held by CLN's HODL plugin forever. The peer is stopped, so `close` with a 1 s
unilateraltimeout drops the closer's commitment; both sides then follow the chain.

Once the closes confirm, Ampere's plugin releases its HTLC (Ampere learns the preimage from its invoice): Ampere
must claim it on-chain with the preimage (HTLC-success on its own commitment, a direct claim on CLN's), and CLN,
seeing the preimage on-chain, completes its payment. Ampere's own HTLC is never settled by CLN: Ampere times it out
after its expiry (HTLC-timeout on its own commitment, directly on CLN's) and fails its payment only once that
timeout is 3 blocks deep. Each side's wallet ends with exactly its channel balances (plus what it received, less
what it paid) less the fees of its own transactions, computed from the transactions on the chain."""

from __future__ import annotations

import os
import time

import pytest

from ampere.primitives.tx import Transaction
from ampere.testing.nodes import wait_for

pytestmark = pytest.mark.cln

HODL = os.path.join(os.path.dirname(os.path.dirname(__file__)), "plugins", "hodl.py")
CAPACITY = 500_000
DELAY = 20          # the HTLCs' CLTV delta from now (CLN's invoices ask 18 for the final hop)
IN_MSAT = 100_000_000    # offered by CLN, held by Ampere, claimed by Ampere on-chain with the preimage
OUT_MSAT = 30_000_000    # offered by Ampere, held by CLN forever, timed out by Ampere on-chain
TO_SELF_DELAY = 5   # watchtime-blocks on both sides: the CSV each imposes on the other's to_local


def chans(a, b) -> dict:
    return {c["opener"]: c for c in a.rpc.listpeerchannels(b.node_id)["channels"]}


def wallet(node) -> dict[tuple[str, int], int]:
    """Confirmed wallet outputs: (txid, vout) -> sat."""
    return {(o["txid"], o["output"]): o["amount_msat"] // 1000 for o in node.rpc.listfunds()["outputs"]
            if o["status"] == "confirmed"}


def mined_since(chaind, first: int) -> dict[str, Transaction]:
    txs = {}
    for h in range(first, chaind.rpc("getblockcount") + 1):
        bh = chaind.rpc("getblockhash", h)
        for t in chaind.rpc("getblock", bh)["tx"]:
            txs[t] = Transaction.parse_hex(chaind.rpc("getrawtransaction", t, False, bh))
    return txs


def height_of(chaind, txid: str) -> int | None:
    try:
        tx = chaind.rpc("getrawtransaction", txid, True)
    except Exception:
        return None
    if not tx.get("blockhash"):
        return None
    return chaind.rpc("getblock", tx["blockhash"])["height"]


@pytest.mark.parametrize("closer_kind", ["ampere", "cln"])
def test_unilateral_close_with_htlcs_both_ways(node_factory, closer_kind):
    started = time.time()
    chaind = node_factory.chaind
    amp = node_factory.get_node(listen=True, plugin=HODL, **{"watchtime-blocks": TO_SELF_DELAY})
    cln = node_factory.get_cln_node(plugin=HODL, **{"watchtime-blocks": TO_SELF_DELAY})
    node_factory.fundchannel(amp, cln, CAPACITY, announce=False, push_msat=200_000_000)
    node_factory.fundchannel(cln, amp, CAPACITY, announce=False, push_msat=200_000_000)
    scid = chans(cln, amp)["local"]["short_channel_id"]
    inv_in = amp.rpc.invoice(IN_MSAT, "hodl-in", "held by Ampere")
    cln.rpc.sendpay([{"id": amp.node_id, "channel": scid, "delay": DELAY, "amount_msat": IN_MSAT}],
                    inv_in["payment_hash"], payment_secret=inv_in["payment_secret"], amount_msat=IN_MSAT)
    inv_out = cln.rpc.invoice(OUT_MSAT, "hodl-out", "held by CLN")
    amp.rpc.sendpay([{"id": cln.node_id, "channel": scid, "delay": DELAY, "amount_msat": OUT_MSAT}],
                    inv_out["payment_hash"], payment_secret=inv_out["payment_secret"], amount_msat=OUT_MSAT)
    wait_for(lambda: amp.rpc.call("listheld")["held"].get(inv_in["payment_hash"]) == 1
             and cln.rpc.call("listheld")["held"].get(inv_out["payment_hash"]) == 1, 30, "both HTLCs held")
    for x, y in ((amp, cln), (cln, amp)):   # both HTLCs irrevocably committed on both sides
        wait_for(lambda x=x, y=y: len(chans(x, y)["remote" if x is amp else "local"]["htlcs"]) == 2 and all(
            h["state"] in ("SENT_ADD_ACK_REVOCATION", "RCVD_ADD_ACK_REVOCATION")
            for h in chans(x, y)["remote" if x is amp else "local"]["htlcs"]), 30, "HTLCs committed")
    out_expiry = next(h["expiry"] for h in chans(amp, cln)["remote"]["htlcs"] if h["direction"] == "out")
    # to_us_msat counts an offered HTLC until it is resolved (CLN's our_msat), not a received one.
    bal = {n.implementation: {o: c["to_us_msat"] for o, c in chans(n, p).items()} for n, p in ((amp, cln), (cln, amp))}
    before = {n.implementation: wallet(n) for n in (amp, cln)}

    closer, other = (amp, cln) if closer_kind == "ampere" else (cln, amp)
    # A force close is announced with a BOLT 1 error on reconnection, and CLN logs every funding spend as a
    # permanent failure: the natural complaints of a unilateral close.
    forced = "Forcibly closed by `close` command timeout"
    amp.allow_complaints = (forced, "close: unilateral timeout reached")
    cln.allow_complaints = (forced, "peer_out WIRE_ERROR", "peer_in WIRE_ERROR", "Funding transaction spent",
                            "Not dropping our unilateral close onchain")
    if closer is amp:
        # CLN restarts while its plugin holds Ampere's HTLC: it replays the htlc_accepted hook, logged UNUSUAL.
        # And, if it reconnects before it has seen Ampere's commitment mined, Ampere answers its reestablish with
        # a BOLT 1 error for the closed channel, which CLN logs as a permanent failure.
        cln.allow_complaints += ("Replaying old unprocessed HTLC",
                                 "Peer permanent failure in CHANNELD_NORMAL: channeld: received ERROR channel")
    other.stop()
    commits = {}    # Ampere's view of who opened ("local" = Ampere) -> that channel's commitment txid
    for opener, c in chans(closer, other).items():
        r = closer.rpc.close(c["short_channel_id"], 1)
        assert r["type"] == "unilateral"
        commits[opener if closer is amp else {"local": "remote", "remote": "local"}[opener]] = \
            (r["txids"] if "txids" in r else [r["txid"]])[0]
    wait_for(lambda: all(t in chaind.rpc("getrawmempool") for t in commits.values()), 30, "both commitments")
    other.start()
    close_height = chaind.rpc("getblockcount") + 1
    node_factory.mine(1, [amp, cln])
    for x, y in ((amp, cln), (cln, amp)):
        wait_for(lambda x=x, y=y: all(c["state"] in ("ONCHAIN", "FUNDING_SPEND_SEEN")
                                      for c in chans(x, y).values()), 60, f"{x.implementation} sees both closes")
    # Ampere's plugin settles CLN's HTLC now (it was held again if Ampere restarted): Ampere knows the preimage
    # and must claim the output on-chain, before CLN could time it out.
    wait_for(lambda: amp.rpc.call("listheld")["held"].get(inv_in["payment_hash"]) == 1, 30, "held after restart")
    assert amp.rpc.call("release", {"payment_hash": inv_in["payment_hash"]})["released"] == 1
    amp.wait_for_log("claiming it there", timeout=30)
    node_factory.mine(1, [amp, cln])
    wait_for(lambda: any("claimed with the preimage by our" in s for s in chans(amp, cln)["remote"]["status"]),
             30, "Ampere's preimage claim confirmed")
    # CLN learns the preimage from Ampere's claim on the chain: its payment completes.
    wait_for(lambda: cln.rpc.listsendpays(payment_hash=inv_in["payment_hash"])["payments"][0]["status"]
             == "complete", 60, "CLN's payment completes")
    assert cln.rpc.waitsendpay(inv_in["payment_hash"], 10)["status"] == "complete"

    # Up to the expiry of Ampere's HTLC in bulk, then a block at a time until its timeout is mined.
    assert amp.rpc.listsendpays(payment_hash=inv_out["payment_hash"])["payments"][0]["status"] == "pending"
    node_factory.mine(max(out_expiry - chaind.rpc("getblockcount") - 1, 0), [amp, cln])

    def timeout_txid():
        for s in chans(amp, cln)["remote"]["status"]:
            if "timed out by our" in s:
                return s.split("timed out by our ")[1].split()[0]
        return None
    for _ in range(6):
        node_factory.mine(1, [amp, cln])
        if timeout_txid():
            break
    t_txid = timeout_txid()
    assert t_txid is not None, chans(amp, cln)["remote"]["status"]
    t_height = height_of(chaind, t_txid)
    assert t_height is not None and t_height > out_expiry - 1
    # BOLT #5: "once the resolving transaction has reached reasonable depth: MUST fail the corresponding incoming
    # HTLC" -- Ampere waits 3 blocks (as CLN does) before failing its payment.
    while chaind.rpc("getblockcount") < t_height + 2:      # 1 then 2 deep
        assert amp.rpc.listsendpays(payment_hash=inv_out["payment_hash"])["payments"][0]["status"] == "pending"
        node_factory.mine(1, [amp, cln])
    # the timeout is 3 deep now
    wait_for(lambda: amp.rpc.listsendpays(payment_hash=inv_out["payment_hash"])["payments"][0]["status"]
             == "failed", 30, "Ampere's payment fails")
    with pytest.raises(Exception) as e:
        amp.rpc.waitsendpay(inv_out["payment_hash"], 10)
    assert getattr(e.value, "error", {}).get("code") in (203, 204), e.value

    # Every delay passed: mine in bulk until both wallets hold every sweep.
    def leaves(node) -> dict:
        return {k: v for k, v in wallet(node).items() if k not in before[node.implementation]}

    def settled() -> bool:
        status = [s for c in chans(amp, cln).values() for s in c["status"]]
        return not any("being" in s or "spendable by us in" in s or "times out" in s for s in status)
    deadline = time.time() + 120
    node_factory.mine(TO_SELF_DELAY, [amp, cln])
    while not settled():
        assert time.time() < deadline, [s for c in chans(amp, cln).values() for s in c["status"]]
        node_factory.mine(1, [amp, cln])
    node_factory.mine(1, [amp, cln])
    txs = mined_since(chaind, close_height)

    def own_txs(node) -> set[str]:
        """Transactions between a commitment and this node's new wallet outputs."""
        mine, todo = set(), [t for t, _ in leaves(node)]
        while todo:
            t = todo.pop()
            if t in mine or t in commits.values() or t not in txs:
                continue
            mine.add(t)
            todo += [i.prevout.txid_hex() for i in txs[t].inputs]
        return mine

    def value_of(txid: str, vout: int) -> int:
        # (wallet coins added to pay fees on anchor channels were mined before the close)
        tx = txs.get(txid) or Transaction.parse_hex(chaind.rpc("getrawtransaction", txid))
        return tx.outputs[vout].value

    def fee(t: str) -> int:
        return sum(value_of(i.prevout.txid_hex(), i.prevout.vout) for i in txs[t].inputs) - \
            sum(o.value for o in txs[t].outputs)
    commit_fee = {o: CAPACITY - sum(x.value for x in txs[t].outputs) for o, t in commits.items()}
    amp_txs, cln_txs = own_txs(amp), own_txs(cln)
    assert not amp_txs & cln_txs
    # Every output of both commitments is accounted for: spent by one side's transaction or paying a wallet.
    def spent_by(ts) -> set:
        return {(i.prevout.txid_hex(), i.prevout.vout) for t in ts for i in txs[t].inputs}
    spent = spent_by(amp_txs | cln_txs)
    for t in commits.values():
        for v in range(len(txs[t].outputs)):
            # (option_anchors: an anchor no one needed stays unspent: anyone's after 16 blocks, worth 330 sat.)
            assert (t, v) in spent or (t, v) in leaves(amp) or (t, v) in leaves(cln) \
                or txs[t].outputs[v].value == 330, (t, v)
    amp_gain = sum(leaves(amp).values()) - sum(v for k, v in before["ampere"].items() if k not in wallet(amp))
    cln_gain = sum(leaves(cln).values()) - sum(v for k, v in before["cln"].items() if k not in wallet(cln))
    amp_fees = commit_fee["local"] + sum(fee(t) for t in amp_txs)
    cln_fees = commit_fee["remote"] + sum(fee(t) for t in cln_txs)
    # option_anchors (both open anchor channels by default): each commitment's opener paid its two 330-sat
    # anchors out of its balance; an anchor spent by one side (CPFP) comes back to it through that transaction.
    anchors = {o: [(t, v) for v, x in enumerate(txs[t].outputs) if x.value == 330] for o, t in commits.items()}
    assert all(len(a) == 2 for a in anchors.values())
    back = {"ampere": 330 * len({a for x in anchors.values() for a in x} & spent_by(amp_txs)),
            "cln": 330 * len({a for x in anchors.values() for a in x} & spent_by(cln_txs))}
    amp_expect = sum(b // 1000 for b in bal["ampere"].values()) + IN_MSAT // 1000 - amp_fees - 660 + back["ampere"]
    cln_expect = sum(b // 1000 for b in bal["cln"].values()) - IN_MSAT // 1000 - cln_fees - 660 + back["cln"]
    print(f"{closer_kind} closed: Ampere gained {amp_gain} (fees {amp_fees}, txs {len(amp_txs)}), CLN {cln_gain} "
          f"(fees {cln_fees}, txs {len(cln_txs)}), {time.time() - started:.1f} s")
    assert amp_gain == amp_expect, (amp_gain, amp_expect, bal, commit_fee)
    assert cln_gain == cln_expect, (cln_gain, cln_expect, bal, commit_fee)

    # Ampere's status lines tell the fate of each output it has a stake in (every output of both commitments but
    # CLN's main output, which Ampere does not follow), with the transaction that resolved it.
    status = chans(amp, cln)
    fates = ("pays our wallet", "swept to our wallet by", "claimed with the preimage by our", "timed out by our")
    for opener, c in status.items():
        print(opener, "\n  " + "\n  ".join(c["status"]))
        t = commits[opener]
        for v in range(len(txs[t].outputs)):
            if (t, v) in spent_by(amp_txs) or (t, v) in leaves(amp):
                line = [s for s in c["status"] if f" output {v} ({txs[t].outputs[v].value} sat)" in s]
                assert len(line) == 1 and any(f in line[0] for f in fates), (opener, v, c["status"])
                spender = [x for x in amp_txs if (t, v) in spent_by({x})]
                assert spender == [] or spender[0] in line[0], (spender, line)
    htlc_lines = status["remote"]["status"]
    assert sum("claimed with the preimage by our" in s for s in htlc_lines) == 1, htlc_lines
    assert sum("timed out by our" in s for s in htlc_lines) == 1, htlc_lines
    claim_txid = next(s.split("claimed with the preimage by our ")[1].split()[0] for s in htlc_lines
                      if "claimed with the preimage by our" in s)
    htlc_commit = commits["remote"]
    for txid in (claim_txid, t_txid):
        tx = txs[txid]
        if closer is amp:
            # option_anchors: the zero-fee HTLC transaction got wallet inputs and a change output (BOLT #5).
            assert tx.inputs[0].prevout.txid_hex() == htlc_commit and len(tx.inputs) >= 2, txid
            assert len(tx.outputs) == 2 and ((txid, 1) in leaves(amp) or (txid, 1) in spent_by(amp_txs)), txid
        else:
            assert [i.prevout.txid_hex() for i in tx.inputs] == [htlc_commit] and len(tx.outputs) == 1, txid
        if closer is amp:
            # BOLT #5: on its own commitment, HTLC-success/HTLC-timeout transactions, whose output Ampere sweeps to
            # its wallet once CLN's to_self_delay has passed.
            sweep = [x for x in amp_txs if (txid, 0) in spent_by({x})]
            assert len(sweep) == 1 and (txid, 0) not in leaves(amp), txid
            assert [i.sequence for i in txs[sweep[0]].inputs if i.prevout.txid_hex() == txid] == [TO_SELF_DELAY]
        else:
            # BOLT #5: on CLN's commitment, spent directly to its wallet.
            assert (txid, 0) in leaves(amp), txid
    # BOLT #3: the HTLC-timeout's (and the direct timeout's) nLockTime is the HTLC's cltv_expiry.
    assert txs[t_txid].locktime == out_expiry
    assert cln.rpc.listsendpays(payment_hash=inv_in["payment_hash"])["payments"][0]["status"] == "complete"
    assert amp.rpc.listsendpays(payment_hash=inv_out["payment_hash"])["payments"][0]["status"] == "failed"

"""Core Lightning vanishes after Ampere has settled its HTLC: Ampere must claim it on-chain before it expires.

CLN pays Ampere; Ampere's HODL plugin holds the HTLC, CLN stops, and only then does the plugin let the invoice
settle it: Ampere knows the preimage but its update_fulfill_htlc can never reach CLN. BOLT 2: "if an HTLC it has
fulfilled is in either node's current commitment transaction, AND is past this fulfillment deadline: SHOULD send
an error to the offering peer (if connected). MUST fail the channel" (the deadline 18 blocks before cltv_expiry).
So Ampere drops its commitment at cltv_expiry - 18 and spends the HTLC's output with its HTLC-success transaction
(CLN's signature from the commitment_signed, the preimage) well before CLN could time it out; the money reaches
Ampere's wallet after its to_self_delay. CLN, back, finds the preimage on-chain and completes its payment.

Ampere is killed (kill -9) and restarted between its fulfil and the deadline. Also: CLN holding Ampere's HTLC (or
two, with an empty wallet) and vanishing (Ampere times it out), and Ampere forwarding when the upstream payer
vanishes. Not the race of test_cln_unilateral.py (there the closes come first): here nothing but Ampere's own
deadline makes it go on-chain, the case where a vanishing payer would otherwise take the HTLC back after its expiry."""

from __future__ import annotations

import os
import re

import pytest

from ampere.testing.nodes import wait_for

pytestmark = pytest.mark.cln

HODL = os.path.join(os.path.dirname(os.path.dirname(__file__)), "plugins", "hodl.py")
CAPACITY = 500_000
DELAY = 30              # the HTLC's CLTV delta from the tip when CLN sends it (its expiry is 30 blocks away)
AMOUNT_MSAT = 100_000_000
TO_SELF_DELAY = 5       # watchtime-blocks: the CSV CLN imposes on Ampere's HTLC-success output
DEADLINE = 18           # ampere.ln.channel.core.FULFILLED_HTLC_DEADLINE_BLOCKS (BOLT 2's "18 blocks is reasonable")


def channel(amp, cln) -> dict:
    (c,) = amp.rpc.listpeerchannels(cln.node_id)["channels"]
    return c


def confirmed_wallet(node) -> dict[tuple[str, int], int]:
    return {(o["txid"], o["output"]): o["amount_msat"] // 1000 for o in node.rpc.listfunds()["outputs"]
            if o["status"] == "confirmed"}


def send_held(payer, payee, scid: str, label: str, amount_msat: int = AMOUNT_MSAT) -> dict:
    """`payer` pays `payee`'s invoice (label `label`) over the channel `scid`; the payee's HODL plugin holds the
    HTLC. The invoice."""
    inv = payee.rpc.invoice(amount_msat, label, f"{label}: held by {payee.implementation}")
    payer.rpc.sendpay([{"id": payee.node_id, "channel": scid, "delay": DELAY, "amount_msat": amount_msat}],
                      inv["payment_hash"], payment_secret=inv["payment_secret"], amount_msat=amount_msat)
    wait_for(lambda: payee.rpc.call("listheld")["held"].get(inv["payment_hash"]) == 1, 30, "the payee holds it")
    return inv


def fails_at(node_factory, amp, peer, height: int, nodes: list, what: str) -> None:
    """Mine up to the block before `height`: the channel stays open; at `height` Ampere fails it (BOLT 2 "MUST fail
    the channel") and its commitment goes out; mine that."""
    chaind = node_factory.chaind
    node_factory.mine(height - 1 - chaind.rpc("getblockcount"), nodes)
    assert channel(amp, peer)["state"] == "CHANNELD_NORMAL"
    node_factory.mine(1, nodes)
    wait_for(lambda: channel(amp, peer)["state"] == "AWAITING_UNILATERAL", 30, what)
    wait_for(lambda: len(chaind.rpc("getrawmempool")) >= 1, 30, "Ampere's commitment in the mempool")
    node_factory.mine(1, nodes)


def mine_until(node_factory, pred, nodes: list, at_most: int = 5):
    """Mine a block at a time, at most `at_most`, until `pred()` is true; pred's last value."""
    for _ in range(at_most):
        if pred():
            break
        node_factory.mine(1, nodes)
    return pred()


def resolved_by(node_factory, amp, peer, phrase: str, nodes: list) -> dict:
    """The transaction of Ampere's status line with `phrase` (its HTLC transaction), once mined: at most five
    blocks after the commitment's."""
    def txid() -> str | None:
        for s in channel(amp, peer)["status"]:
            if phrase in s:
                return re.findall(r"[0-9a-f]{64}", s.split(phrase)[1])[0]
        return None
    found = mine_until(node_factory, txid, nodes)
    assert found is not None, channel(amp, peer)["status"]
    tx = node_factory.chaind.rpc("getrawtransaction", found, True)
    tx["height"] = node_factory.chaind.rpc("getblock", tx["blockhash"])["height"]
    return tx


def wallet_gain(node_factory, amp, before: dict, least: int, nodes: list) -> int:
    """Mine until Ampere's wallet has gained more than `least` sat since `before` (its delayed outputs swept), at most
    to_self_delay + 10 blocks; the gain."""
    def gained() -> int:
        now = confirmed_wallet(amp)
        return sum(v for k, v in now.items() if k not in before) - sum(v for k, v in before.items() if k not in now)
    mine_until(node_factory, lambda: gained() > least, nodes, TO_SELF_DELAY + 10)
    return gained()


@pytest.mark.parametrize("channel_type,coins", [((12,), True), ((12, 22), True), ((12, 22), False)],
                         ids=["static", "anchors", "anchors_no_coins"])
def test_cln_vanishes_after_ampere_settles_ampere_claims_before_expiry(node_factory, channel_type, coins):
    """static: Ampere's HTLC-success pays its fee from the HTLC. anchors: it has no fee of its own (BOLT 3
    option_anchors), Ampere adds a coin of its wallet; the output still holds the whole HTLC. anchors_no_coins:
    Ampere never had a coin on-chain (CLN opened the channel): its anchor output of the confirmed commitment pays
    the HTLC-success's fee."""
    chaind = node_factory.chaind
    amp = node_factory.get_node(listen=True, plugin=HODL, **{"watchtime-blocks": TO_SELF_DELAY})
    cln = node_factory.get_cln_node(**{"watchtime-blocks": TO_SELF_DELAY})
    node_factory.fundchannel(cln, amp, CAPACITY, announce=False, channel_type=list(channel_type))
    assert channel(amp, cln)["channel_type"]["bits"] == list(channel_type)
    if coins:
        node_factory.fund_wallet(amp, 100_000)
    assert bool(amp.rpc.listfunds()["outputs"]) == coins
    inv = send_held(cln, amp, channel(amp, cln)["short_channel_id"], "hodl-vanish")
    (htlc,) = channel(amp, cln)["htlcs"]
    assert htlc["direction"] == "in" and htlc["state"] == "RCVD_ADD_ACK_REVOCATION", htlc
    expiry = htlc["expiry"]
    before = confirmed_wallet(amp)

    # CLN goes away; then Ampere settles: it has the preimage, CLN will never see the fulfil.
    amp.allow_complaints = (f"fulfilled HTLC {htlc['id']} is close to its expiry {expiry}",)
    if not coins:   # (what an operator must hear: its wallet could not pay, the anchor did)
        amp.allow_complaints += ("no coins in the wallet to pay for our HTLC-success",)
    # CLN, back, is told the channel is closed (a BOLT 1 error) and logs the funding spend as a permanent failure.
    cln.allow_complaints = ("Funding transaction spent", "Peer permanent failure", "peer_in WIRE_ERROR",
                            "Not dropping our unilateral close onchain")
    cln.stop()
    assert amp.rpc.call("release", {"payment_hash": inv["payment_hash"]})["released"] == 1
    wait_for(lambda: amp.rpc.listinvoices(payment_hash=inv["payment_hash"])["invoices"][0]["status"] == "paid", 30,
             "the invoice is paid")
    assert channel(amp, cln)["state"] == "CHANNELD_NORMAL"
    # A crash now (kill -9) must not lose what it settled: the preimage and the fulfil were stored before the
    # invoice said paid, and the deadline is still watched after the restart.
    amp.kill()
    amp.start()
    assert channel(amp, cln)["state"] == "CHANNELD_NORMAL"

    # Up to the block before the deadline the channel stays open; at expiry - 18 Ampere fails it.
    fails_at(node_factory, amp, cln, expiry - DEADLINE, [amp], "Ampere fails the channel")
    success = resolved_by(node_factory, amp, cln, "claimed with the preimage by our", [amp])
    # The whole HTLC is claimed: with anchors the HTLC-success's output keeps all of it (the fee from a coin of
    # Ampere's wallet), without them it pays its fee out of it.
    assert (success["vout"][0]["value"] * 10**8 == AMOUNT_MSAT // 1000) == (22 in channel_type), success["vout"]
    if not coins:   # its fee input: our anchor output of the commitment (330 sat), no change
        commitment = chaind.rpc("getrawtransaction", success["vin"][0]["txid"], True)
        assert len(success["vin"]) == 2 and len(success["vout"]) == 1, success
        anchor = commitment["vout"][success["vin"][1]["vout"]]
        assert success["vin"][1]["txid"] == commitment["txid"] and anchor["value"] * 10**8 == 330, anchor
    assert success["height"] < expiry - DEADLINE + 5 < expiry, (success["height"], expiry)

    # CLN comes back: it finds the preimage in Ampere's HTLC-success and its payment completes.
    cln.start()
    wait_for(lambda: cln.rpc.listsendpays(payment_hash=inv["payment_hash"])["payments"][0]["status"] == "complete",
             60, "CLN's payment completes")

    # After to_self_delay the HTLC's value (less the fees Ampere paid) reaches Ampere's wallet.
    gained = wallet_gain(node_factory, amp, before, AMOUNT_MSAT // 1000 - 20_000, [amp, cln])
    assert AMOUNT_MSAT // 1000 - 20_000 < gained < AMOUNT_MSAT // 1000, gained
    wait_for(lambda: not any("spendable by us in" in s or "being" in s for s in channel(amp, cln)["status"]), 30,
             "nothing left to resolve")


@pytest.mark.parametrize("channel_type,coins", [((12,), True), ((12, 22), True), ((12, 22), False)],
                         ids=["static", "anchors", "anchors_no_coins"])
def test_cln_vanishes_holding_ampere_htlc_ampere_times_it_out(node_factory, channel_type, coins):
    """The other direction: CLN's HODL plugin holds Ampere's HTLC and CLN stops. BOLT 2: "if an HTLC which it
    offered is in either node's current commitment transaction, AND is past this timeout deadline: ... MUST fail
    the channel" (the deadline: cltv_expiry plus 2 blocks of grace here). Ampere drops its commitment, times the HTLC
    out with its HTLC-timeout (CLN's signature, nLockTime = cltv_expiry), fails its payment only once that is 3
    blocks deep (BOLT 5's "reasonable depth"), and gets the money back after its to_self_delay. anchors_no_coins:
    CLN opened the channel and pushed Ampere its balance, Ampere never held a coin: our anchor pays the
    HTLC-timeout's fee."""
    chaind = node_factory.chaind
    amp = node_factory.get_node(listen=True, **{"watchtime-blocks": TO_SELF_DELAY})
    cln = node_factory.get_cln_node(plugin=HODL, **{"watchtime-blocks": TO_SELF_DELAY})
    if coins:
        node_factory.fundchannel(amp, cln, CAPACITY, announce=False, channel_type=list(channel_type))
        node_factory.fund_wallet(amp, 100_000)
        balance = CAPACITY              # less the commitment's fee and anchors, which the opener pays
    else:
        balance = 300_000
        node_factory.fundchannel(cln, amp, CAPACITY, announce=False, channel_type=list(channel_type),
                                 push_msat=balance * 1000)
    assert channel(amp, cln)["channel_type"]["bits"] == list(channel_type)
    assert bool(amp.rpc.listfunds()["outputs"]) == coins
    inv = send_held(amp, cln, channel(amp, cln)["short_channel_id"], "hodl-forever")
    wait_for(lambda: channel(amp, cln)["htlcs"][0]["state"] == "SENT_ADD_ACK_REVOCATION", 30, "HTLC committed")
    (htlc,) = channel(amp, cln)["htlcs"]
    assert htlc["direction"] == "out", htlc
    expiry = htlc["expiry"]
    before = confirmed_wallet(amp)

    amp.allow_complaints = (f"offered HTLC {htlc['id']} timed out at block {expiry}",)
    if not coins:
        amp.allow_complaints += ("no coins in the wallet to pay for our HTLC-timeout",)
    # CLN, back, replays its plugin's held HTLC, is told the channel is closed, and logs the funding spend.
    cln.allow_complaints = ("Funding transaction spent", "Peer permanent failure", "peer_in WIRE_ERROR",
                            "Not dropping our unilateral close onchain", "Replaying old unprocessed HTLC")
    cln.stop()
    grace = 2                                   # ampere.ln.channel.core.OFFERED_HTLC_GRACE_BLOCKS
    fails_at(node_factory, amp, cln, expiry + grace, [amp], "Ampere fails the channel")
    timeout = resolved_by(node_factory, amp, cln, "timed out by our", [amp])
    timed_out_at = timeout["height"]
    assert expiry <= timed_out_at <= expiry + grace + 5, (timed_out_at, expiry)
    if not coins:   # its inputs: the HTLC and our 330-sat anchor of the commitment; no change
        assert len(timeout["vin"]) == 2 and len(timeout["vout"]) == 1, timeout
        commitment = chaind.rpc("getrawtransaction", timeout["vin"][0]["txid"], True)
        assert timeout["vin"][1]["txid"] == commitment["txid"]
        assert commitment["vout"][timeout["vin"][1]["vout"]]["value"] * 10**8 == 330
    # BOLT 5: the payment fails only once the timeout "has reached reasonable depth" (3 blocks).
    while chaind.rpc("getblockcount") < timed_out_at + 2:
        assert amp.rpc.listsendpays(payment_hash=inv["payment_hash"])["payments"][0]["status"] == "pending"
        node_factory.mine(1, [amp])
    wait_for(lambda: amp.rpc.listsendpays(payment_hash=inv["payment_hash"])["payments"][0]["status"] == "failed",
             30, "Ampere's payment fails")

    # Its to_local and the HTLC's value, less the fees of its own transactions, come back to its wallet.
    gained = wallet_gain(node_factory, amp, before, balance - 30_000, [amp])
    assert balance - 30_000 < gained < balance, gained
    cln.start()
    wait_for(lambda: all(c["state"] in ("ONCHAIN", "FUNDING_SPEND_SEEN", "AWAITING_UNILATERAL")
                         for c in cln.rpc.listpeerchannels(amp.node_id)["channels"]), 60, "CLN sees the close")


def timed_out(amp, peer) -> dict[int, str]:
    """Ampere's HTLC outputs of the closed channel its HTLC-timeout has resolved: {value in sat: that txid}."""
    found = (re.search(r"\((\d+) sat\) timed out by our ([0-9a-f]{64})", s) for s in channel(amp, peer)["status"])
    return {int(m.group(1)): m.group(2) for m in found if m}


def test_cln_vanishes_holding_two_htlcs_ampere_without_coins_times_out_one_then_the_other(node_factory):
    """Anchors, and Ampere never held a coin (CLN opened the channel and pushed Ampere its balance): CLN holds two of
    Ampere's HTLCs, both expiring at the same block, and stops. Our anchor's 330 sat pay for one zero-fee
    HTLC-timeout at the relay floor, not two: the more valuable HTLC is timed out with the anchor as its fee input;
    the other waits for coins ("cannot pay the fee"), and no second transaction of ours spends the anchor (it is
    carried already). Coins reach the wallet: the second HTLC-timeout is funded from them, the anchor-funded one
    stays as it is, and both payments fail only once their timeouts are 3 deep."""
    chaind = node_factory.chaind
    amp = node_factory.get_node(listen=True, **{"watchtime-blocks": TO_SELF_DELAY})
    cln = node_factory.get_cln_node(plugin=HODL, **{"watchtime-blocks": TO_SELF_DELAY})
    node_factory.fundchannel(cln, amp, CAPACITY, announce=False, channel_type=[12, 22], push_msat=300_000_000)
    assert not amp.rpc.listfunds()["outputs"]
    scid = channel(amp, cln)["short_channel_id"]
    big = send_held(amp, cln, scid, "hodl-big", AMOUNT_MSAT)
    small = send_held(amp, cln, scid, "hodl-small", AMOUNT_MSAT // 2)
    wait_for(lambda: [h["state"] for h in channel(amp, cln)["htlcs"]] == ["SENT_ADD_ACK_REVOCATION"] * 2, 30,
             "both HTLCs committed")
    (expiry,) = {h["expiry"] for h in channel(amp, cln)["htlcs"]}

    amp.allow_complaints = (f"timed out at block {expiry}", "no coins in the wallet to pay for our HTLC-timeout",
                            "cannot pay the fee of our HTLC-timeout")
    cln.allow_complaints = ("Funding transaction spent", "Peer permanent failure", "peer_in WIRE_ERROR",
                            "Not dropping our unilateral close onchain", "Replaying old unprocessed HTLC")
    cln.stop()
    fails_at(node_factory, amp, cln, expiry + 2, [amp], "Ampere fails the channel")
    mine_until(node_factory, lambda: timed_out(amp, cln), [amp])
    big_sat, small_sat = AMOUNT_MSAT // 1000, AMOUNT_MSAT // 2000
    assert list(timed_out(amp, cln)) == [big_sat], channel(amp, cln)["status"]
    first = chaind.rpc("getrawtransaction", timed_out(amp, cln)[big_sat], True)
    commitment = chaind.rpc("getrawtransaction", first["vin"][0]["txid"], True)
    assert len(first["vin"]) == 2 and first["vin"][1]["txid"] == commitment["txid"], first
    assert commitment["vout"][first["vin"][1]["vout"]]["value"] * 10**8 == 330
    assert [round(o["value"] * 10**8) for o in first["vout"]] == [big_sat]

    # The other waits for coins: no transaction of ours spends its output, nor a second one the anchor.
    amp.wait_for_log("cannot pay the fee of our HTLC-timeout")
    node_factory.mine(2, [amp])
    assert list(timed_out(amp, cln)) == [big_sat]
    assert not chaind.rpc("getrawmempool")
    assert amp.rpc.listsendpays(payment_hash=small["payment_hash"])["payments"][0]["status"] == "pending"

    node_factory.fund_wallet(amp, 50_000)
    mine_until(node_factory, lambda: small_sat in timed_out(amp, cln), [amp])
    second = chaind.rpc("getrawtransaction", timed_out(amp, cln)[small_sat], True)
    assert second["txid"] != first["txid"] and len(second["vin"]) >= 2, second
    assert all(i["txid"] != commitment["txid"] or i["vout"] != first["vin"][1]["vout"] for i in second["vin"])
    assert round(second["vout"][0]["value"] * 10**8) == small_sat
    assert timed_out(amp, cln)[big_sat] == first["txid"]
    node_factory.mine(3, [amp])
    for inv in (big, small):
        wait_for(lambda: amp.rpc.listsendpays(payment_hash=inv["payment_hash"])["payments"][0]["status"] == "failed",
                 30, "Ampere's payment fails")


def test_forwarding_upstream_cln_vanishes_ampere_claims_upstream_onchain(node_factory):
    """Ampere forwards CLN -> Ampere -> CLN. The payer vanishes; the payee, holding the HTLC until then, settles it:
    Ampere has paid downstream (off-chain, the preimage in hand) and must be paid upstream. Its fulfil can never
    reach the payer, so at the upstream HTLC's cltv_expiry - 18 Ampere fails that channel and claims the HTLC with
    the preimage on-chain, before the payer could time it out: Ampere ends with the amount and its fee."""
    payer = node_factory.get_cln_node(**{"watchtime-blocks": TO_SELF_DELAY})
    amp = node_factory.get_node(listen=True, **{"watchtime-blocks": TO_SELF_DELAY})
    payee = node_factory.get_cln_node(plugin=HODL)
    node_factory.fundchannel(payer, amp, CAPACITY, announce=False)
    node_factory.fundchannel(amp, payee, CAPACITY, announce=False)
    node_factory.fund_wallet(amp, 100_000)
    up = channel(amp, payer)["short_channel_id"]
    down = channel(amp, payee)["short_channel_id"]
    fee = 1 + AMOUNT_MSAT * 10 // 1_000_000      # Ampere's default fee: 1 msat + 10 ppm; its cltv_expiry_delta 34
    inv = payee.rpc.invoice(AMOUNT_MSAT, "hodl-fwd", "held by the payee until the payer is gone")
    route = [{"id": amp.node_id, "channel": up, "amount_msat": AMOUNT_MSAT + fee, "delay": 20 + 34},
             {"id": payee.node_id, "channel": down, "amount_msat": AMOUNT_MSAT, "delay": 20}]
    payer.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
    wait_for(lambda: payee.rpc.call("listheld")["held"].get(inv["payment_hash"]) == 1, 30, "the payee holds it")
    (htlc,) = channel(amp, payer)["htlcs"]
    assert htlc["direction"] == "in" and htlc["amount_msat"] == AMOUNT_MSAT + fee, htlc
    expiry = htlc["expiry"]
    before = confirmed_wallet(amp)

    amp.allow_complaints = (f"fulfilled HTLC {htlc['id']} is close to its expiry {expiry}",)
    payer.allow_complaints = ("Funding transaction spent", "Peer permanent failure", "peer_in WIRE_ERROR",
                              "Not dropping our unilateral close onchain")
    payer.stop()
    assert payee.rpc.call("release", {"payment_hash": inv["payment_hash"]})["released"] == 1
    # Downstream settles off-chain: the payee has its money, Ampere the preimage and an upstream HTLC to claim.
    wait_for(lambda: channel(amp, payee)["htlcs"] == [], 30, "downstream settled")
    assert payee.rpc.listinvoices(payment_hash=inv["payment_hash"])["invoices"][0]["status"] == "paid"

    fails_at(node_factory, amp, payer, expiry - DEADLINE, [amp, payee], "Ampere fails the upstream channel")
    assert channel(amp, payee)["state"] == "CHANNELD_NORMAL"     # the other channel is not touched
    claimed_at = resolved_by(node_factory, amp, payer, "claimed with the preimage by our", [amp, payee])["height"]
    assert claimed_at < expiry - DEADLINE + 5 < expiry, (claimed_at, expiry)

    payer.start()
    wait_for(lambda: payer.rpc.listsendpays(payment_hash=inv["payment_hash"])["payments"][0]["status"]
             == "complete", 60, "the payer's payment completes")

    # Ampere's to_remote on the payer-opened channel was zero: what reaches its wallet is the HTLC (amount + fee)
    # less the fees of its own transactions.
    gained = wallet_gain(node_factory, amp, before, AMOUNT_MSAT // 1000 - 20_000, [amp, payee])
    assert AMOUNT_MSAT // 1000 - 20_000 < gained <= (AMOUNT_MSAT + fee) // 1000, gained
    (fwd,) = amp.rpc.listforwards()["forwards"]
    assert fwd["status"] == "settled" and fwd["fee_msat"] == fee, fwd

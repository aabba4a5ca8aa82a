"""On-chain enforcement (BOLT 5) between real ampd nodes on amp-chaind.

- a peer (ampd --developer: dev-sign-last-tx, dev-sign-last-htlc-txs) broadcasts its revoked commitment holding
  an HTLC each way, with its HTLC-success in the same block: the honest node (killed -9 before its first
  penalty broadcast, then mid-penalty, and again with everything broadcast) takes its to_local, the other HTLC
  and the HTLC-success output with the revocation key in the block the cheat is seen, and ends with the whole
  channel less the fees; coin movements (the books balance against the chain), status lines, CLOSED after 100
  blocks;
- a mutual close: both sides' books (coin_movement) balance against the chain and listfunds;
- l1 -> l2 -> l3: l3 claims on-chain with the preimage after l2 closed: l2 extracts it and is paid by l1;
  and when l3 goes silent instead, l2 times the HTLC out on-chain and fails l1's once that is 3 deep;
- a silent peer holding our HTLC: past the deadline we close, time it out (killed -9 before the HTLC-timeout and
  again while it is 2 deep), fail the payment once 3 deep, sweep it back;
- the dev commands: --dev-disable-commit-after / dev-reenable-commit, dev-fail; refused without --developer.
"""
from __future__ import annotations

import os
import sys
import time

import pytest

from ampere.primitives.tx import Transaction
from ampere.testing.nodes import DEFAULT_FUNDAMOUNT
from ampere.testing.schema import ClnValidator, load_schema

sys.path.insert(0, os.path.dirname(__file__))
from bookcheck import balances, check_books  # noqa: E402
from chainutil import sync, wait_for  # noqa: E402

HODL = os.path.join(os.path.dirname(__file__), "..", "plugins", "hodl.py")
LISTENER = os.path.join(os.path.dirname(__file__), "..", "plugins", "listener.py")
LEDGER = os.path.join(os.path.dirname(__file__), "..", "plugins", "coin_ledger.py")
DELAY = 6
FUNDING = 1_000_000
PUSH_MSAT = 400_000_000


def channel(node) -> dict:
    [c] = node.rpc.listpeerchannels()["channels"]
    return c


def mine(chaind, n: int, *nodes) -> int:
    chaind.mine(n)
    h = chaind.rpc("getblockcount")
    for node in nodes:
        sync(node, chaind)
    return h


def held_payment(src, dst, amount_msat: int, label: str, preimage: str | None = None) -> str:
    """src pays dst's invoice, which dst's HODL plugin holds: an HTLC in flight src -> dst."""
    inv = dst.rpc.invoice(amount_msat, label, label, preimage=preimage)
    route = src.rpc.getroute(dst.node_id, amount_msat, 1)["route"]
    src.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
    wait_for(lambda: inv["payment_hash"] in dst.rpc.call("listheld")["held"], 30, f"{label} held")
    return inv["payment_hash"]


def wallet_sat(node) -> int:
    return sum(o["amount_msat"] for o in node.rpc.listfunds()["outputs"] if o["status"] == "confirmed") // 1000


def ledger(node) -> list[dict]:
    """Every coin_movement the node sent to its coin_ledger plugin (across restarts and kill -9)."""
    return node.rpc.call("ledger")["movements"]


# Both commitment formats (issue 15): static_remotekey, and option_anchors (the default) where the cheat's
# HTLC-success must wait a block (CSV 1) and brings its own fee from its wallet.
CHANNEL_TYPES = {"static": [12], "anchors": [12, 22]}
both_types = pytest.mark.parametrize("ctype", ["static", "anchors"])


@both_types
def test_penalty_for_revoked_commitment_with_htlcs_both_ways(node_factory_chain, chaind, ctype):
    anchors = ctype == "anchors"
    chaind.mine(101)
    honest = node_factory_chain.get_node({"watchtime-blocks": DELAY, "plugin": [HODL, LISTENER, LEDGER]},
                                         listen=True)
    cheat = node_factory_chain.get_node({"watchtime-blocks": DELAY, "plugin": HODL, "developer": None},
                                        listen=True, allow_broken_log=True)  # it logs its own revoked close
    node_factory_chain.fund_wallet(honest, 1_500_000)
    node_factory_chain.connect(honest, cheat)
    if anchors:
        for _ in range(2):   # the fees of its HTLC-timeout and HTLC-success (one coin each)
            node_factory_chain.fund_wallet(cheat, 100_000)
    honest.rpc.fundchannel(cheat.node_id, FUNDING, push_msat=PUSH_MSAT, channel_type=CHANNEL_TYPES[ctype])
    mine(chaind, 6, honest, cheat)
    for n in (honest, cheat):
        wait_for(lambda: channel(n)["state"] == "CHANNELD_NORMAL", 30, "CHANNELD_NORMAL")
    assert channel(honest)["channel_type"]["bits"] == CHANNEL_TYPES[ctype]
    pre = "a5" * 32
    h_out = held_payment(honest, cheat, 30_000_000, "hodl-a", pre)  # honest -> cheat
    h_in = held_payment(cheat, honest, 50_000_000, "hodl-b")      # cheat -> honest
    wait_for(lambda: len(channel(cheat)["htlcs"]) == 2 and all(h["state"] in ("RCVD_ADD_ACK_REVOCATION",
                                                                              "SENT_ADD_ACK_REVOCATION")
                                                            for h in channel(cheat)["htlcs"]), 30, "HTLCs committed")
    old = Transaction.parse_hex(cheat.rpc.call("dev-sign-last-tx", {"id": honest.node_id})["tx"])
    # ... and its HTLC-success for the HTLC it received (its own invoice: it knows the preimage).
    second = cheat.rpc.call("dev-sign-last-htlc-txs", {"id": honest.node_id, "preimages": [pre],
                                                       **({"feerate": 2000} if anchors else {})})["txs"]
    [success] = [Transaction.parse_hex(x["tx"]) for x in second if x["type"] == "htlc-success"]
    assert success.inputs[0].prevout.txid == old.txid()
    channel_id = channel(honest)["channel_id"]
    # Both HTLCs settle off-chain: the commitment just signed is revoked.
    cheat.rpc.call("release", {"payment_hash": h_out})
    honest.rpc.call("release", {"payment_hash": h_in})
    for n in (honest, cheat):
        wait_for(lambda: channel(n)["htlcs"] == [], 30, "HTLCs settled")
    wallet_before = wallet_sat(honest)
    cheat_before = wallet_sat(cheat)
    to_us_msat = channel(honest)["to_us_msat"]   # our balance at the close: what channel_close debits
    # The honest node will die (kill -9) before its first on-chain broadcast of the resolution (the penalties
    # are recorded, nothing is out), then again between its first and second.
    honest.options.update({"dev-crash-before": "onchain", "developer": None})
    if anchors:
        honest.stop()   # down while both blocks of the cheat are mined; it dies before its first penalty
    else:
        honest.restart()

    # The cheat: the revoked commitment and its second-stage HTLC-success, mined together (option_anchors: the
    # HTLC-success in the next block, CSV 1).
    chaind.rpc("sendrawtransaction", old.serialize().hex())
    if not anchors:
        chaind.rpc("sendrawtransaction", success.serialize().hex())
    s = mine(chaind, 1, cheat)
    if anchors:
        chaind.rpc("generateblock", chaind.faucet_address(), [success.serialize().hex()])
        s = mine(chaind, 0, cheat)
        honest.start(wait=False)
    wait_for(lambda: not honest.is_running(), 30, "the crash before the first penalty")
    assert chaind.rpc("getrawmempool") == []
    honest.options["dev-crash-before"] = "onchain:2"
    honest.start(wait=False)   # it resumes the resolution while starting, and dies there
    wait_for(lambda: not honest.is_running(), 30, "the crash mid-penalty")
    first = set(chaind.rpc("getrawmempool"))
    assert len(first) == 1                     # one of its transactions went out before the crash
    honest.options.pop("dev-crash-before")
    honest.start()
    sync(honest, chaind)
    wait_for(lambda: channel(honest)["state"] == "ONCHAIN", 30, "ONCHAIN")
    assert "REVOKED commitment" in honest.logs(False)
    # The penalties are broadcast in the block the cheat is seen (0 blocks later).
    htlc_outputs = [o for o in old.outputs if len(o.script_pubkey) == 34 and o.value in (30_000, 50_000)]
    assert len(htlc_outputs) == 2
    wait_for(lambda: len([x for x in channel(honest)["status"] if "penalty transaction" in x]) == 3, 30,
             "three penalties")
    wait_for(lambda: len(chaind.rpc("getrawmempool")) == 4, 30, "3 penalties and the to_remote sweep")
    mempool = chaind.rpc("getrawmempool")
    # What went out before the crash was not rebuilt (option_anchors: the cheat's second block went by since the
    # penalties were signed, so they were replaced at a higher feerate: RBF, logged).
    assert first <= set(mempool) or (anchors and all(f"replacing {t}" in honest.logs(False) for t in first))
    status_txids = {w for x in channel(honest)["status"] for w in x.split() if len(w) == 64}
    assert set(mempool) <= status_txids        # the mempool holds exactly what it signed and recorded
    penalties = [Transaction.parse_hex(chaind.rpc("getrawtransaction", t)) for t in mempool]
    spent = {(i.prevout.txid, i.prevout.vout) for t in penalties for i in t.inputs}
    # The HTLC output the cheat still held (50k) directly; the one its HTLC-success took, through its output.
    assert (old.txid(), next(i for i, o in enumerate(old.outputs) if o.value == 50_000)) in spent
    assert (success.txid(), 0) in spent
    assert chaind.rpc("getblockcount") == s
    # Killed again, everything broadcast but nothing confirmed: the restart sends the same transactions.
    honest.kill()
    honest.start()
    sync(honest, chaind)
    assert set(chaind.rpc("getrawmempool")) == set(mempool)
    mine(chaind, 1, honest, cheat)
    # The honest node holds the whole channel (its own balance and the cheater's) less the fees (the cheat's
    # HTLC-success fee included).
    taken = sum(o.value for o in old.outputs) - (30_000 - success.outputs[0].value) - (660 if anchors else 0)
    wait_for(lambda: wallet_sat(honest) - wallet_before > taken - 20_000, 30, "the penalties in the wallet")
    gained = wallet_sat(honest) - wallet_before
    print(f"honest gained {gained} sat of the {taken} sat commitment outputs ({taken - gained} sat in fees)")
    # (option_anchors: the cheat paid its HTLC-success's fee from its wallet.)
    success_fee = (sum(o.value for o in success.outputs[1:]) and
                   cheat_before - wallet_sat(cheat)) if anchors else 0
    assert wallet_sat(cheat) == cheat_before - success_fee and (success_fee > 0) == anchors
    # What CLN's onchaind would say: each output's fate, and a chain_mvt per penalty (bookkeeper's tags).
    status = channel(honest)["status"]
    assert len([x for x in status if "taken by our penalty" in x]) == 3, status
    assert any("swept to our wallet" in x for x in status), status

    def moves():
        return [n["coin_movement"] for n in honest.rpc.call("seen")["received"] if "coin_movement" in n]
    wait_for(lambda: len([m for m in moves() if m["primary_tag"] == "penalty"]) == 3, 30, "penalty movements")
    pens = [m for m in moves() if m["primary_tag"] == "penalty"]
    assert {m["account_id"] for m in pens} == {channel(honest)["channel_id"]}
    # Every P2WSH output of the cheat (its to_local, the 50k HTLC) and its HTLC-success output.
    credits = sorted(m["credit_msat"] for m in pens)
    p2wsh = [o.value * 1000 for o in old.outputs if len(o.script_pubkey) == 34 and o.value not in (30_000, 330)]
    for v in (50_000_000, success.outputs[0].value * 1000):
        credits.remove(v)
    # The third is the cheat's to_local (option_anchors: our to_remote is P2WSH too, and not a penalty).
    assert len(credits) == 1 and credits[0] in p2wsh and len(p2wsh) == (3 if anchors else 2)
    assert all(m["blockheight"] == s + 1 for m in pens)
    schema = load_schema(os.path.join("notification", "coin_movement"), "response")   # CLN's (in "response")
    assert schema is not None
    for m in moves():
        ClnValidator(schema).validate(m)
    # The bookkeeper's view (coin_movement, recorded by a plugin across the two kill -9): the channel's account
    # is channel_open - channel_close (the push and the payments, off-chain), every penalty nets to zero on it,
    # and the wallet's account is listfunds' confirmed outputs.
    funds = lambda: sum(o["amount_msat"] for o in honest.rpc.listfunds()["outputs"]  # noqa: E731
                        if o["status"] == "confirmed")
    wait_for(lambda: balances(ledger(honest)).get("wallet") == funds(), 30, "the wallet's movements")
    books = check_books(ledger(honest), lambda t: chaind.rpc("getrawtransaction", t), channel_id, old.txid_hex(),
                        close_debit_msat=to_us_msat, wallet_msat=funds(), open_credit_msat=FUNDING * 1000)
    assert books[channel_id] == FUNDING * 1000 - to_us_msat   # what left the channel off-chain (the push...)
    # The cheat keeps nothing of its revoked commitment (option_anchors: the two 330-sat anchors are anyone's).
    assert books.get("external", 0) == (2 * 330_000 if anchors else 0)
    # Irrevocably resolved (100 blocks): CLOSED, in listclosedchannels.
    mine(chaind, 100, honest)
    wait_for(lambda: honest.rpc.listpeerchannels()["channels"] == [] or channel(honest)["state"] == "CLOSED"
             or honest.rpc.listclosedchannels()["closedchannels"], 30, "closed")
    [closed] = honest.rpc.listclosedchannels()["closedchannels"]
    assert closed["channel_id"] == channel_id


def line3(node_factory_chain, chaind, opts: list[dict], ctype: str) -> list:
    """l1 -> l2 -> l3 (as line_graph: each channel opened by the left node with a wallet of its size + 100,000
    sat), of the given channel type."""
    nodes = [node_factory_chain.get_node(dict(o), listen=True) for o in opts]
    for a in nodes[:-1]:
        node_factory_chain.fund_wallet(a, DEFAULT_FUNDAMOUNT + 100_000)
    for a, b in zip(nodes, nodes[1:]):
        node_factory_chain.fundchannel(a, b, DEFAULT_FUNDAMOUNT, channel_type=CHANNEL_TYPES[ctype])
        assert channel_with(a, b)["channel_type"]["bits"] == CHANNEL_TYPES[ctype]
    # Every node at the tip: a payer behind it would give its HTLC a cltv_expiry the blocks mined since make
    # too near for the payee (BOLT #4 final hop: "unreasonably near the present") once one more block is mined.
    for n in nodes:
        sync(n, chaind)
    return nodes


def scid(a, b) -> str:
    return next(c["short_channel_id"] for c in a.rpc.listpeerchannels(b.node_id)["channels"])


@both_types
def test_forwarded_htlc_claimed_onchain_downstream_settles_upstream(node_factory_chain, chaind, ctype):
    """l1 -> l2 -> l3; l3 holds the HTLC; l2 closes its channel to l3 (dev-fail); l3 then releases the payment
    and, its channel being on-chain, claims l2's HTLC output on l2's commitment with the preimage. l2 extracts
    the preimage from l3's spend and fulfils l1's HTLC off-chain: l1's payment completes, l2 loses nothing."""
    chaind.mine(101)
    l1, l2, l3 = line3(node_factory_chain, chaind, [{}, {"developer": None}, {"plugin": HODL}], ctype)
    amount = 50_000_000
    fee = 1 + amount * 10 // 1_000_000       # l2's default fee: 1msat + 10ppm
    inv = l3.rpc.invoice(amount, "hodl-fwd", "fwd")
    route = [{"id": l2.node_id, "channel": scid(l1, l2), "amount_msat": amount + fee, "delay": 18 + 34},
             {"id": l3.node_id, "channel": scid(l2, l3), "amount_msat": amount, "delay": 18}]
    l1.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
    wait_for(lambda: inv["payment_hash"] in l3.rpc.call("listheld")["held"], 30, "held at l3")
    l2_before = next(c for c in l2.rpc.listpeerchannels(l1.node_id)["channels"])["to_us_msat"]

    l2.rpc.call("dev-fail", {"id": l3.node_id})
    mine(chaind, 1, l2, l3)
    wait_for(lambda: channel_with(l3, l2)["state"] == "ONCHAIN", 30, "l3 sees the close")
    l3.rpc.call("release", {"payment_hash": inv["payment_hash"]})
    l3.wait_for_log("claiming it there")
    wait_for(lambda: len(chaind.rpc("getrawmempool")) >= 1, 30, "l3's claim")
    mine(chaind, 1, l1, l2, l3)
    l2.wait_for_log("learned the preimage")
    r = l1.rpc.waitsendpay(inv["payment_hash"], 60)
    assert r["status"] == "complete" and r["payment_preimage"]
    wait_for(lambda: channel_with(l2, l1)["htlcs"] == [], 30, "l1-l2 settled")
    assert channel_with(l2, l1)["to_us_msat"] == l2_before + amount + fee   # l2 got paid upstream
    [fwd] = l2.rpc.listforwards()["forwards"]
    assert fwd["status"] == "settled"


def channel_with(a, b) -> dict:
    return next(c for c in a.rpc.listpeerchannels(b.node_id)["channels"])


@both_types
def test_silent_peer_holding_our_htlc_we_close_and_time_it_out(node_factory_chain, chaind, ctype):
    """l2 holds l1's HTLC and goes silent. Past cltv_expiry l1 fails the channel (BOLT 2 deadline), its commitment
    confirms, its HTLC-timeout (signed by l2 long ago) goes out at once -- l1 is killed right before that
    broadcast and restarted: it goes out then -- and the payment fails only once the timeout is 3 blocks deep;
    the HTLC's value then comes back to l1's wallet after to_self_delay."""
    chaind.mine(101)
    l1 = node_factory_chain.get_node({"watchtime-blocks": DELAY}, listen=True)
    l2 = node_factory_chain.get_node({"watchtime-blocks": DELAY, "plugin": HODL}, listen=True)
    node_factory_chain.fund_wallet(l1, 1_200_000)
    node_factory_chain.connect(l1, l2)
    l1.rpc.fundchannel(l2.node_id, FUNDING, channel_type=CHANNEL_TYPES[ctype])
    mine(chaind, 6, l1, l2)
    wait_for(lambda: channel(l1)["state"] == "CHANNELD_NORMAL", 30, "CHANNELD_NORMAL")
    assert channel(l1)["channel_type"]["bits"] == CHANNEL_TYPES[ctype]
    h = held_payment(l1, l2, 30_000_000, "hodl-silent")
    wait_for(lambda: channel(l1)["htlcs"] and channel(l1)["htlcs"][0]["state"] == "SENT_ADD_ACK_REVOCATION", 30,
             "HTLC committed")
    expiry = channel(l1)["htlcs"][0]["expiry"]
    l2.stop()
    # l1 will die (kill -9) right before broadcasting its HTLC-timeout, signed and recorded.
    l1.options.update({"dev-crash-before": "onchain:1", "developer": None})
    l1.restart()
    before = wallet_sat(l1)
    grace = 2                                                       # ampere.ln.channel.core.OFFERED_HTLC_GRACE_BLOCKS
    mine(chaind, expiry + grace - 1 - chaind.rpc("getblockcount"), l1)
    assert channel(l1)["state"] == "CHANNELD_NORMAL"
    mine(chaind, 1, l1)                                             # cltv_expiry + grace: fail the channel
    wait_for(lambda: channel(l1)["state"] == "AWAITING_UNILATERAL", 30, "l1 closes")
    wait_for(lambda: len(chaind.rpc("getrawmempool")) == 1, 30, "the commitment")
    chaind.mine(1)
    s = chaind.rpc("getblockcount")
    wait_for(lambda: not l1.is_running(), 30, "the crash before the HTLC-timeout")
    assert chaind.rpc("getrawmempool") == []
    l1.options.pop("dev-crash-before")
    l1.start()
    sync(l1, chaind)
    wait_for(lambda: len(chaind.rpc("getrawmempool")) == 1, 30, "the HTLC-timeout after the restart")
    [timeout_txid] = chaind.rpc("getrawmempool")
    mine(chaind, 2, l1)                                             # the timeout is 2 deep: not failed yet
    assert l1.rpc.listsendpays(payment_hash=h)["payments"][0]["status"] == "pending"
    l1.kill()                                                       # and a kill -9 now changes nothing
    l1.start()
    sync(l1, chaind)
    assert l1.rpc.listsendpays(payment_hash=h)["payments"][0]["status"] == "pending"
    mine(chaind, 1, l1)
    wait_for(lambda: l1.rpc.listsendpays(payment_hash=h)["payments"][0]["status"] == "failed", 30, "failed")
    # The HTLC-timeout's output (and to_local) come back after to_self_delay.
    mine(chaind, DELAY, l1)
    wait_for(lambda: len([x for x in channel(l1)["status"] if "being swept" in x]) >= 2, 30, "sweeps")
    mine(chaind, 1, l1)
    tx = Transaction.parse_hex(chaind.rpc("getrawtransaction", timeout_txid))
    # BOLT #3: without anchors the HTLC-timeout is the 1-in-1-out one l2 signed (its fee from the HTLC); with
    # option_anchors it pays no fee of its own: l1 added wallet inputs and a change output.
    assert (len(tx.inputs), len(tx.outputs)) == ((2, 2) if ctype == "anchors" else (1, 1)), tx
    wait_for(lambda: wallet_sat(l1) - before > FUNDING - 20_000, 30, "funds back")
    print(f"l1 got back {wallet_sat(l1) - before} of {FUNDING} sat; HTLC-timeout {tx.txid_hex()} in block {s + 1}")


def test_dev_commands_freeze_commitments_and_need_developer(node_factory_chain, chaind):
    """--dev-disable-commit-after=0 keeps an offered HTLC out of every commitment until dev-reenable-commit; the
    dev commands do not exist without --developer (CLN: -32601)."""
    chaind.mine(101)
    l1 = node_factory_chain.get_node({"developer": None, "dev-disable-commit-after": 0}, listen=True)
    l2 = node_factory_chain.get_node(listen=True)
    node_factory_chain.fund_wallet(l1, 1_200_000)
    node_factory_chain.connect(l1, l2)
    l1.rpc.fundchannel(l2.node_id, FUNDING)
    mine(chaind, 6, l1, l2)
    wait_for(lambda: channel(l1)["state"] == "CHANNELD_NORMAL", 30, "CHANNELD_NORMAL")
    tx = l1.rpc.call("dev-sign-last-tx", {"id": l2.node_id})["tx"]
    l1.rpc.call("dev-offer-htlc", {"id": l2.node_id, "amount_msat": 5_000_000, "payment_hash": "00" * 32})
    wait_for(lambda: channel(l1)["htlcs"], 10, "the HTLC added")
    time.sleep(1)
    assert [h["state"] for h in channel(l1)["htlcs"]] == ["SENT_ADD_HTLC"]   # frozen: no commitment_signed
    assert chaind.rpc("getrawmempool") == []                                # dev-sign-last-tx broadcast nothing
    l1.rpc.call("dev-reenable-commit", {"id": l2.node_id})
    wait_for(lambda: channel(l1)["htlcs"] == [], 30, "the HTLC committed, then failed by l2")
    for cmd in ("dev-sign-last-tx", "dev-fail", "dev-reenable-commit"):
        try:
            l2.rpc.call(cmd, {"id": l1.node_id})
        except Exception as e:   # pyln RpcError
            assert e.error["code"] == -32601, (cmd, e.error)
        else:
            raise AssertionError(f"{cmd} answered without --developer")
    assert channel(l2)["state"] == "CHANNELD_NORMAL"
    latest = l1.rpc.call("dev-sign-last-tx", {"id": l2.node_id})["tx"]
    assert latest != tx                                                     # two commitments later
    l1.rpc.call("dev-fail", {"id": l2.node_id})
    wait_for(lambda: channel(l1)["state"] == "AWAITING_UNILATERAL", 30, "dev-fail closes")
    assert chaind.rpc("getrawmempool") == [Transaction.parse_hex(latest).txid_hex()]  # our latest commitment


@both_types
def test_forwarded_htlc_timed_out_onchain_fails_upstream(node_factory_chain, chaind, ctype):
    """l1 -> l2 -> l3; l3 holds the HTLC and goes silent: l2 closes past the deadline, times the HTLC out on-chain
    and, once that is 3 deep (not before), fails l1's HTLC off-chain: l1's payment fails, l2 keeps its balance."""
    chaind.mine(101)
    l1, l2, l3 = line3(node_factory_chain, chaind, [{}, {}, {"plugin": HODL}], ctype)
    amount = 10_000_000
    fee = 1 + amount * 10 // 1_000_000
    inv = l3.rpc.invoice(amount, "hodl-silent-fwd", "fwd")
    route = [{"id": l2.node_id, "channel": scid(l1, l2), "amount_msat": amount + fee, "delay": 18 + 34},
             {"id": l3.node_id, "channel": scid(l2, l3), "amount_msat": amount, "delay": 18}]
    l1.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
    wait_for(lambda: inv["payment_hash"] in l3.rpc.call("listheld")["held"], 30, "held at l3")
    l2_before = channel_with(l2, l1)["to_us_msat"]
    expiry = channel_with(l2, l3)["htlcs"][0]["expiry"]
    l3.stop()
    mine(chaind, expiry + 2 - chaind.rpc("getblockcount"), l1, l2)   # the deadline (cltv_expiry + 2)
    wait_for(lambda: channel_with(l2, l3)["state"] == "AWAITING_UNILATERAL", 30, "l2 closes")
    wait_for(lambda: len(chaind.rpc("getrawmempool")) == 1, 30, "the commitment")
    mine(chaind, 1, l1, l2)
    wait_for(lambda: len(chaind.rpc("getrawmempool")) == 1, 30, "the HTLC-timeout")
    mine(chaind, 2, l1, l2)
    assert l1.rpc.listsendpays(payment_hash=inv["payment_hash"])["payments"][0]["status"] == "pending"
    mine(chaind, 1, l1, l2)
    wait_for(lambda: l1.rpc.listsendpays(payment_hash=inv["payment_hash"])["payments"][0]["status"] == "failed", 30,
             "l1's payment failed")
    try:
        l1.rpc.waitsendpay(inv["payment_hash"], 30)
        raise AssertionError("the payment did not fail")
    except Exception as e:  # pyln RpcError: l2 says its channel failed (CLN: permanent_channel_failure)
        data = e.error["data"]
        assert (data["failcodename"], data["erring_node"]) == ("WIRE_PERMANENT_CHANNEL_FAILURE", l2.node_id), data
    wait_for(lambda: channel_with(l2, l1)["htlcs"] == [], 30, "l1-l2 settled")
    assert channel_with(l2, l1)["to_us_msat"] == l2_before
    [fwd] = l2.rpc.listforwards()["forwards"]
    assert fwd["status"] in ("failed", "local_failed"), fwd


@both_types
def test_coin_movements_balance_after_mutual_close(node_factory_chain, chaind, ctype):
    """CLN's bookkeeper's accounts after a mutual close, on both sides: channel_open - channel_close is what left
    the channel off-chain (push, payment), the peer's output is `to_them` on "external", our output is the
    wallet's deposit, and the wallet's account is listfunds' confirmed outputs."""
    chaind.mine(101)
    l1, l2 = (node_factory_chain.get_node({"plugin": LEDGER}, listen=True) for _ in range(2))
    node_factory_chain.fund_wallet(l1, 1_500_000)
    node_factory_chain.connect(l1, l2)
    l1.rpc.fundchannel(l2.node_id, FUNDING, push_msat=PUSH_MSAT, channel_type=CHANNEL_TYPES[ctype])
    mine(chaind, 6, l1, l2)
    for n in (l1, l2):
        wait_for(lambda: channel(n)["state"] == "CHANNELD_NORMAL", 30, "CHANNELD_NORMAL")
        assert channel(n)["channel_type"]["bits"] == CHANNEL_TYPES[ctype]
    l1.rpc.pay(l2.rpc.invoice(25_000_000, "books", "books")["bolt11"])
    for n in (l1, l2):
        wait_for(lambda: channel(n)["htlcs"] == [], 30, "the payment settled")
    to_us = {n: channel(n)["to_us_msat"] for n in (l1, l2)}
    assert to_us[l1] == FUNDING * 1000 - PUSH_MSAT - 25_000_000 and to_us[l2] == PUSH_MSAT + 25_000_000
    channel_id = channel(l1)["channel_id"]
    result = l1.rpc.close(l2.node_id)
    assert result["type"] == "mutual"
    [close_txid] = result["txids"]
    mine(chaind, 1, l1, l2)
    close = Transaction.parse_hex(chaind.rpc("getrawtransaction", close_txid))
    for n, peer, opened in ((l1, l2, FUNDING * 1000), (l2, l1, 0)):
        funds = lambda: sum(o["amount_msat"] for o in n.rpc.listfunds()["outputs"]  # noqa: E731
                            if o["status"] == "confirmed")
        wait_for(lambda: any(m["primary_tag"] == "channel_close" for m in ledger(n))
                 and balances(ledger(n)).get("wallet") == funds(), 30, "the close's movements")
        books = check_books(ledger(n), lambda t: chaind.rpc("getrawtransaction", t), channel_id, close_txid,
                            close_debit_msat=to_us[n], wallet_msat=funds(), open_credit_msat=opened)
        assert books[channel_id] == opened - to_us[n]
        # The peer's output, and nothing else, is external: what it was paid, less the fee if it opened.
        [theirs] = [m for m in ledger(n) if m["account_id"] == "external"]
        assert theirs["primary_tag"] == "to_them" and theirs["originating_account"] == channel_id
        assert theirs["credit_msat"] == close.outputs[int(theirs["utxo"].split(":")[1])].value * 1000
        fee = FUNDING - sum(o.value for o in close.outputs)   # the opener's (l1's) side pays it
        assert theirs["credit_msat"] == to_us[peer] - (fee * 1000 if peer is l1 else 0)

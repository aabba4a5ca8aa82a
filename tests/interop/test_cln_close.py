"""Commitment feerates and mutual closes between Ampere and Core Lightning. Two channels between the pair, one
opened by each: when the chain's fee estimate rises, each opener sends update_fee and both sides agree on the new
feerate (BOLT 2: only the opener sends update_fee), and payments still flow on both. Then one side closes both
channels mutually, with a `destination` and a `fee_negotiation_step`, once as the opener and once not: the closing
transaction pays the destination the closer's balance less its share of the fee."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ampere.testing.nodes import wait_for

pytestmark = pytest.mark.cln

# BTC/kvB: 30 sat/vB, 1.5 times amp-chaind's default. (With a five-fold jump CLN v26.06 misbehaves on its own: it
# smooths its estimate, which lags for minutes, while its minimum acceptable feerate follows the new estimate at
# once; its closingd then agreed a mutual close at the lagging rate, its lightningd refused that fee, and it
# broadcast its latest commitment under the name of the mutual close.)
NEW_FALLBACK_FEE = "0.0003"


def chans(a, b) -> dict:
    """a's channels with b by the side that opened them."""
    return {c["opener"]: c for c in a.rpc.listpeerchannels(b.node_id)["channels"]}


def restart_chain_with_fee(node_factory, fallbackfee: str) -> None:
    chaind = node_factory.chaind
    chaind.stop()
    chaind.extra_args.append(f"-fallbackfee={fallbackfee}")
    chaind.start()


@pytest.mark.parametrize("closer_kind", ["ampere", "cln"])
def test_update_fee_and_mutual_close(node_factory, closer_kind):
    amp = node_factory.get_node(listen=True)
    cln = node_factory.get_cln_node()
    node_factory.fundchannel(amp, cln, 700_000, announce=False, push_msat=100_000_000)
    node_factory.fundchannel(cln, amp, 700_000, announce=False, push_msat=100_000_000)
    before = {o: c["feerate"]["perkw"] for o, c in chans(amp, cln).items()}

    # The chain's estimate rises (amp-chaind restarted with a higher -fallbackfee; both nodes follow it, and say so
    # while it is down: expected here).
    amp.allow_complaints = ("chainwatch",)
    # CLN logs every funding spend as a "permanent failure", mutual closes included (UNUSUAL): expected here.
    cln.allow_complaints = ("plugin-bcli", "bitcoind", "Funding transaction spent",
                            "Not dropping our unilateral close onchain since we already saw")
    restart_chain_with_fee(node_factory, NEW_FALLBACK_FEE)

    def pay_on_each_channel(tag: str) -> None:
        for payer, payee in ((amp, cln), (cln, amp)):
            for c in chans(payer, payee).values():
                label = f"{tag}-{payer.implementation}-{c['short_channel_id']}"
                inv = payee.rpc.invoice(2_000_000, label, "x")
                route = [{"id": payee.node_id, "channel": c["short_channel_id"], "delay": 30,
                          "amount_msat": 2_000_000}]
                payer.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"],
                                  amount_msat=2_000_000)
                assert payer.rpc.waitsendpay(inv["payment_hash"], 60)["status"] == "complete"

    # CLN sends no update_fee on a channel that has never committed anything (channeld: "wait until something
    # else happens", an LND workaround), and Ampere follows its latest estimate at each block: pay, wait until
    # Ampere has read the new estimate, then mine.
    pay_on_each_channel("before")
    wait_for(lambda: amp.rpc.feerates("perkw")["perkw"]["unilateral_close"] >= 1.4 * before["local"], 60,
             "Ampere reads the new estimate")
    node_factory.mine(1, [amp, cln])

    def raised():
        a, c = chans(amp, cln), chans(cln, amp)
        return all(a[o]["feerate"]["perkw"] > before[o] for o in ("local", "remote")) and \
            a["local"]["feerate"] == c["remote"]["feerate"] and a["remote"]["feerate"] == c["local"]["feerate"]
    # (CLN smooths its estimate: its feerate climbs a little at each poll, each climb an update_fee.)
    wait_for(raised, 90, "each opener's update_fee, agreed by both sides")
    assert chans(amp, cln)["local"]["feerate"]["perkw"] >= 1.4 * before["local"]  # Ampere's: the new estimate
    for x, y in ((amp, cln), (cln, amp)):
        assert all(c["state"] == "CHANNELD_NORMAL" and c["peer_connected"] for c in chans(x, y).values())
    # Payments flow on both channels, each way, on commitments at the new feerates.
    pay_on_each_channel("after")

    # Mutual closes of both channels by the closer, to an address of the chain's wallet.
    closer, other = (amp, cln) if closer_kind == "ampere" else (cln, amp)
    chaind = node_factory.chaind
    wait_for(lambda: all(not c["htlcs"] for x, y in ((amp, cln), (cln, amp)) for c in chans(x, y).values()))
    for role in ("local", "remote"):  # the closer opened the first, its peer the second
        c = chans(closer, other)[role]
        dest = chaind.rpc("getnewaddress")
        r = closer.rpc.close(c["short_channel_id"], destination=dest, fee_negotiation_step="50%")
        assert r["type"] == "mutual"
        txid = r["txids"][0] if "txids" in r else r["txid"]  # CLN v26 answers txids (txid is deprecated)
        wait_for(lambda: txid in chaind.rpc("getrawmempool"), 30, "the closing transaction broadcast")
        tx = chaind.rpc("getrawtransaction", txid, True)
        paid = [int(Decimal(str(o["value"])) * 10**8) for o in tx["vout"]
                if o["scriptPubKey"].get("address") == dest]
        fee = c["total_msat"] // 1000 - sum(int(Decimal(str(o["value"])) * 10**8) for o in tx["vout"])
        share = fee if role == "local" else 0  # BOLT 3: the opener pays the closing fee
        assert paid == [c["to_us_msat"] // 1000 - share], (paid, c["to_us_msat"], fee, role)
        assert fee > 0
    wait_for(lambda: len(chaind.rpc("getrawmempool")) >= 2, 30, "both closing transactions in the mempool")
    node_factory.mine(1, [amp, cln])
    for x, y in ((amp, cln), (cln, amp)):
        wait_for(lambda x=x, y=y: all(c["state"] in ("ONCHAIN", "CLOSED") for c in chans(x, y).values()), 60,
                 f"{x.implementation}: both channels closed on-chain")

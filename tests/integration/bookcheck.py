"""Checks coin_movement (chain_mvt) notifications the way CLN's bookkeeper uses them (imported by file path).

`check_books` validates every movement against CLN's schema, then checks each account against the chain:
- every credit/debit on the channel's and the external account names a real output of that value, and a
  debit's spending_txid really spends it;
- every output of the close is accounted exactly once: credited to the channel (ours, resolved by us) or to
  "external" (`to_them`: the peer's), unless the wallet credits it directly (a mutual close's output of ours) or
  a revoked HTLC output went through the cheat's second-stage transaction, whose output the channel is credited;
- on the channel's account, each output resolved nets to zero (credit when it is ours, debit where our
  transaction took it) so that the account is channel_open - channel_close;
- the wallet's account is exactly the wallet's confirmed funds;
- (option_anchors) our anchor goes "external" at the close; if we sweep it later, the same utxo is debited
  there (spending_txid: our sweep) and the wallet's deposit of that sweep holds it.
"""
from __future__ import annotations

import os
from collections import defaultdict

from ampere.primitives.tx import Transaction
from ampere.testing.schema import ClnValidator, load_schema

_SCHEMA = load_schema(os.path.join("notification", "coin_movement"), "response")


def balances(moves: list[dict]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for m in moves:
        out[m["account_id"]] += m["credit_msat"] - m["debit_msat"]
    return dict(out)


def check_books(moves: list[dict], getrawtransaction, channel_id: str, close_txid: str, *,
                close_debit_msat: int, wallet_msat: int, open_credit_msat: int | None = None) -> dict[str, int]:
    """Assert the books balance (see the module's doc); returns the per-account sums (msat)."""
    assert _SCHEMA is not None
    for m in moves:
        ClnValidator(_SCHEMA).validate(m)
    idx = [m["created_index"] for m in moves]
    assert len(set(idx)) == len(idx), f"created_index repeated: {sorted(idx)}"
    tx_cache: dict[str, Transaction] = {}

    def tx(txid: str) -> Transaction:
        if txid not in tx_cache:
            tx_cache[txid] = Transaction.parse_hex(getrawtransaction(txid))
        return tx_cache[txid]

    chan = [m for m in moves if m["account_id"] == channel_id]
    ext = [m for m in moves if m["account_id"] == "external" and m.get("originating_account") == channel_id]
    opens = [m for m in chan if m["primary_tag"] == "channel_open"]
    [close] = [m for m in chan if m["primary_tag"] == "channel_close"]
    assert close["spending_txid"] == close_txid and close["debit_msat"] == close_debit_msat, close
    assert close["output_count"] == len(tx(close_txid).outputs)
    if open_credit_msat is not None:
        assert [m["credit_msat"] for m in opens] == [open_credit_msat], opens
    per_utxo: dict[str, int] = defaultdict(int)
    for m in chan + ext:
        if m["primary_tag"] in ("channel_open", "channel_close"):
            continue
        txid, vout = m["utxo"].split(":")
        value = tx(txid).outputs[int(vout)].value * 1000
        assert m["output_msat"] == value, m
        assert m["credit_msat"] in (0, value) and m["debit_msat"] in (0, value), m
        if m["debit_msat"]:
            spender = tx(m["spending_txid"])
            assert any(i.prevout.txid[::-1].hex() == txid and i.prevout.vout == int(vout) for i in spender.inputs), m
        if m["account_id"] == channel_id:
            per_utxo[m["utxo"]] += m["credit_msat"] - m["debit_msat"]
    # Each output we resolved nets to zero on the channel's account: it is all open - close.
    assert {u: v for u, v in per_utxo.items() if v} == {}, per_utxo
    # Every output of the close: exactly one of (the channel's credit, the peer's to_them, the wallet's deposit).
    wallet_utxos = {m["utxo"] for m in moves if m["account_id"] == "wallet" and m["credit_msat"]}
    for vout in range(len(tx(close_txid).outputs)):
        u = f"{close_txid}:{vout}"
        seen = [m["primary_tag"] for m in chan if m["utxo"] == u and m["credit_msat"]] + \
            [m["primary_tag"] for m in ext if m["utxo"] == u and m["credit_msat"]] + \
            (["deposit"] if u in wallet_utxos else [])
        if not seen:
            # A revoked HTLC output the cheat spent with its second-stage transaction: followed (and credited) there.
            seen = [m["primary_tag"] + " (second stage)" for m in chan
                    if m["credit_msat"] and m["utxo"][:64] != close_txid
                    and u in {f"{i.prevout.txid[::-1].hex()}:{i.prevout.vout}" for i in tx(m["utxo"][:64]).inputs}]
        assert len(seen) == 1, (u, seen)
    b = balances(moves)
    assert b.get(channel_id, 0) == sum(m["credit_msat"] for m in opens) - close_debit_msat
    assert b.get("wallet", 0) == wallet_msat, (b.get("wallet", 0), wallet_msat)
    return b

"""Chain movements (CLN's `chain_mvt` coin_movement notifications) for a channel's accounts.

CLN's bookkeeper keeps one account per channel (named by the channel id), "wallet" and "external". For a
channel's account, lightningd/onchaind emit (common/coin_mvt.c, onchaind.c):

- `channel_open`: credit of our contribution, when the funding transaction confirms (utxo: the funding output);
- `channel_close`: debit of our balance in the channel, when the funding output's spend is mined
  (spending_txid: the close, output_count: its outputs);
- for each output of the close (or of a second-stage transaction) we resolve: a credit of the output's value
  tagged with how it came to us (`delayed_to_us`, `penalty`, `htlc_timeout`, `htlc_fulfill`, `htlc_tx`,
  `to_wallet`), then, once our transaction spending it is mined, a debit of the same value (`to_wallet` when
  it goes to the wallet, the HTLC's own tag when it goes to a second-stage HTLC transaction); the wallet then
  sees a `deposit` of what our transaction pays it: the difference is the on-chain fee;
- `to_them`: a credit on the "external" account (originating_account: the channel) for each output that is
  the peer's.

So after the close, a channel's account sums to (our contribution - our balance at close), the opposite of
its off-chain (channel_mvt) movements, and every resolved output nets to zero on it.
"""
from __future__ import annotations

import time
from typing import Any

from ampere.primitives.amount import sat_to_msat

__all__ = ["chain_mvt", "emit"]

_COIN_TYPE = {"bitcoin": "bc", "regtest": "bcrt", "testnet": "tb", "testnet4": "tb", "signet": "tb"}


def chain_mvt(node: Any, account: str, tag: str, utxo: tuple[bytes, int], output_sat: int, height: int, *,
              credit_msat: int = 0, debit_msat: int = 0, spending_txid: bytes | None = None,
              peer_id: bytes | None = None, payment_hash: bytes | None = None,
              originating_account: str | None = None, output_count: int | None = None) -> dict:
    """One chain_mvt, as CLN's coin_movement notification carries it (txids in display order)."""
    network = node.network
    m: dict[str, Any] = {
        "version": 2, "coin_type": _COIN_TYPE.get(network, network), "node_id": node.node_id.hex(),
        "type": "chain_mvt", "account_id": account, "credit_msat": credit_msat, "debit_msat": debit_msat,
        "timestamp": int(time.time()), "primary_tag": tag, "extra_tags": [], "tags": [tag],
        "utxo": f"{utxo[0][::-1].hex()}:{utxo[1]}", "output_msat": sat_to_msat(output_sat), "blockheight": height,
    }
    if spending_txid is not None:
        m["spending_txid"] = spending_txid[::-1].hex()
    if isinstance(peer_id, (bytes, bytearray)) and len(peer_id) == 33 and peer_id[0] in (2, 3):
        m["peer_id"] = bytes(peer_id).hex()
    if payment_hash is not None:
        m["payment_hash"] = payment_hash.hex()
    if originating_account is not None:
        m["originating_account"] = originating_account
    if output_count is not None:
        m["output_count"] = output_count
    return m


async def emit(node: Any, movements: list[dict], also: Any = None) -> None:
    """Number `movements` (created_index) in one write (with `also(db)`, the caller's record that they were
    emitted), then notify them: a crash in between loses a notification, never repeats one."""
    if not movements:
        return
    from ampere.node.onchain.wallet import Wallet

    def write(db):
        if also is not None:
            also(db)
        return Wallet._number_movements(db, movements)

    for m in await node.store.write(write):
        node.notify("coin_movement", m)

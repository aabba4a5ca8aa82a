"""Fee bumping for anchor channels (ampere.node.onchain.bumping): a CPFP child through our anchor reaches the
package feerate asked, a replacement keeps the same coins and pays more (RBF), and a zero-fee HTLC transaction
gets wallet inputs and change without touching input 0 / output 0 (what the peer signed
SIGHASH_SINGLE|SIGHASH_ANYONECANPAY). Weights, amounts and coin choice only: the signatures are proven by
amp-chaind mining these transactions in tests/integration/test_anchors.py."""
from __future__ import annotations

import asyncio

import coincurve

from ampere.ln.channel.scripts import anchor_script
from ampere.node.onchain.bumping import cpfp_child, fund_htlc_tx, package_feerate
from ampere.node.onchain.wallet import Output, scripts_for_pubkey
from ampere.primitives.script import p2wsh
from ampere.primitives.tx import OutPoint, Transaction, TxIn, TxOut
from ampere.primitives.bip32 import ExtKey
from ampere.node.onchain.wallet import Wallet
from ampere.node.signer.signer import LocalSigner


class FakeWallet:
    """The wallet surface bumping uses: confirmed coins, keys, fresh addresses, reservations."""

    def __init__(self, values: list[int]) -> None:
        self._signer = LocalSigner(b"\x05" * 32)  # signs the coins, as the real wallet's signer does
        self._base = ExtKey.from_base58(self._signer.wallet_xpub("regtest"))
        self.coins = [Output(bytes([0xA0 + i]) * 32, 0, v, scripts_for_pubkey(self.pubkey(i))[1], i, blockheight=1)
                      for i, v in enumerate(values)]
        self.next = len(values)
        self.reserved: list = []

    def spendable(self, minconf: int) -> list[Output]:
        return [c for c in self.coins if c not in self.reserved]

    def pubkey(self, idx: int) -> bytes:
        return self._base.child(idx).pubkey

    sign_inputs = Wallet.sign_inputs

    async def new_address(self, addrtype: str):
        self.next += 1
        return self.next - 1, {}

    async def set_reservation(self, outs, til) -> None:
        self.reserved += list(outs)


FUNDING_KEY = coincurve.PrivateKey(b"\x07" * 32)


def commitment(fee: int) -> tuple[Transaction, int]:
    ws = anchor_script(FUNDING_KEY.public_key.format())
    outs = [TxOut(330, p2wsh(ws)), TxOut(330, p2wsh(b"x")), TxOut(500_000 - 660 - fee, p2wsh(b"y"))]
    return Transaction(2, [TxIn(OutPoint(b"\x11" * 32, 0), b"", 0x80000000)], outs, 0x20000000), 500_000


def sign_anchor(tx, i, ws, amount) -> bytes:
    return b"\x30" + b"\x00" * 70 + b"\x01"   # a signature-sized placeholder: only sizes and amounts matter here


def test_cpfp_child_reaches_the_package_feerate_and_replaces_with_the_same_coins():
    parent, _ = commitment(fee=1_800)
    wallet = FakeWallet([40_000, 15_000])
    ws = anchor_script(FUNDING_KEY.public_key.format())
    child, fee, coins = asyncio.run(cpfp_child(wallet, parent, 1_800, 0, ws, 12_500, sign_anchor, 100))
    assert child.inputs[0].prevout == OutPoint(parent.txid(), 0) and child.inputs[0].witness[-1] == ws
    assert [c.value for c in coins] == [40_000]          # the largest coin is enough
    assert sum(o.value for o in child.outputs) == 330 + 40_000 - fee
    rate = package_feerate(parent, 1_800, child, fee)
    assert 12_500 <= rate < 12_600, rate
    assert child.locktime == 100 and all(i.sequence == 0xFFFFFFFD for i in child.inputs)   # RBF signalled
    # A replacement at a higher rate spends the same coin (it conflicts with the first child) and pays more.
    child2, fee2, coins2 = asyncio.run(cpfp_child(wallet, parent, 1_800, 0, ws, 25_000, sign_anchor, 101, coins))
    assert coins2[0] is coins[0] and fee2 > fee and package_feerate(parent, 1_800, child2, fee2) >= 25_000
    # Not enough in the wallet: None (the caller logs it and keeps what it has).
    assert asyncio.run(cpfp_child(FakeWallet([1_000]), parent, 1_800, 0, ws, 12_500, sign_anchor, 100)) is None


def test_htlc_tx_keeps_its_signed_input_and_output():
    htlc = Transaction(2, [TxIn(OutPoint(b"\x22" * 32, 3), b"", 1)], [TxOut(50_000, p2wsh(b"delayed"))], 0)
    wallet = FakeWallet([30_000])
    seen = []

    def finish(tx: Transaction) -> list[bytes]:
        seen.append(len(tx.inputs))
        return [b"", b"\x30" * 72, b"\x30" * 72, b"\x00" * 32, b"\x51" * 140]

    tx, fee, coins = asyncio.run(fund_htlc_tx(wallet, htlc, 50_000, p2wsh(b"htlc"), finish, 5_000, 200))
    assert tx.inputs[0].prevout == htlc.inputs[0].prevout and tx.inputs[0].sequence == 1
    assert tx.outputs[0] == htlc.outputs[0] and tx.locktime == htlc.locktime
    assert len(tx.inputs) == 2 and tx.outputs[1].value == 30_000 - fee
    assert seen[-1] == 2                                  # our signature is made over the final transaction
    assert fee * 1000 // tx.weight() >= 5_000 - 10


def _part(n: int, value: int, locktime: int, seen: list):
    """A zero-fee HTLC transaction (1 input, 1 output) of commitment output n, as the peer signed it."""
    from ampere.node.onchain.bumping import HtlcPart
    tx = Transaction(2, [TxIn(OutPoint(b"\x33" * 32, n), b"", 1)], [TxOut(value, p2wsh(bytes([n]) * 3))], locktime)

    def finish(final: Transaction, i: int) -> list[bytes]:
        seen.append((n, i, len(final.inputs)))
        return [b"", b"\x30" * 72, b"\x30" * 71, b"", b"\x51" * 133]   # a timeout's witness, signature-sized
    return HtlcPart(tx, value, p2wsh(b"htlc%d" % n), finish)


def test_htlc_txs_aggregate_their_pairs_at_matching_indexes_then_wallet_inputs_and_one_change():
    from ampere.node.onchain.bumping import fund_htlc_txs, htlc_txs_weight, part_weight
    seen: list = []
    parts = [_part(4, 30_000, 150, seen), _part(2, 20_000, 150, seen), _part(7, 25_000, 150, seen)]
    wallet = FakeWallet([9_000, 50_000])
    tx, fee, coins = asyncio.run(fund_htlc_txs(wallet, parts, 12_500, 200))
    # BOLT #3 SIGHASH_SINGLE|SIGHASH_ANYONECANPAY: input i and output i are the peer-signed pair i.
    assert [i.prevout for i in tx.inputs[:3]] == [p.tx.inputs[0].prevout for p in parts]
    assert [i.sequence for i in tx.inputs[:3]] == [1, 1, 1] and tx.locktime == 150 and tx.version == 2
    assert tx.outputs[:3] == [p.tx.outputs[0] for p in parts]
    assert [c.value for c in coins] == [50_000] and tx.inputs[3].prevout == coins[0].outpoint
    assert len(tx.inputs) == 4 and len(tx.outputs) == 4                  # one change output, last
    # Our signatures are made over the final transaction, each at its own index.
    assert sorted((n, i) for n, i, k in seen if k == 4) == [(2, 1), (4, 0), (7, 2)]
    # The fee is exact: what the inputs bring minus what the outputs take, at the target rate for the weight.
    spent = 30_000 + 20_000 + 25_000 + 50_000
    assert spent - sum(o.value for o in tx.outputs) == fee
    est = htlc_txs_weight([part_weight(p) for p in parts], coins)
    assert fee == (12_500 * est + 999) // 1000
    assert 0 <= est - tx.weight() <= 3 * 2 + 4, (est, tx.weight())       # the estimate never falls short
    assert fee * 1000 // tx.weight() >= 12_500
    assert tx.outputs[3].value == 50_000 - fee
    print(f"3 HTLC-timeouts aggregated: {tx.weight()} WU (estimate {est}), 1 wallet input, fee {fee} sat "
          f"at 12500perkw")


def test_htlc_txs_replacement_pays_bip125_and_keeps_its_coins_and_limits():
    import pytest
    from ampere.node.onchain.bumping import HtlcFeeTooHigh, fund_htlc_txs, htlc_txs_weight, part_weight
    seen: list = []
    parts = [_part(0, 30_000, 150, seen), _part(1, 20_000, 150, seen)]
    wallet = FakeWallet([40_000, 60_000])
    tx, fee, coins = asyncio.run(fund_htlc_txs(wallet, parts, 2_000, 200))
    # The replacement: same coins (it conflicts with the first one through them too), the old fee plus the
    # incremental relay fee for its own size even when the new rate alone would ask less (BIP125 rules 3-4).
    tx2, fee2, coins2 = asyncio.run(fund_htlc_txs(wallet, parts, 2_100, 201, keep=coins, replaces_fee=fee))
    assert [c.key for c in coins2] == [c.key for c in coins]
    est2 = htlc_txs_weight([part_weight(p) for p in parts], coins2)
    assert fee2 == fee + (250 * est2 + 999) // 1000 > (2_100 * est2 + 999) // 1000
    assert fee2 - fee >= (tx2.weight() + 3) // 4          # 1 sat/vB of its own size on top
    assert sum(c.value for c in coins2) + 50_000 - sum(o.value for o in tx2.outputs) == fee2
    # Never more in fees than the HTLCs are worth (CLN: "Not spending ... in fees to get an HTLC worth ...").
    with pytest.raises(HtlcFeeTooHigh):
        asyncio.run(fund_htlc_txs(FakeWallet([200_000]), parts, 50_000, 200, max_fee=50_000))
    # nLockTime is under the peer's signature: an HTLC-success (0) and an HTLC-timeout (its expiry) never share
    # a transaction.
    with pytest.raises(ValueError):
        asyncio.run(fund_htlc_txs(wallet, [_part(0, 30_000, 0, seen), _part(1, 20_000, 150, seen)], 2_000, 200))
    assert asyncio.run(fund_htlc_txs(FakeWallet([500]), parts, 2_000, 200)) is None


def test_htlc_tx_funded_by_our_anchor_alone_when_the_wallet_is_empty():
    """No coin in the wallet: our anchor output of the confirmed commitment is the fee input (BOLT #3
    to_local_anchor, "<local_sig>": its owner needs no wait), all of its 330 sat, no change output (dust)."""
    from ampere.node.onchain.bumping import AnchorInput, fund_htlc_tx_with_anchor
    parent, _ = commitment(fee=1_800)
    ws = anchor_script(FUNDING_KEY.public_key.format())
    seen: list = []
    part = _part(3, 40_000, 0, seen)
    signed: list = []

    def sign(tx, i, script, value) -> bytes:
        signed.append((i, script, value, len(tx.inputs), len(tx.outputs)))
        return sign_anchor(tx, i, script, value)

    anchor = AnchorInput(OutPoint(parent.txid(), 0), 330, ws, sign)
    tx, fee = fund_htlc_tx_with_anchor(part, anchor, 253)
    # The peer-signed pair stays at index 0 (SIGHASH_SINGLE|ANYONECANPAY), the anchor is input 1, nothing else.
    assert tx.inputs[0].prevout == part.tx.inputs[0].prevout and tx.inputs[0].sequence == 1
    assert tx.outputs == part.tx.outputs and tx.locktime == part.tx.locktime
    assert len(tx.inputs) == 2 and tx.inputs[1].prevout == OutPoint(parent.txid(), 0)
    assert tx.inputs[1].sequence == 0xFFFFFFFD and tx.inputs[1].witness[-1] == ws
    assert fee == 330 == 40_000 + 330 - sum(o.value for o in tx.outputs)
    # Both of our signatures are made over the final transaction (two inputs, one output).
    assert signed == [(1, ws, 330, 2, 1)] and (3, 0, 2) in seen
    rate = fee * 1000 // tx.weight()
    assert 253 <= rate < 400, (rate, tx.weight())
    # Below the relay floor it is not built (the caller logs that the wallet cannot pay, and waits for coins).
    assert fund_htlc_tx_with_anchor(part, anchor, rate + 5) is None

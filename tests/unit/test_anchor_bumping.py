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

    async def _set_reservation(self, outs, til) -> None:
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

"""The faucet wallet of amp-chaind: keys of its own (persisted in the index database), coins found
in the UTXO set and the mempool, and sendtoaddress.

Like Bitcoin Core's wallet it spends confirmed mature coins and its own unconfirmed change, signals
replaceability (nSequence 0xfffffffd) and sets an anti-fee-sniping locktime (the tip height).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import coincurve

from ampere.chain.regtest.mempool import COINBASE_MATURITY, RejectError, dust_threshold, fee_for
from ampere.primitives.script import p2tr, p2wpkh, script_to_address
from ampere.primitives.tx import (
    OutPoint, Transaction, TxIn, TxOut, sign_input_p2tr_keypath, sign_input_p2wpkh, taproot_output_key,
)

if TYPE_CHECKING:
    from ampere.chain.regtest.node import ChainNode

NETWORK = "regtest"
RBF_SEQUENCE = 0xFFFFFFFD
_CHANGE_PLACEHOLDER = bytes([0, 20]) + b"\x00" * 20


class WalletError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class WalletCoin:
    txid: bytes
    vout: int
    value: int
    spk: bytes
    confirmations: int  # 0 for mempool outputs
    coinbase: bool
    trusted: bool  # confirmed, or unconfirmed change of our own

    @property
    def mature(self) -> bool:
        # Bitcoin Core's wallet waits one block more than consensus (GetBlocksToMaturity).
        return not self.coinbase or self.confirmations >= COINBASE_MATURITY + 1


class Wallet:
    def __init__(self, node: "ChainNode"):
        self.node = node
        self.keys: dict[bytes, tuple[coincurve.PrivateKey, str, str]] = {}
        for spk, priv, address, kind in node.store.wallet_keys():
            self.keys[spk] = (coincurve.PrivateKey(priv), address, kind)

    def new_address(self, address_type: str = "bech32", label: str = "") -> str:
        priv = coincurve.PrivateKey()
        if address_type == "bech32":
            spk = p2wpkh(priv.public_key.format(compressed=True))
        elif address_type == "bech32m":
            spk = p2tr(taproot_output_key(priv))
        else:
            raise WalletError(-5, f"Unknown address type '{address_type}'")
        address = script_to_address(spk, NETWORK)
        self.node.store.add_wallet_key(spk, priv.secret, address, address_type, label)
        self.keys[spk] = (priv, address, address_type)
        return address

    def is_mine(self, spk: bytes) -> bool:
        return spk in self.keys

    def address_of(self, spk: bytes) -> str | None:
        k = self.keys.get(spk)
        return k[1] if k else None

    # -- coins --
    def coins(self) -> list[WalletCoin]:
        """All wallet coins not spent in the mempool: confirmed ones and mempool outputs."""
        node = self.node
        tip = node.tip_height()
        mempool = node.mempool
        out: list[WalletCoin] = []
        for c in node.store.coins_for_spks(list(self.keys)):
            if (c.txid, c.vout) in mempool.spenders:
                continue
            out.append(WalletCoin(c.txid, c.vout, c.value, c.spk, tip - c.height + 1, c.coinbase, True))
        for txid, e in mempool.entries.items():
            from_me = all(self.is_mine(o.script_pubkey) for o in e.spent)
            for n, o in enumerate(e.tx.outputs):
                if self.is_mine(o.script_pubkey) and (txid, n) not in mempool.spenders:
                    out.append(WalletCoin(txid, n, o.value, o.script_pubkey, 0, False, from_me))
        return out

    def balances(self) -> dict[str, int]:
        trusted = pending = immature = 0
        for c in self.coins():
            if not c.mature:
                immature += c.value
            elif c.trusted:
                trusted += c.value
            else:
                pending += c.value
        return {"trusted": trusted, "untrusted_pending": pending, "immature": immature}

    # -- spending --
    def send(self, spk: bytes, amount: int, fee_rate_sat_kvb: int, subtract_fee: bool = False,
             replaceable: bool = True, extra: list[TxOut] | None = None) -> Transaction:
        """Build, sign and submit a payment; returns the transaction (in the mempool).  `extra`: more
        outputs paid in the same transaction (sendmany), after the first."""
        self._extra = list(extra or [])
        if amount <= 0:
            raise WalletError(-3, "Invalid amount for send")
        candidates = [c for c in self.coins() if c.mature and c.trusted]
        # Confirmed coins first, largest first, then our own unconfirmed change.
        candidates.sort(key=lambda c: (c.confirmations == 0, -c.value))
        chosen: list[WalletCoin] = []
        tx = None
        for c in candidates:
            chosen.append(c)
            tx = self._try_build(chosen, spk, amount, fee_rate_sat_kvb, subtract_fee, replaceable)
            if tx is not None:
                break
        if tx is None:
            raise WalletError(-6, "Insufficient funds")
        try:
            self.node.accept(tx)
        except RejectError as e:
            raise WalletError(-4, f"Transaction rejected: {e.message}") from None
        return tx

    def _try_build(self, coins: list[WalletCoin], spk: bytes, amount: int, rate: int, subtract_fee: bool,
                   replaceable: bool) -> Transaction | None:
        """A signed transaction paying `amount` from `coins`, or None if they are not enough."""
        extra = getattr(self, "_extra", [])
        total = sum(c.value for c in coins) - sum(o.value for o in extra)
        seq = RBF_SEQUENCE if replaceable else 0xFFFFFFFE
        inputs = [TxIn(OutPoint(c.txid, c.vout), b"", seq) for c in coins]
        locktime = max(self.node.tip_height(), 0)
        # With a change output (sized with a P2WPKH placeholder).
        tx = Transaction(2, inputs, [TxOut(amount, spk)] + [TxOut(o.value, o.script_pubkey) for o in extra]
                         + [TxOut(0, _CHANGE_PLACEHOLDER)], locktime)
        fee = fee_for(rate, self._signed_vsize(tx, coins))
        recipient = amount - fee if subtract_fee else amount
        change = total - amount if subtract_fee else total - amount - fee
        if change >= dust_threshold(TxOut(change, _CHANGE_PLACEHOLDER)):
            self._check_recipient(recipient, spk)
            tx.outputs[0].value = recipient
            tx.outputs[-1] = TxOut(change, self._change_spk())
            self._sign(tx, coins)
            return tx
        # Without change: what is left over (less than dust) goes to the fee.
        tx = Transaction(2, [TxIn(i.prevout, b"", seq) for i in inputs],
                         [TxOut(amount, spk)] + [TxOut(o.value, o.script_pubkey) for o in extra], locktime)
        fee = fee_for(rate, self._signed_vsize(tx, coins))
        recipient = amount - fee if subtract_fee else amount
        if total - recipient < fee:
            return None
        self._check_recipient(recipient, spk)
        tx.outputs[0].value = recipient
        self._sign(tx, coins)
        return tx

    @staticmethod
    def _check_recipient(value: int, spk: bytes) -> None:
        if value < dust_threshold(TxOut(value, spk)):
            raise WalletError(-4, "The transaction amount is too small to pay the fee" if value > 0
                              else "The transaction amount is too small to send after the fee has been deducted")

    def _change_spk(self) -> bytes:
        address = self.new_address("bech32", "")
        return next(spk for spk, (_, a, _) in self.keys.items() if a == address)

    def _signed_vsize(self, tx: Transaction, coins: list[WalletCoin]) -> int:
        """The size once signed, counting every ECDSA signature at its largest (72 bytes + sighash byte),
        as Bitcoin Core's wallet does: a DER signature is 70-72 bytes, so the final signature (over the
        final amounts) may be longer than the trial one, and a fee sized on the trial would then miss the
        minimum relay fee by a satoshi."""
        trial = tx.copy()
        self._sign(trial, coins)
        short = sum(73 - len(i.witness[0]) for i, c in zip(trial.inputs, coins)
                    if self.keys[c.spk][2] != "bech32m")
        return -(-(trial.weight() + short) // 4)

    def _sign(self, tx: Transaction, coins: list[WalletCoin]) -> None:
        spent = [TxOut(c.value, c.spk) for c in coins]
        for i, c in enumerate(coins):
            priv, _, kind = self.keys[c.spk]
            if kind == "bech32m":
                sign_input_p2tr_keypath(tx, i, priv, spent)
            else:
                sign_input_p2wpkh(tx, i, priv, c.value)

"""amp-chaind fixtures: one daemon per test module, plus a key of the test's own with mature coins."""
from __future__ import annotations

from dataclasses import dataclass

import coincurve
import pytest

from ampere.primitives.script import p2wpkh, script_to_address
from ampere.primitives.tx import OutPoint, Transaction, TxIn, TxOut, sign_input_p2wpkh
from ampere.testing.chain import ChainD


@pytest.fixture(scope="module")
def chaind(tmp_path_factory):
    node = ChainD(tmp_path_factory.mktemp("chain"))
    node.start()
    yield node
    node.stop()


@dataclass
class Funded:
    """Coinbase outputs paying a key the test holds (so it can sign good and bad spends)."""
    key: coincurve.PrivateKey
    spk: bytes
    address: str
    coins: list[tuple[OutPoint, int]]  # (outpoint, value) of mature coinbase outputs

    def spend(self, coin: tuple[OutPoint, int], outputs: list[TxOut], sign: bool = True,
              sequence: int = 0xFFFFFFFD, version: int = 2, locktime: int = 0) -> Transaction:
        tx = Transaction(version, [TxIn(coin[0], b"", sequence)], outputs, locktime)
        if sign:
            sign_input_p2wpkh(tx, 0, self.key, coin[1])
        return tx


def fund_key(chain: ChainD, n_coins: int) -> Funded:
    """Mine `n_coins` blocks to a fresh key, then 100 more so they mature."""
    key = coincurve.PrivateKey()
    spk = p2wpkh(key.public_key.format())
    address = script_to_address(spk, "regtest")
    hashes = chain.rpc("generatetoaddress", n_coins, address)
    coins = []
    for h in hashes:
        block = chain.rpc("getblock", h, 2)
        cb = block["tx"][0]
        value = int(cb["vout"][0]["value"] * 100_000_000)
        coins.append((OutPoint.from_hex(cb["txid"], 0), value))
    chain.mine(100)
    return Funded(key, spk, address, coins)


@pytest.fixture(scope="module")
def funder():
    """The fund_key helper, as a fixture (test modules here are not a package)."""
    return fund_key

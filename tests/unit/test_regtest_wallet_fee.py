"""amp-chaind's wallet sizes a transaction's fee before the final signatures exist: the size it counts must
never be below the signed transaction's, or a send at the minimum relay fee is refused by a satoshi
("min relay fee not met, 140 < 141", seen in pyln-testing's join_nodes)."""
import coincurve

from ampere.chain.regtest.wallet import Wallet, WalletCoin
from ampere.primitives.script import p2wpkh
from ampere.primitives.tx import OutPoint, Transaction, TxIn, TxOut


def test_counted_size_covers_every_final_signature():
    priv = coincurve.PrivateKey(b"\x11" * 32)
    spk = p2wpkh(priv.public_key.format(compressed=True))
    wallet = Wallet.__new__(Wallet)
    wallet.keys = {spk: (priv, "addr", "bech32")}
    coins = [WalletCoin(bytes([i]) * 32, i, 10**8, spk, 6, False, True) for i in range(3)]
    for n_in in (1, 3):
        used = coins[:n_in]
        for value in range(1000, 1300):
            tx = Transaction(2, [TxIn(OutPoint(c.txid, c.vout), b"", 0xFFFFFFFD) for c in used],
                             [TxOut(value, spk), TxOut(0, spk)], 0)
            counted = wallet._signed_vsize(tx, used)
            final = tx.copy()
            final.outputs[1] = TxOut(n_in * 10**8 - value - counted, spk)
            wallet._sign(final, used)
            assert final.vsize() <= counted, (n_in, value)

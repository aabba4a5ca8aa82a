"""amp-chaind benchmark: blocks mined + validated per second, sendrawtransaction calls per second.

    .venv/bin/python bench/bench_chaind.py
"""
from __future__ import annotations

import sys
import time

import coincurve
from common import chaind

from ampere.primitives.script import p2wpkh, script_to_address
from ampere.primitives.tx import OutPoint, Transaction, TxIn, TxOut, sign_input_p2wpkh

N_BLOCKS = 1000
N_TXS = 500


def main() -> int:
    with chaind() as chain:
        key = coincurve.PrivateKey()
        spk = p2wpkh(key.public_key.format())
        addr = script_to_address(spk, "regtest")
        t0 = time.perf_counter()
        hashes = chain.rpc("generatetoaddress", N_BLOCKS, addr)
        dt = time.perf_counter() - t0
        print(f"blocks mined+validated: {N_BLOCKS} in {dt:.2f}s = {N_BLOCKS / dt:.0f} blocks/s")

        # One mature 50 BTC coinbase, split into a chain of spends (each spends the previous change).
        cb = chain.rpc("getblock", hashes[0], 2)["tx"][0]
        prev = (OutPoint.from_hex(cb["txid"], 0), int(cb["vout"][0]["value"] * 100_000_000))
        raws = []
        for _ in range(N_TXS):
            value = prev[1] - 200
            tx = Transaction(2, [TxIn(prev[0], b"", 0xFFFFFFFD)], [TxOut(value, spk)])
            sign_input_p2wpkh(tx, 0, key, prev[1])
            raws.append(tx.serialize().hex())
            prev = (OutPoint(tx.txid(), 0), value)
        t0 = time.perf_counter()
        for raw in raws:
            chain.rpc("sendrawtransaction", raw)
        dt = time.perf_counter() - t0
        print(f"sendrawtransaction: {N_TXS} in {dt:.2f}s = {N_TXS / dt:.0f} calls/s "
              f"(chained spends, script-verified by libbitcoinkernel)")
        t0 = time.perf_counter()
        chain.mine(1)
        print(f"mining a block with {N_TXS} transactions: {time.perf_counter() - t0:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""BOLT 11 codec speed: encode+sign and decode (with key recovery, and with an `n` field) per second.

    .venv/bin/python bench/bench_invoice.py [--seconds 2]

For reference, the issue quotes Core Lightning on the same machine at 660 `invoice` RPCs/s and
3,900 `decode` RPCs/s (whole RPCs, database included); these figures are the pure codec only.
"""

from __future__ import annotations

import argparse
import os
import time

import coincurve

from ampere.ln.invoice import Invoice, RouteHop, decode, encode, to_decode_json
from ampere.primitives.amount import Msat


def _rate(fn, seconds: float) -> tuple[float, int]:
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            fn()
        n += 50
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = ap.parse_args()

    key = coincurve.PrivateKey(os.urandom(32))
    hop_key = coincurve.PrivateKey(os.urandom(32)).public_key.format()
    # Shaped like what CLN's `invoice` writes: amount, description, secret, expiry, c, a route hint, features.
    inv = Invoice(currency="bcrt", timestamp=int(time.time()), payment_hash=os.urandom(32),
                  payment_secret=os.urandom(32), amount_msat=Msat(200_000), description="l22 description",
                  expiry=604800, min_final_cltv_expiry=5, features=(1 << 8) | (1 << 14) | (1 << 17) | (1 << 25),
                  route_hints=[[RouteHop(hop_key, (118 << 40) | (1 << 16), 1, 10, 6)]])
    text = encode(inv, key)
    inv_n = Invoice(**{**inv.__dict__, "n_field": True, "field_order": None})
    text_n = encode(inv_n, key)
    assert decode(text).payee == decode(text_n).payee == key.public_key.format()

    rows = [
        ("encode+sign", lambda: encode(inv, key)),
        ("decode (key recovery)", lambda: decode(text)),
        ("decode (n field, verify)", lambda: decode(text_n)),
        ("decode + decode JSON", lambda: to_decode_json(decode(text))),
    ]
    print(f"invoice: {len(text)} chars; {args.seconds:g}s per figure")
    for name, fn in rows:
        rate, n = _rate(fn, args.seconds)
        print(f"  {name:<26} {rate:10,.0f} /s   ({1e6 / rate:7.1f} us each, {n} runs)")


if __name__ == "__main__":
    main()

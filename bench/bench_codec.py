"""Benchmark: encode and decode of the hot channel messages (issue 18 item 3).

update_add_htlc (with its 1366-byte onion), commitment_signed with 10 HTLC signatures, revoke_and_ack
and update_fulfill_htlc, through the public entry points (`encode_message` / `decode_message`).
Prints microseconds of CPU time per operation (process time, best of several rounds, so load from
other processes counts less); not a test.  Run: .venv/bin/python bench/bench_codec.py [rounds]
"""

from __future__ import annotations

import sys
import time

from coincurve import PrivateKey

from ampere.wire.codec import decode_message, encode_message
from ampere.wire.messages import (
    CommitmentSigned,
    RevokeAndAck,
    UpdateAddHtlc,
    UpdateFulfillHtlc,
)

N = 2000


def _sig(i: int) -> bytes:
    key = PrivateKey(bytes([i + 1]) * 32)
    return key.sign_recoverable(bytes(32), hasher=None)[:64]


def samples() -> dict[str, object]:
    cid = bytes(range(32))
    point = PrivateKey(b"\x07" * 32).public_key.format()
    return {
        "update_add_htlc": UpdateAddHtlc(channel_id=cid, id=42, amount_msat=100_000_000, payment_hash=bytes(32),
                                         cltv_expiry=800_000, onion_routing_packet=bytes(range(256)) * 5
                                         + bytes(86)),
        "commitment_signed (10 htlcs)": CommitmentSigned(channel_id=cid, signature=_sig(0),
                                                         htlc_signature=[_sig(i) for i in range(1, 11)]),
        "revoke_and_ack": RevokeAndAck(channel_id=cid, per_commitment_secret=bytes(32),
                                       next_per_commitment_point=point),
        "update_fulfill_htlc": UpdateFulfillHtlc(channel_id=cid, id=42, payment_preimage=bytes(32)),
    }


def _best_us(fn, arg, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(N):
            fn(arg)
        best = min(best, (time.process_time() - start) / N)
    return best * 1e6


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    for name, msg in samples().items():
        raw = encode_message(msg)
        assert decode_message(raw) == msg
        enc = _best_us(encode_message, msg, rounds)
        dec = _best_us(decode_message, raw, rounds)
        print(f"{name:30s} {len(raw):5d} bytes   encode {enc:7.1f} us   decode {dec:7.1f} us")


if __name__ == "__main__":
    main()

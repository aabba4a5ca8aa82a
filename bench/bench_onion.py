"""Benchmark: BOLT 4 onions built and peeled per second, and the failure-message round trip.

Prints figures; not a timed test.  Run: .venv/bin/python bench/bench_onion.py [seconds-per-figure]
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

from coincurve import PrivateKey

from ampere.ln.onion import create_onion, peel_onion
from ampere.ln.onion_failure import create_failure_packet, decode_failure, encode_failure_message, wrap_failure
from ampere.ln.onion_payload import final_hop_payload, forward_hop_payload


def _rate(label: str, fn, seconds: float) -> float:
    fn()  # warm up
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        fn()
        count += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    rate = count / (now - start)
    print(f"{label:<48} {rate:>10,.0f}/s   ({1e6 / rate:,.1f} us each)")
    return rate


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    privs = [PrivateKey(hashlib.sha256(b"bench-node-%d" % i).digest()) for i in range(20)]
    payment_hash = hashlib.sha256(b"bench").digest()
    secret = os.urandom(32)

    def route(n: int) -> list[tuple[bytes, bytes]]:
        hops = [(p.public_key.format(), forward_hop_payload(1_000_000 - i, 800_000 - 40 * i, i + 1)) for i, p in enumerate(privs[: n - 1])]
        hops.append((privs[n - 1].public_key.format(), final_hop_payload(900_000, 800_000, payment_secret=secret)))
        return hops

    direct, five, twenty = route(1), route(5), route(20)
    session = os.urandom(32)
    packet1, _ = create_onion(session, direct, payment_hash)
    packet5, secrets5 = create_onion(session, five, payment_hash)

    print(f"BOLT 4 onion benchmark ({seconds:g} s per figure, one core)")
    _rate("create_onion, 1 hop (direct payment)", lambda: create_onion(os.urandom(32), direct, payment_hash), seconds)
    _rate("create_onion, 5 hops", lambda: create_onion(os.urandom(32), five, payment_hash), seconds)
    _rate("create_onion, 20 hops", lambda: create_onion(os.urandom(32), twenty, payment_hash), seconds)
    _rate("peel_onion, final hop", lambda: peel_onion(privs[0].secret, packet1, payment_hash), seconds)
    priv0 = privs[0]
    _rate("peel_onion, forwarding hop", lambda: peel_onion(priv0, packet5, payment_hash), seconds)

    message = encode_failure_message("incorrect_or_unknown_payment_details", htlc_msat=900_000, height=800_000)

    def failure_round_trip() -> None:
        packet = create_failure_packet(secrets5[4], message)
        for s in reversed(secrets5[:4]):
            packet = wrap_failure(s, packet)
        decode_failure(secrets5, packet)

    _rate("create_failure_packet", lambda: create_failure_packet(secrets5[4], message), seconds)
    _rate("wrap_failure (one hop)", lambda: wrap_failure(secrets5[0], packet5[:292]), seconds)
    reply = create_failure_packet(secrets5[4], message)
    for s in reversed(secrets5[:4]):
        reply = wrap_failure(s, reply)
    _rate("decode_failure, 5-hop route (27 rounds)", lambda: decode_failure(secrets5, reply), seconds)
    _rate("failure create + 4 wraps + decode, 5 hops", failure_round_trip, seconds)


if __name__ == "__main__":
    main()

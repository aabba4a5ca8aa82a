"""BOLT #8 in-process figures: full handshakes per second, and encrypt+decrypt round trips per second
of a small (ping-sized) and a large message.  Prints figures; not a timed test."""

from __future__ import annotations

import os
import time

import coincurve

from ampere.wire.noise import InitiatorHandshake, ResponderHandshake


def handshake(a_priv: bytes, b_priv: bytes, b_pub: bytes):
    initiator = InitiatorHandshake(a_priv, b_pub)
    responder = ResponderHandshake(b_priv)
    act3, a = initiator.process_act_two(responder.process_act_one(initiator.act_one()))
    return a, responder.process_act_three(act3)


def rate(fn, seconds: float = 1.0) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            fn()
        n += 50
    return n / elapsed


def main() -> None:
    a_priv, b_priv = os.urandom(32), os.urandom(32)
    b_pub = coincurve.PrivateKey(b_priv).public_key.format()
    print(f"handshakes/s (both sides, in-process):      {rate(lambda: handshake(a_priv, b_priv, b_pub)):10.0f}")
    a, b = handshake(a_priv, b_priv, b_pub)
    for size in (8, 1400, 65535):
        msg = os.urandom(size)
        print(f"encrypt+decrypt round trips/s ({size:5d} B):   {rate(lambda: b.decrypt_frame(a.encrypt_message(msg))):10.0f}")


if __name__ == "__main__":
    main()

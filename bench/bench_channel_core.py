"""HTLC add + fulfill round trips per second through the channel core (in process, no I/O).

Two cores share a channel over in-memory queues (`ampere.testing.channel_pair`); messages go through the wire
codec; the stand-in "persist" keeps every ChannelUpdate the core asks to store (as a database append would,
without the fsync). One round trip = A offers an HTLC, both sides commit and revoke, B fulfills, both
commit and revoke again: 2 update messages, 4 commitment_signed, 4 revoke_and_ack.

    .venv/bin/python bench/bench_channel_core.py [--seconds 5] [--batch 1] [--no-wire]

--batch N offers N HTLCs before each commit round (commit batching: they share one signature round).
The daemon-level benchmark (sockets, SQLite) comes with the runtime.
"""
from __future__ import annotations

import argparse
import time

from ampere.ln.channel import core
from ampere.testing.channel_pair import Pair
from ampere.primitives.crypto import sha256


def run(seconds: float, batch: int, wire: bool) -> None:
    pair = Pair.open(funding_sat=16_000_000, wire=wire)
    a, b = pair.a, pair.b
    stored = []
    for p in (a, b):
        p.keep_updates = True
        p.updates = stored
    onion = bytes(1366)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        ids = []
        for _ in range(batch):
            pre = n.to_bytes(32, "big")
            ids.append((a.ch.next_htlc_id_local, pre))
            a.apply(core.offer_htlc(a.ch, a.signer, 1_000_000, sha256(pre), 800, onion))
            n += 1
        pair.pump()
        for hid, pre in ids:
            b.apply(core.fulfill_htlc(b.ch, b.signer, hid, pre))
        pair.pump()
        # keep memory flat: the runtime would have written these out
        if len(stored) > 10_000:
            stored.clear()
    elapsed = time.perf_counter() - start
    assert not a.ch.htlcs and not b.ch.htlcs
    size = sum(len(u.snapshot) for u in stored[-100:]) / max(1, len(stored[-100:]))
    persists = (a.ch.update_id + b.ch.update_id) / n
    print(f"{n} HTLC add+fulfill round trips in {elapsed:.2f} s: {n / elapsed:.1f} round trips/s "
          f"(batch {batch}, wire codec {'on' if wire else 'off'})")
    print(f"  {persists:.1f} persisted records per round trip (both sides), ~{size:.0f} bytes per snapshot")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--no-wire", action="store_true")
    args = ap.parse_args()
    run(args.seconds, args.batch, not args.no_wire)


if __name__ == "__main__":
    main()

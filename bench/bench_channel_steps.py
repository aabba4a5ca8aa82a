"""CPU per channel step in the channel core (in process, no I/O): issue 18 item 3.

Two cores share an anchor channel (the runtime's default type) over in-memory queues
(`ampere.testing.channel_pair`), messages through the wire codec. One round = A offers K HTLCs, both sides
commit and revoke, B fulfills the K, both commit and revoke again. A "step" is one call into the core
(offer/fulfil, a delivered message, a commit timer); each step's durable record is asked for as the runtime's
write would (`persisted_record`). Prints CPU (process_time) per step and per round for K=1 and K=50.

    PYTHONPATH=src .venv/bin/python bench/bench_channel_steps.py [--rounds 200] [--k 1,50] [--profile K] [--amount-msat N]
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from ampere.ln.channel import core, keys
from ampere.ln.channel.scripts import ChannelType
from ampere.primitives.crypto import sha256
from ampere.ln.channel.actions import CommitmentNeeded, Refusal, SendMessage
from ampere.testing.channel_pair import Pair, Party
from ampere.wire import messages as m


# Both parties run in this one process: a commitment's keys memoised by one party (keys._commitment_keys) would
# be found by the other, which in two ampd processes derives them itself. Forget them before every step.
_forget_keys = getattr(keys, "_commitment_keys", None)
_forget_keys = _forget_keys.cache_clear if _forget_keys is not None else (lambda: None)


class _Counting(Pair):
    steps = 0

    def deliver(self, src):  # type: ignore[override]
        _forget_keys()
        s = super().deliver(src)
        if s is not None:
            self.steps += 1
            _touch(s)
        return s

    def commit(self, p):  # type: ignore[override]
        _forget_keys()
        self.steps += 1
        s = super().commit(p)
        _touch(s)
        return s


class _Light(Party):
    """The harness party without its stand-in database encoding the whole snapshot as JSON on every step (the
    runtime stores the record in parts: node/channels/storage.py; `_touch` asks for the record it writes)."""

    def apply(self, step):  # type: ignore[override]
        if isinstance(step, Refusal):
            return step
        self.ch = step.state
        for a in step.actions:
            if isinstance(a, SendMessage):
                self.outbox.append(m.decode_message(m.encode_message(a.msg)) if self.wire else a.msg)
            elif isinstance(a, CommitmentNeeded):
                self.commit_pending = True
        return step


def _touch(step) -> None:
    # the runtime's write reads the durable record (ChannelRecord.record()): persisted_record, else to_record()
    ch = getattr(step, "state", None)
    if ch is not None and ch.persisted_record is None:
        ch.to_record()


def run(rounds: int, k: int, wire: bool = True, amount_msat: int = 1_000_000) -> tuple[float, int, int]:
    pair = Pair.open(funding_sat=16_000_000, wire=wire, channel_type=ChannelType.ANCHORS)
    pair.__class__ = _Counting
    a, b = pair.a, pair.b
    for p in (a, b):
        p.__class__ = _Light
    onion = bytes(1366)
    n = 0
    steps0 = 0
    t0 = time.process_time()
    for _ in range(rounds):
        ids = []
        for _ in range(k):
            pre = n.to_bytes(32, "big")
            ids.append((a.ch.next_htlc_id_local, pre))
            _touch(a.apply(core.offer_htlc(a.ch, a.signer, amount_msat, sha256(pre), 800, onion)))
            steps0 += 1
            n += 1
        pair.pump()
        for hid, pre in ids:
            _touch(b.apply(core.fulfill_htlc(b.ch, b.signer, hid, pre)))
            steps0 += 1
        pair.pump()
    cpu = time.process_time() - t0
    assert not a.ch.htlcs and not b.ch.htlcs
    return cpu, steps0 + pair.steps, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--k", default="1,50")
    ap.add_argument("--profile", type=int, default=0, help="cProfile the run with this K, print the top 40")
    ap.add_argument("--amount-msat", type=int, default=1_000_000,
                    help="each HTLC's amount (the default has an HTLC output and transaction; bench_speed's 1,000 "
                         "msat payments are dust: no HTLC signatures)")
    args = ap.parse_args()
    if args.profile:
        pr = cProfile.Profile()
        pr.enable()
        run(args.rounds, args.profile, amount_msat=args.amount_msat)
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(40)
        pstats.Stats(pr).sort_stats("cumulative").print_stats(60)
        return
    for k in (int(x) for x in args.k.split(",")):
        rounds = max(10, args.rounds // k) if k > 1 else args.rounds
        cpu, steps, n = run(rounds, k, amount_msat=args.amount_msat)
        print(f"K={k:>3}: {rounds} rounds, {steps} steps, {n} HTLCs: {cpu * 1e3 / steps:.3f} ms CPU/step, "
              f"{cpu * 1e3 / rounds:.2f} ms CPU/round, {cpu * 1e3 / n:.3f} ms CPU/HTLC")


if __name__ == "__main__":
    main()

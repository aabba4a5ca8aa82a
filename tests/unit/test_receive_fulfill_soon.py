"""Receiver.fulfill_soon (the forwarder's upstream fulfil queued the moment the downstream preimage is read): when
the queued step is refused (the incoming channel left normal operation meanwhile: it may be going on-chain) or its
write fails, the preimage must still reach the channel manager's usual fulfil, which claims the HTLC on-chain when
the channel is on-chain. An HTLC whose preimage we hold must never be left to time out."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from ampere.ln.channel.actions import Refusal, RefusalCode
from ampere.node.payments.receive import IncomingHtlc, Receiver

PREIMAGE = bytes(range(32))


class _Manager:
    """The two calls of ChannelManager that fulfill_soon makes, recording them; the queued step's outcome is
    given by the test."""

    def __init__(self) -> None:
        self.queued: asyncio.Future | None = None
        self.fulfilled: list[tuple[bytes, int, bytes]] = []

    def fulfill_htlc_soon(self, channel_id, htlc_id, preimage, also=None):
        self.queued = asyncio.get_running_loop().create_future()
        return self.queued

    async def fulfill_htlc(self, channel_id, htlc_id, preimage, also=None):
        self.fulfilled.append((channel_id, htlc_id, preimage))


class _Node:
    log = None
    stopping = None

    def __init__(self) -> None:
        self.channel_manager = _Manager()


def _incoming() -> IncomingHtlc:
    return IncomingHtlc(channel_id=b"\x01" * 32, htlc_id=7, amount_msat=1000,
                        payment_hash=hashlib.sha256(PREIMAGE).digest(), cltv_expiry=500, onion=b"")


@pytest.mark.parametrize("outcome", ["refused", "write failed", "done"])
def test_fulfill_soon_falls_back_to_the_usual_fulfil(outcome):
    async def run() -> tuple[list, bool]:
        node = _Node()
        rcv = Receiver(node)
        inc = _incoming()
        rcv.htlcs[inc.key] = inc
        fut = rcv.fulfill_soon(inc, PREIMAGE)
        assert fut is not None and inc.resolved
        if outcome == "refused":
            fut.set_result(Refusal(RefusalCode.NOT_READY, "channel is going on-chain"))
        elif outcome == "write failed":
            fut.set_exception(OSError("disk full"))
        else:
            fut.set_result(object())  # a Step: the fulfil went out with its write
        for _ in range(5):
            await asyncio.sleep(0)
        await asyncio.gather(*rcv._tasks)
        if outcome == "write failed":
            fut.exception()  # retrieved: no "never retrieved" warning
        return node.channel_manager.fulfilled, inc.key in rcv.htlcs

    fulfilled, still_tracked = asyncio.run(run())
    if outcome == "done":
        assert fulfilled == [] and not still_tracked
    else:
        assert fulfilled == [(b"\x01" * 32, 7, PREIMAGE)] and not still_tracked

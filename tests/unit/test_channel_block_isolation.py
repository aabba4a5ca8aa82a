"""The channel manager's chain listener: a bug in one channel at a block is that channel's.

ChannelManager.block_connected runs each channel's work for the block (funding depth, HTLC deadlines through
core.on_block, rebroadcasts). An exception from one channel used to reach the chain watcher, which redoes a block
whose listener raised at every poll: the node never saw a later block, so no HTLC deadline of any channel came.
The method is run here on a stand-in manager whose per-channel step raises for one channel; the integration test
of the same rule for the on-chain resolver is test_onchain_core.py's
test_one_channel_failing_to_resolve_does_not_stop_the_others_or_the_chain."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from ampere.chain.bitcoind import BitcoindUnreachable
from ampere.node.channels.manager import ChannelManager


class StandIn:
    """What block_connected uses of the manager: its records, the per-channel step, fee following, the log."""

    def __init__(self, fail: dict[int, BaseException]) -> None:
        self.records = {i: SimpleNamespace(dbid=i, peer_id=bytes([2]) + bytes(32)) for i in (1, 2, 3)}
        self.fail = fail
        self.done: list[int] = []
        self.fees_followed = 0
        self.logged: list[tuple[str, str, str]] = []
        self.node = SimpleNamespace(log=SimpleNamespace(
            broken=lambda src, msg: self.logged.append(("broken", src, msg))))

    async def _channel_block(self, rec, height: int) -> None:
        if rec.dbid in self.fail:
            raise self.fail[rec.dbid]
        self.done.append(rec.dbid)

    async def _follow_fees(self) -> None:
        self.fees_followed += 1

    def _src(self, rec) -> str:
        return ChannelManager._src(self, rec)  # type: ignore[arg-type]


def test_a_channel_raising_at_a_block_does_not_stop_the_others():
    m = StandIn({2: RuntimeError("a bug in channel 2")})
    asyncio.run(ChannelManager.block_connected(m, 500, None))  # type: ignore[arg-type]
    assert m.done == [1, 3] and m.fees_followed == 1
    [(level, src, msg)] = m.logged
    assert level == "broken" and src.endswith("-chan#2") and "At block 500" in msg and "a bug in channel 2" in msg


def test_chain_backend_trouble_still_goes_to_the_chain_watcher():
    """bitcoind unreachable is not a bug: the chain watcher warns and redoes the block, as before."""
    m = StandIn({1: BitcoindUnreachable("connection refused")})
    with pytest.raises(BitcoindUnreachable):
        asyncio.run(ChannelManager.block_connected(m, 500, None))  # type: ignore[arg-type]
    assert m.logged == []

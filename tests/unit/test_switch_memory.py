"""The switch keeps only open forwards in memory (issue 18): a settled or failed forward leaves RAM once its
final state is on disk, and listforwards / delforward answer from the database, in CLN's shapes and order."""

from __future__ import annotations

import asyncio
import time
import types

from ampere.node.payments.switch import FAILED, OFFERED, SETTLED, Forward, Switch
from ampere.store.sqlite import SqliteStore


def _forward(n: int, scid: int) -> Forward:
    return Forward(0, b"\x07" * 32, n, scid, 5000 + n, 600, bytes([n]) * 32, OFFERED, time.time())


def test_resolved_forwards_leave_memory_and_are_listed_from_the_database(tmp_path):
    async def go():
        store = SqliteStore(str(tmp_path / "db.sqlite3"))
        await store.open()
        try:
            # What the switch uses of the node here: its store and id; no channels, receiver or log.
            switch = Switch(types.SimpleNamespace(store=store, node_id=b"\x03" * 33, channel_manager=None,
                                                  receiver=None, log=None))
            fwds = [_forward(n, 100 + n % 2) for n in range(1, 7)]
            for f in fwds:
                await switch._insert(f)
            assert sorted(switch.forwards) == [1, 2, 3, 4, 5, 6]
            for f in fwds[:4]:
                f.preimage = b"\x01" * 32 if f.in_htlc_id % 2 else None
                await switch._set_status(f, SETTLED if f.in_htlc_id % 2 else FAILED)
            # Only the open ones stay in memory...
            assert sorted(switch.forwards) == [5, 6]
            # ...but listforwards still has all six, from the database, with their final status.
            listed = await switch.list()
            assert [(f["in_htlc_id"], f["status"]) for f in listed] == [
                (1, "settled"), (2, "failed"), (3, "settled"), (4, "failed"), (5, "offered"), (6, "offered")]
            assert [f["in_htlc_id"] for f in await switch.list(status="settled")] == [1, 3]
            assert [f["in_htlc_id"] for f in await switch.list(in_channel=101)] == [1, 3, 5]
            assert [f["in_htlc_id"] for f in await switch.list(index="created", start=3, limit=2)] == [3, 4]
            by_update = await switch.list(index="updated", start=0)
            assert [f["in_htlc_id"] for f in by_update] == [1, 2, 3, 4]  # only the updated ones, in update order
            # delforward deletes from the database, not only from memory.
            assert await switch.delete(101, 1, "settled")
            assert not await switch.delete(101, 1, "settled")
            assert not await switch.delete(100, 5, "settled")  # wrong status: nothing deleted
            assert [f["in_htlc_id"] for f in await switch.list()] == [2, 3, 4, 5, 6]
            # A restart loads only the open forwards into memory.
            again = Switch(types.SimpleNamespace(store=store, node_id=b"\x03" * 33, channel_manager=None,
                                                 receiver=None, log=None))
            await again.start()
            assert sorted(again.forwards) == [5, 6]
        finally:
            await store.close()

    asyncio.run(go())

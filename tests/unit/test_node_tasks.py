"""node/app/tasks.py: guarded background tasks and the one shutdown shape (cancel every task, wait for each)."""

import asyncio

import pytest

from ampere.node.app.tasks import cancel_and_wait, spawn_guarded


def test_cancel_and_wait_ends_every_task_and_waits_for_their_cleanup():
    async def go():
        tasks: set[asyncio.Task] = set()
        cleaned = []

        async def sleeper(n):
            try:
                await asyncio.sleep(3600)
            finally:
                await asyncio.sleep(0.01)       # cleanup that itself awaits: must finish before we return
                cleaned.append(n)

        async def failing():
            raise ValueError("boom")

        broken = []
        for n in range(3):
            spawn_guarded(tasks, sleeper(n), f"s{n}", broken.append)
        plain = asyncio.ensure_future(failing())    # an exception in a task does not stop the shutdown
        await asyncio.sleep(0)
        await cancel_and_wait(list(tasks) + [plain])
        assert sorted(cleaned) == [0, 1, 2]
        assert not tasks                        # guarded tasks left their set as they ended
        assert broken == []                     # a cancel is not a failure
        await cancel_and_wait([])               # nothing to do

    asyncio.run(go())


def test_a_cancel_of_the_caller_still_propagates():
    async def go():
        stubborn = asyncio.ensure_future(asyncio.sleep(3600))

        async def shield_forever():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                await asyncio.sleep(3600)       # ignores its cancel

        slow = asyncio.ensure_future(shield_forever())
        await asyncio.sleep(0)
        stopper = asyncio.ensure_future(cancel_and_wait([stubborn, slow]))
        await asyncio.sleep(0.01)
        stopper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopper
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)

    asyncio.run(go())

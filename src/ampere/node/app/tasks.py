"""Background tasks owned by a node component: tracked (so `stop()` can cancel them) and guarded (an
exception in one is logged BROKEN, never lost and never fatal to the node)."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Coroutine, Iterable


def spawn_guarded(tasks: set[asyncio.Task], coro: Coroutine[Any, Any, Any], name: str,
                  log_broken: Callable[[str], None]) -> asyncio.Task:
    """Run `coro` as a task kept in `tasks` until it ends; log `<name> failed: <error>` if it raises."""

    async def guard() -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug in a background job must not go unnoticed, nor kill the node
            log_broken(f"{name} failed: {e!r}")

    task = asyncio.get_running_loop().create_task(guard(), name=name)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task


async def cancel_and_wait(tasks: Iterable[asyncio.Future]) -> None:
    """Shutdown: cancel every task, then wait until each has ended, whatever it raised (a snapshot is taken
    first: guarded tasks leave their set as they end). A cancel of the caller itself still propagates."""
    pending = list(tasks)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)

"""Background tasks owned by a node component: tracked (so `stop()` can cancel them) and guarded (an
exception in one is logged BROKEN, never lost and never fatal to the node)."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Coroutine


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

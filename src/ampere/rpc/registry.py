"""The built-in command registry.

A command module declares its commands with `@command(...)`; the node's dispatcher finds them here.
Handlers are `async def handler(ctx, **params) -> dict`, with params parsed by `parse_params`
before the call (so a handler never sees an invalid value), or, with `raw=True`, the raw params.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from .params import Param


@dataclass
class Command:
    name: str
    handler: Callable[..., Awaitable[Any]]
    params: list[Param] = field(default_factory=list)
    description: str = ""
    category: str = "utility"
    usage: str | None = None
    raw: bool = False  # handler parses params itself (e.g. `check`, `plugin`)
    allow_extra: bool = False
    # The handler's first step is run at once, without a task (ampere.rpc.server._Reply.eager): for commands whose
    # handler normally completes without waiting (getinfo), where a task and its turn of the loop were a good part
    # of the call.  Only for handlers that need no task of their own (asyncio.timeout, current_task()).
    eager: bool = False

    def usage_string(self) -> str:
        if self.usage is not None:
            return self.usage
        parts = [p.name if p.required else f"[{p.name}]" for p in self.params]
        return " ".join(parts)


COMMANDS: dict[str, Command] = {}


def command(name: str, params: list[Param] | None = None, description: str = "", category: str = "utility",
            usage: str | None = None, raw: bool = False, allow_extra: bool = False, eager: bool = False):
    def wrap(fn: Callable[..., Awaitable[Any]]):
        if name in COMMANDS:
            raise RuntimeError(f"command {name} registered twice")
        COMMANDS[name] = Command(name, fn, params or [], description or (fn.__doc__ or "").strip().split("\n")[0],
                                 category, usage, raw, allow_extra, eager)
        return fn

    return wrap

"""Where the node meets the plugin host: start-up (manifests, then plugin options), init, --help.

Kept apart from daemon.py so that the order lightningd uses (getmanifest before the options are
checked; init after the RPC socket listens) reads in one place.
"""

from __future__ import annotations

import sys

from ..config import ConfigError, Entry, Layout, Options


async def setup_plugins(node, deferred: list[Entry]) -> None:
    """Start plugins, collect their manifests and options, then check the deferred option entries."""
    if deferred:
        e = deferred[0]
        where = "" if e.source == "cmdline" else f"{e.source}: "
        raise ConfigError(f"{where}--{e.name}: unrecognized option")


async def init_plugins(node) -> None:
    return None


async def print_help(layout: Layout, options: Options, deferred: list[Entry]) -> int:
    print("Usage: ampd [options]\n")
    print(options.help_text())
    return 0

#!/usr/bin/env python3
"""A bookkeeper's ledger: appends every coin_movement it receives to coin_ledger.jsonl in the node's
lightning-dir (one JSON object a line, flushed at once), so that the ledger survives the node's restarts
and kill -9; `ledger` returns every movement recorded so far, in the order received."""
import json
import os

from pyln.client import Plugin

plugin = Plugin()


def _path(plugin) -> str:
    return os.path.join(plugin.lightning_dir, "coin_ledger.jsonl")


@plugin.subscribe("coin_movement")
def on_coin_movement(plugin, coin_movement, **kwargs):
    with open(_path(plugin), "a") as f:
        f.write(json.dumps(coin_movement) + "\n")
        f.flush()
        os.fsync(f.fileno())


@plugin.method("ledger")
def ledger(plugin):
    """Every coin movement recorded so far."""
    try:
        with open(_path(plugin)) as f:
            return {"movements": [json.loads(line) for line in f if line.strip()]}
    except FileNotFoundError:
        return {"movements": []}


plugin.run()

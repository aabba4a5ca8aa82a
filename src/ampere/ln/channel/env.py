"""Inputs from the node's environment that the channel core needs on each call (no clock, no I/O inside)."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Env"]


@dataclass(frozen=True)
class Env:
    """What the runtime knows now: chain tip and fee estimates (sat per 1000 weight).

    - `min_feerate_per_kw`/`max_feerate_per_kw`: the range of update_fee values we accept from an opener
      (BOLT 2: "if the update_fee is too low for timely processing, OR is unreasonably large").
    - `closing_feerate_per_kw`: what we would like a mutual close to pay.
    """

    blockheight: int = 0
    min_feerate_per_kw: int = 253
    max_feerate_per_kw: int = 100_000
    closing_feerate_per_kw: int = 253

"""How much to pay for a transaction that must confirm before a deadline (pure).

    deadline_feerate(estimate, floor, blocks_left, blocks_waited) -> feerate_perkw

The target tightens as the deadline nears: aim to confirm within half the blocks left (the next block at the
end), at the node's estimate for that target; and every block the transaction waited unconfirmed raises the rate
by BUMP_STEP (a replacement must pay more than what it replaces, BIP125 rules 3-4).
"""
from __future__ import annotations

import math
from typing import Callable

__all__ = ["deadline_feerate", "BUMP_STEP", "worth_replacing"]

BUMP_STEP = 1.25
# A replacement pays at least this much more per weight than the one it replaces (BIP125 rule 4 wants the
# relay fee on top; 25% more clears it for every feerate we use).
MIN_BUMP = 1.25


def deadline_feerate(estimate: Callable[[int], int], floor: int, blocks_left: int, blocks_waited: int) -> int:
    target = max(1, blocks_left // 2)
    base = max(estimate(target) or 0, floor)
    return math.ceil(base * BUMP_STEP ** max(0, blocks_waited))


def worth_replacing(current_perkw: int, new_perkw: int) -> bool:
    return new_perkw >= current_perkw * MIN_BUMP

"""Feerates: the estimates table, CLN's named targets, and the parser for every feerate form CLN's
RPC accepts (lightningd/feerate.c param_feerate):

* names: `opening`, `mutual_close`, `penalty`, `unilateral_close`, `unilateral_anchor_close`,
  `slow` (100 blocks), `normal` (12 blocks), `urgent` (6 blocks), `minimum` (the floor);
* `<N>blocks`: the estimate for a deadline of N blocks;
* a number with an optional `perkw` (satoshi per 1000 weight units) or `perkb` (satoshi per
  1000 virtual bytes, bitcoind's unit) suffix.  A bare number is **perkb**, as in CLN.

Rates are held as integer satoshi per kiloweight (perkw) everywhere, never floats.  A parsed
explicit rate below the floor is raised to it, as CLN does.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# BOLT #3 / CLN's FEERATE_FLOOR: 253 sat/kw, i.e. 1012 sat/kvB, the smallest rate that stays above
# bitcoind's 1 sat/vB minimum relay fee after the weight -> vbyte rounding.
FEERATE_FLOOR = 253
# CLN's conversions[]: which deadline (in blocks) each named rate uses.
_NAMED_DEADLINES = {"slow": 100, "normal": 12, "urgent": 6, "opening": 12, "mutual_close": 100,
                    "penalty": 12, "unilateral_close": 6}
# Anchor channels' unilateral closes aim at 100 blocks but never below 5 sat/vB (1250 perkw).
_ANCHOR_CLOSE_MIN = 1250
MAX_FEE_MULTIPLIER = 10  # CLN's --max-fee-multiplier default
# bcli's targets: (blocks, estimate_mode).
ESTIMATE_TARGETS = ((2, "CONSERVATIVE"), (6, "ECONOMICAL"), (12, "ECONOMICAL"), (100, "ECONOMICAL"))


class FeerateError(ValueError):
    """A feerate string that is not in any accepted form (an RPC parameter error)."""


class NoFeeEstimates(Exception):
    """A named feerate was asked for while no estimates are known yet (CLN's 400)."""


def perkb_to_perkw(perkb: int) -> int:
    # CLN's feerate_from_style: "Round down".
    return perkb // 4


def perkw_to_perkb(perkw: int) -> int:
    return perkw * 4


def to_style(perkw: int, style: str) -> int:
    return perkw_to_perkb(perkw) if style == "perkb" else perkw


def btc_kvb_to_perkw(btc_per_kvb) -> int:
    """estimatesmartfee's BTC/kvB (a Decimal) -> integer sat per kiloweight."""
    from decimal import Decimal

    sat_per_kvb = int((Decimal(str(btc_per_kvb)) * 100_000_000).to_integral_value())
    return perkb_to_perkw(sat_per_kvb)




@dataclass
class FeeEstimates:
    """The latest estimates: [(blockcount, perkw)] sorted by blockcount, plus the floor."""

    estimates: list[tuple[int, int]] = field(default_factory=list)
    floor: int = FEERATE_FLOOR
    # Every estimate seen recently (min_acceptable / max_acceptable look at the history, as CLN).
    history: list[list[tuple[int, int]]] = field(default_factory=list)

    def update(self, estimates: list[tuple[int, int]], floor: int) -> bool:
        """Install new estimates; returns True if anything changed."""
        estimates = sorted(estimates)
        floor = max(floor, FEERATE_FLOOR)
        changed = estimates != self.estimates or floor != self.floor
        self.estimates = estimates
        self.floor = floor
        if estimates:
            self.history.insert(0, estimates)
            del self.history[5:]
        return changed

    @property
    def known(self) -> bool:
        return bool(self.estimates)

    def for_deadline(self, blocks: int) -> int:
        """CLN's interp_feerate: linear between the estimates around `blocks`; 0 if none known."""
        before = after = None
        for count, rate in self.estimates:
            if count <= blocks:
                before = (count, rate)
            elif after is None:
                after = (count, rate)
        if before is None and after is None:
            return 0
        if before is None:
            rate = after[1]
        elif after is None or before[1] < after[1]:
            rate = before[1]
        else:
            rate = before[1] - (blocks - before[0]) * (before[1] - after[1]) // (after[0] - before[0])
        return max(rate, self.floor) if rate else 0

    def named(self, name: str) -> int:
        if name == "minimum":
            return self.floor
        if name == "unilateral_anchor_close":
            rate = self.for_deadline(100)
            return max(rate, _ANCHOR_CLOSE_MIN) if rate else 0
        return self.for_deadline(_NAMED_DEADLINES[name])

    def min_acceptable(self) -> int:
        rates = [r for est in self.history for _, r in est]
        low = min(rates) // 2 if rates else 0
        return max(low, self.floor)

    def max_acceptable(self) -> int:
        rates = [r for est in self.history for _, r in est]
        return max(rates) * MAX_FEE_MULTIPLIER if rates else 0xFFFFFFFF


NAMES = frozenset(_NAMED_DEADLINES) | {"minimum", "unilateral_anchor_close"}


def parse_feerate(value, estimates: FeeEstimates | None) -> int:
    """A feerate parameter -> perkw.  Raises FeerateError (bad syntax) or NoFeeEstimates."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise FeerateError("should be an integer with optional perkw/perkb")
    text = str(value)
    if text in NAMES or (text.endswith("blocks") and not text.endswith("perkb")):
        if text in NAMES:
            rate = estimates.named(text) if estimates is not None else 0
        else:
            base = text[: -len("blocks")]
            if not base.isdigit() or int(base) >= 2**32:
                raise FeerateError(f"should be an integer not '{base}'")
            rate = estimates.for_deadline(int(base)) if estimates is not None else 0
        if not rate:
            raise NoFeeEstimates("Cannot estimate fees (yet)")
        return rate
    if text.endswith("perkb"):
        style, base = "perkb", text[: -len("perkb")]
    elif text.endswith("perkw"):
        style, base = "perkw", text[: -len("perkw")]
    else:
        style, base = "perkb", text
    if not base.isdigit() or int(base) >= 2**32:
        raise FeerateError(f"should be an integer with optional perkw/perkb, not '{base}'")
    num = int(base)
    rate = perkb_to_perkw(num) if style == "perkb" else num
    return max(rate, FEERATE_FLOOR)

"""Amounts: integer millisatoshi and satoshi types that never mix and never touch floats.

Every amount that enters Ampere as text ("10000msat", "10sat", "0.001btc", 123) is parsed here, and
only here, into an exact integer.  Msat and Sat are int subclasses so that they serialise as JSON
numbers, but arithmetic between the two units is refused: convert explicitly with `Sat.to_msat()` or
`Msat.to_sat_floor()`.
"""

from __future__ import annotations

import re
from typing import NewType

# Static amount types for signatures (issue 13 item 6).  NewType costs nothing where it is only an annotation, and
# `MsatInt(x)` is an identity call: the value stays a plain int at run time and in JSON, so the hot paths (channel
# state machine, routing, forwarding) carry them for free, unlike the checked `Msat`/`Sat` classes below that the
# RPC edge parses into.  mypy keeps the units apart: a SatInt passed where a MsatInt is expected is an error, and
# the one way from one unit to the other is sat_to_msat/msat_to_sat.  Arithmetic on them gives plain int (mypy's
# rule for NewType), so a computed amount is re-typed where it leaves a function: `-> MsatInt` with MsatInt(...).
MsatInt = NewType("MsatInt", int)
SatInt = NewType("SatInt", int)

MSAT_PER_SAT = 1000
SAT_PER_BTC = 100_000_000
MSAT_PER_BTC = MSAT_PER_SAT * SAT_PER_BTC
MAX_MSAT = 21_000_000 * MSAT_PER_BTC


def sat_to_msat(sat: int) -> MsatInt:
    """The one sat -> msat conversion on plain integers (amounts on the hot paths stay ints: no Msat object)."""
    return MsatInt(sat * MSAT_PER_SAT)


def msat_to_sat(msat: int) -> SatInt:
    """msat -> whole satoshi, rounded down (BOLT #3: output values are "rounded down" to whole satoshis)."""
    return SatInt(msat // MSAT_PER_SAT)


def fee_for_weight(feerate_perkw: int, weight: int) -> SatInt:
    """The fee (sat) for `weight` at `feerate_perkw` (sat per 1000 weight units), rounded up so that our own
    transactions never pay under the rate. (BOLT #3's fees for the commitment and HTLC transactions round down
    instead, and are computed where the BOLT says so.)"""
    return SatInt((feerate_perkw * weight + 999) // 1000)


class AmountError(ValueError):
    """A string or number that is not a valid amount."""


class _Unit(int):
    __slots__ = ()
    unit = ""

    def __new__(cls, value: int = 0):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{cls.__name__} takes an int, not {type(value).__name__}")
        if isinstance(value, _Unit) and not isinstance(value, cls):
            raise TypeError(f"cannot make {cls.__name__} from {type(value).__name__}: convert explicitly")
        if value < 0:
            raise AmountError(f"negative amount {value}")
        return super().__new__(cls, value)

    def _check(self, other):
        if isinstance(other, _Unit) and type(other) is not type(self):
            raise TypeError(f"cannot mix {type(self).__name__} and {type(other).__name__}")
        if isinstance(other, float):
            raise TypeError("amounts never mix with floats")

    def __add__(self, other):
        self._check(other)
        return type(self)(int(self) + int(other))

    __radd__ = __add__

    def __sub__(self, other):
        self._check(other)
        return type(self)(int(self) - int(other))

    def __rsub__(self, other):
        self._check(other)
        return type(self)(int(other) - int(self))

    def __mul__(self, other):
        if isinstance(other, (_Unit, float)):
            raise TypeError("an amount is multiplied only by a plain integer")
        return type(self)(int(self) * other)

    __rmul__ = __mul__

    def __floordiv__(self, other):
        if isinstance(other, float):
            raise TypeError("amounts never mix with floats")
        if isinstance(other, _Unit):
            self._check(other)
            return int(self) // int(other)
        return type(self)(int(self) // other)

    def __truediv__(self, other):
        raise TypeError("amounts are divided with // only")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self)})"

    def __str__(self) -> str:
        return f"{int(self)}{self.unit}"


class Msat(_Unit):
    __slots__ = ()
    unit = "msat"

    def to_sat_floor(self) -> "Sat":
        return Sat(int(self) // MSAT_PER_SAT)

    def to_sat_exact(self) -> "Sat":
        if int(self) % MSAT_PER_SAT:
            raise AmountError(f"{int(self)}msat is not a whole number of satoshi")
        return Sat(int(self) // MSAT_PER_SAT)

    def to_btc_str(self) -> str:
        """CLN's "0.001btc" style, exact (11 decimal places at most, trailing zeros dropped)."""
        whole, frac = divmod(int(self), MSAT_PER_BTC)
        if not frac:
            return f"{whole}btc"
        return f"{whole}.{frac:011d}".rstrip("0") + "btc"


class Sat(_Unit):
    __slots__ = ()
    unit = "sat"

    def to_msat(self) -> Msat:
        return Msat(int(self) * MSAT_PER_SAT)


_AMOUNT_RE = re.compile(r"^(\d+)(?:\.(\d+))?(msat|sat|btc)?$")


def _scaled(whole: str, frac: str | None, decimals: int, text: str) -> int:
    frac = frac or ""
    if len(frac) > decimals:
        # "10.000sat" is fine (trailing zeros), "10.5sat" is not a whole msat count.
        if frac[decimals:].strip("0"):
            raise AmountError(f"'{text}' has more precision than a millisatoshi")
        frac = frac[:decimals]
    return int(whole) * 10**decimals + (int(frac.ljust(decimals, "0")) if decimals else 0)


def parse_msat(value: object) -> Msat:
    """Parse an amount as CLN's RPC accepts it: 123, "123", "123msat", "10sat", "10.000sat", "0.001btc".

    A bare number is millisatoshi.  Floats are refused: JSON numbers with a fraction are ambiguous.
    """
    if isinstance(value, Msat):
        return value
    if isinstance(value, Sat):
        return value.to_msat()
    if isinstance(value, bool) or isinstance(value, float):
        raise AmountError(f"'{value}' is not a valid amount")
    if isinstance(value, int):
        if value < 0 or value > MAX_MSAT:
            raise AmountError(f"'{value}' is out of range")
        return Msat(value)
    if not isinstance(value, str):
        raise AmountError(f"'{value}' is not a valid amount")
    text = value.strip()
    m = _AMOUNT_RE.match(text)
    if not m:
        raise AmountError(f"'{value}' is not a valid amount")
    whole, frac, unit = m.group(1), m.group(2), m.group(3) or "msat"
    if unit == "msat":
        if frac and frac.strip("0"):
            raise AmountError(f"'{value}' has a fraction of a millisatoshi")
        msat = int(whole)
    elif unit == "sat":
        msat = _scaled(whole, frac, 3, value)
    else:
        msat = _scaled(whole, frac, 11, value)
    if msat > MAX_MSAT:
        raise AmountError(f"'{value}' is out of range")
    return Msat(msat)


def parse_sat(value: object) -> Sat:
    """Parse a satoshi amount: a bare number is satoshi; units as parse_msat; must be whole satoshi."""
    if isinstance(value, Sat):
        return value
    if isinstance(value, int) and not isinstance(value, (bool, Msat)):
        if value < 0 or value * MSAT_PER_SAT > MAX_MSAT:
            raise AmountError(f"'{value}' is out of range")
        return Sat(value)
    if isinstance(value, str) and value.strip().isdigit():
        return parse_sat(int(value.strip()))
    return parse_msat(value).to_sat_exact()

"""`replace` for the channel's frozen value classes, without `dataclasses.replace`'s per-call cost.

The channel core is written as frozen values that each step copies with a few fields changed (`Channel` has
~45 fields; every HTLC's state moves on each commitment_signed and revoke_and_ack). `dataclasses.replace`
walks `fields()`, reads every attribute and calls `__init__` again: it was the largest single item of the
core's CPU per step (issue 18). For a plain frozen dataclass (no `__post_init__`, no `init=False` fields, no
`__slots__`) a copy of the instance dict with the changed fields is the same value; anything else goes
through `dataclasses.replace` unchanged.
"""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["replace", "make", "ByIdentity"]

T = TypeVar("T")

_FAST: dict[type, frozenset[str] | None] = {}


def _fields(cls: type) -> frozenset[str] | None:
    """The init field names of a class the fast copy is valid for, else None."""
    fs = dataclasses.fields(cls)
    if (hasattr(cls, "__post_init__") or hasattr(cls, "__slots__") or any(not f.init for f in fs)
            or any(f._field_type is not dataclasses._FIELD for f in fs)):  # type: ignore[attr-defined]
        return None
    return frozenset(f.name for f in fs)


def replace(obj: T, /, **changes: Any) -> T:
    """`dataclasses.replace(obj, **changes)`: same result, same TypeError on an unknown field."""
    cls = obj.__class__
    try:
        names = _FAST[cls]
    except KeyError:
        names = _FAST[cls] = _fields(cls)
    if names is None or not names.issuperset(changes):
        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    src = obj.__dict__
    if len(src) != len(names):  # something cached on the instance: not a plain value, copy the slow way
        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    new = object.__new__(cls)
    d = new.__dict__
    d.update(src)
    d.update(changes)
    return new


def make(cls: type[T], /, **fields: Any) -> T:
    """`cls(**fields)` for a plain frozen dataclass given every field (the views build one HtlcSpec per HTLC per
    view, several views per update); anything else goes through the constructor."""
    try:
        names = _FAST[cls]
    except KeyError:
        names = _FAST[cls] = _fields(cls)
    if names is None or names != fields.keys():
        return cls(**fields)
    new = object.__new__(cls)
    new.__dict__.update(fields)
    return new


class ByIdentity:
    """`fn(obj)` cached by the identity of `obj`: for objects that come back unchanged on every step of a channel
    (an HTLC, a tuple of them, a list of signatures), where hashing a dataclass by value would be a Python call per
    field. One instance per use (no object is ever looked up with another use's function); each entry holds its key
    object, so an id is never reused while cached; cleared when `max_entries` is reached."""

    __slots__ = ("fn", "max", "entries")

    def __init__(self, fn: Any, max_entries: int) -> None:
        self.fn, self.max = fn, max_entries
        self.entries: dict[int, tuple[Any, Any]] = {}

    def __call__(self, obj: Any) -> Any:
        e = self.entries.get(id(obj))
        if e is not None and e[0] is obj:
            return e[1]
        value = self.fn(obj)
        if len(self.entries) >= self.max:
            self.entries.clear()
        self.entries[id(obj)] = (obj, value)
        return value


class PrefixMemo:
    """The last value folded over a tuple, per key, to resume from when the next tuple starts with it: a channel's
    HTLC tuple mostly grows by appending (a burst of update_add_htlc), so a fold over it need only look at the new
    items. Exact whatever a key held before, provided the fold over a prefix depends only on the prefix's items:
    the prefix is compared by value (by identity first, in C). Cleared when `max_entries` is reached."""

    __slots__ = ("max", "entries")

    def __init__(self, max_entries: int) -> None:
        self.max = max_entries
        self.entries: dict[Any, tuple[tuple, Any]] = {}

    def resume(self, key: Any, items: tuple) -> tuple[int, Any]:
        """(how many leading items the saved value covers, that value), or (0, None)."""
        e = self.entries.get(key)
        if e is not None:
            prev = e[0]
            k = len(prev)
            if prev is items or (k <= len(items) and items[:k] == prev):
                return k, e[1]
        return 0, None

    def save(self, key: Any, items: tuple, value: Any) -> None:
        if len(self.entries) >= self.max:
            self.entries.clear()
        self.entries[key] = (items, value)

"""The one shape of CLN's paginated lists (listsendpays, listforwards, ...): records carry `created_index` and
`updated_index` (0 or None until first updated); `index` picks which one orders the list, `start` is the first
index wanted and `limit` the most records returned."""

from __future__ import annotations

from typing import Iterable, Protocol, TypeVar


class Indexed(Protocol):
    created_index: int
    updated_index: int | None


T = TypeVar("T", bound=Indexed)


def page(records: Iterable[T], index: str | None, start: int | None, limit: int | None) -> list[T]:
    """`records` in `index` order ("created" when None) from `start`, at most `limit` of them. By "updated",
    records never updated are left out, as CLN does."""
    first = start or 0
    if index == "updated":
        out = [r for r in records if r.updated_index and r.updated_index >= first]
        out.sort(key=lambda r: r.updated_index or 0)
    else:
        out = [r for r in records if r.created_index >= first]
        out.sort(key=lambda r: r.created_index)
    return out if limit is None else out[:limit]

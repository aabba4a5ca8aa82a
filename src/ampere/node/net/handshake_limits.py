"""Admission of inbound connections that have not finished the BOLT 8 handshake and `init` yet.

A connection costs an attacker one TCP socket and costs us a task and a timer, so half-open connections are
capped, per source and overall. A cap that *refuses* new connections would let anyone holding that many silent
sockets lock every honest peer out; so at a cap the *oldest* pending handshake is dropped instead (from the same
source, or overall from the source holding the most). An honest handshake takes milliseconds, so it finishes long
before it becomes the oldest. Under pressure (many pending) the time a connection may stay silent is cut, and
those already older than that are dropped as new connections arrive.

The source of a connection is its IPv4 address, its IPv6 /64 (one host usually owns a whole /64), or "local" for
unix sockets.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Hashable

__all__ = ["HandshakeLimits", "PendingHandshakes", "source_key"]


def source_key(host: str | None) -> str:
    if not host:
        return "local"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


@dataclass(frozen=True)
class HandshakeLimits:
    max_pending: int = 1000            # all sources together
    max_per_source: int = 500          # one address (or /64)
    timeout: float = 60.0              # time to finish BOLT 8 and send init, normally
    pressure_pending: int = 500        # from this many pending on, "under pressure"
    pressure_timeout: float = 5.0      # ... and the time allowed is this


@dataclass
class _Entry:
    source: str
    started: float


@dataclass
class PendingHandshakes:
    """Book-keeping only: `admit` says which pending handshakes to drop and the new one's timeout; the caller
    cancels them. Keys are anything hashable (the connection's task). Every operation is O(1) amortised (dicts keep
    insertion order, which is age order), so a flood of connections cannot make admission itself expensive."""

    limits: HandshakeLimits
    entries: dict[Hashable, _Entry] = field(default_factory=dict)           # oldest first
    by_source: dict[str, dict[Hashable, None]] = field(default_factory=dict)  # per source, oldest first
    evicted: int = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(list(self.entries))

    def under_pressure(self) -> bool:
        return len(self.entries) >= self.limits.pressure_pending

    def pending_from(self, source: str) -> int:
        return len(self.by_source.get(source, ()))

    def admit(self, key: Hashable, source: str, now: float) -> tuple[float, list[Hashable]]:
        """Register a new pending handshake; returns (its timeout, the keys of handshakes to drop)."""
        drop: list[Hashable] = []
        pressured = self.under_pressure()
        if pressured:
            # Everything that has been silent longer than the pressure timeout goes now (oldest first).
            cutoff = now - self.limits.pressure_timeout
            for k, e in self.entries.items():
                if e.started > cutoff:
                    break
                drop.append(k)
            for k in drop:
                self._forget(k)
        if self.pending_from(source) >= self.limits.max_per_source:
            k = next(iter(self.by_source[source]))
            self._forget(k)
            drop.append(k)
        elif len(self.entries) >= self.limits.max_pending:
            busiest = max(self.by_source, key=lambda s: len(self.by_source[s]))
            k = next(iter(self.by_source[busiest]))
            self._forget(k)
            drop.append(k)
        self.evicted += len(drop)
        timeout = self.limits.pressure_timeout if pressured else self.limits.timeout
        self.entries[key] = _Entry(source, now)
        self.by_source.setdefault(source, {})[key] = None
        return timeout, drop

    def done(self, key: Hashable) -> None:
        if key in self.entries:
            self._forget(key)

    def _forget(self, key: Hashable) -> None:
        e = self.entries.pop(key)
        keys = self.by_source[e.source]
        del keys[key]
        if not keys:
            del self.by_source[e.source]

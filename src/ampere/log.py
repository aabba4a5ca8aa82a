"""Logging in lightningd's format and levels.

A line is `<prefix><YYYY-mm-ddTHH:MM:SS.mmmZ> LEVEL source: message`, the format CLN's tools and
tests grep for (e.g. `plugin-helloworld.py: ...`).  Levels, lowest first: io, trace, debug, info,
unusual, broken.  `--log-level=debug:plugin-foo` sets a level for sources containing a filter string.

Listeners (the plugin host's `log` and `warning` notifications) see every line at or above the
lowest level anyone asked for; writing a line never blocks on a listener.

Lines written on the event loop's thread reach their files at the end of the loop's current turn, together:
one write() for the turn's lines, not one per line (a payee logged ~8 peer_in/peer_out lines per payment, each
its own system call, issue 18).  Lines from other threads, or with no loop running, are written at once.
Whoever waits for a line (tests grep the log file) sees it after the turn that logged it, as before; `flush`
and `close` write what is pending (the crash and fatal-exit paths call them before dying).
"""

from __future__ import annotations

import asyncio
import collections
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, TextIO

LEVELS = ("io", "trace", "debug", "info", "unusual", "broken")
LEVEL_RANK = {name: i for i, name in enumerate(LEVELS)}
_DEBUG_RANK = LEVEL_RANK["debug"]
_LEVEL_TAG = {
    "io": "IO     ",
    "trace": "TRACE  ",
    "debug": "DEBUG  ",
    "info": "INFO   ",
    "unusual": "UNUSUAL",
    "broken": "**BROKEN**",
}
# Plugins may say "warn"/"error" (cln-interfaces.md 1.9).
LEVEL_ALIASES = {"warn": "unusual", "warning": "unusual", "error": "broken"}


def normalize_level(level: str) -> str:
    if level in LEVEL_RANK:  # the usual case: already one of ours
        return level
    lvl = level.lower()
    lvl = LEVEL_ALIASES.get(lvl, lvl)
    if lvl not in LEVEL_RANK:
        raise ValueError(f"unknown log level '{level}'")
    return lvl


@dataclass
class LevelFilter:
    level: str
    substring: str | None = None  # None: applies to every source


def parse_log_level(spec: str) -> LevelFilter:
    """`debug` or `debug:subsystem` (CLN's --log-level syntax)."""
    level, _, sub = spec.partition(":")
    return LevelFilter(normalize_level(level), sub or None)


# The last whole second formatted (many log lines share one): replaced as one tuple, so any thread sees a pair.
_second: tuple[int, str] = (-1, "")


def iso_timestamp(t: float) -> str:
    global _second
    whole = int(t)
    cached = _second
    if cached[0] != whole:
        cached = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)))
    return f"{cached[1]}.{int(t * 1000) % 1000:03d}Z"


class Logger:
    def __init__(self, prefix: str = "", default_level: str = "info") -> None:
        self.prefix = prefix
        self.filters: list[LevelFilter] = [LevelFilter(default_level)]
        self.outputs: list[TextIO] = []
        self.listeners: list[Callable[[str, str, str, float], None]] = []
        self.listener_min_rank = LEVEL_RANK["broken"] + 1
        # Recent lines for `getlog` and for tests, bounded.
        # A deque: a full list shifted all its 2,000 entries on every new line (seen in the plugin-path profile).
        self.ring: collections.deque[tuple[float, str, str, str]] = collections.deque(maxlen=2000)
        self.created_at = time.time()
        self._thresholds: dict[str, int] = {}  # per source, from `filters`
        self._flush_scheduled = False  # a flush of the files is queued for the end of the loop's turn
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop last seen logging, and its thread
        self._loop_tid = 0
        self._flush_loop: asyncio.AbstractEventLoop | None = None  # where the pending flush is queued

    def set_levels(self, filters: list[LevelFilter]) -> None:
        if filters:
            self.filters = filters
            self._thresholds.clear()

    def open_files(self, paths: list[str]) -> None:
        for p in paths:
            if p == "-":
                self.outputs.append(sys.stdout)
            else:
                # Block-buffered: `log` writes a loop turn's lines into the buffer and `flush` hands them over in one
                # write() at the turn's end (see the top).
                self.outputs.append(open(p, "a", encoding="utf-8"))

    def add_listener(self, fn: Callable[[str, str, str, float], None], min_level: str = "debug") -> None:
        self.listeners.append(fn)
        self.listener_min_rank = min(self.listener_min_rank, LEVEL_RANK[min_level])

    def _threshold(self, source: str) -> int:
        rank = self._thresholds.get(source)
        if rank is None:
            if len(self._thresholds) > 10_000:  # sources are a bounded set in practice; stay bounded anyway
                self._thresholds.clear()
            rank = self._thresholds[source] = self._compute_threshold(source)
        return rank

    def _compute_threshold(self, source: str) -> int:
        # The last level given without a filter is the default; a later subsystem filter wins over an
        # earlier one that also matches.
        rank = LEVEL_RANK["info"]
        for f in self.filters:
            if f.substring is None:
                rank = LEVEL_RANK[f.level]
        for f in reversed(self.filters):
            if f.substring is not None and f.substring in source:
                return LEVEL_RANK[f.level]
        return rank

    def enabled(self, level: str, source: str) -> bool:
        return LEVEL_RANK[level] >= self._threshold(source)

    def log(self, level: str, source: str, message: str) -> None:
        rank = LEVEL_RANK.get(level)
        if rank is None:
            level = normalize_level(level)
            rank = LEVEL_RANK[level]
        threshold = self._thresholds.get(source)
        if threshold is None:
            threshold = self._threshold(source)
        if rank < threshold and rank < self.listener_min_rank:
            return  # nobody keeps or hears it: not even the clock is read
        now = time.time()
        if rank >= threshold:
            line = f"{self.prefix}{iso_timestamp(now)} {_LEVEL_TAG[level]} {source}: {message}\n"
            outputs = self.outputs
            if outputs:
                loop = self._loop_of_this_thread()  # None on other threads: they write at once
                for out in outputs:
                    try:
                        out.write(line)
                        if loop is None or out is sys.stdout:
                            out.flush()
                    except (OSError, ValueError):
                        pass
                if loop is not None and (not self._flush_scheduled or self._flush_loop is not loop):
                    # (Another loop's flush may never run: that loop stopped before its turn ended.)
                    self._flush_scheduled, self._flush_loop = True, loop
                    loop.call_soon(self.flush)
            if rank >= _DEBUG_RANK:
                self.ring.append((now, level, source, message))
        if rank >= self.listener_min_rank:
            for fn in list(self.listeners):
                try:
                    fn(level, source, message, now)
                except Exception:  # a listener must never take logging down
                    pass

    def _loop_of_this_thread(self) -> asyncio.AbstractEventLoop | None:
        """The event loop running in this thread, or None. Not asyncio._get_running_loop() per line: on Python 3.11
        each call makes a getpid() system call (its fork check); the loop last seen, still running, in the same
        thread, is the one (a thread runs one loop at a time)."""
        tid = threading.get_ident()
        loop = self._loop
        if tid == self._loop_tid and loop is not None and loop.is_running():
            return loop
        loop = asyncio._get_running_loop()
        if loop is not None:
            self._loop, self._loop_tid = loop, tid
        return loop

    def flush(self) -> None:
        """Write the lines still in the files' buffers (the end of a loop turn, or before dying)."""
        self._flush_scheduled = False
        for out in self.outputs:
            try:
                out.flush()
            except (OSError, ValueError):
                pass

    def debug(self, source: str, message: str) -> None:
        self.log("debug", source, message)

    def info(self, source: str, message: str) -> None:
        self.log("info", source, message)

    def unusual(self, source: str, message: str) -> None:
        self.log("unusual", source, message)

    def broken(self, source: str, message: str) -> None:
        self.log("broken", source, message)

    def close(self) -> None:
        self.flush()
        for out in self.outputs:
            if out not in (sys.stdout, sys.stderr):
                try:
                    out.close()
                except OSError:
                    pass
        self.outputs.clear()



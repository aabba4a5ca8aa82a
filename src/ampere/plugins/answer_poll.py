"""Waiting for a quick plugin's answer by polling, briefly, instead of sleeping.

A pyln-client plugin answers a trivial method 100-150 µs after it is asked (bench_plugins).  If the daemon sleeps in
epoll meanwhile, the answer must wake it: on a virtual machine that wake-up (the reschedule interrupt, the idle exit,
the scheduler) costs 20-40 µs, on the critical path of every call, about a sixth of a trivial method's round trip.
So, as Linux's `busy_poll` does for sockets and Go's scheduler before it parks a thread, the daemon keeps its event
loop turning (each turn polls with a zero timeout) for a short while after asking, and reads the answer the moment
it is written.  Measured on a 2-core machine (median batches), a trivial method through pyln-client goes from ~167 to
~150 µs per call, and a pass-through rpc_command hook from ~227 to ~183 µs (docs/profile.md, "Session 20").

What keeps it from costing more than it saves:
* only with two CPUs or more, and only if one is free at the moment of asking (spare_cpu): on a busy machine the
  CPU we would spin on is the plugin's, or another node's (four clients calling at once, polling on every request
  regardless: 1.03-1.12x CLN's rate against 1.10-1.14x sleeping; with this rule, 1.02-1.17x);
* only while the request is its plugin's only one outstanding: with several, answers keep coming and the loop is
  busy anyway;
* at most POLL_WINDOW per request (`plugin-answer-poll-us`, 0 to never poll), one poller per process;
* only for a plugin whose answers come within the window (an average of its recent answer times): a plugin that
  takes milliseconds is never polled for, and a plugin polled for in vain stops being so within a few requests.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Callable

POLL_WINDOW = 250e-6  # seconds (the default of `plugin-answer-poll-us`): a little over a trivial method's round trip
# Weight of the newest answer in a plugin's average answer time: ~8 answers make up most of it.
_NEWEST = 0.125


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


CPUS = _cpus()
ENABLED = CPUS > 1
try:  # its fourth field: the runnable threads of the whole machine now (ours included) / all threads
    _LOADAVG: int | None = os.open("/proc/loadavg", os.O_RDONLY)
except OSError:
    _LOADAVG = None


def spare_cpu() -> bool:
    """Whether a CPU is free for the plugin at this instant (a pread of /proc/loadavg: ~1 µs; unknown: assumed so).
    Runnable now are ourselves, the plugin we just woke, and often the caller who asked, not yet asleep: one more
    than the CPUs still leaves the plugin one (refusing at CPUS refused 10-20% of one client's calls, and lost half
    the gain)."""
    if _LOADAVG is None:
        return True
    try:
        running = int(os.pread(_LOADAVG, 64, 0).split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return True
    return running <= CPUS + 1


class AnswerTimes:
    """A plugin's recent answer times, and whether to poll for its next answer."""

    __slots__ = ("average",)

    def __init__(self) -> None:
        self.average = 0.0  # optimistic: poll until the plugin shows it is slow

    def answered(self, seconds: float) -> None:
        self.average += (seconds - self.average) * _NEWEST

    def worth_polling(self, window: float = POLL_WINDOW) -> bool:
        return self.average < window


class _Poller:
    """Keeps the loop turning while `waiting()` holds and the window lasts; one chain of callbacks at a time."""

    __slots__ = ("_deadline", "_waiting", "_running", "turns")

    def __init__(self) -> None:
        self._deadline = 0.0
        self._waiting: Callable[[], bool] | None = None
        self._running = False
        self.turns = 0  # loop turns spent polling, in all (tests, diagnostics)

    def poll(self, waiting: Callable[[], bool], window: float = POLL_WINDOW) -> None:
        """Poll for up to `window` seconds from now, while `waiting()` is true (a newer call replaces it)."""
        if not spare_cpu():
            return
        self._deadline = time.perf_counter() + window
        self._waiting = waiting
        if not self._running:
            self._running = True
            asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        waiting = self._waiting
        if waiting is not None and time.perf_counter() < self._deadline and waiting():
            self.turns += 1
            asyncio.get_running_loop().call_soon(self._turn)  # the loop polls (timeout 0) before running it
            return
        self._running = False
        self._waiting = None


POLLER = _Poller()

"""The daemon's process collects its youngest generation less often than Python's default (daemon._run_loop):
the loop it runs sees the raised threshold, and the older generations' thresholds are left as they were."""

import gc

from ampere.node.app import daemon


def test_the_daemon_loop_runs_with_the_raised_young_generation_threshold():
    before = gc.get_threshold()
    gc.set_threshold(700, 11, 12)

    async def seen() -> tuple[int, int, int]:
        return gc.get_threshold()

    try:
        assert daemon._run_loop(seen()) == (daemon._GC_YOUNG_THRESHOLD, 11, 12)
        assert daemon._GC_YOUNG_THRESHOLD > 700
    finally:
        gc.set_threshold(*before)

"""Imported by every Python process started with this directory on PYTHONPATH (bench/profile_channels.py --gc): an
`ampd` process times each of the cyclic garbage collector's collections (gc.callbacks: the thread CPU time between
its "start" and "stop"), which cProfile charges to whichever function allocated, and on SIGRTMIN+1 writes its
totals so far to $AMP_GCSTAT_DIR/gc-PID-N.json (N counting from 0): per generation the collections and their CPU
seconds, the process's CPU seconds, the threshold.  The bench asks before and after the measured run.  Not for
production."""
import os
import sys

_dir = os.environ.get("AMP_GCSTAT_DIR")
if _dir and any("ampere.cli.ampd" in a or a.endswith("/ampd") for a in sys.argv + sys.orig_argv):
    import gc
    import json
    import signal
    import time

    _totals = [[0, 0.0], [0, 0.0], [0, 0.0]]  # per generation: collections, thread CPU seconds
    _started = [0.0]
    _dumps = [0]

    def _timed(phase: str, info: dict) -> None:
        if phase == "start":
            _started[0] = time.thread_time()
        else:
            entry = _totals[info["generation"]]
            entry[0] += 1
            entry[1] += time.thread_time() - _started[0]

    def _dump(*_: object) -> None:
        path = os.path.join(_dir, f"gc-{os.getpid()}-{_dumps[0]}.json")
        _dumps[0] += 1
        with open(path, "w") as f:
            json.dump({"generations": _totals, "cpu": time.process_time(), "threshold": gc.get_threshold()}, f)

    gc.callbacks.append(_timed)
    signal.signal(signal.SIGRTMIN + 1, _dump)

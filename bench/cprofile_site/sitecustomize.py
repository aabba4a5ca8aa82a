"""Imported by every Python process started with this directory on PYTHONPATH (bench/profile_threads.py
--cprofile): an `ampd` process profiles its main (event-loop) thread with cProfile and dumps the stats to
$AMP_CPROFILE_DIR/ampd-PID.prof on SIGUSR2 (the bench asks for it after the measured run).  Not for production."""
import os
import sys

_dir = os.environ.get("AMP_CPROFILE_DIR")
if _dir and any("ampere.cli.ampd" in a or a.endswith("/ampd") for a in sys.argv + sys.orig_argv):
    import cProfile
    import signal

    import time

    # CPU time of the thread, not wall time: a send() that lets the peer run, a queue put that wakes another
    # thread, must not count the time others ran meanwhile.
    _prof = cProfile.Profile(time.thread_time)

    def _start(*_):
        _prof.enable()

    def _dump(*_):
        _prof.disable()
        _prof.dump_stats(os.path.join(_dir, f"ampd-{os.getpid()}.prof"))

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _dump)

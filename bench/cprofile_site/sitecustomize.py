"""Imported by every Python process started with this directory on PYTHONPATH (bench/profile_threads.py
--cprofile): an `ampd` process profiles its main (event-loop) thread and its database thread (`ampere-db`) with
cProfile, on SIGUSR1, and dumps the stats to $AMP_CPROFILE_DIR/ampd-PID[-db].prof on SIGUSR2 (the bench asks
for both around the measured run); with $AMP_CPROFILE_AUTOSTART set, from its start to its clean exit.  Not for
production."""
import os
import sys

_dir = os.environ.get("AMP_CPROFILE_DIR")
if _dir and any("ampere.cli.ampd" in a or a.endswith("/ampd") for a in sys.argv + sys.orig_argv):
    import cProfile
    import signal
    import threading
    import time

    # CPU time of the thread, not wall time: a send() that lets the peer run, a queue put that wakes another
    # thread, must not count the time others ran meanwhile.
    _prof = cProfile.Profile(time.thread_time)
    _db_prof = cProfile.Profile(time.thread_time)
    _db_on = threading.Event()
    _run = threading.Thread.run

    def _run_profiled(self):
        if self.name != "ampere-db":
            return _run(self)
        # The database thread turns its own profiler on (a profiler hooks the thread that enables it) at its
        # first job after SIGUSR1: the bench's first payment follows within milliseconds.
        serve_job = getattr(self, "_target", None)
        if serve_job is None:
            return _run(self)
        store = getattr(serve_job, "__self__", None)
        jobs = getattr(store, "_jobs", None)
        if jobs is None:
            return _run(self)
        get = jobs.get

        class _Jobs:
            def get(self_inner):
                job = get()
                if _db_on.is_set() and not getattr(_run_profiled, "on", False):
                    _run_profiled.on = True
                    _db_prof.enable()
                return job
        store._jobs = _Jobs()
        store._jobs.put = jobs.put
        return _run(self)

    threading.Thread.run = _run_profiled

    def _start(*_):
        _db_on.set()
        _prof.enable()

    def _dump(*_):
        _prof.disable()
        _prof.dump_stats(os.path.join(_dir, f"ampd-{os.getpid()}.prof"))
        _db_prof.dump_stats(os.path.join(_dir, f"ampd-{os.getpid()}-db.prof"))

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _dump)
    if os.environ.get("AMP_CPROFILE_AUTOSTART"):
        # For benches that do not signal (profile_channels): profile from the start, dump at a clean exit.
        import atexit

        _start()
        atexit.register(_dump)

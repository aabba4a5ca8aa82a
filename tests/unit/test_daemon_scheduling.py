"""--scheduling-policy (daemon._apply_scheduling_policy): batch puts the calling thread under SCHED_BATCH, and what
it starts afterwards (threads, child processes) inherits it; normal leaves the policy alone; nothing else is
accepted."""

import os
import subprocess
import sys
import threading

import pytest

from ampere.node.app import daemon
from ampere.node.app.options import _scheduling_policy

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies")


def _in_fresh_thread(policy: str) -> dict:
    """Apply `policy` in a new thread (the policy is per thread: the test runner's own threads stay as they are)
    and report what that thread, a thread it starts and a process it starts run under."""
    seen: dict = {}

    def body() -> None:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))  # whatever the runner runs under
        seen["note"] = daemon._apply_scheduling_policy(policy)
        seen["thread"] = os.sched_getscheduler(0)
        child: list[int] = []
        t = threading.Thread(target=lambda: child.append(os.sched_getscheduler(0)))
        t.start()
        t.join()
        seen["child_thread"] = child[0]
        out = subprocess.run([sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        seen["child_process"] = int(out)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    return seen


def test_batch_applies_to_the_thread_and_what_it_starts():
    before = os.sched_getscheduler(0)
    seen = _in_fresh_thread("batch")
    assert seen == {"note": None, "thread": os.SCHED_BATCH, "child_thread": os.SCHED_BATCH,
                    "child_process": os.SCHED_BATCH}
    assert os.sched_getscheduler(0) == before  # the runner's own thread is untouched


def test_normal_leaves_the_policy_alone():
    seen = _in_fresh_thread("normal")
    other = os.SCHED_OTHER
    assert seen == {"note": None, "thread": other, "child_thread": other, "child_process": other}


@pytest.mark.parametrize("value", ["fifo", "BATCH", "", "idle"])
def test_other_values_are_refused(value):
    with pytest.raises(ValueError, match="batch or normal"):
        _scheduling_policy(value)
    _scheduling_policy("batch")
    _scheduling_policy("normal")


def test_a_refused_policy_is_reported_not_fatal(monkeypatch):
    def refuse(*_args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(daemon.os, "sched_setscheduler", refuse)
    note = daemon._apply_scheduling_policy("batch")
    assert note == ("scheduling-policy=batch: Operation not permitted; running under the policy ampd was started "
                    "with")
    assert daemon._apply_scheduling_policy("normal") is None

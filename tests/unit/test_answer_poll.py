"""Polling briefly for a quick plugin's answer (ampere.plugins.answer_poll): only for plugins that answer within the
window, only while the request is the plugin's only one, never past the window, and never with the machine busy."""

import asyncio
import os
import sys
import textwrap

import pytest

from ampere.plugins import answer_poll
from ampere.plugins.answer_poll import POLL_WINDOW, AnswerTimes, _Poller
from ampere.plugins.process import PluginProcess


def test_a_plugin_is_polled_for_until_its_answers_come_later_than_the_window():
    times = AnswerTimes()
    assert times.worth_polling()  # no answer yet: optimistic
    for _ in range(20):
        times.answered(POLL_WINDOW / 2)
    assert times.worth_polling()
    times.answered(0.02)  # one answer of 20 ms is enough
    assert not times.worth_polling()
    for _ in range(40):  # quick again: polled for again
        times.answered(POLL_WINDOW / 4)
    assert times.worth_polling()


@pytest.mark.parametrize("runnable, spare", [(1, True), (3, True), (4, False), (12, False)])
def test_spare_cpu_counts_the_runnable_threads_of_the_machine(tmp_path, monkeypatch, runnable, spare):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text(f"0.52 0.58 0.59 {runnable}/467 1234\n")
    fd = os.open(loadavg, os.O_RDONLY)
    try:
        monkeypatch.setattr(answer_poll, "_LOADAVG", fd)
        monkeypatch.setattr(answer_poll, "CPUS", 2)
        assert answer_poll.spare_cpu() is spare
        loadavg.write_text("garbage\n")  # unreadable: assumed spare, never an exception in the request path
        assert answer_poll.spare_cpu() is True
    finally:
        os.close(fd)


def test_the_poller_turns_the_loop_while_waiting_and_stops_at_the_window_or_the_answer(monkeypatch):
    monkeypatch.setattr(answer_poll, "spare_cpu", lambda: True)

    async def go():
        poller = _Poller()
        poller.poll(lambda: True, window=0.005)  # nothing answers: stops at the window
        await asyncio.sleep(0.03)
        turns = poller.turns
        assert turns > 0 and not poller._running
        await asyncio.sleep(0.01)
        assert poller.turns == turns

        answered = []
        poller.poll(lambda: not answered, window=10.0)  # answered after 5 ms: stops then, not 10 s later
        asyncio.get_running_loop().call_later(0.005, answered.append, True)
        await asyncio.sleep(0.03)
        assert not poller._running
        assert poller.turns > turns

    asyncio.run(go())


def test_the_poller_does_not_poll_when_no_cpu_is_spare(monkeypatch):
    monkeypatch.setattr(answer_poll, "spare_cpu", lambda: False)

    async def go():
        poller = _Poller()
        poller.poll(lambda: True, window=0.005)
        await asyncio.sleep(0.01)
        assert poller.turns == 0 and not poller._running

    asyncio.run(go())


PLUGIN = """\
import json, sys, time
delay = float(sys.argv[1])
buf = ""
for line in sys.stdin:
    buf += line
    if line.strip():
        continue
    if not buf.strip():
        buf = ""
        continue
    req, buf = json.loads(buf), ""
    time.sleep(delay)
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": {"echo": req["params"]}}) + "\\n\\n")
    sys.stdout.flush()
"""


def test_quick_plugin_polled_for_slow_one_or_window_0_not_answers_arrive_either_way(tmp_path, monkeypatch):
    monkeypatch.setattr(answer_poll, "ENABLED", True)  # (a one-CPU machine would not poll at all)
    monkeypatch.setattr(answer_poll, "spare_cpu", lambda: True)
    poller = _Poller()
    monkeypatch.setattr(answer_poll, "POLLER", poller)
    script = tmp_path / "plugin.py"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(PLUGIN))
    script.chmod(0o755)

    async def calls(delay: float, n: int, window: float = POLL_WINDOW) -> list[int]:
        """The poller's turns after each of n sequential calls to a plugin answering after `delay` seconds."""
        plugin = PluginProcess(str(script), cwd=str(tmp_path), env=dict(os.environ), argv_extra=(str(delay),),
                               on_notification=lambda m: None, on_protocol_error=pytest.fail, on_eof=lambda: None,
                               poll_window=window)
        await plugin.spawn()
        turns = []
        try:
            for i in range(n):
                answer = await asyncio.wait_for(plugin.request("echo", [i])[1], 10)
                assert answer["result"] == {"echo": [i]}
                turns.append(poller.turns)
            return turns
        finally:
            plugin.kill()
            await plugin.wait_exited(5)

    never = asyncio.run(calls(0.0, 10, window=0))  # plugin-answer-poll-us=0
    assert never[-1] == 0
    quick = asyncio.run(calls(0.0, 20))
    assert quick[-1] > 0  # polled (whether a given answer came within the window depends on the machine)

    before = poller.turns
    slow = asyncio.run(calls(0.02, 6))
    # The first request is polled for (no answer time yet), for one window at most; from the second on, the
    # 20 ms answers have shown the plugin slow, and the loop sleeps.
    assert slow[0] >= before
    assert slow[-1] == slow[0]

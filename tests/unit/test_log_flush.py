"""Log lines written on the event loop reach the file at the end of the loop's turn, in one write (log.py);
lines from other threads, or with no loop running, at once; close() writes what is pending."""

from __future__ import annotations

import asyncio
import threading

from ampere.log import Logger, parse_log_level


def _logger(tmp_path) -> tuple[Logger, str]:
    path = str(tmp_path / "log")
    log = Logger()
    log.set_levels([parse_log_level("debug")])
    log.open_files([path])
    return log, path


def _lines(path: str) -> list[str]:
    with open(path) as f:
        return [line.rstrip("\n").split(": ", 1)[1] for line in f]


def test_loop_lines_reach_the_file_at_the_end_of_the_turn(tmp_path):
    log, path = _logger(tmp_path)

    async def main() -> tuple[list[str], list[str]]:
        for i in range(3):
            log.debug("src", f"line {i}")
        during = _lines(path)  # still this turn: buffered
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return during, _lines(path)

    during, after = asyncio.run(main())
    assert during == []
    assert after == ["line 0", "line 1", "line 2"]
    log.close()


def test_thread_and_loopless_lines_are_written_at_once(tmp_path):
    log, path = _logger(tmp_path)
    log.info("src", "no loop")
    assert _lines(path) == ["no loop"]
    seen: list[list[str]] = []

    async def main() -> None:
        def other() -> None:
            log.info("src", "from a thread")
            seen.append(_lines(path))
        t = threading.Thread(target=other)
        t.start()
        t.join()

    asyncio.run(main())
    assert seen == [["no loop", "from a thread"]]
    log.close()


def test_close_and_a_new_loop_write_what_is_pending(tmp_path):
    log, path = _logger(tmp_path)

    async def first() -> None:
        log.info("src", "pending at stop")
        asyncio.get_running_loop().stop()  # the loop stops before the turn's flush runs

    loop = asyncio.new_event_loop()
    loop.create_task(first())
    loop.run_forever()
    loop.close()

    async def second() -> None:
        log.info("src", "next loop")  # schedules its own flush: the stopped loop's never runs
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(second())
    assert _lines(path) == ["pending at stop", "next loop"]

    async def third() -> None:
        log.info("src", "then closed")
        log.close()

    asyncio.run(third())
    assert _lines(path)[-1] == "then closed"

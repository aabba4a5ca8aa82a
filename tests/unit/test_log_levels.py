"""The logger's per-source level cache and cached timestamp text give the same answers as computing each time."""

import io
import time

from ampere.log import Logger, iso_timestamp, parse_log_level


def test_levels_per_source_follow_set_levels():
    log = Logger()
    out = io.StringIO()
    log.outputs.append(out)
    log.log("debug", "plugin-x", "hidden")  # default info: debug is dropped (and the answer is cached)
    log.set_levels([parse_log_level("info"), parse_log_level("debug:plugin-x")])
    log.log("debug", "plugin-x", "shown")  # the cache was dropped with the old filters
    log.log("debug", "lightningd", "hidden too")
    log.set_levels([parse_log_level("broken")])
    log.log("info", "plugin-x", "hidden again")
    text = out.getvalue()
    assert "shown" in text and "hidden" not in text


def test_timestamp_text_matches_strftime_across_seconds():
    base = 1_700_000_000
    for t in (base + 0.001, base + 0.999, base + 1.0, base + 0.5, base + 86_400.25, time.time()):
        assert iso_timestamp(t) == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"

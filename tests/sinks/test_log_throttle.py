"""aiokafka's per-attempt error lines are throttled while a broker is down."""

from __future__ import annotations

import logging

import pytest

from wiresens.sinks.kafka import RepeatFilter, throttle_aiokafka_logs


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, msg, args, None)


def test_a_repeated_message_passes_once_per_period_with_the_count_held_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr("wiresens.sinks.kafka.time.monotonic", lambda: now[0])
    f = RepeatFilter(every_s=10.0)
    fmt = "Unable connect to node with id %s: %s"
    assert f.filter(_record(fmt, 1, "refused"))
    passed = 0
    for i in range(40):
        now[0] += 0.1
        passed += f.filter(_record(fmt, 1, f"refused {i}"))
    assert passed == 0
    # Another message is not held back by the first one's period.
    assert f.filter(_record("Unable to update metadata from %s", [1]))
    now[0] += 10.0
    rec = _record(fmt, 1, "refused")
    assert f.filter(rec)
    assert rec.getMessage() == (
        "Unable connect to node with id 1: refused (40 more like this in the last 10 s)"
    )


def test_the_filter_is_on_the_loggers_aiokafka_uses(caplog: pytest.LogCaptureFixture) -> None:
    throttle_aiokafka_logs()
    throttle_aiokafka_logs()  # idempotent
    client_log = logging.getLogger("aiokafka")  # aiokafka.client's logger
    assert sum(isinstance(f, RepeatFilter) for f in client_log.filters) == 1
    with caplog.at_level(logging.ERROR, logger="aiokafka"):
        # A format string of its own: the filter is per process, and other tests' sinks
        # may have logged aiokafka's own messages moments ago.
        for i in range(5):
            client_log.error("test-throttle attempt %s", i)
    assert [r.getMessage() for r in caplog.records if "test-throttle" in r.getMessage()] == [
        "test-throttle attempt 0"
    ]

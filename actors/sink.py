"""A sink actor: copies the event log into Kafka or PostgreSQL, in its own process.

The sidecar writes the event log; each configured sink is a separate actor that
reads the log files from its committed offset (``wiresens.sinks.SinkRunner``), so
a sink that is down, slow or crashing never touches the tap rings or the
trading actors. The StrategyMaster restarts it like any actor; it resumes from
its committed offset. Its status (state, lag, retries, last error) is written
every second to ``<event log>/sinks/<name>.status.json`` for ``node status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .actor import Actor
from .status import StatusWriter

__all__ = ["SinkActor"]

DRAIN_S = 7.0
"""How long a stopping sink keeps copying to reach the end of the log (the master gives
the sidecar group 10 s); what is left is copied at the next start from the offset."""

STOP_S = 2.0
"""After the drain, how long the write in flight may take before the task is cancelled."""

WRITER_GRACE_S = 2.0
"""A drain waits for the log's writer to close (the whole node stopping) up to this long;
a sink stopped on its own, beside a running sidecar, ends its drain after it."""


def writer_holds(directory: Path) -> bool:
    """True while an event-log writer (the sidecar) holds ``directory``.

    The writer keeps an ``flock`` on ``<dir>/.lock`` as long as the log is open; a shared
    probe that does not block tells whether it still does, and is dropped at once. Only
    a stopping sink probes, when no writer is being started.
    """
    try:
        fd = os.open(directory / ".lock", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing the descriptor drops the probe's lock
    return False


class SinkActor(Actor):
    """One sink (``"kafka"`` or ``"postgres"``) fed from the event log in ``event_log_dir``.

    ``options`` is the sink's config table (Kafka: ``bootstrap_servers``, ``topic_prefix``,
    ``client_id``, and ``timeout_s``, the write timeout, 15 s by default); ``backoff_s``
    (min, max) overrides the runner's retry backoff (tests use it to make a retry wait
    outlast the drain bound).
    """

    def __init__(
        self,
        *,
        sink: str,
        event_log_dir: str,
        node: str,
        options: dict[str, Any],
        backoff_s: tuple[float, float] | None = None,
    ) -> None:
        self.name = f"sink:{sink}"
        self.kind = sink
        self.dir = Path(event_log_dir)
        self.node = node
        self.options = dict(options)
        self.backoff_s = backoff_s

    def _make_sink(self) -> Any:
        if self.kind == "kafka":
            from wiresens.sinks.kafka import KafkaSink

            return KafkaSink(
                ",".join(self.options["bootstrap_servers"]),
                name="kafka",
                prefix=self.options.get("topic_prefix", "wiresens"),
                client_id=self.options.get("client_id", "wiresens-sidecar"),
                timeout_s=float(self.options.get("timeout_s", 15.0)),
            )
        from wiresens.sinks.postgres import PostgresSink

        return PostgresSink(
            self.options["dsn"],
            node=self.node,
            name="postgres",
            schema=self.options.get("schema", "wiresens"),
        )

    def run(self, should_stop: Callable[[], bool], status: StatusWriter | None, idle: str) -> bool:
        asyncio.run(self._main(should_stop, status))
        return True

    async def _main(self, should_stop: Callable[[], bool], status: StatusWriter | None) -> None:
        from wiresens.sinks.base import BatchPolicy, SinkRunner

        (self.dir / "sinks").mkdir(parents=True, exist_ok=True)
        policy = None
        if self.backoff_s is not None:
            policy = BatchPolicy(backoff_min_s=self.backoff_s[0], backoff_max_s=self.backoff_s[1])
        runner = SinkRunner(self._make_sink(), self.dir, policy=policy)
        task = asyncio.create_task(runner.run())
        path = self.dir / "sinks" / f"{self.kind}.status.json"
        cycles = 0
        try:
            while not should_stop() and not task.done():
                await asyncio.sleep(1.0 if cycles else 0.1)
                cycles += 1
                st = runner.status()
                self._write_status(path, st)
                if status is not None:
                    status.heartbeat(cycles, int(st.get("records", 0)))
        finally:
            # A clean stop drains: the sidecar (stopping beside us) writes the last taps and
            # closes the log, and the runner copies up to that end, retrying at once if it
            # was backing off from an outage. What a drain cannot copy in DRAIN_S stays in
            # the log and goes out from the committed offset at the next start.
            stop_t = time.monotonic()

            def writer_done() -> bool:
                return not writer_holds(self.dir) or time.monotonic() - stop_t >= WRITER_GRACE_S

            await runner.drain(DRAIN_S, ready=writer_done)
            if not await runner.wait_finished(STOP_S):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task})
            self._write_status(path, runner.status())
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    @staticmethod
    def _write_status(path: Path, st: dict[str, Any]) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(st, default=str))
        os.replace(tmp, path)

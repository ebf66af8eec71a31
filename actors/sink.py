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


class SinkActor(Actor):
    def __init__(
        self, *, sink: str, event_log_dir: str, node: str, options: dict[str, Any]
    ) -> None:
        self.name = f"sink:{sink}"
        self.kind = sink
        self.dir = Path(event_log_dir)
        self.node = node
        self.options = dict(options)

    def _make_sink(self) -> Any:
        if self.kind == "kafka":
            from wiresens.sinks.kafka import KafkaSink

            return KafkaSink(
                ",".join(self.options["bootstrap_servers"]),
                name="kafka",
                prefix=self.options.get("topic_prefix", "wiresens"),
                client_id=self.options.get("client_id", "wiresens-sidecar"),
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
        from wiresens.sinks.base import SinkRunner

        (self.dir / "sinks").mkdir(parents=True, exist_ok=True)
        runner = SinkRunner(self._make_sink(), self.dir)
        task = asyncio.create_task(runner.run())
        path = self.dir / "sinks" / f"{self.kind}.status.json"
        cycles = 0
        try:
            while not should_stop() and not task.done():
                await asyncio.sleep(1.0 if cycles else 0.1)
                cycles += 1
                st = runner.status()
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(st, default=str))
                os.replace(tmp, path)
                if status is not None:
                    status.heartbeat(cycles, int(st.get("records", 0)))
        finally:
            # A clean stop drains first: the sidecar has written the last taps by now.
            deadline = time.monotonic() + DRAIN_S
            while not task.done() and time.monotonic() < deadline:
                st = runner.status()
                if st.get("connected") and not st.get("lag_bytes"):
                    break
                await asyncio.sleep(0.1)
            runner.stop()
            try:
                await asyncio.wait_for(task, 10)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

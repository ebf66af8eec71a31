"""The sink interface, the per-sink offset file, and the runner that feeds a sink from the log.

A sink copies the event log to an outside service (Kafka, PostgreSQL). It never sees
the hot path: :class:`SinkRunner` reads the log's files from the sink's committed
offset, batches entries, hands each batch to :meth:`Sink.write` and commits the batch's
``next_offset`` once the write succeeded. Delivery is at-least-once: a crash between a
write and its commit re-sends that batch, which each sink makes harmless with
idempotent keys (PostgreSQL: unique keys and ``ON CONFLICT DO NOTHING``, with the
offset committed in the rows' transaction; Kafka: the entry's offset and the record's
index travel as headers, so consumers can drop repeats).

::

    event log files ──read──► SinkRunner ──write(batch)──► Sink ──► Kafka / PostgreSQL
         ▲                        │
      writer                      └─commit──► <log dir>/sinks/<name>.offset (temp + rename)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable

from wiresens.errors import CorruptEntryError, LogFormatError
from wiresens.eventlog import Entry, EventLogOffset, EventLogReader

__all__ = [
    "BatchPolicy",
    "FileOffsetStore",
    "OffsetKeepingSink",
    "OffsetStore",
    "Sink",
    "SinkRunner",
    "lag_bytes",
]


@runtime_checkable
class Sink(Protocol):
    """What :class:`SinkRunner` drives.

    ``write`` receives entries in log order and returns once every one of them is
    durable in the service; it raises :class:`~wiresens.errors.ServiceUnavailableError`
    (retriable) when the service cannot be reached, after which the runner calls it
    again with the same batch. ``start`` connects (and may raise the same error: the
    runner retries it too); ``close`` releases the connection and must not raise.
    """

    name: str

    async def start(self) -> None: ...

    async def write(self, entries: Sequence[Entry]) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class OffsetKeepingSink(Sink, Protocol):
    """A sink that stores its committed offset in the service, atomically with the data.

    :meth:`SinkRunner` then resumes from :meth:`committed_offset` (called after
    ``start``) rather than from the offset file, so a crash between the service's
    commit and the file's rename cannot replay, and an emptied database is refilled
    from the beginning of the log.
    """

    async def committed_offset(self) -> EventLogOffset | None: ...


class OffsetStore(Protocol):
    """Where a runner keeps a sink's committed offset."""

    def load(self) -> EventLogOffset | None: ...

    def save(self, offset: EventLogOffset) -> None: ...


class FileOffsetStore:
    """A sink's committed offset in ``<log dir>/sinks/<name>.offset``.

    The file holds one line, :meth:`EventLogOffset.encode` (``"000012:0000001234"``);
    a save writes a temporary file beside it, then renames it over the old one, so a
    reader (or a crash) sees either the old or the new offset, never half of one.
    """

    def __init__(self, log_dir: str | os.PathLike[str], name: str, *, fsync: bool = False) -> None:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(
                f"sink name {name!r} cannot name an offset file; use letters, digits, '-' or '_'"
            )
        self.directory = os.path.join(os.fspath(log_dir), "sinks")
        self.path = os.path.join(self.directory, f"{name}.offset")
        self.fsync = fsync

    def load(self) -> EventLogOffset | None:
        """The committed offset, None when the sink never committed."""
        try:
            with open(self.path) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        try:
            return EventLogOffset.decode(text)
        except ValueError as exc:
            raise ValueError(
                f"{self.path}: {exc}; delete the file to resend the whole log, or write the "
                "offset to resume from"
            ) from None

    def save(self, offset: EventLogOffset) -> None:
        """Atomically replace the committed offset."""
        os.makedirs(self.directory, exist_ok=True)
        tmp = f"{self.path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(offset.encode() + "\n")
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self.path)


DRAIN_BACKOFF_S = 0.25
"""While draining (:meth:`SinkRunner.drain`) a failed write is retried after at most this."""

LAG_COUNT_LIMIT = 10_000
"""status() counts the entries behind up to this many (then reports a lower bound)."""


@dataclass(frozen=True)
class BatchPolicy:
    """When the runner closes a batch and how it retries.

    A batch is written when it holds ``max_records`` records (or ``max_entries``
    entries), or ``max_delay_s`` after its first entry was read, whichever comes first;
    an idle log is polled every ``poll_s``. Failed writes are retried after
    ``backoff_min_s``, doubling up to ``backoff_max_s``.
    """

    max_records: int = 5000
    max_entries: int = 1000
    max_delay_s: float = 0.05
    poll_s: float = 0.02
    backoff_min_s: float = 0.1
    backoff_max_s: float = 10.0


def lag_bytes(directory: str, committed: EventLogOffset | None) -> int:
    """Bytes of segment files past ``committed`` (everything when None)."""
    from wiresens.eventlog.format import parse_segment_name

    total = 0
    seg0, pos0 = committed if committed is not None else (0, 0)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    for name in names:
        n = parse_segment_name(name)
        if n is None or n < seg0:
            continue
        try:
            size = os.stat(os.path.join(directory, name)).st_size
        except FileNotFoundError:
            continue
        total += max(0, size - pos0) if n == seg0 else size
    return total


def _key(offset: EventLogOffset | None) -> tuple[int, int]:
    """An offset for ordering, None (the log's beginning) first."""
    return (-1, -1) if offset is None else (offset[0], offset[1])


def _describe(exc: BaseException) -> str:
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"


class SinkRunner:
    """Feed one sink from the event log in ``reader_dir``, forever (an asyncio task).

    Parameters
    ----------
    sink
        The sink to drive; the runner calls its ``start``, ``write`` and ``close``.
    reader_dir
        The event-log directory (the writer's); the runner only reads its files, so it
        never blocks or slows the writer.
    offset_store
        Where the committed offset lives; default ``FileOffsetStore(reader_dir, sink.name)``.
    policy
        Batch size and time, poll interval and retry backoff; default the sink's
        ``batch_policy`` attribute if it has one, else ``BatchPolicy()``.
    kinds
        Record kinds to read (``RAW_KIND`` for raw messages); when None, the sink's own
        ``kinds`` attribute if it has one, else all. Entries of other kinds are skipped
        without reaching the sink, and still committed past.
    skip_corrupt
        Skip corrupt entries (listed in ``reader.corrupt``) instead of stopping.

    Use :meth:`run` as a task (``asyncio.create_task(runner.run())``), :meth:`stop` to
    end it after the batch in flight, :meth:`drain` to end it once the log's end is
    copied, :meth:`status` to watch it, and :meth:`run_until_caught_up` to copy the log
    as it is now and return.

    An offset is committed only after ``Sink.write`` returned for every entry before
    it, i.e. once the service acknowledged them all.

    A failing service never ends the task: any exception from ``start``/``write`` is
    retried with backoff (a non-retriable one too, since giving up would drop data; it
    shows in ``status()["last_error"]``). Only a log it cannot read ends it: a corrupt
    entry (without ``skip_corrupt``) raises ``CorruptEntryError`` from :meth:`run`, with
    state ``failed``.
    """

    def __init__(
        self,
        sink: Sink,
        reader_dir: str | os.PathLike[str],
        offset_store: OffsetStore | None = None,
        *,
        policy: BatchPolicy | None = None,
        kinds: Iterable[int] | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        self.sink = sink
        self.directory = os.fspath(reader_dir)
        self.store: OffsetStore = offset_store or FileOffsetStore(self.directory, sink.name)
        self.policy: BatchPolicy = policy or getattr(sink, "batch_policy", None) or BatchPolicy()
        if kinds is None:
            kinds = getattr(sink, "kinds", None)
        self.kinds = None if kinds is None else frozenset(int(k) for k in kinds)
        self.skip_corrupt = skip_corrupt
        self._reader: EventLogReader | None = None
        self._lag_reader: EventLogReader | None = None
        self._lag_from: EventLogOffset | None = None
        self._lag_pos: EventLogOffset | None = None
        self._lag_n = 0
        self._lag_entries_at = 0
        self._lag_valid = False
        self._stopping = asyncio.Event()
        # Set by stop() and drain(): cuts a retry or poll wait short.
        self._wake = asyncio.Event()
        self._finished = asyncio.Event()
        self._draining = False
        self._drain_ready: Callable[[], bool] | None = None
        self._drained = False
        self.committed: EventLogOffset | None = None
        self._read_pos: EventLogOffset | None = None
        self._state = "new"
        self._connected = False
        self._last_error: str | None = None
        self._last_error_ns = 0
        self._retries = 0
        self._total_retries = 0
        self._entries = 0
        self._records = 0
        self._batches = 0
        self._pending_entries = 0
        self._pending_records = 0
        self._caught_up = False
        self._last_commit_ns = 0

    # -- status -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The runner's state for ``node status`` and tests (plain JSON types).

        Keys: ``name``, ``state`` (new, connecting, running, retrying, stopped, failed:
        the log cannot be read past a corrupt entry, see ``skip_corrupt``),
        ``connected``, ``committed`` (encoded offset or None), ``lag_bytes`` (log bytes
        past the committed offset), ``lag_entries`` (entries past it, counted up to
        ``LAG_COUNT_LIMIT``; ``lag_entries_exact`` is False when it stopped there), ``pending_entries``/``pending_records`` (read, not
        yet committed), ``caught_up`` (the last read reached the log's end and all of
        it is committed), ``retries`` (consecutive failures now), ``total_retries``,
        ``last_error`` and ``last_error_ns``, ``entries``/``records``/``batches``
        written, ``last_commit_ns``, ``corrupt_skipped`` (entries skipped with
        ``skip_corrupt``), ``draining`` and ``drained`` (see :meth:`drain`).
        """
        return {
            "name": self.sink.name,
            "state": self._state,
            "connected": self._connected,
            "committed": None if self.committed is None else self.committed.encode(),
            "lag_bytes": lag_bytes(self.directory, self.committed),
            **self._lag_entries(),
            "pending_entries": self._pending_entries,
            "pending_records": self._pending_records,
            "caught_up": self._caught_up,
            "retries": self._retries,
            "total_retries": self._total_retries,
            "last_error": self._last_error,
            "last_error_ns": self._last_error_ns,
            "entries": self._entries,
            "records": self._records,
            "batches": self._batches,
            "last_commit_ns": self._last_commit_ns,
            "corrupt_skipped": 0 if self._reader is None else len(self._reader.corrupt),
            "draining": self._draining,
            "drained": self._drained,
        }

    def _lag_entries(self) -> dict[str, Any]:
        """Entries past the committed offset, counted up to LAG_COUNT_LIMIT.

        Incremental: the count carries over between calls, less the entries written
        since, and only entries past the previous count's end are read. A full count of
        a 10,000-entry backlog every second (status is written that often) costs a
        loaded 2-core machine a sixth of a CPU while a service is down, which is CPU
        the trading actors need. Its own reader: the runner's may be busy in the read
        thread.
        """
        committed = self.committed
        if committed != self._lag_from or not self._lag_valid:
            if self._lag_valid and _key(self._lag_from) <= _key(committed) <= _key(self._lag_pos):
                # Every entry written since the last count lay inside the counted range.
                self._lag_n = max(0, self._lag_n - (self._entries - self._lag_entries_at))
            else:
                self._lag_pos, self._lag_n, self._lag_valid = committed, 0, True
        self._lag_from, self._lag_entries_at = committed, self._entries
        n = self._lag_n
        if n < LAG_COUNT_LIMIT:
            try:
                if self._lag_reader is None:
                    self._lag_reader = EventLogReader(self.directory)
                it = self._lag_reader.entries(self._lag_pos, kinds=self.kinds, skip_corrupt=True)
                gen = cast(Generator[Entry, None, None], it)
                try:
                    for entry in gen:
                        n += 1
                        self._lag_pos = entry.next_offset
                        if n >= LAG_COUNT_LIMIT:
                            break
                finally:
                    gen.close()
            except (OSError, LogFormatError):
                self._lag_valid, self._lag_reader = False, None
                return {"lag_entries": None, "lag_entries_exact": False}
        self._lag_n = n
        return {"lag_entries": n, "lag_entries_exact": n < LAG_COUNT_LIMIT}

    # -- lifecycle --------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to return after the write in flight (or its retry wait)."""
        self._stopping.set()
        self._wake.set()

    async def drain(self, timeout_s: float, *, ready: Callable[[], bool] | None = None) -> bool:
        """Copy to the end of the log, then end :meth:`run`; True when all of it was copied.

        A stopping node calls this instead of :meth:`stop`, so what the log holds reaches
        the service before the process exits. A retry wait in progress is cut short and
        later retries come after at most ``DRAIN_BACKOFF_S`` (a sink that was backing off
        for seconds during an outage would otherwise sleep through the whole bound), and
        a partial batch is written at once instead of after ``max_delay_s``.

        Parameters
        ----------
        timeout_s
            Bound on the drain; past it the runner is stopped as by :meth:`stop`
            (what is left is copied from the committed offset at the next start) and
            this returns False. The write in flight, if any, still ends first.
        ready
            Called each time the runner has committed everything it can read: the
            drain ends when it returns True (e.g. once the log's writer has closed, so
            nothing more will come). None ends it at the first such point.
        """
        if self._finished.is_set():
            return self._drained
        self._drain_ready = ready
        self._draining = True
        self._wake.set()
        try:
            await asyncio.wait_for(self._finished.wait(), timeout_s)
        except TimeoutError:
            self.stop()
        return self._drained

    async def wait_finished(self, timeout_s: float) -> bool:
        """Wait until :meth:`run` has returned; False after ``timeout_s``."""
        try:
            await asyncio.wait_for(self._finished.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Connect, then copy the log to the sink and follow it until :meth:`stop`."""
        try:
            await self._loop(until_caught_up=False)
        finally:
            await self._shutdown()
            self._finished.set()

    async def run_until_caught_up(self) -> None:
        """Copy everything the log holds now (and what arrives meanwhile), then return."""
        try:
            await self._loop(until_caught_up=True)
        finally:
            await self._shutdown()
            self._finished.set()

    async def _shutdown(self) -> None:
        if self._state != "failed":
            self._state = "stopped"
        self._connected = False
        with contextlib.suppress(Exception):
            await self.sink.close()

    def _failed(self, exc: BaseException) -> float:
        self._connected = False
        self._caught_up = False
        self._state = "retrying"
        self._last_error = _describe(exc)
        self._last_error_ns = time.time_ns()
        self._retries += 1
        self._total_retries += 1
        p = self.policy
        delay = min(p.backoff_max_s, p.backoff_min_s * 2 ** (self._retries - 1))
        if self._draining:
            delay = min(delay, DRAIN_BACKOFF_S)
        return float(delay)

    async def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds``, or less when stopped or asked to drain; True when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        if self._stopping.is_set():
            return True
        # A drain request ends this one wait only; the next waits run their course.
        self._wake.clear()
        return False

    async def _connect(self) -> bool:
        """Start the sink and find the offset to resume from; False when stopped first."""
        self._state = "connecting"
        while not self._stopping.is_set():
            try:
                await self.sink.start()
                if isinstance(self.sink, OffsetKeepingSink):
                    self.committed = await self.sink.committed_offset()
                else:
                    self.committed = self.store.load()
            except Exception as exc:
                delay = self._failed(exc)
                with contextlib.suppress(Exception):
                    await self.sink.close()
                if await self._sleep(delay):
                    return False
                self._state = "connecting"
                continue
            self._connected = True
            self._retries = 0
            self._state = "running"
            self._read_pos = self.committed
            return True
        return False

    async def _loop(self, *, until_caught_up: bool) -> None:
        if not await self._connect():
            return
        p = self.policy
        batch: list[Entry] = []
        records = 0
        first_ns = 0
        while not self._stopping.is_set():
            if not batch:
                records = 0
            try:
                # File reads run in a thread so the loop keeps serving the sink's sockets.
                at_end = await asyncio.to_thread(self._read_more, batch, records)
            except (CorruptEntryError, LogFormatError) as exc:
                # Not retriable: the same bytes fail again. Say so, then end the task.
                self._state = "failed"
                self._last_error = _describe(exc)
                self._last_error_ns = time.time_ns()
                raise
            if len(batch) and not first_ns:
                first_ns = time.monotonic_ns()
                # Read but not yet acknowledged: not caught up, whatever the last write said.
                self._caught_up = False
            records = sum(e.count for e in batch)
            self._pending_entries, self._pending_records = len(batch), records
            full = records >= p.max_records or len(batch) >= p.max_entries
            due = batch and time.monotonic_ns() - first_ns >= p.max_delay_s * 1e9
            if batch and (full or due or (at_end and (until_caught_up or self._draining))):
                if not await self._write(batch):
                    return
                self._caught_up = at_end and not full
                batch = []
                first_ns = 0
                self._pending_entries = self._pending_records = 0
                continue
            if at_end and not batch:
                self._caught_up = True
                if self._read_pos is not None and self._read_pos != self.committed:
                    # Only entries of kinds this sink skips were read: commit past them.
                    self.committed = self._read_pos
                    self.store.save(self.committed)
                if until_caught_up:
                    return
                if self._draining and (self._drain_ready is None or self._drain_ready()):
                    self._drained = True
                    return
            if at_end and await self._sleep(p.poll_s):
                return

    def _read_more(self, batch: list[Entry], records: int) -> bool:
        """Append entries to ``batch`` from the read position; True at the log's end."""
        if self._reader is None:
            self._reader = EventLogReader(self.directory)
        p = self.policy
        it = self._reader.entries(self._read_pos, skip_corrupt=self.skip_corrupt)
        # entries() is a generator: close it so its segment file is closed now.
        gen = cast(Generator[Entry, None, None], it)
        try:
            for entry in gen:
                self._read_pos = entry.next_offset
                if self.kinds is not None and entry.kind not in self.kinds:
                    continue
                batch.append(entry)
                records += entry.count
                if records >= p.max_records or len(batch) >= p.max_entries:
                    return False
            return True
        finally:
            gen.close()

    async def _write(self, batch: list[Entry]) -> bool:
        """Write and commit ``batch``, retrying until it succeeds; False when stopped."""
        while True:
            try:
                await self.sink.write(batch)
            except Exception as exc:
                delay = self._failed(exc)
                if await self._sleep(delay):
                    return False
                continue
            break
        # Everything read after the batch's last entry was of a skipped kind: commit it too.
        end = self._read_pos if self._read_pos is not None else batch[-1].next_offset
        self.committed = max(end, batch[-1].next_offset)
        self.store.save(self.committed)
        self._connected = True
        self._state = "running"
        self._retries = 0
        self._entries += len(batch)
        self._records += sum(e.count for e in batch)
        self._batches += 1
        self._last_commit_ns = time.time_ns()
        return True

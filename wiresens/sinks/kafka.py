"""Kafka sink: every record of the event log as one Kafka message (aiokafka).

Topics, keys, values
--------------------
* a topic per record kind, ``<prefix>.<kind name in lower case>``
  (``wiresens.top_of_book``, ``wiresens.execution_report``, ``wiresens.order_new``),
  and ``<prefix>.raw`` for raw exchange messages;
* value: the record's bytes exactly as in the log (64 or 128 bytes, the layout of
  ``wiresens.records``; byte 0 is the kind, byte 1 its schema version); for a raw
  message, the message as received;
* key (ASCII decimal, so the partitioner keeps one instrument or one order on one
  partition, in order): ``cl_ord_id`` for orders and execution reports, ``account``
  for account updates, ``symbol`` (the instrument index) for everything else; the
  stream name for raw messages;
* timestamp: the record's log time (``ts_recv``, else ``ts_pub``) in milliseconds;
* headers: ``offset`` (the entry's event-log offset, ``"SSSSSS:PPPPPPPPPP"``) and
  ``idx`` (the record's index in that entry, decimal), plus ``source`` on raw
  messages. (offset, idx) is unique per record of one node's log.

Delivery is at-least-once: the producer is idempotent (``enable_idempotence=True``,
``acks=all``: no duplicates from its own retries), but a batch the runner re-sends
after a failure or a crash may land twice. Consumers that must not double count drop
a message whose (node, offset, idx) they have seen; the offsets of one log only grow,
so remembering the highest (offset, idx) per partition suffices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

from wiresens.errors import ServiceUnavailableError
from wiresens.eventlog import RAW_KIND, Entry, EntryType
from wiresens.eventlog.reader import record_times
from wiresens.records import RecordKind

__all__ = ["KafkaSink", "key_field", "topic_for"]

_ORDER_KEYED = frozenset(
    int(k)
    for k in (
        RecordKind.ORDER_NEW,
        RecordKind.ORDER_CANCEL,
        RecordKind.ORDER_REPLACE,
        RecordKind.ORDER_QUERY,
        RecordKind.EXECUTION_REPORT,
    )
)


def topic_for(prefix: str, kind: int) -> str:
    """The topic of ``kind`` (``RAW_KIND`` gives ``<prefix>.raw``)."""
    if kind == RAW_KIND:
        return f"{prefix}.raw"
    try:
        name = RecordKind(kind).name.lower()
    except ValueError:
        name = f"kind{kind}"
    return f"{prefix}.{name}"


def key_field(kind: int) -> str:
    """The record field a kind's messages are keyed by."""
    if kind in _ORDER_KEYED:
        return "cl_ord_id"
    if kind == RecordKind.ACCOUNT_UPDATE:
        return "account"
    return "symbol"


class RepeatFilter(logging.Filter):
    """Let one message (by its format string) through at most every ``every_s`` seconds.

    aiokafka logs each failed metadata or connection attempt: while a broker is down
    that is dozens of lines a second (4,128 in a 3-run outage benchmark). The runner
    already reports the outage (state, retries, last error) in ``node status``; the log
    keeps the first line and then one per period, with how many were held back.
    """

    def __init__(self, every_s: float = 10.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._last: dict[object, float] = {}
        self._held: dict[object, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = record.msg
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {self.every_s:g} s)"
        return True


_AIOKAFKA_FILTER = RepeatFilter()
# A logger's filter sees only what is logged to that very logger, not its children's.
_AIOKAFKA_LOGGERS = (
    "aiokafka",  # aiokafka.client logs here
    "aiokafka.conn",
    "aiokafka.cluster",
    "aiokafka.producer.producer",
    "aiokafka.producer.sender",
)


def throttle_aiokafka_logs() -> None:
    """Install :class:`RepeatFilter` on aiokafka's loggers (once per process)."""
    for name in _AIOKAFKA_LOGGERS:
        logger = logging.getLogger(name)
        if _AIOKAFKA_FILTER not in logger.filters:
            logger.addFilter(_AIOKAFKA_FILTER)


class KafkaSink:
    """Copy event-log entries to Kafka topics, one message per record.

    Parameters
    ----------
    bootstrap
        ``host:port`` of the Kafka brokers (comma separated for several).
    name
        The sink's name (its offset file is ``<log dir>/sinks/<name>.offset``).
    prefix
        Topic name prefix.
    kinds
        Record kinds to send (``RAW_KIND`` for raw messages); all when None.
    linger_ms, max_batch_bytes
        Producer batching: wait up to ``linger_ms`` to fill a batch of at most
        ``max_batch_bytes`` per partition.
    timeout_s
        A write (delivery of a whole runner batch) that takes longer fails with
        ServiceUnavailableError, and the runner retries it.
    producer_options
        More ``AIOKafkaProducer`` keyword arguments (e.g. ``compression_type``).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        name: str = "kafka",
        prefix: str = "wiresens",
        kinds: Iterable[int] | None = None,
        linger_ms: int = 5,
        max_batch_bytes: int = 1 << 20,
        timeout_s: float = 15.0,
        **producer_options: Any,
    ) -> None:
        self.name = name
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.kinds = None if kinds is None else frozenset(int(k) for k in kinds)
        self.timeout_s = timeout_s
        self._options: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "client_id": f"wiresens-{name}",
            "enable_idempotence": True,
            "acks": "all",
            "linger_ms": linger_ms,
            "max_batch_size": max_batch_bytes,
            "max_request_size": max(max_batch_bytes, 1 << 20),
            "request_timeout_ms": int(timeout_s * 1000),
            **producer_options,
        }
        self._producer: Any = None
        throttle_aiokafka_logs()
        self._partitions: dict[str, list[int]] = {}
        self._idx: list[bytes] = []
        self.messages = 0

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the producer.

        Raises
        ------
        ServiceUnavailableError
            No broker at ``bootstrap`` answers (the runner retries).
        """
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(**self._options)
        try:
            await asyncio.wait_for(producer.start(), self.timeout_s)
        except (KafkaError, OSError, TimeoutError) as exc:
            await _stop(producer, 1.0)
            raise ServiceUnavailableError(
                f"Kafka at {self.bootstrap} is unreachable ({type(exc).__name__}: {exc}); "
                "check the broker address and that it runs; the sink retries"
            ) from exc
        self._producer = producer
        self._partitions = {}

    async def close(self) -> None:
        """Flush and stop the producer (bounded: an unreachable broker is abandoned)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await _stop(producer, 5.0)

    # -- writing ----------------------------------------------------------------------

    async def write(self, entries: Sequence[Entry]) -> None:
        """Send every record of ``entries`` and wait until all are acknowledged.

        Raises
        ------
        ServiceUnavailableError
            Kafka did not acknowledge everything within ``timeout_s``. The producer is
            dropped (a new one, with a new producer id, is made on the next write), so
            the retry starts clean; records that did arrive are sent again.
        """
        try:
            await self.start()
            await asyncio.wait_for(self._send(entries), self.timeout_s)
        except (KafkaError, OSError, TimeoutError) as exc:
            await self._abandon()
            raise ServiceUnavailableError(
                f"Kafka at {self.bootstrap} did not take a batch of {len(entries)} entries "
                f"({type(exc).__name__}: {exc}); the sink retries from the same offset"
            ) from exc

    async def _abandon(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            # stop() would first try to flush to the unreachable broker: give it a second.
            await _stop(producer, 1.0)

    async def _partitions_of(self, topic: str) -> list[int]:
        parts = self._partitions.get(topic)
        if parts is None:
            parts = sorted(await self._producer.partitions_for(topic))
            self._partitions[topic] = parts
        return parts

    def _indexes(self, n: int) -> list[bytes]:
        if n > len(self._idx):
            self._idx = [str(i).encode() for i in range(max(n, 2 * len(self._idx), 1024))]
        return self._idx

    async def _send(self, entries: Sequence[Entry]) -> None:
        producer = self._producer
        builders: dict[tuple[str, int], Any] = {}
        futures: list[asyncio.Future[Any]] = []

        async def flush(tp: tuple[str, int]) -> Any:
            b = builders.pop(tp)
            futures.append(await producer.send_batch(b, tp[0], partition=tp[1]))
            nb = producer.create_batch()
            builders[tp] = nb
            return nb

        sent = 0
        for entry in entries:
            kind = RAW_KIND if entry.type is EntryType.RAW else entry.kind
            if self.kinds is not None and kind not in self.kinds:
                continue
            topic = topic_for(self.prefix, kind)
            parts = await self._partitions_of(topic)
            offset_h = ("offset", entry.offset.encode().encode())
            if entry.raw is not None:
                raw = entry.raw
                key = raw.stream.encode()
                part = parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]
                tp = (topic, part)
                b = builders.get(tp) or builders.setdefault(tp, producer.create_batch())
                headers = [offset_h, ("idx", b"0"), ("source", str(raw.source).encode())]
                args = {"timestamp": raw.ts_recv // 1_000_000, "key": key, "value": bytes(raw.data)}
                if b.append(headers=headers, **args) is None:
                    b = await flush(tp)
                    b.append(headers=headers, **args)
                sent += 1
                continue
            recs = entry.records
            if recs is None or not len(recs):
                continue
            n = len(recs)
            size = recs.dtype.itemsize
            data = recs.tobytes()
            times = (record_times(recs) // 1_000_000).tolist()
            keys_raw = recs[key_field(kind)].tolist()
            keys = [str(k).encode() for k in keys_raw]
            idx = self._indexes(n)
            if len(parts) == 1:
                where = np.zeros(n, np.int64)
            else:
                cache: dict[bytes, int] = {}
                where = np.empty(n, np.int64)
                for i, k in enumerate(keys):
                    p = cache.get(k)
                    if p is None:
                        p = cache[k] = parts[(murmur2(k) & 0x7FFFFFFF) % len(parts)]
                    where[i] = p
            for part in np.unique(where).tolist():
                tp = (topic, parts[0] if len(parts) == 1 else int(part))
                b = builders.get(tp) or builders.setdefault(tp, producer.create_batch())
                rows = range(n) if len(parts) == 1 else np.flatnonzero(where == part).tolist()
                for i in rows:
                    headers = [offset_h, ("idx", idx[i])]
                    value = data[i * size : (i + 1) * size]
                    if (
                        b.append(timestamp=times[i], key=keys[i], value=value, headers=headers)
                        is None
                    ):
                        b = await flush(tp)
                        b.append(timestamp=times[i], key=keys[i], value=value, headers=headers)
                sent += len(rows)
        for tp, b in list(builders.items()):
            if b.record_count():
                futures.append(await producer.send_batch(b, tp[0], partition=tp[1]))
        if futures:
            # Every future's outcome is taken (an exception left unretrieved is printed at
            # exit); the first failure fails the write.
            for result in await asyncio.gather(*futures, return_exceptions=True):
                if isinstance(result, BaseException):
                    raise result
        self.messages += sent


async def _stop(producer: Any, timeout_s: float) -> None:
    """Stop ``producer`` within about ``timeout_s``; past that, drop its sender and
    connections without flushing (their records are re-sent by the runner's retry)."""
    try:
        await asyncio.wait_for(producer.stop(), timeout_s)
        return
    except Exception:
        pass
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sender.close(), 1.0)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.client.close(), 1.0)

"""The event log: append-only segment files of record batches and raw exchange messages.

The sidecar drains the node's tap rings into an :class:`EventLogWriter`; sinks
(Kafka, PostgreSQL), the back-tester and ``wiresens log`` read it with an
:class:`EventLogReader`, by offset (:class:`EventLogOffset`) or by time. The format
is drawn in :mod:`wiresens.eventlog.format` and ``docs/eventlog.md``.
"""

from __future__ import annotations

from wiresens.errors import CorruptEntryError, LogFormatError, LogLockedError

from .format import FORMAT_VERSION, RAW_KIND, EntryType, EventLogOffset, SegmentHeader
from .reader import (
    CorruptEntry,
    Entry,
    EventLogReader,
    KindStats,
    RawMessage,
    SegmentInfo,
    SegmentStats,
    record_times,
)
from .writer import EventLogWriter, Recovery, recover

__all__ = [
    "FORMAT_VERSION",
    "RAW_KIND",
    "CorruptEntry",
    "CorruptEntryError",
    "Entry",
    "EntryType",
    "EventLogOffset",
    "EventLogReader",
    "EventLogWriter",
    "KindStats",
    "LogFormatError",
    "LogLockedError",
    "RawMessage",
    "Recovery",
    "SegmentHeader",
    "SegmentInfo",
    "SegmentStats",
    "record_times",
    "recover",
]

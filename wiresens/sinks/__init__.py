"""Sinks: copy the event log to Kafka and PostgreSQL, at least once, resumable.

:class:`SinkRunner` reads the log's files from a sink's committed offset and feeds it
batches; :class:`KafkaSink` and :class:`PostgresSink` are the two sinks. See
``docs/sinks.md``.
"""

from __future__ import annotations

from .base import (
    BatchPolicy,
    FileOffsetStore,
    OffsetKeepingSink,
    OffsetStore,
    Sink,
    SinkRunner,
    lag_bytes,
)
from .kafka import KafkaSink, key_field, topic_for
from .postgres import MARKET_TABLES, TABLES, PostgresSink, Table, apply_migrations, copy_payload

__all__ = [
    "MARKET_TABLES",
    "TABLES",
    "BatchPolicy",
    "FileOffsetStore",
    "KafkaSink",
    "OffsetKeepingSink",
    "OffsetStore",
    "PostgresSink",
    "Sink",
    "SinkRunner",
    "Table",
    "apply_migrations",
    "copy_payload",
    "key_field",
    "lag_bytes",
    "topic_for",
]

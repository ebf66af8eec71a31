"""Seeded factories for tests, benchmarks and examples (no test framework needed).

Everything here is deterministic for a given seed, so a failing test reproduces.
"""

from __future__ import annotations

from .records import (
    SEQ_RECORD,
    RecordFactory,
    check_seq_records,
    fill_seq_records,
)

__all__ = ["SEQ_RECORD", "RecordFactory", "check_seq_records", "fill_seq_records"]

"""The one error tree of Wiresens.

::

    WiresensError                      (retriable = False unless noted)
    ├── ShmError                       shared memory (wiresens.shm)
    │   ├── SegmentExistsError         + FileExistsError
    │   ├── SegmentNotFoundError       + FileNotFoundError      retriable
    │   ├── LayoutMismatchError        + ValueError
    │   └── UnsupportedPlatformError   + RuntimeError
    ├── ConfigError                    + ValueError   a config key or value is wrong
    ├── FixedPointError                + ValueError   a decimal string cannot be represented
    ├── ProtocolError                  + ValueError   a malformed or unexpected exchange message
    ├── ExchangeError                                 the exchange answered with an error code
    │   └── RateLimitError                            429/418               retriable
    ├── ServiceUnavailableError        + ConnectionError   a sink or service is down   retriable
    └── EventLogError                                 the event log (wiresens.eventlog)
        ├── CorruptEntryError          + ValueError   CRC mismatch or malformed entry: .path .offset
        ├── LogFormatError             + ValueError   a segment or index header is not readable
        └── LogLockedError             + RuntimeError another writer holds the log directory

Every message names what was wrong (key, path, value) and what to do. The root
lives in ``wiresens.shm.errors`` because ``shm`` is the bottom layer and may
import nothing from the rest of Wiresens.
"""

from __future__ import annotations

from wiresens.shm.errors import (
    LayoutMismatchError,
    SegmentExistsError,
    SegmentNotFoundError,
    ShmError,
    UnsupportedPlatformError,
    WiresensError,
)

__all__ = [
    "ConfigError",
    "CorruptEntryError",
    "EventLogError",
    "ExchangeError",
    "FixedPointError",
    "LayoutMismatchError",
    "LogFormatError",
    "LogLockedError",
    "ProtocolError",
    "RateLimitError",
    "SegmentExistsError",
    "SegmentNotFoundError",
    "ServiceUnavailableError",
    "ShmError",
    "UnsupportedPlatformError",
    "WiresensError",
]


class ConfigError(WiresensError, ValueError):
    """A configuration key or value is wrong; the message names its path and the fix."""


class FixedPointError(WiresensError, ValueError):
    """A decimal string cannot be represented exactly in 8-decimal int64 fixed point."""


class ProtocolError(WiresensError, ValueError):
    """A malformed or unexpected message from the exchange (or the venue)."""


class ExchangeError(WiresensError):
    """The exchange answered a request with an error: ``code`` and ``msg`` are Binance's."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"exchange error {code}: {msg} (HTTP {status})")
        self.code = code
        self.msg = msg
        self.status = status


class RateLimitError(ExchangeError):
    """HTTP 429 (slow down) or 418 (banned for ``retry_after`` seconds)."""

    retriable = True

    def __init__(self, code: int, msg: str, status: int = 429, retry_after: float = 0.0) -> None:
        super().__init__(code, msg, status)
        self.retry_after = retry_after


class ServiceUnavailableError(WiresensError, ConnectionError):
    """A service (Kafka, PostgreSQL, etcd, the exchange) cannot be reached now."""

    retriable = True


class EventLogError(WiresensError):
    """The event log (``wiresens.eventlog``) could not be written or read."""


class CorruptEntryError(EventLogError, ValueError):
    """An event-log entry failed its CRC or is malformed; ``path`` and ``offset`` locate it."""

    def __init__(self, message: str, path: str = "", offset: int = -1, segment: int = -1) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset
        self.segment = segment


class LogFormatError(EventLogError, ValueError):
    """An event-log segment or index header is foreign, damaged or of a newer format version."""


class LogLockedError(EventLogError, RuntimeError):
    """Another writer holds the event-log directory (one writer per directory)."""

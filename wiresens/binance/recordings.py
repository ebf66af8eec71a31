"""Read recorded Binance traffic (hftbacktest and cryptofeed capture formats).

Both formats keep every WebSocket message and REST body exactly as received, one
per line, with the local receive time:

hftbacktest (gzip text, ``*.gz`` / ``*.dat.gz``)
    ``<receive ts> <raw JSON>``. The timestamp is nanoseconds since the epoch in
    newer files and microseconds in older ones (told apart by magnitude). The JSON
    is a combined-stream envelope ``{"stream": ..., "data": {...}}`` or, once per
    file, the bare body of the REST depth snapshot, recognised by its
    ``lastUpdateId`` key (it has no stream; its symbol is the file's).

cryptofeed (UTF-8 text, ``.0``, ``.http.0.0``, ``.ws.1.0``)
    ``configuration: {...}`` (the recorder's config, skipped),
    ``wss://... <-> <unix seconds>`` (a connection and its URL),
    ``<unix seconds>: <raw WebSocket message>`` and
    ``https://... -> <unix seconds>: <raw HTTP body>``. One session may be split
    over ``.http.0.0`` and ``.ws.1.0`` files: :func:`iter_session` merges them by time.

Every message comes out as a :class:`RecordedMessage` whose ``payload`` is the
message body (a combined-stream envelope is unwrapped to its ``data``), so a
replay feeds the same bytes a gateway would decode. The layout of the sample
data and its exact counts are described in ``../shared/data/binance/README.md``.
"""

from __future__ import annotations

import gzip
import heapq
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast
from urllib.parse import parse_qs, urlsplit

import msgspec

from wiresens.errors import ProtocolError

__all__ = [
    "ErrorHandler",
    "RecordedMessage",
    "detect_format",
    "iter_recording",
    "iter_session",
    "market_of",
]

ErrorHandler = Callable[[str, int, str], None]
"""``on_error(path, line_number, reason)`` for lines that cannot be read."""


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    """One recorded message.

    ``source`` is ``"ws"`` or ``"rest"``; ``stream`` the combined-stream name
    (``"btcusdt@depth@100ms"``), None for REST; ``symbol`` upper case
    (``"BTCUSDT"``) when known; ``url`` the REST request URL, or for WebSocket
    messages the connection URL when the recording has it; ``payload`` the raw
    JSON body (envelope unwrapped).
    """

    ts_recv_ns: int
    source: str
    stream: str | None
    symbol: str | None
    url: str | None
    payload: bytes


class _Envelope(msgspec.Struct, gc=False):
    stream: str
    data: msgspec.Raw


class _Probe(msgspec.Struct, gc=False):
    # Reads only whether a bare body is a depth snapshot.
    lastUpdateId: int | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_PROBE = msgspec.json.Decoder(_Probe)
_FILE_SYMBOL = re.compile(r"(?:^|_)([a-z0-9]+)_\d{8}")
_GZIP_MAGIC = b"\x1f\x8b"


def _open(path: Path) -> IO[bytes]:
    with path.open("rb") as fh:
        magic = fh.read(2)
    if magic == _GZIP_MAGIC:
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def detect_format(path: str | Path) -> str:
    """``"hftbacktest"`` or ``"cryptofeed"``, from the first non-empty line.

    Raises :class:`wiresens.errors.ProtocolError` when the file is neither.
    """
    p = Path(path)
    with _open(p) as fh:
        for raw in fh:
            line = raw.strip()
            if not line:
                continue
            head, _, rest = line.partition(b" ")
            if head.isdigit() and rest.startswith(b"{"):
                return "hftbacktest"
            if line.startswith((b"configuration:", b"wss://", b"ws://", b"https://", b"http://")):
                return "cryptofeed"
            if re.match(rb"^\d+(\.\d+)?: ", line):
                return "cryptofeed"
            break
    raise ProtocolError(
        f"{p}: not a recording Wiresens can read (expected hftbacktest lines "
        "'<ts> {json}' or cryptofeed lines '<ts>: {json}'); see "
        "wiresens.binance.recordings for the formats"
    )


def _symbol_of_stream(stream: str) -> str:
    return stream.partition("@")[0].upper()


def _seconds_to_ns(text: bytes) -> int:
    # Exact: cryptofeed writes float seconds with up to 7 decimals.
    whole, _, frac = text.strip().partition(b".")
    return int(whole) * 1_000_000_000 + int((frac[:9] or b"0").ljust(9, b"0"))


def _to_ns(ts: int) -> int:
    # hftbacktest wrote ns (2024) or µs (2023); ms handled for completeness.
    if ts >= 10**17:
        return ts
    if ts >= 10**14:
        return ts * 1_000
    return ts * 1_000_000


def _raise(path: str, lineno: int, reason: str) -> None:
    raise ProtocolError(
        f"{path}:{lineno}: {reason}; fix or remove the line, or replay with "
        "`wiresens binance replay`, which counts bad lines instead of stopping"
    )


def _ws_message(
    ts: int, body: bytes, url: str | None, url_stream: str | None
) -> RecordedMessage | str:
    """A WebSocket body as a RecordedMessage, or the reason it is unreadable."""
    if body.startswith(b'{"stream"'):
        try:
            env = _ENVELOPE.decode(body)
        except msgspec.DecodeError as exc:
            return f"malformed combined-stream message ({exc})"
        return RecordedMessage(
            ts, "ws", env.stream, _symbol_of_stream(env.stream), url, bytes(env.data)
        )
    symbol = _symbol_of_stream(url_stream) if url_stream else None
    return RecordedMessage(ts, "ws", url_stream, symbol, url, body)


def _iter_hftbacktest(path: Path, on_error: ErrorHandler) -> Iterator[RecordedMessage]:
    name = str(path)
    m = _FILE_SYMBOL.search(path.name.lower())
    file_symbol = m.group(1).upper() if m else None
    seen: set[str] = set()
    lineno = 0
    try:
        with _open(path) as fh:
            for lineno, raw in enumerate(fh, 1):
                line = raw.rstrip(b"\r\n")
                if not line.strip():
                    continue
                head, _, body = line.partition(b" ")
                if not head.isdigit() or not body.startswith(b"{"):
                    on_error(name, lineno, "not '<timestamp> {json}'")
                    continue
                ts = _to_ns(int(head))
                if body.startswith(b'{"stream"'):
                    msg = _ws_message(ts, body, None, None)
                    if isinstance(msg, str):
                        on_error(name, lineno, msg)
                        continue
                    if msg.symbol is not None and len(seen) < 2:
                        seen.add(msg.symbol)
                    yield msg
                    continue
                try:
                    probe = _PROBE.decode(body)
                except msgspec.DecodeError as exc:
                    on_error(name, lineno, f"malformed JSON ({exc})")
                    continue
                if probe.lastUpdateId is None:
                    on_error(
                        name, lineno, "JSON that is neither a stream message nor a depth snapshot"
                    )
                    continue
                symbol = next(iter(seen)) if len(seen) == 1 else file_symbol
                yield RecordedMessage(ts, "rest", None, symbol, None, body)
    except (EOFError, OSError) as exc:
        # A truncated or corrupt gzip file: report it, keep what was read.
        on_error(name, lineno + 1, f"unreadable from here on ({exc})")


def _iter_cryptofeed(path: Path, on_error: ErrorHandler) -> Iterator[RecordedMessage]:
    name = str(path)
    url: str | None = None
    url_stream: str | None = None
    lineno = 0
    try:
        with _open(path) as fh:
            for lineno, raw in enumerate(fh, 1):
                line = raw.rstrip(b"\r\n")
                if not line.strip() or line.startswith(b"configuration:"):
                    continue
                if line.startswith((b"wss://", b"ws://")):
                    conn, sep, _ = line.partition(b" <-> ")
                    if not sep:
                        on_error(name, lineno, "connection line without ' <-> <time>'")
                        continue
                    url = conn.decode("utf-8", "replace")
                    path_part = urlsplit(url).path
                    url_stream = path_part[4:] if path_part.startswith("/ws/") else None
                    continue
                if line.startswith((b"https://", b"http://")):
                    req, sep, rest = line.partition(b" -> ")
                    ts_text, sep2, body = rest.partition(b": ")
                    if not (sep and sep2):
                        on_error(name, lineno, "REST line without ' -> <time>: <body>'")
                        continue
                    try:
                        ts = _seconds_to_ns(ts_text)
                    except ValueError:
                        on_error(name, lineno, f"bad receive time {ts_text[:40]!r}")
                        continue
                    rurl = req.decode("utf-8", "replace")
                    sym = parse_qs(urlsplit(rurl).query).get("symbol", [None])[0]
                    yield RecordedMessage(
                        ts, "rest", None, sym.upper() if sym else None, rurl, body
                    )
                    continue
                ts_text, sep, body = line.partition(b": ")
                if not sep:
                    on_error(name, lineno, "not '<time>: <message>'")
                    continue
                try:
                    ts = _seconds_to_ns(ts_text)
                except ValueError:
                    on_error(name, lineno, f"bad receive time {ts_text[:40]!r}")
                    continue
                msg = _ws_message(ts, body, url, url_stream)
                if isinstance(msg, str):
                    on_error(name, lineno, msg)
                    continue
                yield msg
    except (EOFError, OSError) as exc:
        # A truncated or corrupt gzip file: report it, keep what was read.
        on_error(name, lineno + 1, f"unreadable from here on ({exc})")


def iter_recording(
    path: str | Path, on_error: ErrorHandler | None = None
) -> Iterator[RecordedMessage]:
    """Messages of one recording, in file order (format detected).

    A line that cannot be read raises :class:`wiresens.errors.ProtocolError`
    naming the file and line, unless ``on_error(path, lineno, reason)`` is given,
    in which case it is called and the line skipped.
    """
    p = Path(path)
    handler = on_error if on_error is not None else _raise
    fmt = detect_format(p)
    if fmt == "hftbacktest":
        return _iter_hftbacktest(p, handler)
    return _iter_cryptofeed(p, handler)


def iter_session(
    paths: Iterable[str | Path], on_error: ErrorHandler | None = None
) -> Iterator[RecordedMessage]:
    """Messages of several recordings of one session, merged by receive time.

    Use it for cryptofeed's ``.http.0.0`` + ``.ws.1.0`` pair, or for consecutive
    day files. Ties keep the order of ``paths``.
    """
    its = [iter_recording(p, on_error) for p in paths]
    if len(its) == 1:
        return its[0]
    return heapq.merge(*its, key=lambda m: m.ts_recv_ns)


def market_of(msg: RecordedMessage) -> str | None:
    """``"usdm"`` or ``"spot"`` when the URL tells (``fapi``/``fstream``), else None."""
    if msg.url is None:
        return None
    host = urlsplit(msg.url).netloc
    if host.startswith(("fapi.", "fstream.")):
        return "usdm"
    if host.startswith(("api.", "stream.", "www.", "data-stream.", "data-api.")):
        return "spot"
    return None

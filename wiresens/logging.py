"""Structured logging for every Wiresens process: journald when present, else JSON lines.

:func:`configure_logging` is called once per process (by the actor runner, the CLI, a
test) and configures structlog globally, so ``structlog.get_logger()`` anywhere logs
with the node, actor and policy attached. Targets:

* ``journald``: each event is one datagram of the native journal protocol on
  ``/run/systemd/journal/socket`` (written here with :mod:`socket`, no libsystemd):
  ``MESSAGE``, ``PRIORITY``, ``SYSLOG_IDENTIFIER=wiresens``, ``WIRESENS_NODE``,
  ``WIRESENS_ACTOR``, ``WIRESENS_POLICY`` and each key of the event upper-cased
  (``order_id=7`` -> ``ORDER_ID=7``). Read them with ``journalctl -o json
  WIRESENS_ACTOR=feed`` or ``wiresens logs --actor feed``. An event too large for a
  datagram goes through a sealed memfd, as libsystemd does.
* ``file``: JSON lines in ``<run_dir>/logs/<actor>[-<policy>].jsonl``.
* ``auto`` picks journald when its socket exists.

Every event passes :func:`redact_secrets` first: values of keys that name a secret
(``secret``, ``api_key``, ``private_key``, ``password``, ``token``, ``signature``...)
and values that look like one (PEM private keys, ``signature=``/``apiKey=`` query
parameters, URL passwords, ``Bearer`` tokens, 64-character mixed-case alphanumeric
strings such as Binance API keys) become ``[REDACTED]``. A 64-digit lower-case hex digest
is left alone: checksums are worth logging.

Logging is I/O: the hot path never calls it (the PolicyObject's ``log`` exists for
the policy's own, off-path use). A failed write (journald restarting, disk full) drops
the event and counts it in :data:`dropped` rather than raising into the actor.
"""

from __future__ import annotations

import array
import errno
import fcntl
import json
import os
import re
import socket
import struct
import threading
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import IO, Any, Literal

import structlog

__all__ = [
    "JOURNAL_SOCKET",
    "JournaldLogger",
    "configure_logging",
    "encode_journal_fields",
    "journal_available",
    "log_file_path",
    "redact_secrets",
    "redact_value",
]

JOURNAL_SOCKET = "/run/systemd/journal/socket"
SYSLOG_IDENTIFIER = "wiresens"
REDACTED = "[REDACTED]"

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}
_PRIORITY = {
    "debug": 7,
    "info": 6,
    "notice": 5,
    "warning": 4,
    "warn": 4,
    "error": 3,
    "exception": 3,
    "critical": 2,
}

dropped = 0
"""Events lost because the target could not take them (this process)."""

# -- redaction ------------------------------------------------------------------------

_SECRET_KEY = re.compile(
    r"secret|api_?key|apikey|private_?key|passw(or)?d|passphrase|token|signature|"
    r"authorization|credential|cookie|x-mbx-apikey",
    re.IGNORECASE,
)
_VALUE_PATTERNS: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    (
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S
        ),
        REDACTED,
    ),
    (
        re.compile(
            r"(?i)\b(signature|secret|api_?key|apikey|password|passwd|token|listenKey)"
            r"(\s*[=:]\s*)([^&\s,;\"']+)"
        ),
        lambda m: f"{m[1]}{m[2]}{REDACTED}",
    ),
    # RFC 3986 userinfo has no "/": a "@" after the path (stream names) is not a password.
    (re.compile(r"(://[^:/@\s]+:)[^@\s/]+@"), lambda m: f"{m[1]}{REDACTED}@"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), lambda m: f"{m[1]} {REDACTED}"),
    (
        # Binance API keys and HMAC secrets: 64 alphanumerics mixing cases and digits.
        re.compile(
            r"(?<![A-Za-z0-9])(?=[A-Za-z0-9]{0,63}[a-z])(?=[A-Za-z0-9]{0,63}[A-Z])"
            r"[A-Za-z0-9]{64}(?![A-Za-z0-9])"
        ),
        REDACTED,
    ),
]


def redact_value(value: Any) -> Any:
    """``value`` with anything that looks like a secret replaced (recursing into containers)."""
    if isinstance(value, str):
        for pattern, repl in _VALUE_PATTERNS:
            value = pattern.sub(repl, value)
        return value
    if isinstance(value, bytes):
        return redact_value(value.decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) else redact_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def redact_secrets(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: redact secret-named keys and secret-looking values."""
    for key, value in event_dict.items():
        if _SECRET_KEY.search(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str | bytes | Mapping | list | tuple):
            event_dict[key] = redact_value(value)
    return event_dict


# -- journald -------------------------------------------------------------------------

_FIELD_BAD = re.compile(r"[^A-Z0-9_]")
_SKIP_KEYS = frozenset({"event", "level", "timestamp"})


def _field_name(key: str) -> str:
    name = _FIELD_BAD.sub("_", key.upper()).lstrip("_")
    if not name or name[0].isdigit():
        name = "F_" + name
    return name[:64]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float) or value is None:
        return json.dumps(value)
    try:
        return json.dumps(value, default=repr)
    except (TypeError, ValueError):
        return repr(value)


def encode_journal_fields(fields: Mapping[str, Any]) -> bytes:
    """Native journal protocol: ``KEY=value\\n``, or ``KEY\\n<u64 le length>value\\n`` when
    the value holds a newline (tracebacks)."""
    out = bytearray()
    for key, value in fields.items():
        name = key.encode("ascii")
        data = _text(value).encode("utf-8", "replace")
        if b"\n" in data:
            out += name + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name + b"=" + data + b"\n"
    return bytes(out)


def journal_available(socket_path: str = JOURNAL_SOCKET) -> bool:
    """Whether a journald socket is there to log to."""
    try:
        return Path(socket_path).is_socket()
    except OSError:
        return False


class JournaldLogger:
    """A structlog logger that sends pre-encoded journal datagrams."""

    def __init__(self, socket_path: str = JOURNAL_SOCKET) -> None:
        self.socket_path = socket_path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._lock = threading.Lock()

    def msg(self, payload: bytes) -> None:
        global dropped
        try:
            with self._lock:
                try:
                    self._sock.sendto(payload, self.socket_path)
                except OSError as exc:
                    if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                        raise
                    self._send_memfd(payload)
        except OSError:
            dropped += 1

    def _send_memfd(self, payload: bytes) -> None:
        # Large entries: journald accepts a sealed memfd passed with SCM_RIGHTS.
        fd = os.memfd_create("wiresens-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.write(fd, payload)
            seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            self._sock.sendmsg(
                [],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))],
                0,
                self.socket_path,
            )
        finally:
            os.close(fd)

    info = debug = warning = warn = error = critical = exception = log = msg

    def close(self) -> None:
        self._sock.close()


def _journal_renderer(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> bytes:
    level = str(event_dict.get("level", method_name))
    fields: dict[str, Any] = {
        "MESSAGE": event_dict.get("event", ""),
        "PRIORITY": _PRIORITY.get(level, 6),
        "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
    }
    for key, value in event_dict.items():
        if key in _SKIP_KEYS:
            continue
        name = _field_name(key)
        if name in fields:
            name = "F_" + name
        fields[name] = value
    return encode_journal_fields(fields)


# -- files ----------------------------------------------------------------------------


class _FileLogger:
    """One JSON line per event, appended with a single write (atomic under O_APPEND)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def msg(self, line: str) -> None:
        global dropped
        try:
            os.write(self._fd, (line + "\n").encode("utf-8", "replace"))
        except OSError:
            dropped += 1

    info = debug = warning = warn = error = critical = exception = log = msg

    def close(self) -> None:
        os.close(self._fd)


def log_file_path(run_dir: str | Path, actor: str, policy: str | None = None) -> Path:
    """Where the file target writes one actor's (or one policy's) events."""
    stem = actor if policy is None else f"{actor}-{policy}"
    return Path(run_dir) / "logs" / (re.sub(r"[^A-Za-z0-9_.-]", "_", stem) + ".jsonl")


# -- configuration --------------------------------------------------------------------

_current: JournaldLogger | _FileLogger | None = None


def configure_logging(
    node: str,
    actor: str,
    policy: str | None = None,
    target: Literal["auto", "journald", "file"] = "auto",
    run_dir: str | Path = "run",
    level: str = "info",
    *,
    socket_path: str = JOURNAL_SOCKET,
    stream: IO[str] | None = None,
) -> Any:
    """Configure structlog for this process and return a logger bound to it.

    Parameters
    ----------
    node, actor, policy : str
        Attached to every event (``WIRESENS_NODE``/``_ACTOR``/``_POLICY`` in journald).
    target : {"auto", "journald", "file"}
        ``auto``: journald when ``socket_path`` exists, else the file.
    run_dir : path
        The node's run directory; the file target writes ``run_dir/logs/``.
    level : str
        Minimum level (debug, info, warning, error).
    stream : text stream, optional
        Also echo rendered JSON lines there (e.g. ``sys.stderr`` for a foreground run).

    Returns
    -------
    A structlog bound logger. Calling it again reconfigures (closing the old target).
    """
    global _current
    if level not in _LEVELS:
        raise ValueError(f"log level {level!r}: use one of debug, info, warning, error")
    use_journal = target == "journald" or (target == "auto" and journal_available(socket_path))
    if target == "journald" and not journal_available(socket_path):
        raise FileNotFoundError(
            f"journald socket {socket_path} does not exist: use log target 'file' or 'auto'"
        )
    if _current is not None:
        _current.close()
    static: dict[str, Any] = {"wiresens_node": node, "wiresens_actor": actor}
    if policy is not None:
        static["wiresens_policy"] = policy

    def add_static(
        logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for k, v in static.items():
            event_dict.setdefault(k, v)
        return event_dict

    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
        add_static,
    ]
    logger: JournaldLogger | _FileLogger
    if use_journal:
        logger = JournaldLogger(socket_path)
        final: Any = _journal_renderer
    else:
        logger = _FileLogger(log_file_path(run_dir, actor, policy))
        final = structlog.processors.JSONRenderer(default=repr)
    if stream is not None:
        echo = structlog.processors.JSONRenderer(default=repr)

        def tee(
            logger_: Any, method_name: str, event_dict: MutableMapping[str, Any]
        ) -> MutableMapping[str, Any]:
            stream.write(str(echo(logger_, method_name, dict(event_dict))) + "\n")
            return event_dict

        processors.append(tee)
    processors.append(final)
    _current = logger
    bound = logger

    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=lambda *args: bound,
        cache_logger_on_first_use=False,
    )
    return structlog.get_logger()

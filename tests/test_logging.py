"""Logging: redaction, the journal wire format, the file target, and a real journald."""

from __future__ import annotations

import json
import os
import select
import shutil
import struct
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner

from wiresens.cli import app
from wiresens.cli.logs import format_event, parse_since, read_files
from wiresens.logging import (
    REDACTED,
    configure_logging,
    encode_journal_fields,
    log_file_path,
    redact_value,
)

BINANCE_LIKE_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SHA256_HEX = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.fixture(autouse=True)
def _reset_structlog() -> Any:
    yield
    structlog.reset_defaults()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    ("value", "secret"),
    [
        ("GET /api/v3/order?symbol=BTCUSDT&signature=abcdef0123&timestamp=1", "abcdef0123"),
        ("postgresql://wiresens:hunter2@127.0.0.1/db", "hunter2"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
        (f"key {BINANCE_LIKE_KEY} loaded", BINANCE_LIKE_KEY),
        ("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA\n-----END PRIVATE KEY-----", "MC4C"),
        ("apiKey=abc123xyz", "abc123xyz"),
    ],
)
def test_values_that_look_like_secrets_are_redacted(value: str, secret: str) -> None:
    out = redact_value(value)
    assert secret not in out
    assert REDACTED in out


def test_redaction_keeps_ordinary_values() -> None:
    assert redact_value(f"event log checksum {SHA256_HEX}") == f"event log checksum {SHA256_HEX}"
    assert redact_value({"symbol": "BTCUSDT", "nested": {"api_secret": "x"}}) == {
        "symbol": "BTCUSDT",
        "nested": {"api_secret": REDACTED},
    }
    assert redact_value([1, "ok"]) == [1, "ok"]


def test_journal_wire_format() -> None:
    data = encode_journal_fields({"MESSAGE": "hi", "N": 7, "TB": "line1\nline2"})
    assert data.startswith(b"MESSAGE=hi\nN=7\nTB\n")
    length = struct.unpack("<Q", data[len(b"MESSAGE=hi\nN=7\nTB\n") :][:8])[0]
    assert length == len("line1\nline2")
    assert data.endswith(b"line1\nline2\n")


def test_file_target_fields_redaction_and_levels(tmp_path: Path) -> None:
    log = configure_logging("n1", "feed", target="file", run_dir=tmp_path, level="info")
    log.debug("not shown")
    log.info("connected", symbol="BTCUSDT", api_key="AKIA-not-for-logs", attempt=2)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("reconnect failed")
    events = read_jsonl(log_file_path(tmp_path, "feed"))
    assert [e["event"] for e in events] == ["connected", "reconnect failed"]
    first, second = events
    assert first["wiresens_node"] == "n1" and first["wiresens_actor"] == "feed"
    assert "wiresens_policy" not in first
    assert first["api_key"] == REDACTED and first["attempt"] == 2
    assert second["level"] == "error" and "RuntimeError: boom" in second["exception"]


def test_policy_logger_and_cli_filters(tmp_path: Path) -> None:
    configure_logging("n1", "policy", policy="mm", target="file", run_dir=tmp_path)
    structlog.get_logger().info("quote", bid="100.0")
    configure_logging("n1", "feed", target="file", run_dir=tmp_path)
    structlog.get_logger().warning("gap", expected=5, got=7)
    assert log_file_path(tmp_path, "policy", "mm").exists()

    everything = read_files(tmp_path)
    assert [e["event"] for e in everything] == ["quote", "gap"]
    assert [e["event"] for e in read_files(tmp_path, policy="mm")] == ["quote"]
    future = datetime.now(UTC) + timedelta(hours=1)
    assert read_files(tmp_path, since=future) == []

    runner = CliRunner()
    res = runner.invoke(app, ["logs", "--run-dir", str(tmp_path), "--actor", "feed"])
    assert res.exit_code == 0, res.output
    assert "WARNING feed gap" in res.output and "quote" not in res.output
    res = runner.invoke(
        app, ["logs", "--run-dir", str(tmp_path), "--policy", "mm", "--json", "--since", "5m"]
    )
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["event"] for line in res.output.splitlines()] == ["quote"]
    res = runner.invoke(app, ["logs", "--run-dir", str(tmp_path / "nowhere")])
    assert res.exit_code == 1


def _read_line(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "wiresens logs --follow printed nothing"
    return proc.stdout.readline()


def test_follow_prints_new_events(tmp_path: Path) -> None:
    log = configure_logging("n1", "execution", target="file", run_dir=tmp_path)
    log.info("before")
    cmd = [sys.executable, "-c", "from wiresens.cli import main; main()", "logs"]
    proc = subprocess.Popen(
        [*cmd, "--run-dir", str(tmp_path), "--follow", "--json", "--actor", "execution"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert json.loads(_read_line(proc))["event"] == "before"
        configure_logging("n1", "feed", target="file", run_dir=tmp_path).info("other actor")
        configure_logging("n1", "execution", target="file", run_dir=tmp_path).info("after", n=1)
        event = json.loads(_read_line(proc))
        assert (event["event"], event["n"]) == ("after", 1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def test_parse_since_and_format() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert parse_since("10m", now) == now - timedelta(minutes=10)
    assert parse_since("2h ago", now) == now - timedelta(hours=2)
    assert parse_since("2026-01-01T11:00", now) == datetime(2026, 1, 1, 11, tzinfo=UTC)
    line = format_event(
        {"event": "x", "level": "info", "wiresens_actor": "policy", "wiresens_policy": "mm", "a": 1}
    )
    assert "policy[mm] x a=1" in line


# -- a real journald --------------------------------------------------------------------

JOURNALD = Path("/lib/systemd/systemd-journald")

_HELPER = """
import json, subprocess, sys, time
from wiresens.logging import configure_logging
log = configure_logging("node-j", "execution", target="journald")
log.info("order sent", cl_ord_id=42, secret="topsecret-value", symbol="BTCUSDT")
try:
    raise ValueError("bad fill")
except ValueError:
    log.exception("report rejected")
configure_logging("node-j", "policy", policy="mm", target="auto")  # finds the socket
import structlog
structlog.get_logger().warning("big", blob="x" * 400_000)
journal = sys.argv[1]
entries = []
for _ in range(200):
    out = subprocess.run(
        ["journalctl", "-o", "json", "--all", "--no-pager", "--directory", journal,
         "SYSLOG_IDENTIFIER=wiresens"], capture_output=True, text=True).stdout
    entries = [json.loads(line) for line in out.splitlines()]
    if len(entries) >= 3:
        break
    time.sleep(0.05)
cli = subprocess.run(
    [sys.executable, "-c", "from wiresens.cli import main; main()", "logs", "--source",
     "journald", "--journal-dir", journal, "--actor", "execution", "--json"],
    capture_output=True, text=True)
print(json.dumps({"entries": entries, "cli": cli.stdout, "cli_err": cli.stderr}))
"""

_SCRIPT = """
set -e
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/systemd/journal
mkdir -p /run/log
mount -t tmpfs tmpfs /run/log
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
{journald} >"$WORK/journald.out" 2>&1 &
JPID=$!
trap 'kill $JPID 2>/dev/null || true' EXIT
for i in $(seq 1 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
MID=$(cat /etc/machine-id)
{python} "$WORK/helper.py" /run/log/journal/$MID
"""


def _journald_unavailable() -> str | None:
    if not JOURNALD.exists():
        return f"{JOURNALD} is not installed (apt-get install systemd)"
    if os.geteuid() != 0:
        return "starting a private journald needs root (mount namespace and tmpfs mounts)"
    if shutil.which("unshare") is None or shutil.which("journalctl") is None:
        return "unshare or journalctl missing"
    if not Path("/etc/machine-id").exists():
        return "/etc/machine-id missing: journald cannot name its journal"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
    )
    if probe.returncode != 0:
        return f"cannot create a mount namespace here: {probe.stderr.decode().strip()}"
    return None


def test_real_journald_roundtrip(tmp_path: Path) -> None:
    reason = _journald_unavailable()
    if reason:
        pytest.skip(reason)
    (tmp_path / "helper.py").write_text(_HELPER)
    script = textwrap.dedent(_SCRIPT).format(journald=JOURNALD, python=sys.executable)
    env = dict(os.environ, WORK=str(tmp_path))
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr + (tmp_path / "journald.out").read_text()
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    entries = {e["MESSAGE"]: e for e in result["entries"]}
    assert set(entries) == {"order sent", "report rejected", "big"}, result

    sent = entries["order sent"]
    assert sent["SYSLOG_IDENTIFIER"] == "wiresens"
    assert sent["WIRESENS_NODE"] == "node-j" and sent["WIRESENS_ACTOR"] == "execution"
    assert sent["PRIORITY"] == "6"
    assert sent["CL_ORD_ID"] == "42" and sent["SYMBOL"] == "BTCUSDT"
    assert sent["SECRET"] == REDACTED
    assert "topsecret-value" not in json.dumps(result)

    rejected = entries["report rejected"]
    assert rejected["PRIORITY"] == "3"
    assert "ValueError: bad fill" in rejected["EXCEPTION"]

    big = entries["big"]  # sent through a sealed memfd: too large for one datagram
    assert big["WIRESENS_POLICY"] == "mm" and big["PRIORITY"] == "4"
    assert len(big["BLOB"]) == 400_000

    cli_events = [json.loads(line) for line in result["cli"].splitlines()]
    assert [e["event"] for e in cli_events] == ["order sent", "report rejected"], result["cli_err"]
    assert cli_events[0]["cl_ord_id"] == "42"
    assert cli_events[1]["level"] == "error"

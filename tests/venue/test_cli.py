"""``wiresens venue serve`` as a subprocess: it serves the example accounts and stops cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).parents[2]
CLI = [sys.executable, "-c", "from wiresens.cli import main; main()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_subprocess_answers_and_stops() -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [
            *CLI,
            "venue",
            "serve",
            "--port",
            str(port),
            "--symbols",
            "BTCUSDT,ETHUSDT",
            "--market",
            "synthetic:5",
            "--accounts",
            str(ROOT / "config" / "venue-accounts.toml"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/api/v3/exchangeInfo", timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "venue did not start"
                time.sleep(0.1)
        assert [s["symbol"] for s in r.json()["symbols"]] == ["BTCUSDT", "ETHUSDT"]
        assert r.headers["X-MBX-USED-WEIGHT-1M"] == "20"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"127.0.0.1:{port}" in out


def test_bad_market_spec_is_refused() -> None:
    proc = subprocess.run(
        [*CLI, "venue", "serve", "--market", "replay:/no/such/file"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "no such recording file" in proc.stderr

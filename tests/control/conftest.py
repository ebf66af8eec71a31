"""A real API server (``wiresens apiserver`` in a subprocess) on the session's real etcd.

Each test gets its own key prefix, so tests never see each other's nodes or policies.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ADMIN = "admin-token-for-tests-0001"
TRADER = "trader-token-for-tests-0001"
VIEWER = "viewer-token-for-tests-0001"

_counter = itertools.count()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ApiServer:
    url: str
    prefix: str
    etcd: str
    proc: subprocess.Popen[bytes]
    log: Path

    def env(self, token: str = ADMIN) -> dict[str, str]:
        """Environment for CLI calls: this server and a token, no context file."""
        return {"WIRESENS_SERVER": self.url, "WIRESENS_TOKEN": token}


def wait_until(pred: object, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``pred()`` until true; fail naming ``what`` (a condition, not a timing claim)."""
    assert callable(pred)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def prefix() -> str:
    return f"/wiresens-test-{os.getpid()}-{next(_counter)}"


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    p = tmp_path / "tokens.toml"
    p.write_text(
        f'[[token]]\nname = "root"\nrole = "admin"\ntoken = "{ADMIN}"\n'
        f'[[token]]\nname = "desk"\nrole = "trader"\ntoken = "{TRADER}"\n'
        f'[[token]]\nname = "screen"\nrole = "viewer"\ntoken = "{VIEWER}"\n'
    )
    return p


@pytest.fixture
def apiserver(
    etcd_endpoint: str,
    prefix: str,
    tokens_file: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[ApiServer]:
    """The server; ``@pytest.mark.parametrize("apiserver", [SECONDS], indirect=True)``
    sets its compaction interval (default 300 s, i.e. never within a test)."""
    compact_every = str(getattr(request, "param", 300))
    port = free_port()
    log = tmp_path / "apiserver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wiresens",
                "apiserver",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--etcd",
                etcd_endpoint,
                "--prefix",
                prefix,
                "--tokens",
                str(tokens_file),
                "--compact-every",
                compact_every,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if json.loads(r.read())["etcd"] == "ok":
                    break
        except (OSError, urllib.error.URLError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"apiserver did not come up; its log:\n{log.read_text()}")
        time.sleep(0.1)
    srv = ApiServer(url=url, prefix=prefix, etcd=etcd_endpoint, proc=proc, log=log)
    yield srv
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def private_etcd(
    tmp: Path, name: str, tls: tuple[Path, Path] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """An etcd of the calling module only (the session's stays untouched), on free
    127.0.0.1 ports, HTTPS when ``tls`` = (cert, key) is given; yields (endpoint, process)
    once ``etcdctl endpoint health`` passes and stops it after."""
    if shutil.which("etcd") is None or shutil.which("etcdctl") is None:
        pytest.skip("etcd/etcdctl are not installed: run scripts/services/install.sh etcd")
    scheme = "https" if tls else "http"
    client, peer = free_port(), free_port()
    log = tmp / "etcd.log"
    args = [
        "etcd",
        "--name", name,
        "--data-dir", str(tmp / "data"),
        "--listen-client-urls", f"{scheme}://127.0.0.1:{client}",
        "--advertise-client-urls", f"{scheme}://127.0.0.1:{client}",
        "--listen-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-cluster", f"{name}=http://127.0.0.1:{peer}",
    ]  # fmt: skip
    health = ["etcdctl", f"--endpoints={scheme}://127.0.0.1:{client}", "--dial-timeout=1s"]
    if tls:
        args += ["--cert-file", str(tls[0]), "--key-file", str(tls[1])]
        health.append(f"--cacert={tls[0]}")
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            r = subprocess.run(
                [*health, "endpoint", "health"],
                env={**os.environ, "ETCDCTL_API": "3"},
                capture_output=True,
                timeout=30,
            )
            if r.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"the module's etcd {name!r} did not start; its log:\n{log.read_text()}"
                )
            time.sleep(0.2)
        yield f"127.0.0.1:{client}", proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)  # a test may have left it frozen
        stop_process(proc)

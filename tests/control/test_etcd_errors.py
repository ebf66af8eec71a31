"""The CLI tells an etcd that does not answer in time from one that is not there.

"Slow" is made real, not simulated: this module's own etcd (the session's shared one
stays untouched) is frozen with SIGSTOP, so connections stand and calls get no answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from wiresens.control.store import EtcdUnavailable, Store

from .conftest import ADMIN, free_port, private_etcd, stop_process, wait_until
from .test_tls_auth import run_cli, start_apiserver


@pytest.fixture(scope="module")
def own_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """``(endpoint, pid)`` of an etcd this module may freeze."""
    with private_etcd(tmp_path_factory.mktemp("own-etcd"), "own") as (endpoint, proc):
        yield endpoint, proc.pid


class Frozen:
    """SIGSTOP the process for the ``with`` block."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __enter__(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def __exit__(self, *exc: object) -> None:
        os.kill(self.pid, signal.SIGCONT)


def test_store_says_slow_for_a_missed_deadline_and_unreachable_for_no_etcd(
    own_etcd: tuple[str, int],
) -> None:
    endpoint, pid = own_etcd

    async def go() -> tuple[EtcdUnavailable, EtcdUnavailable]:
        store = Store(endpoint, "/wiresens-errors", timeout=1.0)
        absent = Store(f"127.0.0.1:{free_port()}", "/wiresens-errors", timeout=1.0)
        try:
            await store.get(store.key("schema"))  # connected: etcd answers
            with Frozen(pid), pytest.raises(EtcdUnavailable) as slow:
                await store.get(store.key("schema"))
            await store.get(store.key("schema"))  # thawed: answers again
            with pytest.raises(EtcdUnavailable) as down:
                await absent.get(absent.key("schema"))
            return slow.value, down.value
        finally:
            await store.close()
            await absent.close()

    slow, down = asyncio.run(go())
    assert slow.reason == "slow", slow
    assert "is slow" in str(slow) and "--etcd-timeout" in str(slow)
    assert down.reason == "unreachable", down
    assert "is unreachable" in str(down)


def test_cli_says_etcd_is_slow_when_it_misses_the_apiserver_deadline(
    own_etcd: tuple[str, int], tokens_file: Path, tmp_path: Path
) -> None:
    endpoint, pid = own_etcd
    proc, port, log = start_apiserver(tmp_path, endpoint, tokens_file, "--etcd-timeout", "1")
    try:
        url = f"http://127.0.0.1:{port}"
        env = {"WIRESENS_SERVER": url, "WIRESENS_TOKEN": ADMIN}
        wait_until(
            lambda: (
                run_cli("get", "nodes", env=env).exit_code == 0  # type: ignore[attr-defined]
                or proc.poll() is not None
            ),
            30,
            "the apiserver",
        )
        assert proc.poll() is None, log.read_text()
        with Frozen(pid):
            r = run_cli("get", "nodes", env=env)
            req = urllib.request.Request(
                url + "/api/v1/nodes", headers={"Authorization": f"Bearer {ADMIN}"}
            )
            with pytest.raises(urllib.error.HTTPError) as exc:
                urllib.request.urlopen(req, timeout=10)
        assert r.exit_code == 5, r.output  # type: ignore[attr-defined]
        assert "up but etcd is slow" in r.stderr  # type: ignore[attr-defined]
        assert "--etcd-timeout" in r.stderr  # type: ignore[attr-defined]
        assert exc.value.code == 503
        assert json.loads(exc.value.read())["etcd"] == "slow"
        r = run_cli("get", "nodes", env=env)
        assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    finally:
        stop_process(proc)

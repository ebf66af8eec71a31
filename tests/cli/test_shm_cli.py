"""``wiresens shm ls|rm`` against a real ring owned by another process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from wiresens.cli import app
from wiresens.records import TRADE
from wiresens.shm import Ring

OWNER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from wiresens.records import TRADE, RecordKind
    from wiresens.shm import Ring

    ring = Ring.create(sys.argv[1], TRADE, 64, record_kind=int(RecordKind.TRADE), schema_version=1)
    prod, cons = ring.producer(), ring.consumer()
    assert prod.write_batch(np.zeros(10, TRADE)) == 10
    assert cons.read_into(np.zeros(4, TRADE)) == 4
    assert prod.write_batch(np.zeros(70, TRADE)) == 58  # now full
    assert prod.write_batch(np.zeros(1, TRADE)) == 0  # refused twice: full counter 2
    assert not prod.try_write(bytes(64))
    print("ready", flush=True)
    time.sleep(600)
    """
)


@pytest.fixture
def owner(shm_prefix: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    name = f"{shm_prefix}cli-trades"
    proc = subprocess.Popen([sys.executable, "-c", OWNER, name], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield name, proc
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _ls_json(runner: CliRunner, prefix: str) -> list[dict[str, object]]:
    result = runner.invoke(app, ["shm", "ls", "--prefix", prefix, "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_ls_shows_a_live_ring_then_rm_removes_it_after_its_owner_dies(
    shm_prefix: str, owner: tuple[str, subprocess.Popen[str]]
) -> None:
    name, proc = owner
    runner = CliRunner()
    [row] = _ls_json(runner, shm_prefix)
    assert row["name"] == name
    assert (row["structure"], row["kind"], row["record_size"], row["capacity"]) == (
        "ring",
        "TRADE",
        64,
        64,
    )
    assert (row["written"], row["read"], row["fill"], row["full"]) == (68, 4, 64, 2)
    assert row["owner_pid"] == row["producer_pid"] == row["consumer_pid"] == proc.pid
    assert row["owner_alive"] and row["producer_alive"] and row["consumer_alive"]

    table = runner.invoke(app, ["shm", "ls", "--prefix", shm_prefix])
    assert table.exit_code == 0
    header, line = table.stdout.splitlines()
    assert header.split()[:8] == ["NAME", "TYPE", "KIND", "CAP", "FILL", "WRITTEN", "READ", "FULL"]
    assert line.split()[:8] == [name, "ring", "TRADE", "64", "64", "68", "4", "2"]
    assert line.count(f"{proc.pid} alive") == 3

    # A live owner's segment is kept unless forced.
    refused = runner.invoke(app, ["shm", "rm", name])
    assert refused.exit_code == 1
    assert "is alive" in refused.stderr
    assert os.path.exists(f"/dev/shm/{name}")
    stale_only = runner.invoke(app, ["shm", "rm", "--prefix", shm_prefix])
    assert stale_only.exit_code == 0 and "0 segment(s) removed" in stale_only.stdout

    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    [row] = _ls_json(runner, shm_prefix)
    assert not row["owner_alive"] and not row["producer_alive"] and not row["consumer_alive"]
    assert (row["written"], row["read"]) == (68, 4)  # counters survive their writer
    table = runner.invoke(app, ["shm", "ls", "--prefix", shm_prefix])
    assert table.stdout.splitlines()[1].count(f"{proc.pid} DEAD") == 3

    removed = runner.invoke(app, ["shm", "rm", "--prefix", shm_prefix])
    assert removed.exit_code == 0
    assert f"removed {name}" in removed.stdout
    assert not os.path.exists(f"/dev/shm/{name}")
    empty = runner.invoke(app, ["shm", "ls", "--prefix", shm_prefix])
    assert "no Wiresens segments" in empty.stdout


def test_rm_of_a_missing_name_fails(shm_prefix: str) -> None:
    result = CliRunner().invoke(app, ["shm", "rm", f"{shm_prefix}nothing"])
    assert result.exit_code == 1
    assert "no such segment" in result.stderr


def test_installed_command_runs(shm_prefix: str) -> None:
    exe = os.path.join(os.path.dirname(sys.executable), "wiresens")
    if not os.path.exists(exe):
        pytest.skip(f"{exe} is not installed (pip install -e .)")
    out = subprocess.run(
        [exe, "shm", "ls", "--prefix", shm_prefix], capture_output=True, text=True, check=True
    )
    assert "no Wiresens segments" in out.stdout


def test_old_layout_segment_is_shown_and_removable(shm_prefix: str) -> None:
    name = f"{shm_prefix}old"
    with Ring.create(name, TRADE, 16) as ring:
        ring.segment.header[0]["layout_version"] = 99
        ring.segment.header[0]["creator_pid"] = 0  # its creator is gone
    runner = CliRunner()
    [row] = _ls_json(runner, shm_prefix)
    assert (row["name"], row["valid"], row["owner_alive"]) == (name, False, False)
    assert "written" not in row  # not attachable: no counters are made up
    table = runner.invoke(app, ["shm", "ls", "--prefix", shm_prefix]).stdout
    assert "ring*" in table and "other layout version" in table
    removed = runner.invoke(app, ["shm", "rm", "--prefix", shm_prefix])
    assert f"removed {name}" in removed.stdout
    assert not os.path.exists(f"/dev/shm/{name}")

"""Every benchmark module runs at a tiny size, so none can rot unnoticed.

Discovers ``benchmarks/bench_*.py``: a new benchmark is covered the day it lands, and
must define ``SMOKE`` (the ``main`` arguments for a run of about a second).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path
from typing import Any

import pytest

import benchmarks

MODULES = sorted(
    m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
)
OWN_TEST = {"bench_tick_outage": "test_tick_outage.py"}
"""Benchmarks smoked by a test of their own (stopping Kafka twice per suite costs ~1 min)."""
SMOKED = [m for m in MODULES if m not in OWN_TEST]


def test_benchmarks_are_discovered() -> None:
    assert "bench_ring" in MODULES


def test_benchmarks_left_out_here_have_their_own_test() -> None:
    for name, test in OWN_TEST.items():
        assert name in MODULES and (Path(__file__).parent / test).is_file(), (name, test)


@pytest.mark.parametrize("name", SMOKED)
def test_benchmark_runs_at_smoke_size(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mod = importlib.import_module(f"benchmarks.{name}")
    smoke: dict[str, Any] | None = getattr(mod, "SMOKE", None)
    assert isinstance(smoke, dict), (
        f"benchmarks/{name}.py has no SMOKE dict: define the main() arguments of a ~1 s run"
    )
    out = tmp_path / f"{name}.json"
    doc = mod.main(json_out=str(out), **smoke)
    assert isinstance(doc, dict) and doc
    # The JSON file holds exactly the returned figures.
    assert json.loads(out.read_text()) == json.loads(json.dumps(doc))
    assert capsys.readouterr().out.strip(), f"{name} printed no report"


def test_ring_smoke_run_checks_every_record() -> None:
    from benchmarks import bench_ring

    doc = bench_ring.main(quiet=True, **bench_ring.SMOKE)
    assert doc["verified"] is True
    counts = doc["config"]["counts"]
    for case, check in doc["runs"][0]["verified"].items():
        assert check["received"] == counts[case] == check["expected"], case
        assert check["out_of_sequence"] == 0, case
    for case in bench_ring.LATENCY_CASES:
        figs = doc["summary"]["latency_us"][case]
        assert 0 < figs["p50"]["median"] <= figs["p99"]["median"] <= figs["max"]["median"]
    for case in bench_ring.TPUT_CASES:
        assert doc["summary"]["throughput_rps"][case]["median"] > 0


def test_main_runs_a_named_topic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.__main__ import main, topics

    assert "ring" in topics()
    out = tmp_path / "all.json"
    assert main(["ring", "--records", "200", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert set(doc) == {"ring"} and doc["ring"]["verified"] is True
    assert "One-way latency" in capsys.readouterr().out


def test_every_benchmark_has_a_wiresens_bench_command() -> None:
    from typer.main import get_command

    from benchmarks.__main__ import topics
    from wiresens.cli.bench import app

    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    assert {t.replace("_", "-") for t in topics()} <= commands

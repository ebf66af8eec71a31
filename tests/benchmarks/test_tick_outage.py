"""bench_tick_outage at a tiny size, against the session's Kafka (which it stops and starts)."""

from __future__ import annotations

import pytest

from benchmarks import bench_tick_outage
from wiresens.testing.services import Service


@pytest.mark.slow
def test_every_phase_is_measured_and_the_sink_copies_the_whole_log(
    kafka_service: Service, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if kafka_service.run_dir is None:
        pytest.skip("Kafka was not started by scripts/services: the benchmark cannot stop it")
    monkeypatch.setenv("WIRESENS_KAFKA_BOOTSTRAP", kafka_service.address)
    monkeypatch.setenv("WIRESENS_SERVICES_DIR", kafka_service.run_dir)
    ticks = bench_tick_outage.SMOKE["records"]
    doc = bench_tick_outage.main(**bench_tick_outage.SMOKE)
    run = doc["runs"][0]
    assert run["ticks_in_outage"] >= ticks
    for phase in bench_tick_outage.PHASES:
        figs = doc["latency_us"][phase]
        # Every tick of the phase, and only those, reached the gateway stage.
        want = run["ticks_in_outage"] if phase == "kafka down" else ticks
        assert figs["count"]["median"] == want, phase
        assert 0 < figs["p50"]["median"] <= figs["p99"]["median"] <= figs["max"]["median"]
    assert run["retries_in_outage"] >= 1  # the outage was real: the sink saw it
    assert run["copied_all"] and doc["copied_all"]
    assert run["records_copied"] > 2 * 3 * ticks  # ticks and orders, all three phases
    assert kafka_service.is_running()
    out = capsys.readouterr().out
    assert "kafka down / kafka up p99" in out

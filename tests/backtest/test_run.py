"""End to end: config files, the run() API, determinism, the report and the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

from wiresens.backtest import BacktestConfig, load_config, load_market, run
from wiresens.backtest.config import LatencyConfig, QueueConfig
from wiresens.backtest.report import write_report
from wiresens.cli import app
from wiresens.errors import ConfigError

ROOT = Path(__file__).parents[2]
DATA = Path(os.environ.get("WIRESENS_DATA", ROOT.parent / "shared" / "data"))


def small(cfg: BacktestConfig, steps: int = 600) -> BacktestConfig:
    return msgspec.structs.replace(cfg, data=msgspec.structs.replace(cfg.data, steps=steps))


@pytest.fixture(scope="module")
def example() -> BacktestConfig:
    return small(load_config(ROOT / "config" / "backtest.toml"))


def test_example_config_decodes_and_trades(example: BacktestConfig) -> None:
    assert example.policy.class_ == "examples.market_maker:MarketMaker"
    r = run(example)
    assert r.stats["fills"] > 0 and r.stats["orders_sent"] > 0
    assert r.events == r.market.market_events
    s = r.stats
    assert s["inventory_min"] <= s["final_position"] <= s["inventory_max"]
    assert s["fees"] == pytest.approx(r.fills["fee"].sum() / 1e8)
    assert s["max_drawdown"] >= 0


def test_unknown_key_names_its_path(tmp_path: Path) -> None:
    p = tmp_path / "bt.toml"
    p.write_text("[latency]\nentry_nss = 5\n")
    with pytest.raises(ConfigError, match=r"entry_nss.*latency|latency.*entry_nss"):
        load_config(p)


def test_same_inputs_and_seed_give_bit_identical_results(example: BacktestConfig) -> None:
    md = load_market(example)
    a = run(example, md)
    b = run(example)  # loads the market again from the seed
    assert a.fills.tobytes() == b.fills.tobytes()
    assert a.samples.tobytes() == b.samples.tobytes()
    assert a.digest() == b.digest() and a.stats == b.stats
    # The seed matters: another seed draws other latencies and another market.
    c = run(msgspec.structs.replace(example, seed=example.seed + 1))
    assert c.digest() != a.digest()


def test_latency_draws_change_results_but_stay_deterministic(example: BacktestConfig) -> None:
    md = load_market(example)
    cfg = msgspec.structs.replace(
        example, latency=LatencyConfig(entry="normal", entry_ns=2_000_000, entry_jitter_ns=500_000)
    )
    assert run(cfg, md).digest() == run(cfg, md).digest()
    const = msgspec.structs.replace(cfg, latency=LatencyConfig(entry_ns=2_000_000))
    assert run(const, md).digest() != run(cfg, md).digest()


def test_queue_models_differ_on_the_same_market(example: BacktestConfig) -> None:
    md = load_market(example)
    cons = run(example, md)
    prob = run(msgspec.structs.replace(example, queue=QueueConfig(model="probabilistic")), md)
    # Cancels ahead move the probabilistic queue up: on this market it fills more often.
    assert prob.stats["maker_fills"] >= cons.stats["maker_fills"]
    assert prob.digest() != cons.digest()


def test_report_has_plots_and_tables(example: BacktestConfig, tmp_path: Path) -> None:
    r = run(example)
    index = write_report(r, tmp_path / "out")
    text = index.read_text()
    assert "<h2>Statistics</h2>" in text and "sharpe" in text
    pytest.importorskip("matplotlib")
    assert "data:image/png;base64," in text
    lines = (tmp_path / "out" / "fills.csv").read_text().splitlines()
    assert lines[0].startswith("ts,cl_ord_id") and len(lines) == len(r.fills) + 1


def test_cli_run_writes_report_and_json(tmp_path: Path) -> None:
    cfg = tmp_path / "bt.toml"
    text = (ROOT / "config" / "backtest.toml").read_text().replace("steps = 20000", "steps = 300")
    cfg.write_text(
        text.replace('class = "examples.', f'class = "{ROOT}/examples/').replace(
            "market_maker:", "market_maker.py:"
        )
    )
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        [
            "backtest",
            "run",
            str(cfg),
            "--report",
            str(out),
            "--json",
            str(tmp_path / "s.json"),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (out / "index.html").exists()
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["events"] > 0 and "sharpe" in stats


def test_recording_backtest_runs() -> None:
    f = DATA / "binance" / "hftbacktest" / "spot_btcusdt_20240808.gz"
    if not f.exists():
        pytest.skip(f"{f} absent: set WIRESENS_DATA to the recorded Binance data")
    cfg = msgspec.convert(
        {
            "data": {"source": "recording", "paths": [str(f)], "limit": 3000},
            "latency": {"feed": "recorded"},
            "policy": {"params": {"qty": 100_000, "max_position": 1_000_000, "spread_bps": 1}},
        },
        BacktestConfig,
    )
    r = run(cfg)
    assert r.events > 3000 and r.policy_calls["book"] > 0
    assert r.stats["orders_sent"] > 0

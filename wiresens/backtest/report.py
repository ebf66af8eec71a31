"""The HTML report of a back-test: statistics and fill tables, plots, CSV of the arrays.

``write_report(result, out_dir)`` writes ``index.html`` (statistics, run facts, the first
fills; with matplotlib installed - the ``report`` extra - plots of equity, position, and
mid price with the fills marked, embedded as PNG), ``fills.csv``, ``orders.csv`` and ``samples.csv``.
Without matplotlib the page says how to get the plots and still has the tables.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from wiresens.fixedpoint import SCALE

from .results import Result

__all__ = ["write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child { text-align: left; }
img { max-width: 100%; }
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.6g}"
    if isinstance(v, int):
        return f"{v:,}"
    return html.escape(str(v))


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _plots(result: Result) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    s = result.samples
    f = result.fills
    t0 = int(s["ts"][0]) if len(s) else 0
    ts = (s["ts"] - t0) / 1e9
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    axes[0].plot(ts, s["equity"] / SCALE, lw=1)
    axes[0].set_ylabel("equity (quote)")
    axes[1].step(ts, s["position"] / SCALE, where="post", lw=1)
    axes[1].set_ylabel("position (base)")
    mids = s["mid"] > 0
    axes[2].plot(ts[mids], s["mid"][mids] / SCALE, lw=0.8, color="grey", label="mid")
    if len(f):
        ft = (f["ts"] - t0) / 1e9
        buy = f["side"] == 1
        axes[2].scatter(
            ft[buy], f["price"][buy] / SCALE, s=6, marker="^", c="tab:green", label="buy"
        )
        axes[2].scatter(
            ft[~buy], f["price"][~buy] / SCALE, s=6, marker="v", c="tab:red", label="sell"
        )
    axes[2].set_ylabel("price")
    axes[2].set_xlabel("seconds from start")
    axes[2].legend(loc="best", fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _csv(path: Path, arr: np.ndarray[Any, Any]) -> None:
    names = arr.dtype.names or ()
    with path.open("w") as fh:
        fh.write(",".join(names) + "\n")
        for row in arr.tolist():
            fh.write(",".join(str(v) for v in row) + "\n")


def write_report(result: Result, out_dir: str | Path, max_fill_rows: int = 200) -> Path:
    """Write the report into ``out_dir`` (created); returns the path of ``index.html``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _csv(out / "fills.csv", result.fills)
    _csv(out / "samples.csv", result.samples)
    if result.orders is not None:
        _csv(out / "orders.csv", result.orders)
    png = _plots(result)
    cfg = result.config
    facts: list[tuple[str, Any]] = [
        ("market events (level updates + trades)", result.events),
        ("load time (s)", round(result.load_s, 3)),
        ("replay time (s)", round(result.run_s, 3)),
        ("events/s", round(result.events_per_s)),
        ("replay loop", result.implementation),
        ("on_book calls", result.policy_calls.get("book", 0)),
        ("on_trade calls", result.policy_calls.get("trade", 0)),
    ]
    if cfg is not None:
        facts += [
            ("data source", cfg.data.source),
            ("policy", cfg.policy.class_),
            ("queue model", cfg.queue.model),
            ("fees maker/taker (bp)", f"{cfg.fees.maker_bps} / {cfg.fees.taker_bps}"),
            ("entry latency", f"{cfg.latency.entry} {cfg.latency.entry_ns} ns"),
            ("feed latency", f"{cfg.latency.feed} {cfg.latency.feed_ns} ns"),
            ("seed", cfg.seed),
        ]
    f = result.fills[:max_fill_rows]
    head = "<tr><th>ts (ns)</th><th>cl_ord_id</th><th>side</th><th>maker</th><th>price</th><th>qty</th><th>fee</th></tr>"
    rows = "".join(
        f"<tr><td>{r[0]}</td><td>{r[1]}</td><td>{'BUY' if r[2] == 1 else 'SELL'}</td>"
        f"<td>{'yes' if r[3] else 'no'}</td><td>{r[4] / SCALE:.8g}</td><td>{r[5] / SCALE:.8g}</td>"
        f"<td>{r[6] / SCALE:.8g}</td></tr>"
        for r in f.tolist()
    )
    plot = (
        f'<img alt="equity, position, price with fills" src="data:image/png;base64,{png}">'
        if png
        else "<p>Plots need matplotlib: <code>pip install 'wiresens[report]'</code>.</p>"
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Wiresens back-test</title>"
        f"<style>{_STYLE}</style></head><body><h1>Back-test report</h1>"
        f"<h2>Statistics</h2>{_table(list(result.stats.items()))}"
        f"<h2>Plots</h2>{plot}<h2>Run</h2>{_table(facts)}"
        f"<h2>Fills (first {len(f)} of {len(result.fills)}; all in fills.csv)</h2>"
        f"<table>{head}{rows}</table></body></html>"
    )
    index = out / "index.html"
    index.write_text(page)
    return index

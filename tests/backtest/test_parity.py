"""Live/back-test parity on an event log written the way the node's taps write it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wiresens.backtest.data import DEPTH, from_synthetic
from wiresens.backtest.parity import check_parity, policy_factory
from wiresens.eventlog import EventLogWriter
from wiresens.policy import BufferSink, ClOrdIdGen, PolicyContext, TopOfBook
from wiresens.records import ExecStatus, ExecType, RecordKind, new_record

ROOT = Path(__file__).parents[2]
PARAMS = {"qty": 5_000_000, "max_position": 20_000_000, "spread_bps": 2, "requote_ticks": 1}
MS = 1_000_000


def write_live_log(directory: Path, tamper: bool = False) -> int:
    """Run the market maker like the host does (fake venue: every request is acked) and
    log what the taps would: its TOB inputs, its requests, the reports. Returns #requests."""
    md = from_synthetic(3, 120, mid="100")
    book_rows = np.flatnonzero(md.kind == DEPTH)
    factory = policy_factory(f"{ROOT}/examples/market_maker.py:MarketMaker", PARAMS, str(ROOT))
    sink = BufferSink()
    now = [0]
    pol = factory(
        PolicyContext(policy_id=3, name="mm", sink=sink, symbols=[1], clock=lambda: now[0])
    )
    pol._ids = ClOrdIdGen(3, now_s=1_700_000_000)
    pol.start()
    tobs = new_record(RecordKind.TOP_OF_BOOK, len(book_rows))
    reports: list[Any] = []
    view = TopOfBook()
    for n, i in enumerate(book_rows.tolist()):
        t = int(md.ts_exch[i])
        rec = tobs[n]
        rec["symbol"] = 1
        rec["ts_exch"] = rec["ts_recv"] = rec["ts_pub"] = t
        rec["bid_px"], rec["bid_qty"], rec["ask_px"], rec["ask_qty"] = (
            int(md.a[i]),
            int(md.b[i]),
            int(md.c[i]),
            int(md.d[i]),
        )
        now[0] = t
        before = sink.count
        view.update(rec)
        pol.deliver_book(1, view)
        # The venue acks every request half a millisecond later.
        for req in sink.records[before:].copy():
            now[0] = t + MS // 2
            for cid, status, et in _acks(req):
                r = new_record(RecordKind.EXECUTION_REPORT)
                r["symbol"], r["policy"], r["cl_ord_id"] = 1, 3, cid
                r["side"], r["price"], r["qty"] = req["side"], req["price"], req["qty"]
                r["status"], r["exec_type"] = status, et
                r["ts_pub"] = r["ts_recv"] = now[0]
                reports.append(r)
                pol.deliver_execution(r[0], memoryview(r).cast("B"))
    live = sink.records.copy()
    if tamper:
        live["price"][len(live) // 2] += 1_000_000
    with EventLogWriter(directory, "live") as w:
        w.append_records(RecordKind.TOP_OF_BOOK, tobs)
        for kind in (RecordKind.ORDER_NEW, RecordKind.ORDER_CANCEL, RecordKind.ORDER_REPLACE):
            sel = live[live["kind"] == int(kind)]
            if len(sel):
                w.append_records(kind, sel)
        w.append_records(RecordKind.EXECUTION_REPORT, np.concatenate(reports))
    return len(live)


def _acks(req: Any) -> list[tuple[int, int, int]]:
    kind = int(req["kind"])
    if kind == RecordKind.ORDER_CANCEL:
        return [(int(req["orig_cl_ord_id"]), ExecStatus.CANCELED, ExecType.CANCELED)]
    out = [(int(req["cl_ord_id"]), ExecStatus.NEW, ExecType.NEW)]
    if kind == RecordKind.ORDER_REPLACE:
        out.insert(0, (int(req["orig_cl_ord_id"]), ExecStatus.CANCELED, ExecType.CANCELED))
    return out


def test_replay_of_a_deterministic_policy_matches_the_log(tmp_path: Path) -> None:
    n = write_live_log(tmp_path / "log")
    assert n > 20  # the market maker did requote
    factory = policy_factory(f"{ROOT}/examples/market_maker.py:MarketMaker", PARAMS, str(ROOT))
    rep = check_parity(tmp_path / "log", factory, policy_id=3)
    assert rep.ok, rep
    assert rep.live_requests == rep.replay_requests == rep.matched == n


def test_a_difference_is_reported_at_its_request(tmp_path: Path) -> None:
    n = write_live_log(tmp_path / "log", tamper=True)
    factory = policy_factory(f"{ROOT}/examples/market_maker.py:MarketMaker", PARAMS, str(ROOT))
    rep = check_parity(tmp_path / "log", factory, policy_id=3)
    assert not rep.ok and rep.first_mismatch == n // 2 == rep.matched
    assert rep.live is not None and rep.replay is not None
    assert rep.live["price"] - rep.replay["price"] == 1_000_000
    # Other params: the policy decides differently from the first quote on.
    other = policy_factory(
        f"{ROOT}/examples/market_maker.py:MarketMaker", {**PARAMS, "spread_bps": 4}, str(ROOT)
    )
    assert check_parity(tmp_path / "log", other, policy_id=3).first_mismatch == 0


def test_cli_parity_exit_codes(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from wiresens.cli import app

    write_live_log(tmp_path / "good")
    write_live_log(tmp_path / "bad", tamper=True)
    args = [
        "--class",
        f"{ROOT}/examples/market_maker.py:MarketMaker",
        "--params",
        json.dumps(PARAMS),
        "--policy-id",
        "3",
    ]
    ok = CliRunner().invoke(app, ["backtest", "parity", str(tmp_path / "good"), *args])
    assert ok.exit_code == 0 and "every request identical" in ok.output, ok.output
    bad = CliRunner().invoke(app, ["backtest", "parity", str(tmp_path / "bad"), *args])
    assert bad.exit_code == 1 and "first difference" in bad.output

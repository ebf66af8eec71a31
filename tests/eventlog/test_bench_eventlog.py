"""The event-log benchmark measures what it says: every record it times is in the log."""

from __future__ import annotations

from benchmarks import bench_eventlog


def test_smoke_run_writes_every_record_and_reports_each_case() -> None:
    doc = bench_eventlog.main(quiet=True, **bench_eventlog.SMOKE)
    n = bench_eventlog.SMOKE["records"]
    (run,) = doc["runs"]
    for name, kind, batch in bench_eventlog.CASES:
        case = run["cases"][name]
        if kind is None:
            assert case["count"] == n // 4
            assert case["bytes"] >= case["count"] * (40 + len(bench_eventlog.RAW_MESSAGE))
        else:
            itemsize = 64 if name.startswith("64B") else 128
            assert case["count"] == n // batch * batch
            assert case["bytes"] >= case["count"] * itemsize + case["count"] // batch * 40
        assert doc["summary"]["rate_per_s"][name]["median"] > 0
        assert doc["summary"]["ratio_vs_baseline"][name]["median"] > 0
    assert run["read"]["count"] == n // 1024 * 1024
    assert {t["case"] for t in doc["targets"]} == {c for c, k, _ in bench_eventlog.CASES if k}

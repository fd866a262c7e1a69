"""The annotation server under load (`vidcurate bench annotate`, small): every submission stored exactly once."""
from __future__ import annotations

import math

import pytest

from conftest import synth_world


@pytest.mark.slow
def test_load_bench_stores_every_submission_exactly_once(tmp_path):
    from vidcurate.pipelines.bench.annotate import report, run

    world = tmp_path / "world"
    synth_world(world, "--clips", "60", "--seed", "5")
    summary = run(annotators=4, seconds=8, overlap=2, world=str(world), keep=str(tmp_path / "bench"),
                  resubmit_every=5, echo=lambda line: None)
    text = report(summary)
    checks = summary["checks"]
    assert summary["ok"], text
    assert checks["ok"] and checks["server_stopped"]["clean"], text
    assert summary["submissions"] > 0 and checks["judgments"] == checks["acknowledged"] == summary["submissions"]
    assert checks["ids_unique"] and checks["ids_equal"] and checks["rows_as_answered"] == 0
    assert checks["pairs_twice"] == 0 and checks["clips_over_k"] == 0
    assert checks["labels_rows"] == checks["judgments"]
    assert summary["resubmits"] > 0 and not summary["resubmit_failures"], text
    assert summary["errors"] == 0, text
    for kind in ("next", "submit"):
        figures = summary["latency_ms"][kind]
        assert figures["count"] > 0
        assert all(math.isfinite(figures[q]) and figures[q] > 0 for q in ("p50", "p95", "max")), text
    assert summary["submissions_per_s"] > 0
    assert "exactly-once check: passed" in text

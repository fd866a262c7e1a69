"""The coordinator's memory stays flat in the number of clips (issue: writing that scales out).

The journal keeps rows on disk and a close streams them back, sorting by uri ranges that
spill to temporary files; these tests check the sort against Python's, then a close of a
journal of a million clip rows in a fresh process, and the whole writing path (writer
processes sending metadata to a sink) through `vidcurate bench coordinator`.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from vidcurate.operators.write.sorted_rows import sorted_tables

HELPER = str(Path(__file__).with_name("coordinator_memory.py"))
SCHEMA = pa.schema([("uri", pa.string()), ("start", pa.float64()), ("clip_id", pa.string())])
ORDER = [("uri", "ascending"), ("start", "ascending"), ("clip_id", "ascending")]


@pytest.mark.parametrize("max_rows", [1_000_000, 7, 1])
def test_sorted_tables_match_python_sorting_whether_they_spill_or_not(max_rows):
    rng = random.Random(3)
    rows = [{"uri": f"v{rng.randrange(40):02d}", "start": float(rng.randrange(10)), "clip_id": f"c{i}"}
            for i in range(500)]
    per_uri: dict[str, int] = {}
    for row in rows:
        per_uri[row["uri"]] = per_uri.get(row["uri"], 0) + 1
    per_uri.pop("v07", None)  # a uri the counts do not know still lands in its range
    tables = [pa.Table.from_pylist(rows[i:i + 60], schema=SCHEMA) for i in range(0, len(rows), 60)]
    parts = list(sorted_tables(tables, ORDER, per_uri, max_rows=max_rows))
    assert (len(parts) == 1) == (max_rows > 500)
    got = [row for part in parts for row in part.to_pylist()]
    assert got == sorted(rows, key=lambda r: (r["uri"], r["start"], r["clip_id"]))


def _helper(*args: str) -> dict | None:
    env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "jemalloc"}  # the vidcurate command's pool
    done = subprocess.run([sys.executable, HELPER, *args], capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else None


@pytest.mark.slow
def test_a_close_of_a_million_clip_rows_stays_under_400_mb(tmp_path):
    """50,000 videos x 20 clips: 900,000 index rows and 100,000 rejects. Held as row dicts they
    take about 2 GB (`vidcurate bench coordinator` measures that baseline); a close, replay
    included, stays under 400 MB, and so does a resume that starts from the snapshot."""
    out = str(tmp_path / "out")
    _helper("journal", out, "50000", "20")
    first = _helper("replay", out)
    assert (first["index_rows"], first["reject_rows"], first["videos"]) == (900_000, 100_000, 50_000)
    assert first["peak_rss_mb"] < 400, first
    index = pq.read_table(f"{out}/index.parquet", columns=["uri", "start"])
    assert index.num_rows == 900_000
    keys = pc.binary_join_element_wise(index["uri"], pc.utf8_lpad(pc.cast(index["start"], pa.string()), 12), "|")
    assert pc.all(pc.greater(keys[1:], keys[:-1])).as_py()  # sorted by video, then start
    journal = sorted(p.name for p in (tmp_path / "out" / "_journal").iterdir())
    assert len(journal) == 3 and journal[0].startswith("entry-")  # the snapshot and its two tables

    again = _helper("replay", out)  # a resume: the rows come from the snapshot's tables
    assert (again["index_rows"], again["reject_rows"]) == (900_000, 100_000)
    assert again["peak_rss_mb"] < 400, again
    assert pq.read_table(f"{out}/index.parquet", columns=["uri", "start"]).equals(index)


@pytest.mark.slow
def test_bench_coordinator_writes_in_workers_and_receives_only_metadata(tmp_path):
    """The real path at 100,000 clips: two writer processes, the sink in the coordinator."""
    done = subprocess.run([sys.executable, "-m", "vidcurate.pipelines.cli", "bench", "coordinator", "--clips",
                           "100000", "--json", "--workdir", str(tmp_path)], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    coordinator = result["coordinator"]
    assert (coordinator["index_rows"], coordinator["reject_rows"], coordinator["videos"]) == (90_000, 10_000, 5_000)
    assert coordinator["shards"] >= 18  # 5000 samples per shard, per writer call: written by the workers
    # after the first tenth, receiving the rest grows only by the per-video summaries (~1 KB each)
    assert result["receive_growth_after_tenth_mb"] < 25, result
    assert result["holding_growth_mb"] > 100  # the baseline holds every row
    assert coordinator["peak_rss_mb"] < 450, result

"""The command line as a user meets it: help, configs, error messages and exit codes."""
from __future__ import annotations

import os

import pytest

from conftest import rejects_table, run_cli


def test_every_command_has_real_help():
    for command in ([], ["build"], ["demo"], ["ops"], ["config"]):
        done = run_cli(*command, "--help")
        assert done.returncode == 0, done.stderr
        assert "Usage:" in done.stdout and len(done.stdout.splitlines()) > 5
    assert "--max-failure-ratio" in run_cli("build", "--help").stdout


def test_config_prints_the_resolved_default_and_ops_describe_fields():
    done = run_cli("config")
    assert done.returncode == 0 and "op: split_shots" in done.stdout and "threshold: 25.0" in done.stdout
    done = run_cli("ops", "split_shots")
    assert done.returncode == 0
    assert "min_scene_len = 15" in done.stdout and "Panda-70M" in done.stdout
    assert run_cli("ops", "nope").returncode == 2


def test_bad_config_exits_2_naming_the_field(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("pipeline:\n  - op: probe\n  - op: split_shots\n    threshold: abc\n")
    done = run_cli("build", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "-c", str(config))
    assert done.returncode == 2
    assert "step 2 (split_shots): field 'threshold'" in done.stderr and "Traceback" not in done.stderr


def test_missing_input_exits_2(tmp_path):
    done = run_cli("build", "-i", str(tmp_path / "missing"), "-o", str(tmp_path / "out"))
    assert done.returncode == 2 and "no such file or folder" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_build_failing_wholesale_stops_with_a_clear_message(tmp_path, corpus):
    folder = tmp_path / "bad"
    folder.mkdir()
    for name in corpus["bad"]:
        (folder / name).write_bytes((corpus["folder"] / name).read_bytes())
    out = tmp_path / "out"
    done = run_cli("build", "-i", str(folder), "-o", str(out))
    assert done.returncode == 1
    assert "stopped: 3 of 3 inputs (100%) yielded no clip" in done.stderr
    assert "probe/unreadable_container (2)" in done.stderr and "probe/empty_file (1)" in done.stderr
    # What was processed before the stop is still on disk, named and explained.
    assert {os.path.basename(r["uri"]) for r in rejects_table(out)} == corpus["bad"]
    # Re-running into the same folder refuses to mix builds.
    again = run_cli("build", "-i", str(folder), "-o", str(out))
    assert again.returncode == 1 and "already holds a build" in again.stderr and "--overwrite" in again.stderr


@pytest.mark.slow
def test_silent_video_without_metadata_is_rejected_with_a_hint(tmp_path, corpus):
    out = tmp_path / "out"
    done = run_cli("build", "-i", str(corpus["compilation"]), "-o", str(out), "--max-failure-ratio", "1")
    assert done.returncode == 0, done.stderr
    reasons = {r["reason"] for r in rejects_table(out)}
    assert reasons == {"too_short", "no_caption_candidates"}
    detail = next(r["detail"] for r in rejects_table(out) if r["reason"] == "no_caption_candidates")
    assert "metadata" in detail


@pytest.mark.slow
def test_demo_builds_the_sample_dataset(tmp_path):
    out = tmp_path / "demo"
    done = run_cli("demo", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert "clips out:      7 in 1 shard(s)" in done.stdout
    assert "probe/unreadable_container" in done.stdout  # the deliberately truncated input
    assert os.path.exists(out / "index.parquet") and os.listdir(out / "shards") == ["shard-000000.tar"]
    # The README's main command is re-runnable: a second demo replaces the first.
    assert run_cli("demo", "--output", str(out)).returncode == 0

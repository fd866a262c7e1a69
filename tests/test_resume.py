"""Resume, incremental builds and retry-failed: a build never redoes or duplicates work.

A build killed with SIGKILL at several points and re-run with the same command must end
with exactly the index of an uninterrupted build (same clip ids, captions and splits),
every clip in exactly one shard, and no partial shard left.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import yaml

from conftest import VIDCURATE, index_table, rejects_table, run_cli, shard_samples
from vidcurate.operators.write.destination import Destination
from vidcurate.operators.write.journal import Journal
import samples

CONFIG = {
    "pipeline": [
        {"op": "probe"},
        {"op": "split_shots", "min_clip_seconds": 1.0},
        {"op": "extract_clips", "keyframes": "none", "asr_audio": False, "max_height": 144},
        {"op": "metadata_teacher"},
        {"op": "consensus_selector"},
    ],
    # Small shards filled in arrival order: a shard holds the last clip of one video and the
    # first of the next, so a kill leaves finished shards holding clips of unfinished videos
    # (the orphans a resume removes), and videos commit one after another as shards fill.
    # One split and one open shard: a video's last shard fills with the next video's first
    # clip; with several open shards or splits it could wait for a later video, and in a
    # build this small most videos would commit only at the end (no kill point in between).
    "output": {"shard_max_samples": 2, "open_shards": 1, "splits": {"train": 1.0}},
    "run": {"videos_per_chunk": 1, "max_failure_ratio": 0.9},
}


def _write_manifest(folder, names) -> str:
    # Fixed video ids: the split of a video hashes its id, which would otherwise hash the temp path.
    lines = [json.dumps({"uri": name, "video_id": name.rsplit(".", 1)[0], "title": f"Clip {name}",
                         "description": f"Real sample footage {name}."}) for name in names]
    path = folder / f"manifest-{len(names)}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("resume_inputs")
    names = []
    for i, source in enumerate(["bikes.mp4", "carphone_pristine.mp4", "bikes.mp4", "bigbuckbunny.mp4",
                                "bikes.mp4"]):
        name = f"v{i}_{source}"
        shutil.copy(samples.sample(source), folder / name)
        names.append(name)
    (folder / "broken.mp4").write_bytes(b"not a video")
    names.append("broken.mp4")
    config = folder / "resume.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    return {"folder": folder, "names": names, "config": str(config),
            "manifest": _write_manifest(folder, names), "first_three": _write_manifest(folder, names[:3])}


def _tables(out) -> tuple[list, list]:
    index = sorted((r["clip_id"], r["caption"], r["split"]) for r in index_table(out))
    rejects = sorted((os.path.basename(r["uri"]), r["clip_id"] or "", r["stage"], r["reason"])
                     for r in rejects_table(out))
    return index, rejects


def _check_shards_match_index(out) -> None:
    stored = shard_samples(out)  # fails on a partial shard or a clip in two shards
    rows = index_table(out)
    assert sorted(stored) == sorted(r["key"] for r in rows)
    for row in rows:
        assert stored[row["key"]]["__shard__"].decode() == row["shard"]
        assert row["shard"].startswith(row["split"] + "/")
        # random access: the index's byte range in the shard is the clip's mp4, also in rewritten shards
        with open(os.path.join(out, "shards", row["shard"]), "rb") as handle:
            handle.seek(row["mp4_offset"])
            assert handle.read(row["mp4_bytes"]) == stored[row["key"]]["mp4"]
        assert row["members"] == sorted(k for k in stored[row["key"]] if k != "__shard__")


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("reference") / "out"
    done = run_cli("build", "-i", inputs["manifest"], "-o", str(out), "-c", inputs["config"])
    assert done.returncode == 0, done.stderr
    index, rejects = _tables(out)
    assert len(index) >= 8 and {s for _, _, s in index} == {"train"}
    assert ("broken.mp4", "", "probe", "unreadable_container") in rejects
    _check_shards_match_index(out)
    return {"out": out, "index": index, "rejects": rejects}


def _kill_when(command: list[str], ready, timeout: float = 300) -> bool:
    """Start ``command``, SIGKILL it as soon as ``ready()`` holds; True if it was killed mid-run."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if ready():
                process.send_signal(signal.SIGKILL)
                process.wait()
                return True
            time.sleep(0.005)
        return False
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _journal_entries(out) -> int:
    folder = os.path.join(out, "_journal")
    return len([n for n in os.listdir(folder) if n.endswith(".json")]) if os.path.isdir(folder) else 0


def _commits(out) -> int:
    """Commit entries in the journal (a build's first entry is its ``begin``)."""
    folder = os.path.join(out, "_journal")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".json")) if os.path.isdir(folder) else []
    count = 0
    for name in names:
        try:
            with open(os.path.join(folder, name)) as handle:
                count += json.load(handle).get("kind") == "commit"
        except (OSError, ValueError):  # removed by a compaction meanwhile
            pass
    return count


def _published_shard(out) -> bool:
    return any(n.endswith(".tar") for _, _, files in os.walk(os.path.join(out, "shards")) for n in files)


@pytest.mark.slow
def test_a_build_killed_after_some_commits_skips_what_it_finished(inputs, reference, tmp_path):
    """Killed from outside at its third commit (tests/test_crashes.py kills builds at 13 named moments)."""
    out = tmp_path / "out"
    args = ["build", "-i", inputs["manifest"], "-o", str(out), "-c", inputs["config"]]
    ready = lambda: _commits(out) >= 3  # noqa: E731
    assert _kill_when([*VIDCURATE, *args], ready), "the build finished before the kill point"
    assert not os.path.exists(out / "index.parquet")  # really killed mid-build
    finished = len(Journal(Destination(str(out))).state.videos)

    done = run_cli(*args)  # the same command again
    assert done.returncode == 0, done.stderr
    if finished:  # the videos the killed run had finished are not redone
        assert f"({finished} done by an earlier run, skipped" in done.stdout
    assert _tables(out) == (reference["index"], reference["rejects"])
    _check_shards_match_index(out)
    assert _journal_entries(out) == 1  # the resumed build's close compacted the journal


@pytest.mark.slow
def test_adding_inputs_to_a_finished_build_processes_only_the_new_ones(inputs, reference, tmp_path):
    out = tmp_path / "out"
    first = run_cli("build", "-i", inputs["first_three"], "-o", str(out), "-c", inputs["config"])
    assert first.returncode == 0, first.stderr
    assert _journal_entries(out) == 1  # one snapshot: the next run reads one file
    second = run_cli("build", "-i", inputs["manifest"], "-o", str(out), "-c", inputs["config"])
    assert second.returncode == 0, second.stderr
    assert "3 done by an earlier run, skipped" in second.stdout
    assert _journal_entries(out) == 1
    stats = json.loads((out / "stats.json").read_text())
    # The second run probed the three new inputs only (two videos, one broken file); the build's
    # stats hold both runs, so the sum covers all six.
    assert [run["counters"]["probe.records_in"] for run in stats["runs"]] == [3, 3]
    assert stats["counters"]["probe.records_in"] == 6
    assert _tables(out) == (reference["index"], reference["rejects"])
    _check_shards_match_index(out)

    again = run_cli("build", "-i", inputs["manifest"], "-o", str(out), "-c", inputs["config"])
    assert again.returncode == 0 and "6 done by an earlier run" in again.stdout  # nothing left to do
    assert _tables(out) == (reference["index"], reference["rejects"])


def test_journal_compaction_survives_a_crash_between_snapshot_and_cleanup(tmp_path, monkeypatch):
    dest = Destination(str(tmp_path / "out"))
    journal = Journal(dest)
    row = lambda uri, key: {"uri": uri, "video_id": uri, "clip_id": key, "start": 0.0, "end": 1.0,  # noqa: E731
                            "duration": 1.0, "split": "train", "shard": "train/s-0.tar", "key": key, "mp4_offset": 512}
    for i in range(3):
        journal.append({"kind": "commit", "config_hash": "h1", "shards": {f"train/s-{i}.tar": [f"k{i}"]},
                        "videos": [{"uri": f"v{i}", "source": {"uri": f"v{i}"}, "samples": [row(f"v{i}", f"k{i}")],
                                    "rejects": []}]})
    journal.append({"kind": "retract", "uris": ["v1"]})
    journal.append({"kind": "shards", "shards": {"train/s-1.tar": []}, "mp4_offsets": {"train/s-0.tar": {"k0": 9}}})
    replayed = Journal(dest)
    want = replayed.state
    assert sorted(want.videos) == ["v0", "v2"]
    rows = lambda journal: [(r["uri"], r["key"], r["mp4_offset"]) for r in journal.rows("index")]  # noqa: E731
    want_rows = rows(replayed)
    assert want_rows == [("v0", "k0", 9), ("v2", "k2", 512)]
    assert [r["reason"] for r in want.pending["v1"]["rejects"]] == ["redo_pending"]

    removed = []

    def crash_after_one(rel):  # the process dies after deleting the first old entry
        if removed:
            raise KeyboardInterrupt("killed")
        removed.append(rel)
        os.remove(dest.path(rel))

    monkeypatch.setattr(dest, "remove", crash_after_one)
    with pytest.raises(KeyboardInterrupt):
        Journal(dest).compact()
    monkeypatch.undo()
    assert _journal_entries(dest.root) == 5  # 4 old entries left, then the snapshot
    replayed = Journal(dest)
    assert (replayed.state.videos, replayed.state.shards, replayed.state.config_hash) == \
           (want.videos, want.shards, want.config_hash)
    assert rows(replayed) == want_rows
    replayed.compact()
    assert _journal_entries(dest.root) == 1
    again = Journal(dest)
    assert (again.state.videos, again.state.shards, again.state.config_hash) == \
           (want.videos, want.shards, want.config_hash)
    assert rows(again) == want_rows
    again.append({"kind": "commit", "config_hash": "h1", "shards": {},
                  "videos": [{"uri": "v3", "source": {}, "samples": [], "rejects": []}]})
    assert sorted(Journal(dest).state.videos) == ["v0", "v2", "v3"]  # entries after a snapshot still apply


def test_a_different_config_is_refused_unless_overwrite(inputs, tmp_path):
    out = tmp_path / "out"
    small = {**CONFIG, "pipeline": CONFIG["pipeline"][:3], "output": {**CONFIG["output"], "require_caption": False}}
    config = tmp_path / "split-only.yaml"
    config.write_text(yaml.safe_dump(small))
    assert run_cli("build", "-i", inputs["first_three"], "-o", str(out), "-c", str(config)).returncode == 0
    other = run_cli("build", "-i", inputs["first_three"], "-o", str(out), "-c", inputs["config"])
    assert other.returncode == 2 and "another config" in other.stderr and "--overwrite" in other.stderr
    assert index_table(out) and all(r["caption"] is None for r in index_table(out))  # untouched


@pytest.mark.slow
def test_retry_failed_reruns_only_videos_with_transient_rejects(inputs, tmp_path):
    from openai_server import FakeOpenAIServer

    server = FakeOpenAIServer().start()
    try:
        config = {**CONFIG, "pipeline": [
            *CONFIG["pipeline"][:2],
            {"op": "extract_clips", "keyframes": "middle", "asr_audio": False, "max_height": 144},
            {"op": "video_teacher", "backend": "openai", "model": "test-vlm", "endpoint": server.url,
             "max_retries": 0, "prompt": "Summarize: {title}"},
            {"op": "consensus_selector"}]}
        path = tmp_path / "http.yaml"
        path.write_text(yaml.safe_dump(config))
        out = tmp_path / "out"
        server.fail_first = 10 ** 6  # the server is down: every request gets a 500
        done = run_cli("build", "-i", inputs["first_three"], "-o", str(out), "-c", str(path))
        assert done.returncode == 1  # every clip failed: the build reports it
        failed = [r for r in rejects_table(out) if r["reason"] == "no_caption_candidates"]
        assert failed and all(r["transient"] for r in failed)
        assert index_table(out) == []

        server.fail_first = 0  # the server is back
        before = server.attempts
        retried = run_cli("retry-failed", str(out))
        assert retried.returncode == 0, retried.stderr
        rows = index_table(out)
        assert len(rows) == len(failed) and all(r["caption"].startswith("A clip with 1 frames") for r in rows)
        assert not [r for r in rejects_table(out) if r["reason"] == "no_caption_candidates"]
        assert server.attempts - before == len(rows)  # only the failed clips' videos were redone
        _check_shards_match_index(out)
        nothing = run_cli("retry-failed", str(out))
        assert nothing.returncode == 0 and "nothing to retry" in nothing.stdout
    finally:
        server.stop()


def test_changing_only_later_steps_reuses_the_cut_clips_without_decoding_again(inputs, tmp_path):
    out = tmp_path / "out"
    first = run_cli("build", "-i", inputs["first_three"], "-o", str(out), "-c", inputs["config"])
    assert first.returncode == 0, first.stderr
    before = {r["clip_id"]: r for r in index_table(out)}
    # A different selection stage: only the title is a candidate now.
    later = {**CONFIG, "pipeline": [*CONFIG["pipeline"][:3], {"op": "metadata_teacher", "fields": ["title"]},
                                    {"op": "consensus_selector"}]}
    config = tmp_path / "titles.yaml"
    config.write_text(yaml.safe_dump(later))
    second = run_cli("build", "-i", inputs["first_three"], "-o", str(out), "-c", str(config), "--overwrite")
    assert second.returncode == 0, second.stderr
    counters = json.loads((out / "stats.json").read_text())["counters"]
    assert counters["stage_cache.hits"] == 3 and counters.get("stage_cache.misses", 0) == 0
    assert "probe.records_in" not in counters and "extract_clips.records_in" not in counters  # nothing decoded
    after = {r["clip_id"]: r for r in index_table(out)}
    assert set(after) == set(before)
    assert all(r["caption"].startswith("Clip v") for r in after.values())  # the titles, from the new config
    _check_shards_match_index(out)

    # A change in a cached step (the splitter) invalidates the cache.
    changed = {**CONFIG, "pipeline": [CONFIG["pipeline"][0], {"op": "split_shots", "min_clip_seconds": 1.5},
                                      *CONFIG["pipeline"][2:]]}
    config.write_text(yaml.safe_dump(changed))
    third = run_cli("build", "-i", inputs["first_three"], "-o", str(out), "-c", str(config), "--overwrite")
    assert third.returncode == 0, third.stderr
    counters = json.loads((out / "stats.json").read_text())["counters"]
    assert counters["stage_cache.misses"] == 3 and counters["probe.records_in"] == 3


class _Exploit:
    """Unpickling this creates a file: what a planted cache part could do."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_planted_cache_part_is_never_unpickled(inputs, tmp_path):
    """OUT/_cache holds pickles; a part not sealed by this user's key is recomputed, not loaded."""
    import pickle

    out = tmp_path / "out"
    first = run_cli("build", "-i", inputs["first_three"], "-o", str(out), "-c", inputs["config"])
    assert first.returncode == 0, first.stderr
    before = _tables(out)
    parts = sorted((out / "_cache").rglob("part-*.pkl"))
    assert parts
    marker = tmp_path / "the-pickle-ran"
    parts[0].write_bytes(pickle.dumps([_Exploit(str(marker))]))
    again = run_cli("build", "-i", inputs["first_three"], "-o", str(out), "-c", inputs["config"], "--overwrite")
    assert again.returncode == 0, again.stderr
    assert not marker.exists()
    counters = _stats(out)["counters"]
    assert counters["stage_cache.untrusted"] == 1 and counters["stage_cache.hits"] == 2, counters
    assert "not sealed by this user's key" in again.stderr
    assert _tables(out) == before
    _check_shards_match_index(out)


def _stats(out) -> dict:
    with open(os.path.join(out, "stats.json")) as handle:
        return json.load(handle)


@pytest.mark.slow
def test_stats_describe_the_whole_build_across_a_kill_a_resume_and_a_rerun(inputs, reference, tmp_path):
    out = tmp_path / "out"
    args = ["build", "-i", inputs["manifest"], "-o", str(out), "-c", inputs["config"]]
    assert _kill_when([*VIDCURATE, *args], lambda: _commits(out) >= 1)
    assert run_cli(*args).returncode == 0
    stats = _stats(out)
    # The killed run's work up to its last commit is counted too, so every input was probed at
    # least once in the sum (work the resumed run redid is counted again: stats count work done).
    runs = stats["runs"]
    assert len(runs) == 2 and all(r["counters"].get("probe.records_in") for r in runs)
    probed = stats["counters"]["probe.records_in"]
    assert probed == sum(r["counters"]["probe.records_in"] for r in runs) >= 6
    # A re-run with nothing to do adds a run with no work; it never empties the counters.
    again = run_cli(*args)
    assert again.returncode == 0 and "6 done by an earlier run" in again.stdout
    after = _stats(out)
    assert after["counters"]["probe.records_in"] == probed and len(after["runs"]) <= 3
    assert after["counters"]["consensus_selector.records_out"] >= len(reference["index"])
    # So does a retry with nothing to retry.
    assert run_cli("retry-failed", str(out)).returncode == 0
    assert _stats(out)["counters"] == after["counters"]


@pytest.mark.slow
def test_retry_failed_after_a_stopped_build_processes_the_inputs_it_never_reached(inputs, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rows = []
    for name in ("a_empty0.mp4", "a_empty1.mp4"):  # first in the folder's order: the build stops on them
        (folder / name).write_bytes(b"")
        rows.append({"uri": name})
    for name in inputs["names"][:3]:
        shutil.copy(inputs["folder"] / name, folder / name)
        rows.append({"uri": name, "title": f"Clip {name}", "description": f"Real sample footage {name}."})
    manifest = folder / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {**CONFIG, "run": {"videos_per_chunk": 2, "max_failure_ratio": 0.5, "failure_ratio_min_inputs": 2}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    done = run_cli("build", "-i", str(manifest), "-o", str(out), "-c", str(path))
    assert done.returncode == 1 and "stopped: 2 of 2 inputs" in done.stderr
    stopped = {os.path.basename(r["uri"]) for r in rejects_table(out) if r["reason"] == "build_stopped"}
    assert stopped == set(inputs["names"][:3])
    # The summary is printed beside the reason, with the most common reason's hint.
    assert "videos in:" in done.stdout and "hint (probe/empty_file)" in done.stderr

    retried = run_cli("retry-failed", str(out))
    assert retried.returncode == 0, retried.stderr
    assert "retried:        3 source video(s)" in retried.stdout
    index, rejects = index_table(out), rejects_table(out)
    assert {os.path.basename(r["uri"]) for r in index} == set(inputs["names"][:3])
    assert not [r for r in rejects if r["reason"] == "build_stopped"]
    assert sorted((os.path.basename(r["uri"]), r["reason"]) for r in rejects if r["stage"] == "probe") == [
        ("a_empty0.mp4", "empty_file"), ("a_empty1.mp4", "empty_file")]
    _check_shards_match_index(out)
    nothing = run_cli("retry-failed", str(out))
    assert nothing.returncode == 0 and "nothing to retry" in nothing.stdout
    assert (index_table(out), rejects_table(out)) == (index, rejects)  # nothing dropped

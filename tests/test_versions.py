"""Caption versions: re-selecting a finished build writes a new version and changes nothing else.

Built on a small synthetic world (vidcurate synth), whose candidates are known, through the CLI.
"""
from __future__ import annotations

import hashlib
import os

import pyarrow.parquet as pq
import pytest

from conftest import run_cli, synth_world


def _digests(out) -> dict[str, str]:
    """Every file of OUT except the versions folder, the card and the report, by content hash."""
    found = {}
    for folder, _, files in os.walk(out):
        rel = os.path.relpath(folder, out)
        if rel.split(os.sep)[0] in ("versions",):
            continue
        for name in files:
            if rel == "." and name in ("README.md", "report.html"):
                continue
            with open(os.path.join(folder, name), "rb") as handle:
                found[os.path.join(rel, name)] = hashlib.sha256(handle.read()).hexdigest()
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("versions") / "world"
    synth_world(out, "--clips", "16", "--seed", "3", "--noise", "0.4")
    return out


def test_select_writes_a_version_and_leaves_shards_index_and_earlier_versions_untouched(world):
    before = _digests(world)
    first = run_cli("select", str(world), "--selector", "consensus")
    assert first.returncode == 0, first.stderr
    assert "version select-consensus-1: 16 of 16 clips captioned" in first.stdout
    version_file = world / "versions" / "select-consensus-1.parquet"
    first_bytes = version_file.read_bytes()
    assert _digests(world) == before  # shards, index, rejects, journal: byte for byte
    assert "caption version `select-consensus-1`" in (world / "README.md").read_text()
    assert "caption version select-consensus-1" in (world / "report.html").read_text()
    # The same selector over the same candidates agrees with the build's own consensus selection.
    index = {r["clip_id"]: r for r in pq.read_table(world / "index.parquet").to_pylist()}
    rows = pq.read_table(version_file).to_pylist()
    assert {r["clip_id"] for r in rows} == set(index)
    assert all(r["caption"] == index[r["clip_id"]]["caption"] for r in rows)
    assert all(len(r["candidates"]) == index[r["clip_id"]]["num_candidates"] for r in rows)
    assert all(c["score"] is not None for r in rows for c in r["candidates"])

    again = run_cli("select", str(world), "--version", "select-consensus-1")
    assert again.returncode == 2 and "never overwritten" in again.stderr
    second = run_cli("select", str(world), "--from-version", "select-consensus-1")
    assert second.returncode == 0 and "select-consensus-2" in second.stdout, second.stderr
    assert version_file.read_bytes() == first_bytes and _digests(world) == before
    listed = run_cli("versions", str(world))
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("build") and "select-consensus-1" in lines[1]
    assert "from select-consensus-1" in lines[2] and lines[2].endswith("[latest]")


def test_loaders_and_synth_score_read_a_chosen_version(world):
    from vidcurate.operators.write.versions import write_version
    from vidcurate.pipelines.train.loaders import webdataset_pipeline

    # A version that picks each clip's last candidate (another caption than the build's).
    index = pq.read_table(world / "index.parquet").to_pylist()
    truth = {r["clip_id"]: r for r in pq.read_table(world / "truth.parquet").to_pylist()}
    rows = [{"clip_id": r["clip_id"], "caption": truth[r["clip_id"]]["candidates"][-1]["text"],
             "caption_teacher": truth[r["clip_id"]]["candidates"][-1]["teacher"], "score": None,
             "selector": "last", "candidates": [], "error_reason": None} for r in index]
    rows[0] = {**rows[0], "caption": None, "caption_teacher": None, "error_reason": "last/none"}
    write_version(str(world), "last", rows, {"selector": "last", "from_version": "build", "command": "test"})
    wanted = {r["clip_id"]: r["caption"] or "" for r in rows}

    def captions(**kwargs):
        return {s["clip_id"]: s["caption"] for s in webdataset_pipeline(str(world), num_frames=1, size=(32, 32),
                                                                       **kwargs)}

    assert captions() == wanted  # the latest version by default
    assert captions(version="last") == wanted
    assert captions(version="build") == {r["clip_id"]: r["caption"] for r in index}
    assert len(captions(version="last", require_caption=True)) == len(index) - 1
    with pytest.raises(ValueError, match="no caption version 'nosuch'"):
        captions(version="nosuch")

    scored = run_cli("synth", "score", str(world), "--version", "last")
    assert scored.returncode == 0 and "(version last)" in scored.stdout, scored.stderr
    build = run_cli("synth", "score", str(world), "--version", "build")
    assert build.returncode == 0 and "(version build)" in build.stdout
    missing = run_cli("synth", "score", str(world), "--version", "nosuch")
    assert missing.returncode == 2 and "no caption version 'nosuch'" in missing.stderr


def test_export_writes_a_plain_build_with_the_versions_captions(world, tmp_path):
    from conftest import index_table, rejects_table, shard_samples
    from vidcurate.operators.write.layout import read_clip_mp4
    from vidcurate.operators.write.versions import read_version
    from vidcurate.pipelines.train.loaders import webdataset_pipeline

    names = run_cli("versions", str(world)).stdout
    version = "last" if "last" in names else "select-consensus-1"  # the other test may not have run
    rows = read_version(str(world), version)
    new = tmp_path / "exported"
    done = run_cli("export", str(world), "--version", version, "--output", str(new))
    assert done.returncode == 0, done.stderr
    kept = {cid for cid, r in rows.items() if r["caption"]}
    assert f"{len(kept)} clips" in done.stdout
    exported = index_table(new)
    assert {r["clip_id"] for r in exported} == kept
    assert all(r["caption"] == rows[r["clip_id"]]["caption"] for r in exported)
    stored = shard_samples(new)  # every shard whole, every key once
    assert sorted(stored) == sorted(r["key"] for r in exported)
    source = {r["clip_id"]: r for r in index_table(world)}
    for row in exported:  # the mp4 bytes are the build's, found by the new index's byte range
        assert read_clip_mp4(str(new), row) == read_clip_mp4(str(world), source[row["clip_id"]])
        assert stored[row["key"]]["txt"].decode() == row["caption"]
    loaded = {s["clip_id"]: s["caption"] for s in webdataset_pipeline(str(new), num_frames=1, size=(32, 32))}
    assert loaded == {cid: rows[cid]["caption"] for cid in kept}  # the round trip equals the version
    dropped = set(rows) - kept
    assert {r["clip_id"] for r in rejects_table(new) if r["clip_id"] in dropped} == dropped
    assert run_cli("export", str(world), "--output", str(new)).returncode == 2  # never into a used folder


def test_the_report_shows_a_chosen_versions_captions(world):
    from vidcurate.operators.write.versions import write_version

    clip_ids = sorted(r["clip_id"] for r in pq.read_table(world / "index.parquet").to_pylist())
    rows = [{"clip_id": cid, "caption": f"version caption {i} <b>escaped</b>", "caption_teacher": "t", "score": 0.5,
             "selector": "test", "candidates": [], "error_reason": None} for i, cid in enumerate(clip_ids)]
    write_version(str(world), "for-report", rows, {"selector": "test", "from_version": "build", "command": "test"})
    done = run_cli("report", str(world), "--version", "for-report")
    assert done.returncode == 0, done.stderr
    page = (world / "report.html").read_text()
    assert "caption version for-report" in page and "version caption" in page
    assert "&lt;b&gt;escaped&lt;/b&gt;" in page and "<b>escaped" not in page
    done = run_cli("report", str(world), "--version", "build")
    assert done.returncode == 0 and "version caption" not in (world / "report.html").read_text()
    assert run_cli("report", str(world), "--version", "nosuch").returncode == 2


def test_teachers_choose_reads_the_judgments_of_the_labels_schema(world):
    """The set cover runs on the synthetic annotators' labels.parquet (acceptable candidates, several
    annotators on some clips): the teacher set it picks covers what the labels say it covers."""
    import json

    from vidcurate.schemas.labels import read_labels

    done = run_cli("teachers", "choose", "--labels", str(world / "labels.parquet"), "--k", "3", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    judged = [r for r in read_labels(str(world / "labels.parquet")) if r["acceptable"] is not None]
    assert result["clips"] == len({r["clip_id"] for r in judged})
    assert set(result["teachers"]) == {c["teacher"] for r in judged for c in r["candidates"]}
    assert 1 <= len(result["steps"]) <= 3 and result["steps"][-1]["covered"] <= result["clips"]


def test_the_teacher_selector_takes_one_teachers_captions_and_can_drop_the_others(world):
    """`select --selector teacher --teacher T`: every caption is T's candidate; --only-teacher keeps only
    T's candidates (refinement's single-captioner round 0); an unknown teacher is a reject naming it."""
    truth = {r["clip_id"]: r for r in pq.read_table(world / "truth.parquet").to_pylist()}
    wanted = {cid: next(c["text"] for c in row["candidates"] if c["teacher"] == "miscounter")
              for cid, row in truth.items()}
    done = run_cli("select", str(world), "--selector", "teacher", "--teacher", "miscounter", "--only-teacher",
                   "--version", "miscounter-only", "--from-version", "build")
    assert done.returncode == 0, done.stderr
    assert "16 of 16 clips captioned by teacher_selector" in done.stdout
    rows = pq.read_table(world / "versions" / "miscounter-only.parquet").to_pylist()
    assert {r["clip_id"]: r["caption"] for r in rows} == wanted
    assert all(r["caption_teacher"] == "miscounter" and r["score"] is None for r in rows)
    assert all([c["teacher"] for c in r["candidates"]] == ["miscounter"] for r in rows)

    kept = run_cli("select", str(world), "--selector", "teacher", "--teacher", "vague", "--version", "vague-all",
                   "--from-version", "build")
    assert kept.returncode == 0, kept.stderr
    rows = pq.read_table(world / "versions" / "vague-all.parquet").to_pylist()
    assert all(r["caption_teacher"] == "vague" and len(r["candidates"]) == len(truth[r["clip_id"]]["candidates"])
               for r in rows)

    nobody = run_cli("select", str(world), "--selector", "teacher", "--teacher", "nosuch", "--version", "nosuch",
                     "--from-version", "build")
    assert nobody.returncode == 0, nobody.stderr
    assert "0 of 16 clips captioned" in nobody.stdout
    rows = pq.read_table(world / "versions" / "nosuch.parquet").to_pylist()
    assert all(r["caption"] is None and r["error_reason"] == "teacher_selector/no_teacher_candidate" for r in rows)
    missing = run_cli("select", str(world), "--selector", "teacher", "--version", "no-teacher-given")
    assert missing.returncode == 2 and "teacher" in missing.stderr and "Field required" in missing.stderr

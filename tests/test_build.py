"""End-to-end: the default build on real footage, checked through its outputs."""
from __future__ import annotations

import io
import json
import os
import re

import numpy as np
import pytest
import yaml

from conftest import index_table, rejects_table, run_cli, shard_samples
from vidcurate.operators.write.layout import read_clip_mp4

pytestmark = pytest.mark.slow
FRAME = 1 / 25  # the corpus is 25 fps


def _clips_of(rows, name):
    return sorted((r for r in rows if r["uri"].endswith(name)), key=lambda r: r["start"])


def test_build_succeeds_and_prints_a_summary(default_build):
    done = default_build["process"]
    assert done.returncode == 0, done.stderr
    assert "videos in:      6 (2 gave clips)" in done.stdout
    assert "probe/empty_file" in done.stdout
    assert "time per stage" in done.stdout


def test_clips_land_at_the_known_cuts(default_build, corpus):
    clips = _clips_of(index_table(default_build["out"]), "carphone_then_bikes.mp4")
    cuts = corpus["compilation_cuts"]
    # Every detected boundary within one frame of a known cut; every known cut found.
    starts = [c["start"] for c in clips]
    assert starts[0] == 0.0
    assert len(starts[1:]) == len(cuts) - 1  # the last shot (8 frames) is too short to be a clip
    for detected, known in zip(starts[1:], cuts[:-1]):
        assert abs(detected - known * FRAME) <= FRAME + 1e-9
    for clip in clips:
        assert clip["shots"] == [[clip["start"], clip["end"]]]
    bunny = _clips_of(index_table(default_build["out"]), "bigbuckbunny.mp4")
    assert [(c["start"], round(c["end"], 2)) for c in bunny] == [(0.0, 5.28)]


def test_short_last_shot_is_a_reject_not_a_loss(default_build, corpus):
    rejects = [r for r in rejects_table(default_build["out"]) if r["uri"].endswith("carphone_then_bikes.mp4")]
    assert [(r["stage"], r["reason"]) for r in rejects] == [("split_shots", "too_short")]
    assert rejects[0]["clip_id"] and "0.32 s" in rejects[0]["detail"]


def test_every_bad_input_is_named_with_its_reason(default_build, corpus):
    rejects = {os.path.basename(r["uri"]): r for r in rejects_table(default_build["out"]) if r["clip_id"] is None}
    assert set(rejects) == set(corpus["bad"])
    for name, (stage, reason) in corpus["bad"].items():
        assert (rejects[name]["stage"], rejects[name]["reason"]) == (stage, reason)
        assert name in rejects[name]["detail"]
    # cut at half its bytes: about half the frames decode (the exact count depends on the decoder)
    decoded = int(re.search(r"decoded (\d+) of 250 frames", rejects["truncated_faststart.mp4"]["detail"]).group(1))
    assert 90 <= decoded <= 130


def test_every_input_is_accounted_for(default_build, corpus):
    names = {p for p in os.listdir(corpus["folder"]) if p.endswith(".mp4")}
    in_index = {os.path.basename(r["uri"]) for r in index_table(default_build["out"])}
    in_rejects = {os.path.basename(r["uri"]) for r in rejects_table(default_build["out"])}
    assert names == in_index | in_rejects
    assert in_index == {"carphone_then_bikes.mp4", "bigbuckbunny.mp4"}


def test_shards_hold_mp4_json_txt_matching_the_index(default_build):
    out = default_build["out"]
    samples = shard_samples(out)
    rows = index_table(out)
    assert {r["key"] for r in rows} == set(samples)
    for row in rows:
        sample = samples[row["key"]]
        assert set(sample) == {"__shard__", "mp4", "json", "txt"}
        assert sample["__shard__"].decode() == row["shard"]
        meta = json.loads(sample["json"])
        assert meta["clip_id"] == row["clip_id"] and meta["caption"] == row["caption"]
        assert sample["txt"].decode() == row["caption"] and row["caption"]
        assert len(sample["mp4"]) == row["mp4_bytes"] and row["members"] == ["json", "mp4", "txt"]
        with open(os.path.join(out, "shards", row["shard"]), "rb") as handle:  # random access by offset
            handle.seek(row["mp4_offset"])
            assert handle.read(row["mp4_bytes"]) == sample["mp4"]
        assert read_clip_mp4(str(out), row) == sample["mp4"]  # the one module that knows the layout
        assert meta["provenance"]["config_hash"] and meta["provenance"]["schema_version"]
        assert any(c["text"] == row["caption"] for c in meta["candidates"])


def test_clip_mp4_decodes_to_its_frame_count_and_starts_on_the_cut(default_build, corpus):
    import decord

    out = default_build["out"]
    samples = shard_samples(out)
    source = decord.VideoReader(str(corpus["compilation"]), width=160, height=90)
    for row in _clips_of(index_table(out), "carphone_then_bikes.mp4"):
        meta = json.loads(samples[row["key"]]["json"])
        expected = meta["span"]["end_frame"] - meta["span"]["start_frame"]
        clip = decord.VideoReader(io.BytesIO(samples[row["key"]]["mp4"]), width=160, height=90)
        assert len(clip) == expected == row["num_frames"]
        # Frame accuracy: the clip's first frame is the source frame at start_frame, not a neighbour.
        first = clip[0].asnumpy().astype(np.float32)
        start = meta["span"]["start_frame"]
        errors = {i: np.abs(first - source[i].asnumpy().astype(np.float32)).mean()
                  for i in range(max(0, start - 1), start + 2)}
        assert min(errors, key=errors.get) == start, errors


def test_music_only_audio_gives_no_speech_candidate(default_build):
    samples = shard_samples(default_build["out"])
    bunny = [json.loads(s["json"]) for s in samples.values()
             if json.loads(s["json"])["source"]["uri"].endswith("bigbuckbunny.mp4")]
    assert bunny and bunny[0]["probe"]["has_audio"]
    assert bunny[0]["speech"]["transcript"] is None
    assert all(c["teacher"] != "speech_teacher" for c in bunny[0]["candidates"])


def test_run_writes_resolved_config_and_stats_that_rebuild(default_build, corpus, tmp_path):
    out = default_build["out"]
    resolved = yaml.safe_load(open(os.path.join(out, "config.resolved.yaml")))
    assert [s["op"] for s in resolved["pipeline"]] == [
        "probe", "split_shots", "filter_motion", "extract_clips", "speech_teacher", "ocr_teacher",
        "metadata_teacher", "consensus_selector"]
    stats = json.load(open(os.path.join(out, "stats.json")))
    assert stats["counters"]["probe.rejected.empty_file"] == 1
    assert stats["counters"]["split_shots.rejected.too_short"] == 1
    assert stats["seconds"]["split_shots.process"] > 0
    # The resolved config is itself a valid config: a rebuild with it gives the same clips.
    again = tmp_path / "again"
    manifest = tmp_path / "one.csv"
    manifest.write_text(f"uri,title\n{corpus['compilation']},A car ride and city bicycles\n")
    done = run_cli("build", "-i", str(manifest), "-o", str(again),
                   "-c", os.path.join(out, "config.resolved.yaml"))
    assert done.returncode == 0, done.stderr
    first = [(r["clip_id"], r["start"], r["end"]) for r in _clips_of(index_table(out), "carphone_then_bikes.mp4")]
    second = [(r["clip_id"], r["start"], r["end"]) for r in index_table(again)]
    assert first == second


def test_outputs_hold_millisecond_times_and_candidate_params_as_objects(default_build):
    out = default_build["out"]
    samples = shard_samples(out)
    for row in index_table(out):
        for key in ("start", "end", "duration"):
            assert row[key] == round(row[key], 3), (key, row[key])
        assert row["duration"] == round(row["end"] - row["start"], 3)
        meta = json.loads(samples[row["key"]]["json"])
        assert meta["clip"]["duration"] == row["duration"]
        assert (meta["span"]["start"], meta["span"]["end"]) == (row["start"], row["end"])
        assert meta["candidates"]
        for candidate in meta["candidates"]:
            assert isinstance(candidate["params"], dict), candidate
        metadata = [c for c in meta["candidates"] if c["teacher"] == "metadata_teacher"]
        assert all(set(c["params"]) == {"field"} for c in metadata)


def test_consensus_tie_goes_to_the_more_descriptive_candidate(default_build):
    # Big Buck Bunny has two metadata candidates (title, description) and no speech: their
    # agreement scores are equal by symmetry, so the longer description must win.
    rows = _clips_of(index_table(default_build["out"]), "bigbuckbunny.mp4")
    assert rows[0]["caption"].startswith("A big grey cartoon rabbit")


def test_the_dataset_card_and_report_describe_the_build(default_build):
    out = default_build["out"]
    card = open(os.path.join(out, "README.md")).read()
    rows = index_table(out)
    assert f"clips: **{len(rows)}** from **2** source videos" in card
    assert "| speech_teacher | bundled:tiny.en |" in card and "| ocr_teacher | bundled RapidOCR PP-OCRv4 |" in card
    assert "| metadata_teacher | (no model: passes the source's own text through) |" in card
    # the teacher column names what the candidates carry as their teacher
    teachers = {c["teacher"] for s in shard_samples(out).values() for c in json.loads(s["json"])["candidates"]}
    for teacher in teachers:
        assert re.search(rf"^\| {teacher} \| [^|]+ \| {teacher} \|$", card, re.MULTILINE), teacher
    seconds = sum(r["duration"] for r in rows)
    assert seconds < 60 and f"({seconds:.1f} s of video; mean clip" in card and "0.00 hours" not in card
    assert "CC-BY 3.0" in card  # Big Buck Bunny's licence, from the manifest
    for reason in {r["reason"] for r in rejects_table(out)}:
        assert reason in card
    assert os.path.getsize(os.path.join(out, "report.html")) > 10_000


def test_consensus_scores_of_a_pair_are_equal_whatever_the_float_noise():
    """A pair agreeing only with each other ties exactly, so the tie rule decides: vectors whose
    norms are 1 only up to rounding (as an embedder's are) must not tip the rounded scores."""
    from vidcurate.operators.select.consensus import consensus_scores

    rng = np.random.default_rng(0)
    for _ in range(200):
        pair = rng.normal(size=(2, 384)).astype(np.float32)
        pair /= np.linalg.norm(pair, axis=1, keepdims=True) * (1 + rng.normal(scale=1e-6, size=(2, 1)))
        first, second = consensus_scores(pair)
        assert round(first, 6) == round(second, 6)

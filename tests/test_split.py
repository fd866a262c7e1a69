"""Semantics-aware splitting on real footage with known structure (operators/split)."""
from __future__ import annotations

import json
import os

import pytest

from conftest import index_table, rejects_table, run_cli, shard_samples
from vidcurate.operators.media import run_ffmpeg
from vidcurate.operators.extract import ExtractClips
from vidcurate.operators.probe import ProbeVideo
from vidcurate.operators.split.embedders import CLASSICAL_THRESHOLDS
from vidcurate.operators.split.presets import PRESETS
from vidcurate.operators.split.shots import ShotSplit
import samples


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("footage")
    paths = {name: str(folder / f"{name}.mp4") for name in ("long", "dissolve", "aba", "still")}
    samples.make_long_single_shot(paths["long"])  # 12 s, one continuous shot
    # carphone, then a 2 s dissolve into a bikes shot: no hard cut, the scene changes
    samples.make_sequence(paths["dissolve"], [("carphone_pristine.mp4", 0, 3), ("bikes.mp4", 3.1, 5.4)], dissolve=2)
    # shot A, shot B, shot A again: the third clip repeats the first
    samples.make_sequence(paths["aba"], [("bikes.mp4", 1.25, 3.0), ("bikes.mp4", 7.5, 9.6), ("bikes.mp4", 1.25, 3.0)])
    samples.make_still(paths["still"])
    return paths


def split(path: str, **fields) -> list[dict]:
    return ShotSplit(**fields)(ProbeVideo()([{"uri": path, "video_id": "v"}]))


def spans(records, status="ok"):
    return [(r["start_frame"], r["end_frame"]) for r in records if r.get("status", "ok") == status]


@pytest.mark.slow
@pytest.mark.parametrize("detector", ["content", "adaptive", "transnetv2"])
def test_every_detector_finds_every_hard_cut_within_one_frame(corpus, detector):
    records = split(str(corpus["compilation"]), detector=detector, min_clip_seconds=0)
    starts = sorted(r["start_frame"] for r in records)
    known = [0, *corpus["compilation_cuts"]]
    assert len(starts) == len(known), (starts, known)
    assert all(abs(a - b) <= 1 for a, b in zip(starts, known)), (starts, known)
    assert max(r["end_frame"] for r in records) == corpus["compilation_frames"]


def test_artificial_cuts_split_a_long_single_shot(footage):
    records = split(footage["long"], piece_seconds=5)  # Panda: 5 s pieces while > 7 s remain
    assert spans(records) == [(0, 125), (125, 300)]
    assert [r["split_reason"] for r in records] == ["artificial_cut", "artificial_cut"]
    assert records[0]["split_events"] == ["artificial cut after 5 s of a 12.0 s shot"]
    assert [r["shots"] for r in records] == [[[0.0, 5.0]], [[5.0, 12.0]]]
    assert spans(split(footage["long"])) == [(0, 300)]  # without the rule: one 12 s clip


def test_stitching_merges_pieces_of_one_shot_but_never_beyond_the_maximum(footage):
    merged = split(footage["long"], piece_seconds=5, stitch=True)
    assert spans(merged) == [(0, 300)]
    assert merged[0]["split_reason"] == "artificial_cut+stitched"
    assert merged[0]["split_scores"]["stitch_distance"] <= CLASSICAL_THRESHOLDS.stitch
    assert any(e.startswith("stitched at frame 125") for e in merged[0]["split_events"])
    capped = split(footage["long"], piece_seconds=5, stitch=True, max_clip_seconds=8)
    assert spans(capped) == [(0, 125), (125, 300)]


def test_hard_cuts_are_not_stitched_back(corpus):
    records = split(str(corpus["compilation"]), stitch=True)
    assert len(spans(records)) == 6 and not any("stitched" in r["split_reason"] for r in records)


def test_transition_check_drops_a_clip_that_dissolves_into_another_scene(footage):
    records = split(footage["dissolve"], transition_check=True, min_clip_seconds=0)
    dropped = [r for r in records if r.get("status") == "rejected"]
    assert [r["error_reason"] for r in dropped] == ["transition"]
    assert dropped[0]["split_scores"]["transition_distance"] > CLASSICAL_THRESHOLDS.transition
    assert "transition threshold" in dropped[0]["error_detail"]
    assert spans(split(footage["dissolve"], min_clip_seconds=0)) == spans(records) + spans(records, "rejected")


def test_still_filter_drops_a_still_picture_and_keeps_moving_footage(footage):
    [still] = split(footage["still"], still_filter=True)
    assert still["error_reason"] == "still" and still["split_scores"]["still_distance"] < 0.15
    assert still["motion"] < 0.05
    moving = split(footage["long"], still_filter=True)
    assert spans(moving) == [(0, 300)] and moving[0]["motion"] > 1


def test_redundancy_filter_drops_a_repeat_of_an_earlier_clip(footage):
    records = split(footage["aba"], redundancy_filter=True)
    assert [(r.get("status", "ok"), r.get("error_reason")) for r in records] == [
        ("ok", None), ("ok", None), ("rejected", "redundant")]
    assert records[2]["split_scores"]["redundancy_distance"] < 0.1
    assert records[1]["split_scores"]["redundancy_distance"] > CLASSICAL_THRESHOLDS.redundancy


def test_presets_load_by_name_and_explicit_fields_win():
    for name, values in PRESETS.items():
        op = ShotSplit(preset=name)
        assert {k: getattr(op, k) for k in values} == values
    assert ShotSplit(preset="panda70m", min_clip_seconds=1.0).min_clip_seconds == 1.0
    transnet = ShotSplit(preset="panda70m", detector="transnetv2")
    assert transnet.threshold is None  # content's 25 does not leak into TransNetV2
    with pytest.raises(ValueError, match="embedder_model"):
        ShotSplit(embedder="transformers")


def test_panda70m_preset_trims_ten_percent_of_each_end(footage):
    [clip] = split(footage["long"], preset="panda70m")
    assert (clip["start_frame"], clip["end_frame"]) == (30, 270)  # 300 frames, 30 trimmed at each end
    assert clip["split_events"][-1] == "trimmed 10% (30 frames) from each end"


@pytest.mark.slow
def test_av1_input_decodes_through_the_fallback_with_the_same_cuts(tmp_path, corpus):
    av1 = tmp_path / "compilation_av1.mkv"
    run_ffmpeg(["-y", "-i", str(corpus["compilation"]), "-c:v", "libsvtav1", "-preset", "12", "-crf", "40",
                str(av1)], "AV1 encode")
    assert spans(split(str(av1), min_clip_seconds=0)) == spans(split(str(corpus["compilation"]), min_clip_seconds=0))


@pytest.mark.slow
def test_split_command_writes_clips_with_their_audit_trail(tmp_path, corpus):
    out = tmp_path / "clips"
    done = run_cli("split", str(corpus["compilation"]), "--output", str(out), "--preset", "panda70m-code",
                   "--verbose")
    assert done.returncode == 0, done.stderr
    assert f"{corpus['compilation']}: 4 clips written; rejected: 3 split_shots/too_short" in done.stderr
    rows = index_table(out)
    assert len(rows) == 4 and all(r["caption"] is None for r in rows)  # the shots of >= 2.0 s
    assert all(r["shots"] == [[r["start"], r["end"]]] for r in rows)
    reasons = sorted(r["reason"] for r in rejects_table(out))
    assert reasons == ["too_short"] * 3
    samples = shard_samples(out)
    meta = json.loads(next(iter(samples.values()))["json"])
    assert all(set(s) == {"__shard__", "mp4", "json"} for s in samples.values())  # no caption: no txt
    assert meta["span"]["split_reason"] == "shot" and "transition_distance" in meta["span"]["split_scores"]
    resolved = open(out / "config.resolved.yaml").read()
    assert "preset: panda70m-code" in resolved and "min_clip_seconds: 2.0" in resolved

    on_ray = tmp_path / "clips-ray"  # the same command on Ray Data cuts the same clips
    done = run_cli("split", str(corpus["compilation"]), "--output", str(on_ray), "--preset", "panda70m-code",
                   "--runner", "ray")
    assert done.returncode == 0, done.stderr
    assert "runner: ray" in open(on_ray / "config.resolved.yaml").read()
    assert sorted((r["clip_id"], r["shots"]) for r in index_table(on_ray)) == \
           sorted((r["clip_id"], r["shots"]) for r in rows)


@pytest.mark.slow
def test_fast_content_scores_cut_exactly_like_pyscenedetect(corpus, footage):
    from vidcurate.operators.media import iter_frames
    from vidcurate.operators.split.detectors import FastContentShots, SceneDetectShots

    for path in (str(corpus["compilation"]), footage["dissolve"], footage["aba"]):
        chunks = list(iter_frames(path, 128, 72))
        reference, fast = SceneDetectShots("content", 25.0, 25.0, 15), FastContentShots(25.0, 25.0, 15)
        for chunk in chunks:
            reference.feed(chunk)
            fast.feed(chunk)
        assert fast.finish() == reference.finish()


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_every_decoder_gives_the_same_frames_count_and_cuts(corpus, decoder):
    default = split(str(corpus["compilation"]), min_clip_seconds=0)
    other = split(str(corpus["compilation"]), min_clip_seconds=0, decoder=decoder)
    assert spans(other) == spans(default)


@pytest.mark.slow
def test_bench_split_prints_every_figure(tmp_path):
    done = run_cli("bench", "split", "--seconds", "10", "--repeats", "1", "--long-factor", "2",
                   "--workdir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    for label in ("ours (probe+split", "panda-style", "one-pass limit", "ffmpeg decode-only", "TransNetV2 on CPU",
                  "peak RSS", "speedup vs panda-style", "fraction of one-pass limit", "detection vs decode-only",
                  "CPU s", "ceiling on", "extract_clips mode smart", "smart speedup vs panda-style",
                  "smart vs one-pass limit", "keyframe every 2 s", "PSNR of every frame"):
        assert label in done.stdout
    results = json.load(open(tmp_path / "bench_split.json"))
    assert results["ours"]["clips"] == results["panda_style"]["clips"] == results["ours_smart"]["clips"] > 0
    # smart copies most frames of this input (x264 put IDRs on its cuts), so it is closer to the source
    assert 0.5 <= results["ours_smart"]["copied_share"] <= 1
    quality = results["quality"]
    assert quality["ours_smart"]["frames"] == quality["ours"]["frames"] > 0
    assert quality["ours_smart"]["psnr_db"] > quality["ours"]["psnr_db"] > 30
    assert quality["panda_style"]["psnr_db"] > 30 and quality["panda_style"]["clips"] == results["ours"]["clips"]
    ours = results["ours"]
    # CPU time counts the ffmpeg children: encoding the clips costs more CPU than the wall clock on 1+ cores
    assert ours["cpu_seconds"] > ours["extract"] > 0 and ours["split"] > 0
    assert ours["split"] + ours["extract"] <= ours["seconds"]
    assert results["ratios"]["ceiling_vs_panda_style"] >= results["ratios"]["speedup_vs_panda_style"] * 0.99


@pytest.mark.slow
def test_split_with_the_text_area_filter_scores_every_clip(tmp_path, corpus):
    config = tmp_path / "split_ocr.yaml"
    bundled = open(os.path.join(os.path.dirname(__file__), "..", "pipelines", "build", "configs", "split.yaml")).read()
    config.write_text(bundled.replace("    keyframes: middle\n", "    keyframes: middle\n  - op: filter_text_area\n"))
    out = tmp_path / "clips"
    done = run_cli("split", str(corpus["compilation"]), "-o", str(out), "-c", str(config), "--preset", "panda70m-code")
    assert done.returncode == 0, done.stderr
    metas = [json.loads(s["json"]) for s in shard_samples(out).values()]
    assert len(metas) == 4  # no burned-in text in this footage: nothing rejected for text
    for meta in metas:
        scores = meta["filter_scores"]
        assert set(scores) == {"filter_motion", "filter_aspect", "filter_text_area"}
        assert 0 <= scores["filter_text_area"] < 0.06 and scores["filter_motion"] > 0.5


def test_variable_frame_rate_cuts_and_clips_are_at_the_right_times(tmp_path):
    """25 then 12.5 frames/s: frame number / average fps would misplace later cuts by ~0.9 s."""
    vfr = str(tmp_path / "vfr.mp4")
    samples.make_variable_frame_rate(vfr)
    records = split(vfr, min_clip_seconds=0)
    fps = records[0]["fps"]
    assert records[0]["variable_frame_rate"] and 18 < fps < 20
    starts = sorted(r["start"] for r in records)[1:]
    assert len(starts) == len(samples.BIKES_CUT_SECONDS), starts
    assert all(abs(a - b) <= 1.0 / fps for a, b in zip(starts, samples.BIKES_CUT_SECONDS)), starts
    # The cutter resamples the same way: each clip has exactly the frames the splitter counted.
    clips = ExtractClips(keyframes="none", audio=False)([dict(r, clip_id=f"c{i}") for i, r in enumerate(records)])
    for clip in clips:
        assert clip["clip_num_frames"] == clip["end_frame"] - clip["start_frame"], clip["clip_id"]


def test_rotated_video_is_split_and_cut_upright(tmp_path):
    rotated = str(tmp_path / "rotated.mp4")
    samples.make_rotated(rotated, 90)
    out = tmp_path / "clips"
    done = run_cli("split", rotated, "--output", str(out), "--preset", "panda70m-code")
    assert done.returncode == 0, done.stderr
    rows = index_table(out)
    assert [round(r["start"], 2) for r in rows] == [3.04, 5.48, 7.48]  # the same shots as the unrotated file
    assert all((r["width"], r["height"]) == (272, 640) for r in rows)  # displayed upright
    sample = next(iter(shard_samples(out).values()))
    mp4, meta = sample["mp4"], json.loads(sample["json"])
    import io

    import av

    with av.open(io.BytesIO(mp4)) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height, frame.rotation) == (272, 640, 0)  # no rotation left for players to apply
    assert meta["probe"]["rotation"] == 90

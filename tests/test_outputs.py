"""Output layout: splits by source video, buckets, extra members, fsspec destinations."""
from __future__ import annotations

import io
import json
import shutil
import wave

import numpy as np
import pytest

from conftest import index_table, shard_samples
from vidcurate.operators.write.sink import bucket_of
import samples
from vidcurate.pipelines.build import build
from vidcurate.pipelines.build.config import BuildConfig

PIPELINE = [
    {"op": "probe"},
    {"op": "split_shots", "min_clip_seconds": 1.0},
    {"op": "extract_clips", "keyframes": "uniform", "num_keyframes": 2, "max_height": 144},
    {"op": "metadata_teacher"},
    {"op": "consensus_selector"},
]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("outputs_inputs")
    lines = []
    for i, source in enumerate(["bikes.mp4", "carphone_pristine.mp4", "bikes.mp4", "bigbuckbunny.mp4", "bikes.mp4",
                                "carphone_pristine.mp4"]):
        name = f"v{i}_{source}"
        shutil.copy(samples.sample(source), folder / name)
        # Explicit ids: splits are drawn from the video id, which otherwise hashes the (temporary) path.
        lines.append(json.dumps({"uri": name, "video_id": f"video{i}", "title": f"Clip {name}",
                                 "license": "CC-BY 3.0" if i == 3 else None}))
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _config(pipeline=PIPELINE, **output) -> BuildConfig:
    return BuildConfig(pipeline=pipeline, output=output, run={"videos_per_chunk": 2})


def test_the_card_says_how_much_video_in_a_unit_that_reads():
    from vidcurate.pipelines.build.card import readable_duration

    assert [readable_duration(s) for s in (0.0, 27.3, 750, 11520)] == ["0.0 s", "27.3 s", "12.5 min", "3.20 hours"]


def test_outputs_write_times_to_the_millisecond_and_params_as_an_object():
    from vidcurate.operators.write.samples import index_row, sample_members

    record = {"clip_id": "v_3040_5480", "video_id": "v", "uri": "v.mp4", "start": 76 / 25 + 1e-12,
              "end": 137 / 25, "shots": [[76 / 25 + 1e-12, 137 / 25]], "mp4": b"mp4",
              "candidates": [{"teacher": "metadata_teacher", "text": "A bike ride.", "params": '{"field": "title"}'},
                             {"teacher": "odd", "text": "x y z", "params": "not json"}]}
    assert record["end"] - record["start"] != 2.44  # the float noise this guards against
    row = index_row(record, "train/shard-000000.tar")
    assert (row["start"], row["end"], row["duration"], row["shots"]) == (3.04, 5.48, 2.44, [[3.04, 5.48]])
    meta = sample_members(record, {})["json"]
    assert meta["clip"]["duration"] == 2.44 and (meta["span"]["start"], meta["span"]["end"]) == (3.04, 5.48)
    assert meta["span"]["shots"] == [[3.04, 5.48]]
    assert meta["candidates"][0]["params"] == {"field": "title"}
    assert meta["candidates"][1]["params"] == "not json"  # kept as given rather than lost
    assert record["candidates"][0]["params"] == '{"field": "title"}'  # the record itself is not changed
    json.dumps(meta)  # still plain JSON


@pytest.mark.slow
def test_no_source_video_leaks_across_splits_and_shards_hold_one_split(manifest, tmp_path):
    out = tmp_path / "out"
    build(manifest, str(out), _config(splits={"train": 0.5, "validation": 0.25, "test": 0.25}, open_shards=3),
          progress=False)
    rows = index_table(out)
    split_of_video: dict[str, set] = {}
    for row in rows:
        split_of_video.setdefault(row["video_id"], set()).add(row["split"])
    assert all(len(splits) == 1 for splits in split_of_video.values())  # never one video in two splits
    assert len({s for splits in split_of_video.values() for s in splits}) >= 2
    for key, sample in shard_samples(out).items():
        split = json.loads(sample["json"])["provenance"]["split"]
        assert sample["__shard__"].decode().startswith(f"{split}/")
    card = (out / "README.md").read_text()
    assert "no video is in two splits" in card and f"clips: **{len(rows)}**" in card
    assert "CC-BY 3.0: 1 video(s)" in card


@pytest.mark.slow
def test_buckets_group_shards_by_clip_shape_and_extra_members_are_stored(manifest, tmp_path):
    out = tmp_path / "out"
    # the transition check makes the splitter embed frames: their clip means become the npy members
    embedding = [PIPELINE[0], {**PIPELINE[1], "transition_check": True}, *PIPELINE[2:]]
    build(manifest, str(out), _config(embedding, splits={"train": 1}, bucket_by=["resolution", "aspect"],
                                      extra_members=["keyframes", "audio", "embedding"]), progress=False)
    rows = index_table(out)
    buckets = {row["shard"].split("/")[1] for row in rows}
    assert len(buckets) >= 2  # bikes (wide) and carphone (4:3) are in different buckets
    stored = shard_samples(out)
    for row in rows:
        record = {"clip_width": row["width"], "clip_height": row["height"], "start": row["start"], "end": row["end"]}
        assert row["shard"] == f"train/{bucket_of(record, ('resolution', 'aspect'))}/{row['shard'].split('/')[-1]}"
        sample = stored[row["key"]]
        assert sample["kf0.jpg"][:2] == b"\xff\xd8" and sample["kf1.jpg"][:2] == b"\xff\xd8"
        vector = np.load(io.BytesIO(sample["npy"]))  # the splitter's mean frame embedding, unit length
        assert vector.dtype == np.float32 and vector.ndim == 1 and abs(float(np.linalg.norm(vector)) - 1) < 1e-3
        assert json.loads(sample["json"])["embedding_model"] == "classical"
    with_audio = [stored[r["key"]] for r in rows if "bigbuckbunny" in r["uri"]]
    assert with_audio and all("wav" in s for s in with_audio)
    with wave.open(io.BytesIO(with_audio[0]["wav"])) as handle:
        assert handle.getframerate() == 16000 and handle.getnchannels() == 1 and handle.getnframes() > 16000
    assert not any("wav" in stored[r["key"]] for r in rows if "bikes" in r["uri"])  # no audio track: no member


@pytest.mark.slow
def test_an_fsspec_destination_gets_whole_files_and_resumes(manifest):
    import fsspec

    fs = fsspec.filesystem("memory")
    out = "memory://vidcurate-test/out"
    first = build(manifest, out, _config(), progress=False)
    assert fs.exists("/vidcurate-test/out/index.parquet") and fs.exists("/vidcurate-test/out/README.md")
    shards = [p for p in fs.find("/vidcurate-test/out/shards") if p.endswith(".tar")]
    assert shards and not [p for p in fs.find("/vidcurate-test/out") if p.endswith(".tmp")]
    again = build(manifest, out, _config(), progress=False)
    assert again.inputs_done_before == 6 and again.clips == first.clips
    fs.rm("/vidcurate-test", recursive=True)

"""Inputs: folders and manifests (CSV, JSON lines, parquet) become source records or clear errors."""
from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import index_table, rejects_table, run_cli, shard_samples
import samples
from vidcurate.schemas.manifest import ManifestError, read_inputs
from vidcurate.schemas.records import SOURCE, clip_id_for, video_id_for


@pytest.fixture
def videos(tmp_path):
    folder = tmp_path / "videos"
    (folder / "nested").mkdir(parents=True)
    for name in ("a.mp4", "b.MKV", "nested/c.webm"):
        (folder / name).write_bytes(b"x")
    (folder / "notes.txt").write_text("not a video")
    (folder / ".DS_Store").write_bytes(b"")
    return folder


def test_folder_lists_videos_recursively_and_skips_other_files(videos):
    inputs = read_inputs(str(videos))
    assert sorted(s["uri"].rsplit("/", 1)[1] for s in inputs.sources) == ["a.mp4", "b.MKV", "c.webm"]
    assert inputs.rejects == []  # a README is not a failed input
    assert inputs.skipped == [str(videos / "notes.txt")]  # hidden files are not even counted
    assert all(s["video_id"] == video_id_for(s["uri"]) for s in inputs.sources)
    pa.Table.from_pylist(inputs.sources, schema=SOURCE)  # records conform to the schema


def test_csv_manifest_with_metadata_and_relative_uris(videos):
    manifest = videos / "list.csv"
    manifest.write_text('uri,title,tags,extra\na.mp4,"A title, with comma","x, y",ignored\n'
                        f"{videos / 'b.MKV'},,,\n")
    inputs = read_inputs(str(manifest))
    first, second = inputs.sources
    assert first["uri"] == str(videos / "a.mp4")
    assert first["title"] == "A title, with comma" and first["tags"] == ["x", "y"]
    assert second["title"] is None and second["tags"] == []
    assert not inputs.rejects


def test_jsonl_and_parquet_manifests_give_the_same_sources(videos):
    rows = [{"uri": "a.mp4", "video_id": "vid-a", "description": "d", "tags": ["t"]},
            {"uri": "nested/c.webm", "subtitles": "hello there"}]
    (videos / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    schema = pa.schema([("uri", pa.string()), ("video_id", pa.string()), ("description", pa.string()),
                        ("tags", pa.list_(pa.string())), ("subtitles", pa.string())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), videos / "m.parquet")
    from_jsonl = read_inputs(str(videos / "m.jsonl")).sources
    from_parquet = read_inputs(str(videos / "m.parquet")).sources
    assert from_jsonl == from_parquet
    assert from_jsonl[0]["video_id"] == "vid-a" and from_jsonl[1]["subtitles"] == "hello there"


def test_bad_rows_become_rejects_with_row_numbers(videos):
    manifest = videos / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in [
        {"uri": "a.mp4"}, {"uri": ""}, {"uri": "a.mp4"}, {"uri": "b.MKV", "tags": 7},
        {"uri": "nested/c.webm", "video_id": "has.dot"}]))
    inputs = read_inputs(str(manifest))
    assert [s["uri"].rsplit("/", 1)[1] for s in inputs.sources] == ["a.mp4"]
    reasons = [(r["error_reason"], r["error_detail"]) for r in inputs.rejects]
    assert reasons[0][0] == "manifest_row_invalid" and "row 2: empty uri" in reasons[0][1]
    assert reasons[1][0] == "duplicate_uri" and "row 3" in reasons[1][1]
    assert reasons[2][0] == "manifest_row_invalid" and "row 4: 'tags'" in reasons[2][1]
    assert reasons[3][0] == "manifest_row_invalid" and "may not contain '.'" in reasons[3][1]


@pytest.mark.parametrize("video_id,problem", [
    ("../../etc/passwd", "may not contain '.', '/'"), ("/abs", "may not contain '.', '/'"),
    ("back\\slash", "may not contain '.', '/' or '\\'"), ("nul\x00byte", "control characters"),
    ("esc\x1b[31m", "control characters"), ("-rf", "may not start with '-'"), ("x" * 201, "longer than 200"),
])
def test_a_video_id_that_could_name_a_file_outside_out_is_a_reject(videos, video_id, problem):
    manifest = videos / "m.jsonl"
    manifest.write_text(json.dumps({"uri": "a.mp4"}) + "\n" + json.dumps({"uri": "b.MKV", "video_id": video_id}))
    inputs = read_inputs(str(manifest))
    assert [s["uri"].rsplit("/", 1)[1] for s in inputs.sources] == ["a.mp4"]
    [reject] = inputs.rejects
    assert reject["error_reason"] == "manifest_row_invalid" and problem in reject["error_detail"]
    assert reject["uri"].endswith("b.MKV")


def test_a_line_that_is_not_json_or_not_utf8_is_a_reject_and_the_other_rows_are_read(videos):
    manifest = videos / "m.jsonl"
    manifest.write_bytes(b'{"uri": "a.mp4"}\n{"uri": \n{"uri": "b.MKV", "title": "caf\xe9 cr\xe8me"}\n'
                         b'{"uri": "nested/c.webm", "title": "caf\xc3\xa9"}\n')
    inputs = read_inputs(str(manifest))
    assert [s["uri"].rsplit("/", 1)[1] for s in inputs.sources] == ["a.mp4", "c.webm"]
    assert inputs.sources[1]["title"] == "café"
    invalid_json, latin1 = inputs.rejects
    assert invalid_json["uri"].endswith("m.jsonl#row2") and "line 2: invalid JSON" in invalid_json["error_detail"]
    assert latin1["uri"].endswith("b.MKV") and "'title' is not valid UTF-8 (byte 0xe9)" in latin1["error_detail"]


@pytest.mark.parametrize("name,content,message", [
    ("m.csv", "path,title\na.mp4,t\n", r"no 'uri' column \(columns found: path, title\)"),
    ("m.csv", "uri,title\n", "header but no rows"),
    ("m.jsonl", '["a.mp4"]\n', "no line is a JSON object: line 1: expected a JSON object"),
    ("m.parquet", "not parquet", "cannot be read"),
    ("m.xml", "<x/>", "not a folder, a manifest"),
])
def test_unreadable_manifests_raise_errors_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ManifestError, match=message) as info:
        read_inputs(str(path))
    assert str(path) in str(info.value)


def test_missing_input_and_a_folder_without_videos(tmp_path):
    with pytest.raises(ManifestError, match="no such file or folder"):
        read_inputs(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="holds no video files .*; 0 other file"):
        read_inputs(str(tmp_path / "empty"))
    (tmp_path / "empty" / "README.md").write_text("notes")
    (tmp_path / "empty" / "list.csv").write_text("uri\na.mp4\n")
    with pytest.raises(ManifestError, match="holds no video files .*; 2 other file") as info:
        read_inputs(str(tmp_path / "empty"))
    assert str(tmp_path / "empty") in str(info.value)


@pytest.mark.slow
def test_a_readme_beside_the_videos_is_skipped_not_a_failed_input(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(samples.sample("bikes.mp4"), folder / "bikes.mp4")
    (folder / "README.md").write_text("what these videos are")
    (folder / "a.txt").write_text("notes")
    config = tmp_path / "c.yaml"  # split-only, and no input may fail
    config.write_text(yaml.safe_dump({
        "pipeline": [{"op": "probe"}, {"op": "split_shots", "min_clip_seconds": 1.0},
                     {"op": "extract_clips", "keyframes": "none", "asr_audio": False, "max_height": 144}],
        "output": {"require_caption": False}, "run": {"max_failure_ratio": 0.0}}))
    out = tmp_path / "out"
    done = run_cli("build", "-i", str(folder), "-o", str(out), "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert "  skipped:        2 non-video file(s) in the input folder" in done.stdout
    assert "videos in:      1 (1 gave clips)" in done.stdout
    assert index_table(out) and not [r for r in rejects_table(out) if r["stage"] == "input"]


def test_file_uris_are_read_through_fsspec(videos):
    inputs = read_inputs(f"file://{videos}")
    assert len(inputs.sources) == 3


def test_clip_ids_are_deterministic_and_valid_webdataset_keys():
    vid = video_id_for("s3://bucket/v.mp4")
    assert vid == video_id_for("s3://bucket/v.mp4") and len(vid) == 16
    assert clip_id_for(vid, 1.2, 3.04) == f"{vid}_00001200_00003040"
    assert "." not in clip_id_for(vid, 0.0004, 1 / 3)


def test_a_video_id_used_twice_rejects_the_second_file(videos):
    manifest = videos / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in [
        {"uri": "a.mp4", "video_id": "same"}, {"uri": "b.MKV", "video_id": "same"}, {"uri": "b.MKV"},
        {"uri": "nested/c.webm", "video_id": "other"}]))
    inputs = read_inputs(str(manifest))
    assert [(s["uri"].rsplit("/", 1)[1], s["video_id"]) for s in inputs.sources] == [("a.mp4", "same"),
                                                                                      ("c.webm", "other")]
    dup, again = inputs.rejects
    # The second file is an input of its own: its reject carries its uri, so it is accounted for.
    assert dup["uri"] == str(videos / "b.MKV") and (dup["error_stage"], dup["error_reason"]) == (
        "input", "duplicate_video_id")
    assert f"{manifest} row 2: video_id 'same'" in dup["error_detail"] and "row 1" in dup["error_detail"]
    assert again["error_reason"] == "duplicate_uri" and again["uri"] == f"{videos / 'b.MKV'}#row3"


@pytest.mark.slow
def test_two_files_under_one_video_id_build_without_corrupting_a_shard(tmp_path):
    import webdataset as wds

    for name in ("a.mp4", "b.mp4"):  # two files, the same footage: their clips get the same spans
        shutil.copy(samples.sample("bikes.mp4"), tmp_path / name)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"uri": name, "video_id": "same", "title": f"City bicycles {name}",
                                            "description": "Bicycles parked on a city street."}) + "\n"
                                for name in ("a.mp4", "b.mp4")))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "pipeline": [{"op": "probe"}, {"op": "split_shots", "min_clip_seconds": 1.0},
                     {"op": "extract_clips", "keyframes": "none", "asr_audio": False, "max_height": 144},
                     {"op": "metadata_teacher"}, {"op": "consensus_selector"}],
        "run": {"max_failure_ratio": 0.9}}))
    out = tmp_path / "out"
    done = run_cli("build", "-i", str(manifest), "-o", str(out), "-c", str(config))
    assert done.returncode == 0, done.stderr
    [dup] = [r for r in rejects_table(out) if r["stage"] == "input"]
    assert (dup["uri"], dup["reason"]) == (str(tmp_path / "b.mp4"), "duplicate_video_id")
    rows = index_table(out)
    assert rows and {r["uri"] for r in rows} == {str(tmp_path / "a.mp4")}
    urls = sorted({str(out / "shards" / r["shard"]) for r in rows})
    assert len(list(wds.WebDataset(urls, shardshuffle=False))) == len(rows)  # every shard reads back


def test_long_metadata_is_cut_when_read_and_says_so(videos):
    manifest = videos / "m.jsonl"
    rows = [{"uri": "a.mp4", "title": "t" * 20, "description": "d" * 12_000, "subtitles": "s" * 10_000},
            {"uri": "b.MKV", "title": "A short title"}]
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    long, short = read_inputs(str(manifest)).sources  # default: 10,000 characters
    assert len(long["description"]) == 10_000 and long["truncated_fields"] == {"description": 12_000}
    assert len(long["subtitles"]) == 10_000 and "truncated_fields" not in short
    cut = read_inputs(str(manifest), max_chars=10).sources[0]
    assert cut["title"] == "t" * 10 and cut["truncated_fields"] == {"title": 20, "description": 12_000,
                                                                     "subtitles": 10_000}
    pa.Table.from_pylist([cut, short], schema=SOURCE)  # records conform to the schema


@pytest.mark.slow
def test_a_megabyte_description_is_not_copied_into_every_clip_and_the_journal(tmp_path):
    shutil.copy(samples.sample("bikes.mp4"), tmp_path / "bikes.mp4")
    description = "Bicycles parked on a city street. " + "More words about the street. " * 36_000
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"uri": "bikes.mp4", "title": "City bicycles", "description": description}))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "pipeline": [{"op": "probe"}, {"op": "split_shots", "min_clip_seconds": 1.0},
                     {"op": "extract_clips", "keyframes": "none", "asr_audio": False, "max_height": 144},
                     {"op": "metadata_teacher"}, {"op": "consensus_selector"}],
        "output": {"metadata_max_chars": 2000}, "run": {"cache_after": None}}))
    out = tmp_path / "out"
    done = run_cli("build", "-i", str(manifest), "-o", str(out), "-c", str(config))
    assert done.returncode == 0, done.stderr
    metas = [json.loads(s["json"]) for s in shard_samples(out).values()]
    assert len(metas) > 1
    for meta in metas:
        assert len(meta["source"]["description"]) <= 2000
        assert meta["source"]["truncated"] == {"description": len(description)}
    assert {c["text"] for m in metas for c in m["candidates"]} == {"City bicycles",
                                                                   "Bicycles parked on a city street."}
    journal = sum(p.stat().st_size for p in (out / "_journal").iterdir())
    assert journal < 100_000, journal  # the journal keeps the cut text once per video

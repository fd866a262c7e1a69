"""Shard writing: size limits, templated names, no partial shard ever visible."""
from __future__ import annotations

import os
import tarfile

import pytest
import webdataset as wds

from vidcurate.operators.write.shards import ShardWriter


def _sample(i: int, size: int = 100) -> dict:
    return {"mp4": bytes([i % 256]) * size, "json": {"i": i}, "txt": f"caption {i}"}


def test_shards_roll_over_by_sample_count(tmp_path):
    writer = ShardWriter(str(tmp_path), "train", max_samples=3)
    names = [writer.write(f"k{i:03d}", _sample(i)) for i in range(7)]
    assert names == ["train-000000.tar"] * 3 + ["train-000001.tar"] * 3 + ["train-000002.tar"]
    assert writer.close() == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    assert sorted(os.listdir(tmp_path)) == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]


def test_shards_roll_over_by_bytes(tmp_path):
    writer = ShardWriter(str(tmp_path), max_samples=100, max_bytes=1000)
    names = [writer.write(f"k{i}", _sample(i, size=400)) for i in range(4)]
    assert names == ["shard-000000.tar", "shard-000000.tar", "shard-000001.tar", "shard-000001.tar"]
    writer.close()


def test_an_open_shard_is_invisible_until_complete(tmp_path):
    writer = ShardWriter(str(tmp_path), max_samples=2)
    writer.write("a", _sample(1))
    assert [n for n in os.listdir(tmp_path) if not n.startswith(".")] == []
    writer.write("b", _sample(2))
    writer.write("c", _sample(3))  # starts shard 1, completes shard 0
    assert [n for n in os.listdir(tmp_path) if not n.startswith(".")] == ["shard-000000.tar"]
    writer.close()


def test_shards_read_back_with_webdataset(tmp_path):
    writer = ShardWriter(str(tmp_path), max_samples=2)
    for i in range(3):
        writer.write(f"clip{i}", _sample(i))
    shards = writer.close()
    urls = [str(tmp_path / s) for s in shards]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode())
    assert [s["__key__"] for s in samples] == ["clip0", "clip1", "clip2"]
    assert samples[1]["json"] == {"i": 1} and samples[1]["txt"] == "caption 1"
    with tarfile.open(urls[0]) as tar:
        assert tar.getnames() == ["clip0.json", "clip0.mp4", "clip0.txt", "clip1.json", "clip1.mp4", "clip1.txt"]


def test_invalid_limits_are_refused(tmp_path):
    with pytest.raises(ValueError, match="max_samples=0"):
        ShardWriter(str(tmp_path), max_samples=0)


def test_bench_shards_prints_throughput_against_a_plain_tar(tmp_path):
    from conftest import run_cli

    done = run_cli("bench", "shards", "--total-mb", "20", "--repeats", "1", "--workdir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "plain tarfile, one file" in done.stdout and "shard writer / plain tar throughput" in done.stdout
    assert os.listdir(tmp_path) == []  # the benchmark cleans up


def test_members_offsets_give_random_access_also_after_orphans_are_dropped(tmp_path):
    from vidcurate.operators.write.shards import drop_samples

    writer = ShardWriter(str(tmp_path), max_samples=10)
    offsets = {}
    for i in range(3):
        writer.write(f"clip{i}", _sample(i, size=700 + i))
        offsets[f"clip{i}"] = writer.last_members["mp4"]
    [name] = writer.close()
    data = (tmp_path / name).read_bytes()
    for i in range(3):
        start, size = offsets[f"clip{i}"]
        assert data[start:start + size] == _sample(i, size=700 + i)["mp4"]
    rewritten, moved = drop_samples(data, {"clip1", "clip2"})  # clip0 was an orphan
    assert set(moved) == {"clip1", "clip2"} and moved["clip1"] < offsets["clip1"][0]
    for key in moved:
        size = offsets[key][1]
        assert rewritten[moved[key]:moved[key] + size] == _sample(int(key[-1]), size=700 + int(key[-1]))["mp4"]
    with tarfile.open(fileobj=__import__("io").BytesIO(rewritten)) as tar:
        assert [n.split(".")[0] for n in tar.getnames()][::3] == ["clip1", "clip2"]


def _clip(uri: str, clip_id: str) -> dict:
    return {"uri": uri, "video_id": clip_id.split("_")[0], "clip_id": clip_id, "start": 0.0, "end": 2.0,
            "mp4": uri.encode() * 50, "caption": f"a clip of {uri}", "status": "ok"}


def test_the_sink_refuses_a_second_sample_with_a_key_it_already_wrote(tmp_path):
    from vidcurate.operators.write.sink import DatasetSink, SinkOptions

    out = str(tmp_path / "out")
    sink = DatasetSink(out, {}, SinkOptions(open_shards=1))
    records = [_clip("/v/first.mp4", "same_00000000_00002000"), _clip("/v/second.mp4", "same_00000000_00002000"),
               _clip("/v/second.mp4", "same_00002000_00004000")]
    told = sink.write(records)  # the metadata of what is settled now: the caller's accounting sees the reject
    assert [(m["uri"], m["status"], m["error_reason"]) for m in told] == [("/v/second.mp4", "rejected",
                                                                          "duplicate_clip_id")]
    shards = sink.close()
    [dup] = sink.reject_rows
    assert (dup["uri"], dup["stage"], dup["reason"]) == ("/v/second.mp4", "write", "duplicate_clip_id")
    assert "same_00000000_00002000" in dup["detail"] and "/v/first.mp4" in dup["detail"]
    assert [(r["uri"], r["clip_id"]) for r in sink.index_rows] == [
        ("/v/first.mp4", "same_00000000_00002000"), ("/v/second.mp4", "same_00002000_00004000")]
    urls = [os.path.join(out, "shards", s) for s in shards]
    assert sorted(s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False)) == [
        "same_00000000_00002000", "same_00002000_00004000"]

    # A later run of the same build knows the keys of the videos done before (from the journal).
    again = DatasetSink(out, {}, SinkOptions(open_shards=1))
    later = [_clip("/v/third.mp4", "same_00002000_00004000")]
    assert again.write(later) == []  # the sample is reported once its shard is published, at close
    again.close()
    [dup] = [r for r in again.reject_rows if r["uri"] == "/v/third.mp4"]
    assert dup["reason"] == "duplicate_clip_id" and "/v/second.mp4" in dup["detail"]
    assert len(again.index_rows) == 2

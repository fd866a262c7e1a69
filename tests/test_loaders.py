"""Training loaders over a build's shards: DataLoader workers, nodes, Ray Data, HF datasets.

Fast tests read small hand-written shards laid out like a build's (real sample mp4,
json, optional txt, an index); the slow ones read a real build with several small shards.
"""
from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tarfile
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import webdataset as wds

from conftest import index_table, run_cli
import samples
from vidcurate.operators import frames as frames_module
from vidcurate.pipelines.train.loaders import frame_indices, make_dataloader, shard_urls, webdataset_pipeline

SMALL = dict(num_frames=4, size=(48, 64))


# ---- hand-written shards (fast) ----------------------------------------------------------

def _write_mini_build(out, shards: dict[str, list[tuple[str, str, str | None]]], split_column: bool = True):
    """OUT/shards/<name>: samples (key, split, caption or None) with a real mp4; and an index."""
    mp4 = open(samples.sample("bikes.mp4"), "rb").read()
    rows = []
    for name, members in shards.items():
        os.makedirs(os.path.dirname(os.path.join(out, "shards", name)), exist_ok=True)
        with wds.TarWriter(os.path.join(out, "shards", name)) as tar:
            for key, split, caption in members:
                sample = {"__key__": key, "mp4": mp4,
                          "json": json.dumps({"clip_id": key, "caption": caption,
                                              "provenance": {"split": split}}).encode()}
                if caption:
                    sample["txt"] = caption.encode()
                tar.write(sample)
                rows.append({"clip_id": key, "caption": caption, "split": split, "shard": name, "key": key})
    table = pa.Table.from_pylist(rows)
    if not split_column:
        table = table.drop(["split"])
    pq.write_table(table, os.path.join(out, "index.parquet"))
    return rows


@pytest.fixture
def mixed(tmp_path):
    """Three shards, one of which holds two splits (the loader must filter by key)."""
    out = str(tmp_path / "mixed")
    rows = _write_mini_build(out, {
        "train/shard-000000.tar": [("a_0", "train", "a car"), ("a_1", "train", "a bike")],
        "train/shard-000001.tar": [("b_0", "train", "a street"), ("b_1", "validation", "a tram")],
        "validation/shard-000000.tar": [("c_0", "validation", "a bus")],
    })
    return out, rows


def _read(pipeline) -> dict[str, dict]:
    got = [s for s in pipeline]
    assert len({s["clip_id"] for s in got}) == len(got), "a sample was read twice"
    return {s["clip_id"]: s for s in got}


def test_frame_indices_are_uniform_and_in_range():
    assert frame_indices(80, 4).tolist() == [10, 30, 50, 70]
    assert frame_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]      # short clips repeat frames
    assert frame_indices(1, 2).tolist() == [0, 0]
    with pytest.raises(ValueError):
        frame_indices(0, 4)


def test_shard_urls_and_split_filtering(mixed):
    out, rows = mixed
    shards = os.path.join(out, "shards")
    assert shard_urls(out) == [os.path.join(shards, n) for n in
                               ("train/shard-000000.tar", "train/shard-000001.tar", "validation/shard-000000.tar")]
    assert shard_urls(out, split="validation") == [os.path.join(shards, "train/shard-000001.tar"),
                                                   os.path.join(shards, "validation/shard-000000.tar")]
    assert shard_urls(out, split="test") == []
    for split in ("train", "validation"):
        got = _read(webdataset_pipeline(out, split=split, **SMALL))
        want = {r["clip_id"]: r["caption"] for r in rows if r["split"] == split}
        assert {k: s["caption"] for k, s in got.items()} == want
        sample = next(iter(got.values()))
        assert sample["frames"].shape == (4, 48, 64, 3) and sample["frames"].dtype == torch.uint8
        assert sample["meta"]["provenance"]["split"] == split
    # Given shard URLs instead of the folder, the split comes from each sample's json.
    got = _read(webdataset_pipeline(shard_urls(out), split="validation", **SMALL))
    assert sorted(got) == ["b_1", "c_0"]
    with pytest.raises(ValueError, match="no shards"):
        webdataset_pipeline(out, split="test")


def test_an_index_without_split_column_is_all_train(tmp_path):
    out = str(tmp_path / "old")
    _write_mini_build(out, {"shard-000000.tar": [("a_0", "train", "x"), ("a_1", "train", "y")]}, split_column=False)
    assert shard_urls(out, split="train") == [os.path.join(out, "shards", "shard-000000.tar")]
    assert shard_urls(out, split="validation") == []
    assert sorted(_read(webdataset_pipeline(out, split="train", **SMALL))) == ["a_0", "a_1"]
    # No index at all (a build still running): the shards folder is listed.
    os.remove(os.path.join(out, "index.parquet"))
    assert shard_urls(out) == [os.path.join(out, "shards", "shard-000000.tar")]
    with pytest.raises(FileNotFoundError):
        shard_urls(out, split="train")


def test_samples_without_caption_load_with_an_empty_caption(tmp_path):
    out = str(tmp_path / "split_only")
    _write_mini_build(out, {"train/shard-000000.tar": [("a_0", "train", None), ("a_1", "train", "a bike")]})
    got = _read(webdataset_pipeline(out, **SMALL))
    assert {k: s["caption"] for k, s in got.items()} == {"a_0": "", "a_1": "a bike"}
    assert sorted(_read(webdataset_pipeline(out, require_caption=True, **SMALL))) == ["a_1"]


def test_candidate_params_load_as_objects_from_new_and_older_shards(tmp_path):
    """Builds before params became an object wrote them as a JSON string inside the json."""
    out = str(tmp_path / "params")
    os.makedirs(os.path.join(out, "shards"))
    mp4 = open(samples.sample("bikes.mp4"), "rb").read()
    forms = {"old": json.dumps({"field": "title"}), "new": {"field": "title"}}
    with wds.TarWriter(os.path.join(out, "shards", "shard-000000.tar")) as tar:
        for key, params in forms.items():
            meta = {"clip_id": key, "caption": "a bike", "candidates": [
                {"teacher": "metadata_teacher", "text": "a bike", "params": params}]}
            tar.write({"__key__": key, "mp4": mp4, "json": json.dumps(meta).encode(), "txt": b"a bike"})
    pq.write_table(pa.Table.from_pylist([{"clip_id": k, "split": "train", "shard": "shard-000000.tar", "key": k}
                                         for k in forms]), os.path.join(out, "index.parquet"))
    got = _read(webdataset_pipeline(out, **SMALL))
    assert {k: s["meta"]["candidates"][0]["params"] for k, s in got.items()} == {
        "old": {"field": "title"}, "new": {"field": "title"}}


def test_float_output_and_fsspec_locations(mixed):
    out, rows = mixed
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.put(out, "/loaders-test", recursive=True)
    try:
        urls = shard_urls("memory://loaders-test")
        assert len(urls) == 3 and all(u.startswith("memory://") for u in urls)
        got = _read(webdataset_pipeline("memory://loaders-test", output="float", **SMALL))
        assert sorted(got) == sorted(r["clip_id"] for r in rows)
        frames = got["a_0"]["frames"]
        assert frames.shape == (4, 3, 48, 64) and frames.dtype == torch.float32
        assert 0.0 <= float(frames.min()) and float(frames.max()) <= 1.0
    finally:
        memory.rm("/loaders-test", recursive=True)


def test_decord_failure_falls_back_to_pyav(mixed, monkeypatch, caplog):
    out, _ = mixed

    def broken(*args, **kwargs):
        raise RuntimeError("decord is broken today")

    reference = next(iter(webdataset_pipeline(out, **SMALL)))["frames"]
    monkeypatch.setattr(frames_module, "_decode_decord", broken)
    with caplog.at_level(logging.WARNING, logger="vidcurate.operators.frames"):
        frames = next(iter(webdataset_pipeline(out, **SMALL)))["frames"]
    assert "decoding it with PyAV" in caplog.text and "decord is broken today" in caplog.text
    assert frames.shape == reference.shape and frames.dtype == torch.uint8
    assert (frames.float() - reference.float()).abs().mean() < 2.0  # the same frames, same size
    # A sample no decoder can read raises, or is skipped with webdataset's warn_and_continue.
    broken_out = os.path.join(os.path.dirname(out), "broken")
    _write_mini_build(broken_out, {"shard-000000.tar": [("z_0", "train", "x")]})
    with tarfile.open(os.path.join(broken_out, "shards", "shard-000000.tar"), "w") as tar:
        for name, data in (("z_0.mp4", b"not a video" * 50), ("z_0.txt", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(Exception):
        list(webdataset_pipeline(broken_out, **SMALL))
    with pytest.warns(UserWarning, match="InvalidData"):
        assert list(webdataset_pipeline(broken_out, handler=wds.warn_and_continue, **SMALL)) == []


# ---- a real build with several small shards (slow) ----------------------------------------

@pytest.fixture(scope="module")
def small_build(corpus, tmp_path_factory) -> str:
    """The two good corpus videos, cheap teachers, at most 2 clips per shard."""
    from vidcurate.pipelines.build.config import OutputConfig

    folder = tmp_path_factory.mktemp("loaders")
    manifest = folder / "manifest.jsonl"
    ids = {"carphone_then_bikes.mp4": "carphone", "bigbuckbunny.mp4": "bbb"}
    rows = [json.loads(line) for line in corpus["manifest"].read_text().splitlines()]
    manifest.write_text("".join(json.dumps({**r, "uri": str(corpus["folder"] / r["uri"]), "video_id": ids[r["uri"]]})
                                + "\n" for r in rows if r["uri"] in ids))
    output = {"shard_max_samples": 2}
    if "splits" in OutputConfig.model_fields:  # one video per split when the build can split
        output["splits"] = {"train": 0.5, "validation": 0.5}
        try:
            from vidcurate.operators.write.sink import split_of
        except ImportError:
            split_of = None
        if split_of is not None and "split_seed" in OutputConfig.model_fields:
            output["split_seed"] = next((seed for seed in range(100) if len({split_of(v, output["splits"], seed)
                                                                            for v in ids.values()}) == 2), 0)
    config = folder / "config.yaml"
    config.write_text(json.dumps({
        "pipeline": [{"op": "probe"}, {"op": "split_shots"},
                     {"op": "extract_clips", "max_height": 144, "preset": "ultrafast", "asr_audio": False},
                     {"op": "metadata_teacher"}, {"op": "consensus_selector"}],
        "output": output}))
    out = folder / "out"
    done = run_cli("build", "--input", str(manifest), "--output", str(out), "--config", str(config))
    assert done.returncode == 0, done.stderr
    rows = index_table(out)
    assert len(rows) >= 6 and len({r["shard"] for r in rows}) >= 4, "the node test needs several shards"
    return str(out)


def _ids(loader) -> tuple[Counter, dict, list]:
    ids, captions, shapes = Counter(), {}, []
    for batch in loader:
        ids.update(batch["clip_id"])
        captions.update(zip(batch["clip_id"], batch["caption"]))
        shapes.append((tuple(batch["frames"].shape), batch["frames"].dtype))
    return ids, captions, shapes


@pytest.mark.slow
def test_dataloader_with_two_workers_reads_every_sample_once(small_build):
    rows = index_table(small_build)
    loader = make_dataloader(small_build, batch_size=2, num_workers=2, num_frames=6, size=(32, 40), shuffle=4)
    for _ in range(2):  # two epochs, each complete
        ids, captions, shapes = _ids(loader)
        assert ids == Counter(r["clip_id"] for r in rows)
        assert captions == {r["clip_id"]: r["caption"] for r in rows}
        assert all(shape[1:] == (6, 32, 40, 3) and dtype == torch.uint8 for shape, dtype in shapes)
    # Per split: exactly that split's rows (all "train" when the index has no split column).
    for split in {r.get("split", "train") for r in rows}:
        ids, _, _ = _ids(make_dataloader(small_build, batch_size=4, num_workers=2, split=split, **SMALL))
        assert ids == Counter(r["clip_id"] for r in rows if r.get("split", "train") == split)


@pytest.mark.slow
def test_two_nodes_with_two_workers_each_read_every_sample_once(small_build, monkeypatch):
    rows = index_table(small_build)
    want = Counter(r["clip_id"] for r in rows)
    # As torchrun sets them: webdataset.split_by_node reads RANK / WORLD_SIZE (inherited by the workers).
    per_node = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        per_node.append(_ids(make_dataloader(small_build, batch_size=2, num_workers=2, **SMALL))[0])
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert per_node[0] and per_node[1] and not set(per_node[0]) & set(per_node[1])
    assert per_node[0] + per_node[1] == want
    # The same split with rank / world_size passed explicitly.
    explicit = [_ids(make_dataloader(small_build, batch_size=2, num_workers=2, rank=r, world_size=2, **SMALL))[0]
                for r in (0, 1)]
    assert explicit == per_node


@pytest.mark.slow
def test_ray_data_reads_every_sample(small_build):
    import ray

    rows = index_table(small_build)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        got = ray.data.read_webdataset(shard_urls(small_build)).take_all()
    finally:
        ray.shutdown()
    assert Counter(r["__key__"] for r in got) == Counter(r["clip_id"] for r in rows)
    captions = {r["clip_id"]: r["caption"] for r in rows}
    assert all(r["txt"] == captions[r["__key__"]] and r["json"]["clip_id"] == r["__key__"] for r in got)
    mp4_bytes = {r["clip_id"]: r["mp4_bytes"] for r in rows}
    assert all(len(r["mp4"]) == mp4_bytes[r["__key__"]] for r in got)


@pytest.mark.slow
def test_hugging_face_datasets_reads_the_shards(small_build, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    rows = index_table(small_build)
    ds = datasets.load_dataset("webdataset", data_files={"train": shard_urls(small_build)}, split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    ds = ds.cast_column("mp4", datasets.Video(decode=False))
    assert len(ds) == len(rows)
    assert dict(zip(ds["__key__"], ds["txt"])) == {r["clip_id"]: r["caption"] for r in rows}
    first = ds[0]
    assert len(first["mp4"]["bytes"]) == next(r["mp4_bytes"] for r in rows if r["clip_id"] == first["__key__"])
    shutil.rmtree(tmp_path / "hf-cache", ignore_errors=True)

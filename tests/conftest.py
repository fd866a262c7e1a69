"""Shared fixtures: a real-footage corpus with known cuts and deliberately broken files."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import samples

VIDCURATE = [sys.executable, "-m", "vidcurate.pipelines.cli"]


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the ``vidcurate`` command line in a subprocess, as a user would."""
    return subprocess.run([*VIDCURATE, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict:
    """A folder of inputs: two real videos with known shot cuts, three broken files, a manifest."""
    folder = tmp_path_factory.mktemp("corpus")
    compilation = folder / "carphone_then_bikes.mp4"
    cuts = samples.make_carphone_then_bikes(str(compilation))
    shutil.copyfile(samples.sample("bigbuckbunny.mp4"), folder / "bigbuckbunny.mp4")
    samples.make_truncated(samples.sample("bikes.mp4"), str(folder / "truncated.mp4"))
    samples.make_truncated_faststart(samples.sample("bikes.mp4"), str(folder / "truncated_faststart.mp4"))
    (folder / "not_a_video.mp4").write_text("this is a text file with a video extension\n")
    (folder / "empty.mp4").write_bytes(b"")
    manifest = folder / "manifest.jsonl"
    rows = [
        {"uri": "carphone_then_bikes.mp4", "title": "A car ride and city bicycles",
         "description": "A man talks in a moving car, then a city street with parked bicycles. Sample footage."},
        {"uri": "bigbuckbunny.mp4", "title": "Big Buck Bunny wakes up",
         "description": "A big grey cartoon rabbit crawls out of his burrow and stretches.", "license": samples.BBB_CREDIT},
        {"uri": "truncated.mp4", "title": "truncated download"},
        {"uri": "truncated_faststart.mp4", "title": "truncated download with its index first"},
        {"uri": "not_a_video.mp4"},
        {"uri": "empty.mp4"},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {
        "folder": folder,
        "manifest": manifest,
        "compilation": compilation,
        "compilation_cuts": cuts,
        "compilation_frames": samples.CARPHONE_FRAMES_AT_25 + samples.BIKES_FRAMES,
        # broken on purpose: name -> (stage, reason) expected in the rejects table
        "bad": {"truncated.mp4": ("probe", "unreadable_container"),
                "truncated_faststart.mp4": ("split_shots", "truncated_video"),
                "not_a_video.mp4": ("probe", "unreadable_container"),
                "empty.mp4": ("probe", "empty_file")},
    }


@pytest.fixture(scope="session")
def default_build(corpus, tmp_path_factory) -> dict:
    """The corpus built once with the embedded default config through the CLI."""
    out = tmp_path_factory.mktemp("build") / "out"
    # 4 of the 6 inputs are broken on purpose: allow that many failures.
    done = run_cli("build", "--input", str(corpus["manifest"]), "--output", str(out), "--max-failure-ratio", "0.8")
    return {"out": out, "process": done}


def synth_world(out, *args: str) -> subprocess.CompletedProcess:
    """``vidcurate synth --output OUT ARGS...`` through the CLI; fails the test if it fails."""
    done = run_cli("synth", *args, "--output", str(out))
    assert done.returncode == 0, done.stderr
    return done


def index_table(out) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(os.path.join(out, "index.parquet")).to_pylist()


def rejects_table(out) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(os.path.join(out, "rejects.parquet")).to_pylist()


def shard_samples(out) -> dict[str, dict[str, bytes]]:
    """Every sample in OUT/shards (all splits and buckets): key -> {ext: bytes, "__shard__": path under shards/}.
    Fails on a partial shard left behind or a key present twice."""
    import tarfile

    samples: dict[str, dict[str, bytes]] = {}
    shard_dir = os.path.join(out, "shards")
    for folder, _, files in sorted(os.walk(shard_dir)):
        for name in sorted(files):
            assert name.endswith(".tar") and not name.startswith("."), name  # no partial shard left behind
            shard = os.path.relpath(os.path.join(folder, name), shard_dir)
            seen_here: set[str] = set()
            with tarfile.open(os.path.join(folder, name)) as tar:
                for member in tar.getmembers():
                    key, ext = member.name.split(".", 1)
                    if key not in seen_here:
                        assert key not in samples, f"sample {key} is in two shards"
                        seen_here.add(key)
                    samples.setdefault(key, {"__shard__": shard.encode()})[ext] = tar.extractfile(member).read()
    return samples


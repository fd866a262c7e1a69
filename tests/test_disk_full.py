"""A full disk while writing: the build stops with a clear error, no corrupt shard is visible,
and the same command completes the build once there is space. OUT is a small tmpfs (the test
needs to mount one: root, as `make test` runs on CI)."""
from __future__ import annotations

import os
import subprocess
import tarfile

import pytest
import yaml

from conftest import VIDCURATE, index_table, rejects_table

CONFIG = {"pipeline": [{"op": "probe"}, {"op": "split_shots", "min_clip_seconds": 1.0},
                       {"op": "extract_clips", "keyframes": "none", "asr_audio": False},
                       {"op": "metadata_teacher"}, {"op": "consensus_selector"}],
          "run": {"max_failure_ratio": 0.8}, "output": {"shard_max_samples": 2}}


def _mount(path, size: str, remount: bool = False) -> subprocess.CompletedProcess:
    options = f"remount,size={size}" if remount else f"size={size}"
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)


@pytest.fixture
def small_disk(tmp_path):
    folder = tmp_path / "disk"
    folder.mkdir()
    if _mount(folder, "1200k").returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _build(corpus, out, config, runner: str = "local") -> subprocess.CompletedProcess:
    return subprocess.run([*VIDCURATE, "build", "-i", str(corpus["manifest"]), "-o", str(out), "-c", str(config),
                           "--runner", runner], capture_output=True, text=True, timeout=900)


def _tables(out):
    return (sorted((r["clip_id"], r["caption"], r["split"]) for r in index_table(out)),
            sorted((os.path.basename(r["uri"]), r["stage"], r["reason"]) for r in rejects_table(out)))


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["local", "ray", "beam"])
def test_a_full_disk_stops_the_build_cleanly_and_the_same_command_finishes_it(corpus, small_disk, tmp_path, runner):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    reference = tmp_path / "reference"
    assert _build(corpus, reference, config).returncode == 0

    out = small_disk / "out"
    full = _build(corpus, out, config, runner)
    assert full.returncode == 2, full.stderr[-2000:]
    assert "no space left on device" in full.stderr and "run the same command again" in full.stderr
    assert full.stderr.strip().splitlines()[-1].startswith(f"error: output '{out}': no space left on device")
    if runner == "local":  # Ray Data and Beam log their failed task's traceback themselves, above this error
        assert "Traceback" not in full.stderr
    for root, _, names in os.walk(out / "shards"):
        for name in names:  # a published shard is whole; only hidden .tmp files may be partial
            if not name.startswith("."):
                with tarfile.open(os.path.join(root, name)) as tar:
                    assert all(tar.extractfile(m).read() is not None for m in tar.getmembers())

    assert _mount(small_disk, "256m", remount=True).returncode == 0  # space freed
    done = _build(corpus, out, config, runner)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _tables(out) == _tables(reference)

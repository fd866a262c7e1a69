"""Training frames decoded once into a file on local disk: the same frames as decoding in memory,
found again by a resumed training, and a clear error for a clip that is missing or undecodable."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from conftest import synth_world
from vidcurate.pipelines.train.frame_store import FrameStoreError, frame_store
from vidcurate.pipelines.train.retriever.data import TrainingDataError, clip_frames, index_rows


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("frames") / "world"
    synth_world(out, "--clips", "12", "--seed", "5")
    return out


def test_the_store_holds_the_frames_decoding_gives_and_is_found_again(world, tmp_path):
    index = index_rows(str(world))
    clips = sorted(index)[:7]
    store = frame_store(str(world), clips, 4, (30, 40), index, folder=str(tmp_path))
    expected = clip_frames(str(world), clips, 4, (30, 40), index)
    assert len(store) == 7 and all(c in store for c in clips)
    for clip_id in clips:
        assert store[clip_id].dtype == np.uint8 and store[clip_id].shape == (4, 30, 40, 3)
        assert np.array_equal(store[clip_id], expected[clip_id])
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 2 and files[0].endswith(".u8") and files[1].endswith(".u8.json")
    assert os.path.getsize(tmp_path / files[0]) == 7 * 4 * 30 * 40 * 3
    written = os.stat(tmp_path / files[0]).st_mtime_ns
    store.close()
    # A resumed training asks for the same clips: nothing is decoded again.
    again = frame_store(str(world), list(reversed(clips)), 4, (30, 40), index, folder=str(tmp_path))
    assert os.stat(tmp_path / files[0]).st_mtime_ns == written
    assert np.array_equal(again[clips[3]], expected[clips[3]])
    # Other clips or another frame size are another file; closing with remove deletes it.
    other = frame_store(str(world), clips[:2], 2, (30, 40), index, folder=str(tmp_path))
    assert len(os.listdir(tmp_path)) == 4
    other.close(remove=True)
    again.close(remove=True)
    assert os.listdir(tmp_path) == []


def test_a_missing_or_undecodable_clip_is_an_error_naming_it(world, tmp_path):
    index = index_rows(str(world))
    with pytest.raises(FrameStoreError, match="'no-such-clip' is not in"):
        frame_store(str(world), ["no-such-clip"], 4, (30, 40), index, folder=str(tmp_path))
    damaged = tmp_path / "world"
    shutil.copytree(world, damaged)
    victim = sorted(index)[0]
    row = index[victim]
    with open(damaged / "shards" / row["shard"], "r+b") as handle:  # the clip's mp4 bytes overwritten
        handle.seek(row["mp4_offset"])
        handle.write(b"\0" * row["mp4_bytes"])
    with pytest.raises(TrainingDataError, match=f"clip '{victim}'.*cannot be decoded"):
        frame_store(str(damaged), [victim], 4, (30, 40), index, folder=str(tmp_path / "store"))
    assert not [n for n in os.listdir(tmp_path / "store") if n.endswith(".partial")]  # nothing half-written left

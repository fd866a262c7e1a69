"""Training frames decoded once into a file on local disk, read a batch at a time.

The retriever and the student train for several epochs over the same clips. Decoding every
clip's frames each epoch would cost more than the model on a CPU; holding them all in memory
does not scale past a few thousand clips. So each training process decodes the clips it
will read (its rank's part, plus the validation clips) once, into one uint8 array
[clips, T, H, W, 3] in a file under the system's temporary folder, and reads it through
``numpy.memmap``: the operating system's page cache holds what fits, the process heap holds
one batch.

The file is named by what it holds (the build, the clip ids, the frame shape), so a resumed
training on the same machine finds it complete and decodes nothing; it is written as
``.partial`` and renamed once whole, with its manifest last. ``FrameStore.close(remove=True)``
deletes it when training ends. ``store[clip_id]`` is the clip's frames, as the dict of
frames the training loops used before.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile

import numpy as np

from vidcurate.operators.frames import decode_frames
from vidcurate.operators.write.layout import INDEX_FILE, read_clip_mp4
from vidcurate.pipelines.train.retriever.data import TrainingDataError

STORE_DIR = "vidcurate-frames"


class FrameStoreError(TrainingDataError):
    """A clip the training needs is missing from the build or cannot be decoded (the message names it)."""


class FrameStore:
    def __init__(self, path: str, clip_ids: list[str], shape: tuple[int, ...]):
        self.path, self.clip_ids, self.shape = path, clip_ids, shape
        self._row = {clip_id: number for number, clip_id in enumerate(clip_ids)}
        self._array = np.memmap(path, dtype=np.uint8, mode="r", shape=(len(clip_ids), *shape)) if clip_ids else \
            np.zeros((0, *shape), np.uint8)

    def __getitem__(self, clip_id: str) -> np.ndarray:
        return np.asarray(self._array[self._row[clip_id]])

    def __contains__(self, clip_id: str) -> bool:
        return clip_id in self._row

    def __len__(self) -> int:
        return len(self.clip_ids)

    def close(self, remove: bool = False) -> None:
        """Drop the mapping; with ``remove``, delete the file and its manifest."""
        self._array = None
        if remove:
            for path in (self.path, self.path + ".json"):
                if os.path.exists(path):
                    os.remove(path)


def frame_store(out: str, clip_ids, num_frames: int, frame_size: tuple[int, int], index: dict[str, dict],
                folder: str | None = None, progress: bool = False) -> FrameStore:
    """The store of ``clip_ids``' frames (uint8 [num_frames, H, W, 3] each), decoding what is not on disk yet."""
    clip_ids = sorted(set(clip_ids))
    missing = [c for c in clip_ids if c not in index]
    if missing:
        raise FrameStoreError(f"clip {missing[0]!r} is not in {out!r}/{INDEX_FILE}"
                              + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else ""))
    shape = (num_frames, int(frame_size[0]), int(frame_size[1]), 3)
    folder = folder or os.path.join(tempfile.gettempdir(), STORE_DIR)
    os.makedirs(folder, exist_ok=True)
    key = hashlib.sha1(json.dumps([os.path.abspath(out), shape, clip_ids]).encode()).hexdigest()[:16]
    path = os.path.join(folder, f"{key}.u8")
    if _complete(path, clip_ids, shape):
        return FrameStore(path, clip_ids, shape)
    partial = f"{path}.{os.getpid()}.partial"
    if clip_ids:
        array = np.memmap(partial, dtype=np.uint8, mode="w+", shape=(len(clip_ids), *shape))
        from tqdm import tqdm

        for number, clip_id in enumerate(tqdm(clip_ids, desc="decoding frames", disable=not progress, leave=False)):
            row = index[clip_id]
            try:
                array[number] = decode_frames(read_clip_mp4(out, row), num_frames, tuple(frame_size),
                                              num_frames_hint=row.get("num_frames"), name=clip_id)
            except Exception as exc:  # noqa: BLE001  (named and raised as the training's own error)
                del array
                os.remove(partial)
                raise FrameStoreError(f"clip {clip_id!r} of {out!r} ({row.get('shard')}): its frames cannot be "
                                      f"decoded: {type(exc).__name__}: {exc}") from None
        array.flush()
        del array
        os.replace(partial, path)
    with open(path + ".json.partial", "w", encoding="utf-8") as handle:
        json.dump({"build": os.path.abspath(out), "shape": shape, "clip_ids": clip_ids}, handle)
    os.replace(path + ".json.partial", path + ".json")
    return FrameStore(path, clip_ids, shape)


def _complete(path: str, clip_ids: list[str], shape: tuple[int, ...]) -> bool:
    try:
        with open(path + ".json", encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return False
    size = len(clip_ids) * int(np.prod(shape))
    return (manifest.get("clip_ids") == clip_ids and tuple(manifest.get("shape") or ()) == shape
            and (not clip_ids or (os.path.exists(path) and os.path.getsize(path) == size)))

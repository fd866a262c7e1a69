"""Frames of an mp4 held in memory: ``num_frames`` uniformly spaced RGB frames, for training and selection.

decord first (``decord.VideoReader(io.BytesIO(mp4), width=..., height=...)``); if decord is
missing or cannot read the file, PyAV, with a warning. The loaders (pipelines/train) and
the retriever selector (operators/select) both read clips this way, so a clip's frames are
the same in training and in selection.
"""
from __future__ import annotations

import io
import logging
from typing import Optional

import numpy as np

log = logging.getLogger(__name__)


def frame_indices(total: int, num_frames: int) -> np.ndarray:
    """The middle frame of each of ``num_frames`` equal segments of ``total`` frames."""
    if total < 1:
        raise ValueError("the clip has no frames")
    return np.minimum(((np.arange(num_frames) + 0.5) * total / num_frames).astype(np.int64), total - 1)


def decode_frames(mp4: bytes, num_frames: int, size: Optional[tuple[int, int]] = None,
                  decoder: str = "decord", threads: int = 1, num_frames_hint: Optional[int] = None,
                  name: str = "sample") -> np.ndarray:
    """``num_frames`` uniformly spaced RGB frames of an mp4, uint8 [T, H, W, 3].

    decord first; if it fails, PyAV (logged as a warning). ``size`` is (height, width).
    """
    if decoder == "decord":
        try:
            return _decode_decord(mp4, num_frames, size, threads)
        except Exception as exc:  # decord missing, or it cannot read this file
            log.warning("decord could not decode %s (%s: %s); decoding it with PyAV", name, type(exc).__name__, exc)
    return _decode_pyav(mp4, num_frames, size, threads, num_frames_hint)


def _decode_decord(mp4: bytes, num_frames: int, size, threads: int) -> np.ndarray:
    import decord

    height, width = size if size else (-1, -1)
    reader = decord.VideoReader(io.BytesIO(mp4), ctx=decord.cpu(0), width=width, height=height,
                                num_threads=threads)
    batch = reader.get_batch(frame_indices(len(reader), num_frames).tolist())
    frames = batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)  # any decord bridge
    if frames.ndim != 4 or frames.shape[0] != num_frames:
        raise ValueError(f"decord returned frames of shape {frames.shape}")
    return frames


def _decode_pyav(mp4: bytes, num_frames: int, size, threads: int, num_frames_hint: Optional[int]) -> np.ndarray:
    import av

    height, width = size if size else (None, None)

    def convert(frame):
        return frame.reformat(width=width, height=height, format="rgb24").to_ndarray()

    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        total = stream.frames or num_frames_hint or 0
        if total < 1:  # unknown: count in a first pass
            total = sum(1 for _ in container.decode(stream))
            container.seek(0)
        wanted = frame_indices(total, num_frames)
        picked: dict[int, np.ndarray] = {}
        last = None
        for i, frame in enumerate(container.decode(stream)):
            if i > wanted[-1]:
                break
            if i in wanted:
                picked[i] = convert(frame)
            last = frame
        if last is None:
            raise ValueError("PyAV decoded no frame")
    # A container that overstates its frame count: the missing tail repeats the last frame.
    tail = picked.get(max(picked), None) if picked else convert(last)
    return np.stack([picked.get(int(i), tail) for i in wanted])

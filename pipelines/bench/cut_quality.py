"""How faithful cut clips are to their source: PSNR of every frame's luma (Y) against the source frame
it shows, for a build's shards or for a folder of clip files cut by time (Panda-70M-style).

Reported as the PSNR of the mean squared error over all frames (one number per way of cutting,
not a mean of per-frame dBs, which copied frames' infinite PSNR would break) and the worst frame's.
A clip cut by time is aligned to the source frame its first frame matches best (within one frame
of its start time), so a rounding difference is not counted as a quality loss.
"""
from __future__ import annotations

import glob
import io
import json
import math
import os
import tarfile

import numpy as np


def luma_frames(source) -> list[np.ndarray]:
    import av

    with av.open(source) as container:
        return [frame.to_ndarray(format="gray").astype(np.float32) for frame in container.decode(video=0)]


class Tally:
    def __init__(self):
        self.squared, self.frames, self.worst, self.clips = 0.0, 0, math.inf, 0

    def add(self, clip: list[np.ndarray], source: list[np.ndarray], first: int) -> None:
        self.clips += 1
        for frame, reference in zip(clip, source[first:]):
            if frame.shape != reference.shape:
                raise ValueError(f"clip frame {frame.shape} and source frame {reference.shape} differ in size")
            mse = float(np.mean((frame - reference) ** 2))
            self.squared += mse
            self.frames += 1
            self.worst = min(self.worst, _psnr(mse))

    def result(self) -> dict:
        mean = self.squared / max(1, self.frames)
        return {"psnr_db": _psnr(mean), "worst_frame_psnr_db": self.worst, "frames": self.frames, "clips": self.clips}


def _psnr(mse: float) -> float:
    return 99.0 if mse <= 1e-10 else min(99.0, 10 * math.log10(255 ** 2 / mse))


def build_quality(out: str, source: list[np.ndarray]) -> dict:
    """Every clip in ``out``'s shards against the source frames its span names."""
    tally = Tally()
    for shard in sorted(glob.glob(os.path.join(out, "shards", "**", "*.tar"), recursive=True)):
        with tarfile.open(shard) as tar:
            members = {m.name: m for m in tar.getmembers()}
            for name in sorted(members):
                if not name.endswith(".mp4"):
                    continue
                meta = json.load(tar.extractfile(members[name[:-4] + ".json"]))
                clip = luma_frames(io.BytesIO(tar.extractfile(members[name]).read()))
                tally.add(clip, source, meta["span"]["start_frame"])
    return tally.result()


def files_quality(folder: str, starts: list[float], fps: float, source: list[np.ndarray]) -> dict:
    """Clip files ``00000.mp4``, ... cut at ``starts`` (seconds), aligned by their first frame."""
    tally = Tally()
    for i, start in enumerate(starts):
        clip = luma_frames(os.path.join(folder, f"{i:05d}.mp4"))
        if not clip:
            continue
        guess = int(round(start * fps))
        first = min((f for f in (guess - 1, guess, guess + 1) if 0 <= f < len(source)),
                    key=lambda f: float(np.mean((clip[0] - source[f]) ** 2)))
        tally.add(clip, source, first)
    return tally.result()

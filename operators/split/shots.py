"""split_shots: cut each video at shot boundaries found by PySceneDetect's ContentDetector.

The video is decoded once, sequentially, at low resolution (``decode_width``), and the
frames are fed to the detector directly: no re-decoding, no seeking. Panda-70M's
stage-1 settings are the defaults (threshold 25, min_scene_len 15 frames; see
docs/ARCHITECTURE.md and METHODS.md 1.1). Every shot becomes a clip record; shots
shorter than ``min_clip_seconds`` are rejected as ``too_short`` (reject rows name the
clip, so nothing disappears), and shots longer than ``max_clip_seconds`` keep their
first ``max_clip_seconds`` (Panda-70M's "first 60 s" rule).
"""
from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from vidcurate.operators.base import Operator, RecordError, Resources, reject
from vidcurate.operators.media import iter_frames, lowres_size
from vidcurate.schemas.records import clip_id_for


class ShotSplit(Operator):
    name: ClassVar[str] = "split_shots"
    resources: ClassVar[Resources] = Resources(cpus=1, batch_size=1)
    requires: ClassVar[tuple[str, ...]] = ("local_path", "video_id", "width", "height", "fps", "num_frames")
    provides: ClassVar[tuple[str, ...]] = ("clip_id", "start", "end", "start_frame", "end_frame", "shots",
                                           "split_reason")

    detector: Literal["content"] = Field("content", description="Shot detector (PySceneDetect ContentDetector).")
    threshold: float = Field(25.0, gt=0, le=255, description="ContentDetector threshold (Panda-70M: 25).")
    min_scene_len: int = Field(15, ge=1, description="Minimum shot length in frames (Panda-70M: 15).")
    decode_width: int = Field(128, ge=32, le=1920, description="Width of the low-resolution detection decode.")
    min_clip_seconds: float = Field(1.0, ge=0, description="Shots shorter than this are rejected as too_short.")
    max_clip_seconds: float = Field(60.0, gt=0, description="Longer shots keep only their first max_clip_seconds.")

    def process_record(self, record: dict) -> list[dict]:
        cuts, decoded = self.detect_cuts(record["local_path"], record["width"], record["height"], record["fps"])
        fps, expected = record["fps"], record["num_frames"]
        if decoded < expected - max(2, 0.02 * expected):
            raise RecordError("truncated_video",
                              f"{record['uri']}: decoded {decoded} of {expected} frames ({decoded / fps:.2f} of "
                              f"{record['duration']:.2f} s); the file is damaged or cut short")
        bounds = [0, *cuts, decoded]
        clips: list[dict] = []
        for start_frame, end_frame in zip(bounds[:-1], bounds[1:]):
            reason = "shot"
            max_frames = int(round(self.max_clip_seconds * fps))
            if end_frame - start_frame > max_frames:
                end_frame, reason = start_frame + max_frames, "shot_truncated_to_max"
            start, end = start_frame / fps, end_frame / fps
            clip = {
                **record,
                "clip_id": clip_id_for(record["video_id"], start, end),
                "start": start, "end": end,
                "start_frame": start_frame, "end_frame": end_frame,
                "shots": [[start, end]],
                "split_reason": reason,
            }
            if end - start < self.min_clip_seconds:
                clips.append(reject(clip, self.name, "too_short",
                                    f"clip {start:.2f}-{end:.2f} s is {end - start:.2f} s < min_clip_seconds "
                                    f"{self.min_clip_seconds}"))
            else:
                clips.append(clip)
        if not any(c.get("status", "ok") == "ok" for c in clips):
            raise RecordError("no_clips", f"{record['uri']}: no shot of at least {self.min_clip_seconds} s "
                                          f"among {len(clips)} shots")
        return clips

    def detect_cuts(self, path: str, width: int, height: int, fps: float) -> tuple[list[int], int]:
        """Frame numbers where a new shot starts, and the number of frames decoded."""
        from scenedetect import ContentDetector, FrameTimecode

        detector = ContentDetector(threshold=self.threshold, min_scene_len=self.min_scene_len)
        w, h = lowres_size(width, height, self.decode_width)
        cuts: list[int] = []
        index = 0
        for chunk in iter_frames(path, w, h):
            for frame in chunk:
                bgr = np.ascontiguousarray(frame[:, :, ::-1])
                cuts.extend(c.frame_num for c in detector.process_frame(FrameTimecode(index, fps), bgr))
                index += 1
        if index == 0:
            raise RecordError("decode_error", f"{path}: no frame could be decoded")
        cuts.extend(c.frame_num for c in detector.post_process(FrameTimecode(index, fps)))
        return sorted(c for c in set(cuts) if 0 < c < index), index

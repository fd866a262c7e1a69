"""split_shots: semantics-aware splitting (Panda-70M, section 3.1) on one decode pass.

Panda-70M: Chen et al., "Panda-70M: Captioning 70M Videos with Multiple Cross-Modality
Teachers", CVPR 2024, arXiv 2402.19479; section 3.1 describes the splitting.

The video is decoded once, sequentially, at low resolution (``decode_width``). Each
chunk of frames goes to the shot detector (PySceneDetect content/adaptive, or
TransNetV2) and to the frame signals (sampled embeddings, motion); no frame is kept.
Then the rules in ``rules.py`` run on frame ranges: artificial cuts, transition check,
stitching, length limits, still and redundancy filters, end trimming; ``presets.py``
names Panda-70M's published settings. Defaults without a preset: plain shots of at
least ``min_clip_seconds``.

Every clip says how it was made: ``split_reason`` (shot / artificial_cut, +stitched),
``split_events`` (each cut, merge, truncation and trim, with the distance and threshold
that decided it), ``split_scores`` and ``shots`` (the detected shots inside the clip,
in seconds). Every dropped clip becomes a reject with its reason (too_short,
transition, still, redundant) and the same scores.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

import numpy as np
from pydantic import Field, PrivateAttr, model_validator

from vidcurate.operators.base import Operator, OperatorSetupError, RecordError, Resources, reject
from vidcurate.operators.media import DecodeLimits, iter_frames, last_frame_time, lowres_size, present_path
from vidcurate.operators.split import rules
from vidcurate.operators.split.detectors import FastContentShots, SceneDetectShots, TransNetV2Model, TransNetV2Shots
from vidcurate.operators.split.presets import PRESETS
from vidcurate.operators.split.signals import FrameSignals
from vidcurate.schemas.records import clip_id_for

DETECTOR_THRESHOLDS = {"content": 25.0, "adaptive": 3.0, "transnetv2": 0.5}


class ShotSplit(Operator):
    """Splits each video into clips at shot cuts, then Panda-70M's rules; rejects short, transition, still clips.

    One low-resolution decode pass feeds the shot detector and the frame signals; the rules
    (artificial cuts, transition check, stitching, length limits, still and redundancy
    filters, trimming) then run on frame ranges. A dropped clip is a reject with its reason
    (too_short, transition, still, redundant); a video that does not decode to its end is
    rejected whole (truncated_video, decode_error).
    """

    name: ClassVar[str] = "split_shots"
    resources: ClassVar[Resources] = Resources(cpus=1, batch_size=1)
    requires: ClassVar[tuple[str, ...]] = ("local_path", "video_id", "width", "height", "fps", "num_frames")
    provides: ClassVar[tuple[str, ...]] = ("clip_id", "start", "end", "start_frame", "end_frame", "shots",
                                           "split_reason", "split_events", "split_scores", "motion")

    preset: Optional[Literal["panda70m", "panda70m-code"]] = Field(
        None, description="Named parameter set (see operators/split/presets.py); explicit fields win.")
    detector: Literal["content", "adaptive", "transnetv2"] = Field("content", description="Shot detector.")
    threshold: Optional[float] = Field(None, gt=0, description="Detector threshold (content 25, adaptive 3, "
                                                               "transnetv2 0.5 when unset).")
    min_scene_len: int = Field(15, ge=1, description="Minimum shot length in frames (Panda-70M: 15).")
    decode_width: int = Field(128, ge=64, le=1920, description="Width of the one low-resolution decode pass.")
    decoder: Literal["ffmpeg", "decord", "pyav"] = Field(
        "ffmpeg", description="Who decodes the pass: an ffmpeg pipe (fastest, runs beside the detector), "
                              "decord, or PyAV (see operators/media.py).")
    decode_timeout: Optional[float] = Field(3600.0, gt=0, description="Seconds the ffmpeg decoder may take for one "
                                            "video's pass before it is stopped and the video rejected.")
    decode_memory_mb: Optional[int] = Field(4096, ge=64, description="Memory (address space, MB) the ffmpeg decoder "
                                            "process may take for one video; past it the video is rejected.")
    embedder: Literal["classical", "transformers"] = Field(
        "classical", description="Frame embedder for the distance rules (see embedders.py).")
    embedder_model: Optional[str] = Field(None, description="CLIP/SigLIP-style model (folder or hub id) for "
                                                            "embedder=transformers.")
    embed_fps: float = Field(8.0, gt=0, description="Frames per second embedded during the pass.")
    piece_seconds: Optional[float] = Field(None, gt=0, description="Artificial cuts: piece length (Panda: 5).")
    cut_while_longer_than: float = Field(7.0, gt=0, description="Artificial cuts happen while more than this "
                                                                "many seconds remain (Panda code: 7).")
    transition_check: bool = Field(False, description="Drop clips whose start and end frames differ too much.")
    transition_threshold: Optional[float] = Field(None, gt=0, description="Default: the embedder's.")
    stitch: bool = Field(False, description="Merge touching clips whose boundary frames are similar.")
    stitch_threshold: Optional[float] = Field(None, gt=0, description="Default: the embedder's.")
    min_clip_seconds: float = Field(1.0, ge=0, description="Shorter clips are rejected as too_short.")
    still_filter: bool = Field(False, description="Drop clips whose first and last frames are nearly equal.")
    still_threshold: Optional[float] = Field(None, gt=0, description="Default: the embedder's.")
    max_clip_seconds: float = Field(60.0, gt=0, description="Longer clips keep their first max_clip_seconds; "
                                                            "stitching never exceeds it.")
    redundancy_filter: bool = Field(False, description="Drop clips too similar to an earlier clip of the video.")
    redundancy_threshold: Optional[float] = Field(None, gt=0, description="Default: the embedder's.")
    trim_fraction: float = Field(0.0, ge=0, lt=0.5, description="Trimmed from each end of every clip (Panda: 0.1).")

    _embedder = PrivateAttr(default=None)
    _transnet = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data):
        if isinstance(data, dict) and data.get("preset") in PRESETS:
            preset = dict(PRESETS[data["preset"]])
            if data.get("detector", preset["detector"]) != preset["detector"]:
                preset.pop("threshold")  # a preset's threshold belongs to its own detector
            data = {**preset, **data}
        return data

    @model_validator(mode="after")
    def _check(self):
        if self.embedder == "transformers" and not self.embedder_model:
            raise ValueError("embedder 'transformers' needs embedder_model (a local folder or hub id)")
        if self.min_clip_seconds > self.max_clip_seconds:
            raise ValueError(f"min_clip_seconds {self.min_clip_seconds} > max_clip_seconds {self.max_clip_seconds}")
        return self

    @property
    def uses_embeddings(self) -> bool:
        return self.transition_check or self.stitch or self.still_filter or self.redundancy_filter

    def setup(self) -> None:
        if self.uses_embeddings:
            from vidcurate.operators.split.embedders import make_embedder

            try:
                self._embedder = make_embedder(self.embedder, model=self.embedder_model)
            except ValueError as exc:
                raise OperatorSetupError(f"split_shots: {exc}") from exc
        if self.detector == "transnetv2":
            self._transnet = TransNetV2Model()

    def teardown(self) -> None:
        self._embedder = self._transnet = None

    def _threshold(self, name: str) -> float:
        explicit = getattr(self, f"{name}_threshold")
        return explicit if explicit is not None else getattr(self._embedder.thresholds, name)

    def process_record(self, record: dict) -> list[dict]:
        fps, expected = record["fps"], record["num_frames"]
        shots, signals = self._decode_pass(record)
        decoded = signals.motion.shape[0]
        short = lambda n: n < expected - max(2, 0.02 * expected)  # noqa: E731
        if short(decoded):
            # Judged by timestamps, not frame counts: frames may be missing from the count but
            # not from the timeline (an AVI's empty repeat-frame chunks, gaps in timestamps).
            duration = record["duration"]
            ends = last_frame_time(present_path(record), duration)
            if ends is not None and ends >= duration - max(2 / fps, 0.02 * duration) \
                    and not record.get("variable_frame_rate"):
                record = {**record, "variable_frame_rate": True}  # every pass now resamples to fps
                shots, signals = self._decode_pass(record)
                decoded = signals.motion.shape[0]
            if short(decoded):
                where = f"its last frame ends at {ends:.2f} s" if ends is not None else \
                    f"{decoded / fps:.2f} s of frames"
                raise RecordError("truncated_video",
                                  f"{record['uri']}: decoded {decoded} of {expected} frames, {where} of the "
                                  f"{duration:.2f} s it declares; the file is damaged or cut short")
        kept, dropped = self._apply_rules(shots, signals, fps)
        out = [self._clip(record, seg, signals, fps) for seg in kept]
        out += [reject(self._clip(record, seg, signals, fps), self.name, reason,
                       f"{seg.describe(fps)}: {detail}") for seg, reason, detail in dropped]
        return sorted(out, key=lambda r: r["start"])

    def _decode_pass(self, record: dict):
        fps = record["fps"]
        threshold = self.threshold if self.threshold is not None else DETECTOR_THRESHOLDS[self.detector]
        if self.detector == "transnetv2":
            detector = TransNetV2Shots(self._transnet, threshold)
        elif self.detector == "content":
            detector = FastContentShots(fps, threshold, self.min_scene_len)
        else:
            detector = SceneDetectShots(self.detector, fps, threshold, self.min_scene_len)
        signals = FrameSignals(self._embedder, fps, self.embed_fps)
        w, h = lowres_size(record["width"], record["height"], self.decode_width)
        constant_fps = record["fps"] if record.get("variable_frame_rate") else None
        limits = DecodeLimits(self.decode_timeout, self.decode_memory_mb)
        for chunk in iter_frames(present_path(record), w, h, decoder=self.decoder, constant_fps=constant_fps,
                                 limits=limits):
            detector.feed(chunk)
            signals.feed(chunk)
        if signals.count == 0:
            raise RecordError("decode_error", f"{record['uri']}: no frame could be decoded")
        return detector.finish(), signals.finish()

    def _apply_rules(self, shots, signals, fps):
        dropped: list = []
        segments = rules.artificial_cuts(shots, fps, self.piece_seconds, self.cut_while_longer_than)
        if self.transition_check:
            segments, out = rules.transition_check(segments, signals, self._threshold("transition"))
            dropped += out
        if self.stitch:
            segments = rules.stitch(segments, signals, self._threshold("stitch"),
                                    int(round(self.max_clip_seconds * fps)))
        segments, out = rules.min_length(segments, fps, self.min_clip_seconds)
        dropped += out
        if self.still_filter:
            segments, out = rules.still_filter(segments, signals, self._threshold("still"))
            dropped += out
        segments = rules.max_length(segments, fps, self.max_clip_seconds)
        if self.redundancy_filter:
            segments, out = rules.redundancy_filter(segments, signals, self._threshold("redundancy"))
            dropped += out
        return rules.trim_ends(segments, self.trim_fraction), dropped

    def _clip(self, record: dict, seg: rules.Segment, signals, fps: float) -> dict:
        start, end = seg.start / fps, seg.end / fps
        stitched = any(e.startswith("stitched") for e in seg.events)
        shots = [[max(a, seg.start) / fps, min(b, seg.end) / fps] for a, b in seg.shots
                 if a < seg.end and b > seg.start]
        return {
            **record,
            "clip_id": clip_id_for(record["video_id"], start, end),
            "start": start, "end": end, "start_frame": seg.start, "end_frame": seg.end,
            "shots": shots,
            "split_reason": seg.origin + ("+stitched" if stitched else ""),
            "split_events": list(seg.events),
            "split_scores": dict(seg.scores),
            "motion": round(signals.mean_motion(seg.start, seg.end), 4),
            # the unit mean of the clip's sampled frame embeddings (what the redundancy filter
            # compares), kept for near-duplicate search and as an optional .npy shard member
            **({"clip_embedding": signals.mean(seg.start, seg.end).astype(np.float32).tolist(),
                "clip_embedding_model": self.embedder if self.embedder != "transformers" else self.embedder_model}
               if len(signals.vectors) else {}),
        }

"""extract_clips: cut each clip out of its source as browser-playable H.264 mp4 bytes.

One ffmpeg run per clip writes up to three outputs from one decode: the clip
(frame-accurate re-encode: yuv420p, faststart, audio kept as AAC when present), the
clip's audio as 16 kHz mono PCM for speech teachers, and keyframes as small JPEGs for
image teachers and filters (``keyframes``: the middle frame, N uniformly spaced frames,
or Panda-70M's one frame drawn uniformly in 30-70% of the clip, seeded by the clip id so
runs repeat). No teacher decodes the video again. The clip holds exactly
``end_frame - start_frame`` frames.
"""
from __future__ import annotations

import os
import random
import tempfile
import zlib
from typing import ClassVar, Literal, Optional

import numpy as np
from pydantic import Field

from vidcurate.operators.base import Operator, RecordError, Resources
from vidcurate.operators.media import run_ffmpeg

ASR_SAMPLE_RATE = 16_000


class ExtractClips(Operator):
    name: ClassVar[str] = "extract_clips"
    resources: ClassVar[Resources] = Resources(cpus=1, batch_size=4)
    requires: ClassVar[tuple[str, ...]] = ("local_path", "clip_id", "start_frame", "end_frame", "fps", "height",
                                           "has_audio")
    provides: ClassVar[tuple[str, ...]] = ("mp4", "clip_num_frames", "clip_width", "clip_height", "audio_pcm",
                                           "keyframes", "keyframe_frames")

    max_height: Optional[int] = Field(720, ge=16, description="Downscale clips taller than this (None: keep).")
    crf: int = Field(23, ge=0, le=51, description="x264 constant rate factor.")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = Field(
        "veryfast", description="x264 preset.")
    audio: bool = Field(True, description="Keep the audio track (AAC) in the clip when the source has one.")
    asr_audio: bool = Field(True, description="Also extract 16 kHz mono audio for speech teachers.")
    timeout: float = Field(600, gt=0, description="Seconds before one ffmpeg run is abandoned (transient reject).")
    keyframes: Literal["none", "middle", "uniform", "panda_random"] = Field(
        "middle", description="Which frames become JPEG keyframes for teachers and filters.")
    num_keyframes: int = Field(4, ge=1, le=64, description="How many frames 'uniform' takes.")
    keyframe_max_side: int = Field(448, ge=32, description="Keyframes are scaled to at most this many pixels.")

    def process_record(self, record: dict) -> dict:
        start_frame, end_frame, fps = record["start_frame"], record["end_frame"], record["fps"]
        frames = end_frame - start_frame
        # Seek half a frame early: ffmpeg drops frames whose timestamp is before -ss, so the
        # clip starts exactly at start_frame whatever the rounding of its timestamp.
        seek = max(0.0, (start_frame - 0.5) / fps)
        with tempfile.TemporaryDirectory(prefix="vidcurate-clip-") as tmp:
            clip_path = os.path.join(tmp, "clip.mp4")
            pcm_path = os.path.join(tmp, "audio.pcm")
            args = ["-ss", f"{seek:.6f}", "-i", record["local_path"], "-t", f"{frames / fps + 0.5 / fps:.6f}",
                    "-map", "0:v:0", "-frames:v", str(frames), *self._video_args(record)]
            if self.audio and record.get("has_audio"):
                args += ["-map", "0:a:0", "-c:a", "aac", "-b:a", "128k"]
            args += ["-movflags", "+faststart", clip_path]
            want_pcm = self.asr_audio and record.get("has_audio")
            if want_pcm:
                args += ["-map", "0:a:0", "-t", f"{frames / fps:.6f}", "-ac", "1", "-ar", str(ASR_SAMPLE_RATE),
                         "-f", "s16le", pcm_path]
            picks = self.keyframe_indices(record["clip_id"], frames)
            if picks:
                select = "+".join(f"eq(n\\,{i})" for i in picks)
                side = self.keyframe_max_side
                args += ["-map", "0:v:0", "-vf", f"select={select},scale='min({side},iw)':'min({side},ih)'"
                         ":force_original_aspect_ratio=decrease", "-fps_mode", "passthrough",
                         "-frames:v", str(len(picks)), "-q:v", "3", os.path.join(tmp, "kf_%03d.jpg")]
            run_ffmpeg(["-y", *args], f"{record['uri']} clip {record['start']:.2f}-{record['end']:.2f} s",
                       timeout=self.timeout)
            with open(clip_path, "rb") as handle:
                mp4 = handle.read()
            clip_frames, clip_w, clip_h = _video_facts(clip_path)
            keyframes = [open(os.path.join(tmp, f"kf_{i:03d}.jpg"), "rb").read() for i in range(1, len(picks) + 1)
                         if os.path.exists(os.path.join(tmp, f"kf_{i:03d}.jpg"))]
            audio_pcm = None
            if want_pcm and os.path.exists(pcm_path):
                audio_pcm = np.fromfile(pcm_path, dtype=np.int16).tobytes()
        if clip_frames == 0:
            raise RecordError("empty_clip", f"{record['uri']} clip {record['start']:.2f}-{record['end']:.2f} s: "
                                            "ffmpeg wrote no video frame")
        return {**record, "mp4": mp4, "clip_num_frames": clip_frames, "clip_width": clip_w,
                "clip_height": clip_h, "audio_pcm": audio_pcm, "keyframes": keyframes,
                "keyframe_frames": [record["start_frame"] + i for i in picks][: len(keyframes)]}

    def keyframe_indices(self, clip_id: str, frames: int) -> list[int]:
        """Frame numbers inside the clip (0 = its first frame) that become keyframes."""
        if self.keyframes == "none" or frames <= 0:
            return []
        if self.keyframes == "middle":
            return [frames // 2]
        if self.keyframes == "uniform":
            count = min(self.num_keyframes, frames)
            return sorted({int((k + 0.5) * frames / count) for k in range(count)})
        rng = random.Random(zlib.crc32(clip_id.encode()))  # Panda-70M: uniform in 30%-70%
        return [min(frames - 1, int(rng.uniform(0.3, 0.7) * frames))]

    def _video_args(self, record: dict) -> list[str]:
        filters = []
        if self.max_height and record["height"] > self.max_height:
            filters.append(f"scale=-2:{self.max_height}")
        filters.append("pad=ceil(iw/2)*2:ceil(ih/2)*2")  # yuv420p needs even sizes
        return ["-vf", ",".join(filters), "-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf),
                "-pix_fmt", "yuv420p"]


def _video_facts(path: str) -> tuple[int, int, int]:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = stream.frames or sum(1 for _ in container.demux(stream) if _.size)
        return int(frames), int(stream.codec_context.width), int(stream.codec_context.height)

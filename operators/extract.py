"""extract_clips: cut each clip out of its source as browser-playable H.264 mp4 bytes.

By default (``mode: one_pass``) all clips of a video in a batch are cut by ONE ffmpeg
run (``clip_cutter.py``) that seeks once to the batch's first clip: one decode, one
encoder, no per-clip seeking, and a long video streamed a batch at a time is still
decoded about once. ``per_clip``
runs ffmpeg once per clip, seeking to it, as Panda-70M's code does; it is also the
fallback for any clip the one-pass run could not deliver exactly. Either way each clip
gets a frame-accurate re-encode (yuv420p, faststart, audio kept as AAC when present),
its audio as 16 kHz mono PCM for speech teachers, and keyframes as small JPEGs for
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
from vidcurate.operators.clip_cutter import (AAC_ARGS, ASR_SAMPLE_RATE, CutSettings, cut_one_pass, keyframe_filter,
                                             keyframe_output, pick_frames, rate_ratio, read_keyframes,
                                             resampled_frames, spans_are_cuttable, video_facts)
from vidcurate.operators.extract_smart import smart_batch, smart_blocker
from vidcurate.operators.media import constant_rate_filter, present_path, run_ffmpeg
from vidcurate.operators.smart_cut import EncodeSettings


class ExtractClips(Operator):
    """Cuts each clip to H.264 mp4 bytes plus 16 kHz audio and JPEG keyframes; rejects clips ffmpeg cannot cut.

    Frame-accurate: the clip holds exactly ``end_frame - start_frame`` frames. A clip whose
    ffmpeg run fails or writes no frame is rejected (a timeout as a transient reject).
    """

    name: ClassVar[str] = "extract_clips"
    resources: ClassVar[Resources] = Resources(cpus=1, batch_size=64)
    requires: ClassVar[tuple[str, ...]] = ("local_path", "clip_id", "start_frame", "end_frame", "fps", "height",
                                           "has_audio")
    provides: ClassVar[tuple[str, ...]] = ("mp4", "clip_num_frames", "clip_fps", "clip_width", "clip_height",
                                           "audio_pcm", "keyframes", "keyframe_frames")

    mode: Literal["one_pass", "per_clip", "smart"] = Field(
        "smart", description="one_pass: one ffmpeg run per batch of a video's clips; per_clip: one seeking run "
                                "per clip; smart: re-encode only each clip's frames before the first and after the "
                                "last source IDR frame inside it and copy the packets between (H.264 sources kept at "
                                "their size and rate; other clips are cut one_pass, counted as smart_fallback).")
    batch_size: int = Field(64, ge=1, le=4096, description="Clips cut per ffmpeg run (one seek, one decode); also "
                            "how many clips of a long video are in memory at once.")
    max_height: Optional[int] = Field(720, ge=16, description="Downscale clips taller than this (None: keep).")
    max_fps: Optional[float] = Field(None, gt=0, description="Resample clips of faster sources down to this frame "
                                     "rate, e.g. 30 (None: keep the source rate). Each output frame shows the first "
                                     "source frame at or after its time, so a clip still starts on its first frame.")
    crf: int = Field(23, ge=0, le=51, description="x264 constant rate factor.")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = Field(
        "veryfast", description="x264 preset.")
    audio: bool = Field(True, description="Keep the audio track (AAC) in the clip when the source has one.")
    asr_audio: bool = Field(True, description="Also extract 16 kHz mono audio for speech teachers.")
    timeout: float = Field(600, gt=0, description="Seconds before one ffmpeg run is abandoned (transient reject).")
    memory_mb: Optional[int] = Field(4096, ge=64, description="Address space one ffmpeg run may take, in MB "
                                     "(reject ffmpeg_memory past it; None: no cap).")
    keyframes: Literal["none", "middle", "uniform", "panda_random"] = Field(
        "middle", description="Which frames become JPEG keyframes for teachers and filters.")
    num_keyframes: int = Field(4, ge=1, le=64, description="How many frames 'uniform' takes.")
    keyframe_max_side: int = Field(448, ge=32, description="Keyframes are scaled to at most this many pixels.")
    stream_copy: bool = Field(False, description="Copy a clip's packets instead of re-encoding when it starts and "
                              "ends on source keyframes and the source is already H.264 yuv420p within max_height "
                              "(no generation loss, no encoding time); other clips are re-encoded.")

    def process_batch(self, records: list[dict]) -> list[dict]:
        groups: dict[str, list[dict]] = {}
        for record in records:
            groups.setdefault(record["local_path"], []).append(record)
        out: list[dict] = []
        for group in groups.values():
            group = sorted(group, key=lambda r: r["start_frame"])
            if self.stream_copy:
                keyframes = source_keyframes(present_path(group[0]), group[0]["fps"])
                copies = [r for r in group if self._copyable(r, keyframes)]
                out.extend(self._guarded_copy(r) for r in copies)
                group = [r for r in group if not any(r is c for c in copies)]
            if not group:
                continue
            if self.mode == "smart":
                out.extend(self._smart(group))
            elif self.mode == "per_clip":
                out.extend(super().process_batch(group))
            else:
                out.extend(self._one_pass(group))
        return out

    # ---- stream copy -------------------------------------------------------------------
    def _copyable(self, record: dict, keyframes: set[int]) -> bool:
        """Copying gives a browser-playable clip that starts on a keyframe only for these sources."""
        return (record.get("video_codec") == "h264" and record.get("pixel_format") == "yuv420p"
                and not record.get("variable_frame_rate") and not record.get("rotation")
                and (self.max_height is None or record["height"] <= self.max_height)
                and self._ratio(record) is None
                and record["start_frame"] in keyframes
                and (record["end_frame"] in keyframes or record["end_frame"] >= record.get("num_frames", 0)))

    def _guarded_copy(self, record: dict) -> dict:
        try:
            copied = self._copy(record)
        except RecordError:
            copied = None
        if copied is None:  # the copy did not hold exactly the clip's frames: encode it instead
            self.stats.incr(f"{self.name}.stream_copy_fallback")
            return self._guarded_record(record)[0]
        self.stats.incr(f"{self.name}.stream_copied")
        return copied

    def _copy(self, record: dict) -> dict | None:
        start, end, fps = record["start_frame"], record["end_frame"], record["fps"]
        with tempfile.TemporaryDirectory(prefix="vidcurate-copy-") as tmp:
            clip_path = os.path.join(tmp, "clip.mp4")
            # Input seeking with stream copy starts at the keyframe at or before the seek point:
            # a quarter frame past the start keyframe is that keyframe. The clip is whole GOPs,
            # so its frames are exactly the next end - start packets in decode order (a time
            # limit would let B-frame reordering pull in the next keyframe); -t bounds the audio.
            args = ["-y", "-ss", f"{(start + 0.25) / fps:.6f}", "-i", present_path(record),
                    "-t", f"{(end - start) / fps:.6f}", "-map", "0:v:0", "-frames:v", str(end - start), "-c:v", "copy"]
            if self.audio and record.get("has_audio"):
                args += ["-map", "0:a:0", *(["-c:a", "copy"] if record.get("audio_codec") == "aac" else AAC_ARGS)]
            args += ["-avoid_negative_ts", "make_zero", "-movflags", "+faststart", clip_path]
            run_ffmpeg(args, f"{record['uri']} clip {record['start']:.2f}-{record['end']:.2f} s (stream copy)",
                       timeout=self.timeout, memory_mb=self.memory_mb)
            frames, width, height = video_facts(clip_path)
            if frames != end - start or not _starts_on_keyframe(clip_path):
                return None
            with open(clip_path, "rb") as handle:
                mp4 = handle.read()
        extras = self._cut(record, encode=False)  # keyframes and 16 kHz audio from the source, as usual
        return {**extras, "mp4": mp4, "clip_num_frames": frames, "clip_fps": record["fps"], "clip_width": width,
                "clip_height": height}

    def _smart(self, group: list[dict]) -> list[dict]:
        first = group[0]
        blocker = smart_blocker(first, self.max_height, self._ratio(first) is not None)
        if blocker:
            self.stats.incr(f"{self.name}.smart_fallback.{blocker}", len(group))
            return self._one_pass(group)
        picks = self._keyframe_frames(group)
        audio = CutSettings([], [], self.audio, self.asr_audio, self.keyframe_max_side, self.timeout,
                            memory_mb=self.memory_mb)
        done, rest = smart_batch(group, picks, EncodeSettings(self.preset, self.crf, self.keyframe_max_side), audio,
                                 self.stats, self.name)
        return done + (self._one_pass(rest) if rest else [])

    def _one_pass(self, group: list[dict]) -> list[dict]:
        spans = [(r["start_frame"], r["end_frame"]) for r in group]
        if len(group) == 1 or not spans_are_cuttable(spans):
            return super().process_batch(group)
        first = group[0]
        settings = CutSettings(self._codec_args(), self._filters(first), self.audio, self.asr_audio,
                               self.keyframe_max_side, self.timeout, self._source_filters(first),
                               self.max_fps if self._ratio(first) is not None else None, self.memory_mb)
        keyframes = self._keyframe_frames(group)
        with tempfile.TemporaryDirectory(prefix="vidcurate-cut-") as tmp:
            try:
                cuts = cut_one_pass(present_path(first), spans, keyframes, first["fps"], bool(first.get("has_audio")),
                                    settings, tmp, f"{first['uri']}: {len(group)} clips",
                                    seek=not first.get("variable_frame_rate"))
            except RecordError:
                self.stats.incr(f"{self.name}.one_pass_failed")
                return super().process_batch(group)  # per clip: isolates the clip that breaks
            out = []
            for record, cut, frames in zip(group, cuts, keyframes):
                facts = video_facts(cut.path) if os.path.exists(cut.path) else None
                if facts is None or facts[0] != self._clip_frames(record):
                    self.stats.incr(f"{self.name}.one_pass_clip_redone")
                    out.extend(self._guarded_record(record))
                    continue
                with open(cut.path, "rb") as handle:
                    mp4 = handle.read()
                out.append({**record, "mp4": mp4, "clip_num_frames": facts[0], "clip_fps": self._clip_fps(record),
                            "clip_width": facts[1],
                            "clip_height": facts[2], "audio_pcm": cut.audio_pcm if self.asr_audio else None,
                            "keyframes": cut.keyframes, "keyframe_frames": frames[: len(cut.keyframes)]})
            self.stats.incr(f"{self.name}.one_pass_clips", len(out))
            return out

    def process_record(self, record: dict) -> dict:
        return self._cut(record, encode=True)

    def _cut(self, record: dict, encode: bool) -> dict:
        """One ffmpeg run for one clip: the encoded clip (if ``encode``), its 16 kHz audio, its keyframes."""
        start_frame, end_frame, fps = record["start_frame"], record["end_frame"], record["fps"]
        frames = end_frame - start_frame
        # Seek half a frame early: ffmpeg drops frames whose timestamp is before -ss, so the
        # clip starts exactly at start_frame whatever the rounding of its timestamp.
        seek = max(0.0, (start_frame - 0.5) / fps)
        with tempfile.TemporaryDirectory(prefix="vidcurate-clip-") as tmp:
            clip_path = os.path.join(tmp, "clip.mp4")
            pcm_path = os.path.join(tmp, "audio.pcm")
            args = ["-ss", f"{seek:.6f}", "-i", present_path(record), "-t", f"{frames / fps + 0.5 / fps:.6f}"]
            if encode:
                args += ["-map", "0:v:0", "-frames:v", str(self._clip_frames(record)), *self._video_args(record)]
                if self.audio and record.get("has_audio"):
                    args += ["-map", "0:a:0", *AAC_ARGS]
                args += ["-movflags", "+faststart", clip_path]
            want_pcm = self.asr_audio and record.get("has_audio")
            if want_pcm:
                args += ["-map", "0:a:0", "-t", f"{frames / fps:.6f}", "-ac", "1", "-ar", str(ASR_SAMPLE_RATE),
                         "-f", "s16le", pcm_path]
            picks = self.keyframe_indices(record["clip_id"], frames)
            if picks:
                args += ["-map", "0:v:0", "-vf", ",".join(self._source_filters(record)
                                                          + [keyframe_filter(picks, self.keyframe_max_side)]),
                         "-frames:v", str(len(picks)), *keyframe_output(tmp)]
            if encode or want_pcm or picks:
                run_ffmpeg(["-y", *args], f"{record['uri']} clip {record['start']:.2f}-{record['end']:.2f} s",
                           timeout=self.timeout, memory_mb=self.memory_mb)
            if not encode:
                keyframes = [jpeg for jpeg in read_keyframes(tmp, len(picks)) if jpeg]
                audio_pcm = np.fromfile(pcm_path, dtype=np.int16).tobytes() if want_pcm and os.path.exists(
                    pcm_path) else None
                return {**record, "audio_pcm": audio_pcm, "keyframes": keyframes,
                        "keyframe_frames": [record["start_frame"] + i for i in picks][: len(keyframes)]}
            with open(clip_path, "rb") as handle:
                mp4 = handle.read()
            clip_frames, clip_w, clip_h = video_facts(clip_path)
            keyframes = [jpeg for jpeg in read_keyframes(tmp, len(picks)) if jpeg]
            audio_pcm = None
            if want_pcm and os.path.exists(pcm_path):
                audio_pcm = np.fromfile(pcm_path, dtype=np.int16).tobytes()
        if clip_frames == 0:
            raise RecordError("empty_clip", f"{record['uri']} clip {record['start']:.2f}-{record['end']:.2f} s: "
                                            "ffmpeg wrote no video frame")
        return {**record, "mp4": mp4, "clip_num_frames": clip_frames, "clip_fps": self._clip_fps(record),
                "clip_width": clip_w,
                "clip_height": clip_h, "audio_pcm": audio_pcm, "keyframes": keyframes,
                "keyframe_frames": [record["start_frame"] + i for i in picks][: len(keyframes)]}

    def _keyframe_frames(self, group: list[dict]) -> list[list[int]]:
        """Each record's keyframe JPEG frames, as source frame numbers."""
        return [[r["start_frame"] + i for i in self.keyframe_indices(r["clip_id"], r["end_frame"] - r["start_frame"])]
                for r in group]

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

    @staticmethod
    def _source_filters(record: dict) -> list[str]:
        """Variable-frame-rate sources are resampled to their average rate, as the splitter saw them."""
        return [constant_rate_filter(record["fps"])] if record.get("variable_frame_rate") else []

    def _filters(self, record: dict) -> list[str]:
        filters = []
        if self.max_height and record["height"] > self.max_height:
            filters.append(f"scale=-2:{self.max_height}")
        filters.append("pad=ceil(iw/2)*2:ceil(ih/2)*2")  # yuv420p needs even sizes
        return filters

    def _codec_args(self) -> list[str]:
        return ["-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf), "-pix_fmt", "yuv420p"]

    def _video_args(self, record: dict) -> list[str]:
        """Encoder arguments of a per-clip run (input seeked so that frame 0 is the clip's first)."""
        ratio = self._ratio(record)
        if ratio is None:
            return ["-vf", ",".join(self._source_filters(record) + self._filters(record)), *self._codec_args()]
        resample = [f"select='{pick_frames(0, ratio)}'", f"setpts=N/{self.max_fps:.6f}/TB"]
        return ["-vf", ",".join(self._source_filters(record) + resample + self._filters(record)),
                *self._codec_args(), "-r", f"{self.max_fps:.6f}"]

    def _ratio(self, record: dict) -> float | None:
        return rate_ratio(record["fps"], self.max_fps)

    def _clip_frames(self, record: dict) -> int:
        """Frames in the cut clip: the span's, or fewer when resampled to max_fps."""
        return resampled_frames(record["end_frame"] - record["start_frame"], self._ratio(record))

    def _clip_fps(self, record: dict) -> float:
        return self.max_fps if self._ratio(record) is not None else record["fps"]


def source_keyframes(path: str, fps: float) -> set[int]:
    """Frame numbers of the source's keyframes, read from packet flags (demuxing only, no decoding)."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        origin = stream.start_time or 0
        return {int(round(float((packet.pts - origin) * stream.time_base) * fps))
                for packet in container.demux(stream) if packet.is_keyframe and packet.pts is not None}


def _starts_on_keyframe(path: str) -> bool:
    import av

    with av.open(path) as container:
        first = next((p for p in container.demux(container.streams.video[0]) if p.size), None)
        return bool(first is not None and first.is_keyframe)


"""extract_clips ``mode: smart`` on records: which clips can be smart-cut, cutting them, checking them.

For each batch of one video's clips: the source's packets are indexed (smart_plan.py), each clip
gets a plan (head to encode, middle to copy, tail to encode), one pass writes the clips, one
audio-only ffmpeg run gives their AAC and 16 kHz PCM (clip_cutter.py), and every clip's frame
count is checked. A clip that cannot be smart-cut is handed back to be re-encoded whole, and the
reason is counted (``extract_clips.smart_fallback.<reason>``), so stats.json shows what smart mode
covered: ``smart_clips``, ``smart_frames_copied``, ``smart_frames_encoded``.
"""
from __future__ import annotations

import os
import tempfile

from vidcurate.operators.base import RecordError
from vidcurate.operators.clip_cutter import CutSettings, cut_audio, mux_audio, video_facts
from vidcurate.operators.media import present_path
from vidcurate.operators.smart_cut import EncodeSettings, cut_smart
from vidcurate.operators.smart_plan import NotSmart, index_source, plan_clip

SMART_PIXEL_FORMATS = ("yuv420p", "yuvj420p")


def smart_blocker(record: dict, max_height: int | None, resampled: bool) -> str | None:
    """Why the clips of this record's source cannot be smart-cut (None: they can be tried)."""
    if record.get("video_codec") != "h264":
        return "not_h264"
    if record.get("pixel_format") not in SMART_PIXEL_FORMATS:
        return "pixel_format"
    if record.get("variable_frame_rate"):
        return "variable_frame_rate"
    if record.get("rotation"):
        return "rotation"
    if max_height is not None and record["height"] > max_height:
        return "resize"
    if resampled:
        return "resample"
    if record.get("width", 0) % 2 or record["height"] % 2:
        return "odd_size"
    return None


def smart_batch(group: list[dict], picks: list[list[int]], encode: EncodeSettings, audio: CutSettings,
                stats, name: str) -> tuple[list[dict], list[dict]]:
    """(clips cut smartly, records to re-encode whole) for one video's ``group`` (sorted by start).
    ``picks`` are each record's keyframe JPEG frames, as source frame numbers."""
    path = present_path(group[0])

    def fall_back(records: list[dict], reason: str) -> list[dict]:
        stats.incr(f"{name}.smart_fallback.{reason}", len(records))
        return records

    try:
        index = index_source(path)
    except NotSmart as exc:
        return [], fall_back(group, exc.reason)
    if group[0].get("num_frames") and abs(index.frames - int(group[0]["num_frames"])) > 1:
        return [], fall_back(group, "frame_count")  # the demuxer and the probe disagree: numbering unsure
    plans, todo, rest = [], [], []
    for record, pick in zip(group, picks):
        try:
            plans.append(plan_clip(index, record["start_frame"], record["end_frame"]))
            todo.append((record, pick))
        except NotSmart as exc:
            rest += fall_back([record], exc.reason)
    if not todo:
        return [], rest
    done = []
    what = f"{group[0]['uri']}: {len(todo)} clips (smart)"
    with tempfile.TemporaryDirectory(prefix="vidcurate-smart-") as tmp:
        video_paths = [os.path.join(tmp, f"video_{i:05d}.mp4") for i in range(len(todo))]
        try:
            jpegs = cut_smart(path, index, plans, [p for _, p in todo], encode, video_paths)
        except Exception as exc:  # noqa: BLE001 - a decoder or encoder error: re-encode these whole
            stats.incr(f"{name}.smart_failed")
            return [], rest + fall_back([r for r, _ in todo], "cut_error:" + type(exc).__name__)
        with_audio = bool(group[0].get("has_audio")) and (audio.keep_audio or audio.asr_audio)
        sounds = [(None, None)] * len(todo)
        if with_audio:
            audio_dir = os.path.join(tmp, "audio")
            os.makedirs(audio_dir)
            try:
                sounds = cut_audio(path, [(r["start_frame"], r["end_frame"]) for r, _ in todo], group[0]["fps"],
                                   audio, audio_dir, what)
            except RecordError:
                return [], rest + fall_back([r for r, _ in todo], "audio")
        for i, ((record, pick), plan, found, (aac, pcm)) in enumerate(zip(todo, plans, jpegs, sounds)):
            video = video_paths[i]
            try:
                facts = video_facts(video) if found is not None and os.path.exists(video) else None
            except Exception:  # noqa: BLE001 - the joined file does not even demux: re-encode it whole
                rest += fall_back([record], "unreadable")
                continue
            if facts is None or facts[0] != record["end_frame"] - record["start_frame"]:
                rest += fall_back([record], "frame_count" if facts else "incomplete")
                continue
            if aac is not None and os.path.exists(aac):
                video = mux_audio(video, aac, os.path.join(tmp, f"av_{i:05d}.mp4"))
            with open(video, "rb") as handle:
                mp4 = handle.read()
            frames = [f for f in pick if f in found]
            copied = plan.copy_to - plan.copy_from
            stats.incr(f"{name}.smart_clips")
            stats.incr(f"{name}.smart_frames_copied", copied)
            stats.incr(f"{name}.smart_frames_encoded", facts[0] - copied)
            done.append({**record, "mp4": mp4, "clip_num_frames": facts[0], "clip_fps": record["fps"],
                         "clip_width": facts[1], "clip_height": facts[2],
                         "audio_pcm": pcm if audio.asr_audio else None,
                         "keyframes": [found[f] for f in frames], "keyframe_frames": frames})
    return done, rest


"""What one clip record becomes in the outputs: shard members and an index row.

Times are written rounded to milliseconds (the precision of clip ids): ``end - start`` of
two float seconds is 2.4400000000000004, which nobody means. Candidate ``params`` travel
through Ray Data and the stage cache as a JSON string (a dict whose keys differ by teacher
has no fixed Arrow type) and are written into the sample's json as the object they are.
"""
from __future__ import annotations

import json

from vidcurate.schemas.records import PROBE, SCHEMA_VERSION

SOURCE_FIELDS = ("uri", "title", "description", "subtitles", "tags", "license")
PROBE_FIELDS = tuple(f.name for f in PROBE)


def sample_members(record: dict, provenance: dict, extra: tuple[str, ...] = ()) -> dict:
    """The WebDataset members of a clip: mp4, json (all metadata), txt (the selected caption), and
    by request ``keyframes`` (kf0.jpg, kf1.jpg, ... as given to teachers), ``audio`` (wav, 16 kHz mono) and
    ``embedding`` (npy: the clip's mean frame embedding from the splitter, when it computed one)."""
    meta = {
        "clip_id": record["clip_id"],
        "video_id": record["video_id"],
        # truncated: the text fields cut when read (field -> original length in characters).
        "source": {**{k: record.get(k) for k in SOURCE_FIELDS}, "truncated": record.get("truncated_fields") or {}},
        "span": {"start": ms(record.get("start")), "end": ms(record.get("end")),
                 "start_frame": record.get("start_frame"), "end_frame": record.get("end_frame"),
                 "shots": shots_ms(record),
                 **{k: record.get(k) for k in ("split_reason", "split_events", "split_scores", "motion")}},
        "probe": {k: record.get(k) for k in PROBE_FIELDS},
        "clip": {"width": record.get("clip_width"), "height": record.get("clip_height"),
                 "num_frames": record.get("clip_num_frames"), "fps": record.get("clip_fps"),
                 "duration": clip_duration(record)},
        "filter_scores": record.get("filter_scores") or {},
        "embedding_model": record.get("clip_embedding_model"),
        "speech": {"transcript": record.get("transcript"), "speech_seconds": record.get("speech_seconds")},
        "caption": record.get("caption"),
        "caption_teacher": record.get("caption_teacher"),
        "score": record.get("score"),
        "selector": record.get("selector"),
        "candidates": [with_params_object(c) for c in record.get("candidates") or []],
        "rejected_candidates": record.get("rejected_candidates") or [],
        "ocr_text": record.get("ocr_text"),
        "provenance": {**provenance, "schema_version": SCHEMA_VERSION},
    }
    members = {"mp4": record["mp4"], "json": meta}
    if record.get("caption"):
        members["txt"] = record["caption"]
    if "keyframes" in extra:
        for number, jpeg in enumerate(record.get("keyframes") or []):
            members[f"kf{number}.jpg"] = jpeg
    if "audio" in extra and record.get("audio_pcm"):
        members["wav"] = _wav(record["audio_pcm"])
    if "embedding" in extra and record.get("clip_embedding"):
        members["npy"] = _npy(record["clip_embedding"])
    return members


def ms(seconds: float | None) -> float | None:
    """Seconds rounded to milliseconds, as outputs write times."""
    return None if seconds is None else round(seconds, 3)


def clip_duration(record: dict) -> float:
    return round(record["end"] - record["start"], 3)


def shots_ms(record: dict) -> list[list[float]] | None:
    """The clip's detected shots ([start, end] seconds), rounded like the clip's own start and end."""
    shots = record.get("shots")
    return None if shots is None else [[ms(start), ms(end)] for start, end in shots]


def with_params_object(candidate: dict) -> dict:
    """The candidate with ``params`` as a JSON object, decoded from the string records carry
    (a dict already, or a string that is not JSON, is kept as it is). Readers call it too, so
    shards written before params became an object read the same."""
    params = candidate.get("params")
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except ValueError:
            return candidate
        return {**candidate, "params": params}
    return candidate


def _npy(vector: list[float]) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(vector, dtype=np.float32))
    return buffer.getvalue()


def _wav(pcm: bytes, rate: int = 16000) -> bytes:
    import io
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm)
    return buffer.getvalue()


def index_row(record: dict, shard: str, split: str = "train", members: dict | None = None) -> dict:
    """One index row; ``members`` (ext -> (offset, size) in the shard) gives random access to the mp4."""
    members = members or {}
    return {
        "clip_id": record["clip_id"],
        "video_id": record["video_id"],
        "uri": record["uri"],
        "start": ms(record["start"]),
        "end": ms(record["end"]),
        "duration": clip_duration(record),
        "shots": shots_ms(record),
        "caption": record.get("caption"),
        "caption_teacher": record.get("caption_teacher"),
        "score": record.get("score"),
        "num_candidates": len(record.get("candidates") or []),
        "width": record.get("clip_width"),
        "height": record.get("clip_height"),
        "num_frames": record.get("clip_num_frames"),
        "split": split,
        "shard": shard,
        "key": record["clip_id"],
        "mp4_bytes": len(record["mp4"]),
        "mp4_offset": members.get("mp4", (None, None))[0],
        "members": sorted(members),
    }


def reject_row(record: dict) -> dict:
    return {
        "uri": record.get("uri"),
        "video_id": record.get("video_id"),
        "clip_id": record.get("clip_id"),
        "stage": record["error_stage"],
        "reason": record["error_reason"],
        "detail": record.get("error_detail"),
        "transient": bool(record.get("error_transient")),
    }

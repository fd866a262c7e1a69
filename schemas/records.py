"""The records that cross stage boundaries, as versioned pyarrow schemas.

A record travelling through a pipeline is a plain ``dict`` (so Ray Data rows, Beam
elements and local lists all carry it unchanged). Each stage adds the fields of its
schema below; nothing else writes into a record. The tables written to the output
folder (index, rejects) are checked against these schemas on write.

Stage by stage:

    SOURCE     manifest / folder listing        uri, video_id, title, description, ...
    PROBE      operators.probe                  duration, fps, width, height, codec, audio
    CLIP       operators.split + extract        clip_id, start, end, shots, mp4 bytes
    CANDIDATE  operators.teachers.*             one caption candidate with provenance
    SELECTION  operators.select.*               chosen caption, its score, all scores
    REJECT     any stage (errors are data)      uri, clip_id, stage, reason, detail
"""
from __future__ import annotations

import hashlib

import pyarrow as pa

SCHEMA_VERSION = "1.0"

SOURCE = pa.schema(
    [
        pa.field("uri", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("description", pa.string()),
        pa.field("subtitles", pa.string()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("license", pa.string()),
        # Text fields cut to the build's metadata_max_chars when read: field -> original length.
        pa.field("truncated_fields", pa.map_(pa.string(), pa.int64())),
    ],
    metadata={"vidcurate.schema": "source", "vidcurate.version": SCHEMA_VERSION},
)

PROBE = pa.schema(
    [
        pa.field("duration", pa.float64(), nullable=False),
        pa.field("fps", pa.float64(), nullable=False),
        pa.field("num_frames", pa.int64()),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("video_codec", pa.string()),
        pa.field("pixel_format", pa.string()),
        pa.field("rotation", pa.int32()),
        pa.field("variable_frame_rate", pa.bool_()),
        pa.field("has_audio", pa.bool_()),
        pa.field("audio_codec", pa.string()),
        pa.field("audio_sample_rate", pa.int32()),
        pa.field("audio_channels", pa.int32()),
        pa.field("size_bytes", pa.int64()),
    ],
    metadata={"vidcurate.schema": "probe", "vidcurate.version": SCHEMA_VERSION},
)

SHOT = pa.list_(pa.float64(), 2)

CLIP = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("start", pa.float64(), nullable=False),
        pa.field("end", pa.float64(), nullable=False),
        pa.field("start_frame", pa.int64()),
        pa.field("end_frame", pa.int64()),
        pa.field("shots", pa.list_(SHOT)),
        pa.field("split_reason", pa.string()),
        pa.field("mp4", pa.binary()),
        pa.field("clip_num_frames", pa.int64()),
        pa.field("clip_fps", pa.float64()),
        pa.field("clip_width", pa.int32()),
        pa.field("clip_height", pa.int32()),
    ],
    metadata={"vidcurate.schema": "clip", "vidcurate.version": SCHEMA_VERSION},
)

CANDIDATE = pa.struct(
    [
        pa.field("teacher", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("model_id", pa.string()),
        pa.field("model_revision", pa.string()),
        pa.field("params", pa.string()),  # JSON of generation / template parameters
        pa.field("score", pa.float64()),  # filled by the selector
    ]
)

SELECTION = pa.schema(
    [
        pa.field("caption", pa.string()),
        pa.field("caption_teacher", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("selector", pa.string()),
        pa.field("candidates", pa.list_(CANDIDATE)),
    ],
    metadata={"vidcurate.schema": "selection", "vidcurate.version": SCHEMA_VERSION},
)

REJECT = pa.schema(
    [
        pa.field("uri", pa.string(), nullable=False),
        pa.field("video_id", pa.string()),
        pa.field("clip_id", pa.string()),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("transient", pa.bool_(), nullable=False),
    ],
    metadata={"vidcurate.schema": "reject", "vidcurate.version": SCHEMA_VERSION},
)

INDEX = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("start", pa.float64(), nullable=False),
        pa.field("end", pa.float64(), nullable=False),
        pa.field("duration", pa.float64(), nullable=False),
        pa.field("shots", pa.list_(SHOT)),
        pa.field("caption", pa.string()),
        pa.field("caption_teacher", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("num_candidates", pa.int32()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("num_frames", pa.int64()),
        pa.field("split", pa.string(), nullable=False),  # train / validation / test, by source video
        pa.field("shard", pa.string(), nullable=False),  # path under OUT/shards, e.g. train/shard-000000.tar
        pa.field("key", pa.string(), nullable=False),
        pa.field("mp4_bytes", pa.int64()),
        pa.field("mp4_offset", pa.int64()),  # byte offset of the mp4's data in the shard: random access
        pa.field("members", pa.list_(pa.string())),  # the sample's members: json, mp4, txt, kf0.jpg, ...
    ],
    metadata={"vidcurate.schema": "index", "vidcurate.version": SCHEMA_VERSION},
)


# Every record in flight carries a status; a rejected one carries why (errors are data).
OK = "ok"
REJECTED = "rejected"
# Payload fields dropped from a record when it is rejected: rejects stay small.
HEAVY_FIELDS = ("mp4", "audio_pcm", "frames", "keyframes")


def is_ok(record: dict) -> bool:
    return record.get("status", OK) == OK


def rejected(record: dict, stage: str, reason: str, detail: str = "", transient: bool = False) -> dict:
    """The one failure path: a copy of ``record`` marked rejected, without heavy payloads.

    ``reason`` is a short stable snake_case code (counted and grouped), ``detail`` the
    human explanation naming the input, ``transient`` marks failures worth retrying.
    """
    out = {k: v for k, v in record.items() if k not in HEAVY_FIELDS}
    out.update(status=REJECTED, error_stage=stage, error_reason=reason,
               error_detail=detail, error_transient=transient)
    return out


def video_id_for(uri: str) -> str:
    """A stable id for a source video: 16 hex digits of the SHA-1 of its URI."""
    return hashlib.sha1(uri.encode("utf-8")).hexdigest()[:16]


def clip_id_for(video_id: str, start: float, end: float) -> str:
    """A clip id derived only from its source and time span (milliseconds).

    Stable across runs and runners, so resumed or re-run builds produce the same ids.
    Contains no dots, so it is a valid WebDataset key.
    """
    return f"{video_id}_{round(start * 1000):08d}_{round(end * 1000):08d}"

"""Judgments and frames for fine-tuning: what each labelled clip shows and which caption people chose.

An example is one judgment (schemas/labels.py): the candidates in the order the annotator
saw them, the chosen index, the acceptable ones when marked. "All bad" judgments (-1) are
left out, as Panda-70M did; repeated judgments of one clip are kept, each its own example,
and counted. The validation split is drawn per clip from its id (every judgment of a clip
on the same side), so a clip never informs both training and the checkpoint choice.
Frames: ``num_frames`` per clip at ``frame_size``, read out of the shards by each clip's
index byte range and decoded the way the training loaders decode (operators/frames.py).
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from vidcurate.operators.frames import decode_frames
from vidcurate.operators.write.layout import INDEX_FILE, read_clip_mp4
from vidcurate.schemas.labels import read_labels


class TrainingDataError(ValueError):
    """Labels and a build that cannot train or evaluate a retriever (named in the message)."""


@dataclass
class Example:
    clip_id: str
    texts: list[str]
    teachers: list[str]
    positive: int
    acceptable: list[int] | None
    annotator: str


@dataclass
class Judgments:
    train: list[Example] = field(default_factory=list)
    validation: list[Example] = field(default_factory=list)
    counts: dict = field(default_factory=dict)


def in_validation(clip_id: str, share: float, seed: int = 0) -> bool:
    digest = hashlib.sha256(f"vidcurate-retriever-split:{seed}:{clip_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < share


def read_judgments(labels_path: str, validation_share: float = 0.1, seed: int = 0,
                   known_clips: set[str] | None = None) -> Judgments:
    """Examples from a labels file, split by clip; counts of what was kept and left out."""
    rows = read_labels(labels_path)
    out, counts = Judgments(), Counter()
    per_clip = Counter(r["clip_id"] for r in rows)
    for row in rows:
        counts["judgments"] += 1
        if known_clips is not None and row["clip_id"] not in known_clips:
            counts["not_in_build"] += 1
            continue
        if row["choice"] < 0:
            counts["all_bad"] += 1
            continue
        example = Example(row["clip_id"], [c["text"] for c in row["candidates"]],
                          [c["teacher"] for c in row["candidates"]], row["choice"], row.get("acceptable"),
                          row["annotator"])
        (out.validation if in_validation(row["clip_id"], validation_share, seed) else out.train).append(example)
    if known_clips is not None and counts["not_in_build"] == counts["judgments"] and rows:
        raise TrainingDataError(f"labels file {labels_path!r}: none of its {len(rows)} judgments is of a clip "
                                "in the build (another build's labels?)")
    counts.update(train=len(out.train), validation=len(out.validation),
                  clips=len({e.clip_id for e in out.train + out.validation}),
                  repeated_judgments=sum(n - 1 for n in per_clip.values() if n > 1))
    out.counts = dict(counts)
    return out


def index_rows(out: str) -> dict[str, dict]:
    import pyarrow.parquet as pq

    path = os.path.join(out, INDEX_FILE)
    if not os.path.isfile(path):
        raise TrainingDataError(f"{out!r} holds no finished build ({INDEX_FILE} is missing)")
    return {r["clip_id"]: r for r in pq.read_table(path).to_pylist()}


def clip_frames(out: str, clip_ids, num_frames: int, frame_size: tuple[int, int],
                index: dict[str, dict] | None = None) -> dict[str, np.ndarray]:
    """uint8 [T, H, W, 3] frames per clip id, read from the build's shards."""
    index = index if index is not None else index_rows(out)
    frames = {}
    for clip_id in sorted(set(clip_ids)):
        if clip_id not in index:
            raise TrainingDataError(f"clip {clip_id!r} is not in {out!r}/{INDEX_FILE}")
        row = index[clip_id]
        frames[clip_id] = decode_frames(read_clip_mp4(out, row), num_frames, tuple(frame_size),
                                        num_frames_hint=row.get("num_frames"), name=clip_id)
    return frames

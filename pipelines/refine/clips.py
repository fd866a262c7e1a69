"""The build's clips as records a teacher can run on: clip id, mp4 bytes, source text fields.

Read in chunks (``chunk`` clips at a time, in shard order), each mp4 by one ranged read of its
shard (the index's byte offsets), the source fields from the same shard's json members, so
memory holds one chunk, not the dataset.
"""
from __future__ import annotations

import os
from typing import Iterator

import pyarrow.parquet as pq

from vidcurate.operators.write.layout import INDEX_FILE, read_clip_mp4, read_sample_jsons

SOURCE_FIELDS = ("title", "description", "subtitles")


def clip_records(out: str, chunk: int = 256) -> Iterator[list[dict]]:
    """Chunks of {clip_id, video_id, mp4, clip_num_frames, title, description, subtitles}."""
    rows = pq.read_table(os.path.join(out, INDEX_FILE)).to_pylist()
    by_shard: dict[str, list[dict]] = {}
    for row in rows:
        by_shard.setdefault(row["shard"], []).append(row)
    batch: list[dict] = []
    for shard, members in sorted(by_shard.items()):
        jsons = read_sample_jsons(out, shard, {r["key"] for r in members})
        sources = {key: {f: (meta.get("source") or {}).get(f) for f in SOURCE_FIELDS} for key, meta in jsons.items()}
        for row in sorted(members, key=lambda r: r["mp4_offset"] or 0):
            batch.append({"clip_id": row["clip_id"], "video_id": row["video_id"], "mp4": read_clip_mp4(out, row),
                          "clip_num_frames": row.get("num_frames"), **sources.get(row["key"], {})})
            if len(batch) >= chunk:
                yield batch
                batch = []
    if batch:
        yield batch


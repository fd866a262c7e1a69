"""Where a sample goes: its split (by source video, so no source leaks across splits) and its
bucket (clips of similar resolution, aspect and duration), both pure functions of the record."""
from __future__ import annotations

import hashlib


def split_of(video_id: str, splits: dict[str, float], seed: int = 0) -> str:
    """The split of every clip of a source video: a stable hash of its id against the split fractions."""
    total = sum(splits.values())
    point = int.from_bytes(hashlib.blake2b(f"{seed}:{video_id}".encode(), digest_size=8).digest(), "big") / 2 ** 64
    edge = 0.0
    for name, share in splits.items():
        edge += share / total
        if point < edge:
            return name
    return list(splits)[-1]


_HEIGHTS = (240, 360, 480, 720, 1080, 1440, 2160)
_ASPECTS = {"9x16": 9 / 16, "3x4": 3 / 4, "1x1": 1.0, "4x3": 4 / 3, "16x9": 16 / 9, "21x9": 21 / 9}
_DURATIONS = (2, 5, 10, 20, 60)


def bucket_of(record: dict, bucket_by: tuple[str, ...]) -> str:
    """A folder name grouping clips of similar shape, e.g. ``720p_16x9_d05-10``; "" without bucketing."""
    parts = []
    width, height = record.get("clip_width") or record.get("width"), record.get("clip_height") or record.get("height")
    for key in bucket_by:
        if key == "resolution":
            parts.append(f"{min(_HEIGHTS, key=lambda h: abs(h - (height or 0)))}p")
        elif key == "aspect":
            ratio = (width or 1) / (height or 1)
            parts.append(min(_ASPECTS, key=lambda name: abs(_ASPECTS[name] - ratio)))
        elif key == "duration":
            seconds = record["end"] - record["start"]
            low = max([0, *[d for d in _DURATIONS if d <= seconds]])
            high = min([d for d in _DURATIONS if d > seconds], default=None)
            parts.append(f"d{low:02d}-{high:02d}" if high else f"d{low:02d}+")
    return "_".join(parts)

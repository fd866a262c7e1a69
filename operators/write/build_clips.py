"""A finished build's clips as records again, so operators (a student teacher, a selector) run on them
through any runner: ``read_build_clips`` turns a *clip group* (a few clips of one shard) into one
record per clip; ``keep_fields`` drops what the driver does not need (the mp4 bytes) before records
leave the worker.

A clip group is a source record the caller makes from index rows (pipelines/versions/clip_pass.py)::

    {"uri": "<shard>#<n>", "shard": "train/shard-...-000000.tar",
     "clips": [{"clip_id", "video_id", "key", "mp4_offset", "mp4_bytes", "num_frames",
                "fields": {...}}]}          # fields: added to the clip's record as they are

Each clip's mp4 is one ranged read of its shard (operators/write/layout.read_clip_mp4), on the worker
that runs the operator: OUT must be reachable from the workers (a shared file system or an fsspec URL),
and no clip byte passes through the driver. The source text fields (title, description, subtitles)
come from the shard's json members, read only when asked for. A clip that cannot be read becomes a
reject naming its shard and the reason; the other clips of its group go on. A worker that cannot see
OUT at all (its index.parquet is not there: OUT is a folder local to another machine) rejects its
group's clips as ``out_unreachable``, naming its host, and the clip pass stops with that reason.
"""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field, PrivateAttr

from vidcurate.operators.base import Operator, Resources
from vidcurate.operators.write.layout import INDEX_FILE, join, read_clip_mp4, read_sample_jsons

SOURCE_FIELDS = ("title", "description", "subtitles")


class ReadBuildClips(Operator):
    """read_build_clips: a group of a build's clips -> one record per clip (mp4 bytes, source text fields)."""

    name: ClassVar[str] = "read_build_clips"
    resources: ClassVar[Resources] = Resources(cpus=1, batch_size=1)
    provides: ClassVar[tuple[str, ...]] = ("clip_id", "mp4")

    out: str = Field(..., description="The build folder (a local path or an fsspec URL the workers can read).")
    mp4: bool = Field(True, description="Read each clip's mp4 bytes.")
    source_fields: bool = Field(False, description="Read title, description and subtitles from the shard's json.")

    _reachable: bool | None = PrivateAttr(default=None)

    def process_record(self, group: dict) -> list[dict]:
        clips, shard = group.get("clips") or [], group.get("shard")
        if not self._out_reachable():
            import socket

            return [self._unreadable(group, clip, f"the build folder {self.out!r} is not reachable from host "
                                     f"{socket.gethostname()} (no {INDEX_FILE} there): put OUT on storage every "
                                     "worker reads (a shared file system or an fsspec URL)", "out_unreachable")
                    for clip in clips]
        sources: dict[str, dict] | None = None
        if self.source_fields and clips:
            try:  # a shard cut short: the clips before the damage go on
                jsons = read_sample_jsons(self.out, shard, {c["key"] for c in clips}, partial_ok=True)
            except (OSError, ValueError) as exc:
                return [self._unreadable(group, clip, f"shard {shard}: {type(exc).__name__}: {exc}")
                        for clip in clips]
            sources = {key: {f: (meta.get("source") or {}).get(f) for f in SOURCE_FIELDS}
                       for key, meta in jsons.items()}
        records = []
        for clip in clips:
            if sources is not None and clip.get("key") not in sources:
                records.append(self._unreadable(group, clip, f"shard {shard}: its json member cannot be read "
                                                "(the shard is cut short or damaged)"))
                continue
            record = {"uri": group["uri"], "clip_id": clip["clip_id"], "video_id": clip.get("video_id"),
                      "clip_num_frames": clip.get("num_frames"), **(sources or {}).get(clip.get("key"), {}),
                      **(clip.get("fields") or {})}
            if self.mp4:
                try:
                    record["mp4"] = read_clip_mp4(self.out, clip)
                except (OSError, ValueError) as exc:  # ValueError: the shard is shorter than the index says
                    records.append(self._unreadable(group, clip, f"shard {shard}: {type(exc).__name__}: {exc}"))
                    continue
            self.stats.incr(f"{self.name}.clips")
            records.append(record)
        return records

    def _out_reachable(self) -> bool:
        """Whether this worker sees OUT (checked once per worker)."""
        if self._reachable is None:
            import fsspec

            fs, path = fsspec.core.url_to_fs(join(self.out, INDEX_FILE))
            try:
                self._reachable = bool(fs.exists(path))
            except OSError:
                self._reachable = False
        return self._reachable

    def _unreadable(self, group: dict, clip: dict, why: str, reason: str = "unreadable_clip") -> dict:
        record = {"uri": group["uri"], "clip_id": clip["clip_id"], "video_id": clip.get("video_id")}
        return self.fail(record, reason, f"clip {clip['clip_id']}: {why}")


class KeepFields(Operator):
    """keep_fields: records reduced to the named fields (plus uri), so only those leave the worker."""

    name: ClassVar[str] = "keep_fields"
    resources: ClassVar[Resources] = Resources(cpus=1, batch_size=256)

    fields: tuple[str, ...] = Field(..., description="The fields to keep.")

    def process_record(self, record: dict) -> dict:
        return {k: record[k] for k in ("uri", *self.fields) if k in record}

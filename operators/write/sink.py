"""DatasetSink: the output folder of a build (shards, index, rejects), resumable.

    OUT/shards/<split>[/<bucket>]/<prefix>-000000.tar   WebDataset samples (mp4, json, txt)
    OUT/index.parquet        one row per clip (schemas.INDEX), with its split and shard
    OUT/rejects.parquet      one row per rejected input or clip (schemas.REJECT)
    OUT/_journal/            what is done (operators/write/journal.py)

Records arrive in any grouping (a runner streaming a long video writes its clips a batch
at a time); the runner says when a video's last record has arrived. Samples go to the shards of their
split (by source video, so no source leaks across splits) and, if asked, of their
bucket (resolution / aspect / duration); within that, a video's clips spread over
``open_shards`` shards. A video is committed to the journal once its last shard is
published; index.parquet and rejects.parquet are written from the journal at close.

Each commit also carries the counters and timers of the work done since the previous
one (``track_stats``), so the journal knows every run's stats, also of a killed run.
Inputs that are not done but rejected for now (a stopped build did not reach them, or their
manifest row is bad) are journaled as ``pending`` (``mark_pending``): they stay in the rejects
table until a later run processes them.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from vidcurate.operators.base import is_ok
from vidcurate.operators.stats import Stats
from vidcurate.operators.write.destination import Destination
from vidcurate.operators.write.journal import Journal
from vidcurate.operators.write.layout import INDEX_FILE, REJECTS_FILE, SHARDS_DIR, shard_names, shard_path
from vidcurate.operators.write.samples import index_row, reject_row, sample_members
from vidcurate.operators.write.shards import ShardWriter, drop_samples, shard_keys
from vidcurate.schemas.records import INDEX, REJECT, SOURCE, rejected



@dataclass
class SinkOptions:
    shard_prefix: str = "shard"
    shard_max_samples: int = 1000
    shard_max_bytes: int = 1 << 30
    open_shards: int = 4
    splits: dict[str, float] = field(default_factory=lambda: {"train": 1.0})
    bucket_by: tuple[str, ...] = ()
    seed: int = 0
    extra_members: tuple[str, ...] = ()


@dataclass
class _Pending:
    source: dict
    samples: list = field(default_factory=list)
    rejects: list = field(default_factory=list)
    open_shards: set = field(default_factory=set)
    complete: bool = False  # every record of the video has arrived


class DatasetSink:
    # What a record must carry to become a sample (checked against the pipeline at config load).
    # A selected caption is needed too unless the run is split-only (output.require_caption).
    requires = ("clip_id", "start", "end", "mp4")

    def __init__(self, dest: Destination | str, provenance: dict, options: SinkOptions | None = None,
                 config_hash: str | None = None, journal: Journal | None = None,
                 on_commit: Callable[[list[str]], None] | None = None):
        self.dest = dest if isinstance(dest, Destination) else Destination(dest)
        self.provenance = provenance
        self.options = options or SinkOptions()
        self.config_hash = config_hash
        self.journal = journal or Journal(self.dest)
        self.on_commit = on_commit  # called with the uris of each commit, once it is in the journal
        self.repaired = self._repair()
        self.writers: dict[str, ShardWriter] = {}
        self._pending: dict[str, _Pending] = {}
        self._finalized: dict[str, list[str]] = {}
        self._shard_keys: dict[str, list[str]] = {}
        self._run: dict | None = None  # track_stats: {"run", "started_at"}
        self._stats_source: Callable[[], Stats] | None = None
        self._stats_committed = Stats()
        # Every sample key in the dataset -> the uri that wrote it (done videos, then this run):
        # a tar holding one key twice is refused whole by webdataset, so a repeat is a reject.
        self._written: dict[str, str] = {row["key"]: uri for uri, video in self.journal.state.videos.items()
                                         for row in video["samples"]}

    # ---- what is already done ----------------------------------------------------------
    @property
    def done_uris(self) -> set[str]:
        return set(self.journal.state.videos)

    def _repair(self) -> dict:
        """Make the output match the journal: drop partial files and orphan samples."""
        state = self.journal.state
        partials = self.dest.remove_partials(SHARDS_DIR)
        on_disk = shard_names(self.dest)
        # A done video whose shard is gone (deleted by hand) is redone.
        missing = {row["shard"] for v in state.videos.values() for row in v["samples"]} - set(on_disk)
        redo = [uri for uri, v in state.videos.items() if any(r["shard"] in missing for r in v["samples"])]
        if redo:
            self.journal.append({"kind": "retract", "uris": redo})
        done = state.done_keys_by_shard()
        updates: dict[str, list[str]] = {}
        offsets: dict[str, dict[str, int]] = {}
        orphans = 0
        for name in on_disk:
            listed = state.shards.get(name)
            if listed is not None and set(listed) <= done.get(name, set()):
                continue  # every sample in it belongs to a done video
            path = shard_path(name)
            data = self.dest.read_bytes(path)
            keys = shard_keys(data)
            keep = [k for k in keys if k in done.get(name, set())]
            orphans += len(keys) - len(keep)
            if not keep:
                self.dest.remove(path)
            elif len(keep) < len(keys):
                rewritten, offsets[name] = drop_samples(data, set(keep))
                self.dest.write_bytes(path, rewritten)
            updates[name] = keep
        if updates:
            self.journal.append({"kind": "shards", "shards": updates, "mp4_offsets": offsets})
        return {"partial_files": partials, "orphan_samples": orphans, "videos_redone": len(redo)}

    # ---- writing ---------------------------------------------------------------------
    def write(self, records: list[dict], finished: Iterable[str] | None = None) -> None:
        """Write ``records``; ``finished``: the source uris whose every record has now been
        written (default: the videos in ``records``, i.e. records of whole videos). A video
        is committed once it is finished and every shard holding its clips is published.

        A sample whose key (clip id) the dataset already holds is not written: it becomes a
        ``write/duplicate_clip_id`` reject, replaced in ``records`` too so the caller's
        accounting sees it."""
        for position, record in enumerate(records):
            uri = record["uri"]
            pending = self._pending.setdefault(uri, _Pending(source=_source_of(record)))
            if is_ok(record) and record["clip_id"] in self._written:
                record = records[position] = rejected(
                    record, "write", "duplicate_clip_id",
                    f"{uri}: clip {record['clip_id']} is already in the dataset, written from "
                    f"{self._written[record['clip_id']]}; sample keys must be unique (give each file its own video_id)")
            if is_ok(record):
                self._written[record["clip_id"]] = uri
                split = split_of(record["video_id"], self.options.splits, self.options.seed)
                writer = self._writer(split, bucket_of(record, self.options.bucket_by))
                shard = writer.write(record["clip_id"], sample_members(record, {**self.provenance, "split": split},
                                                                      self.options.extra_members))
                shard = shard[len(SHARDS_DIR) + 1:]  # index rows name shards relative to OUT/shards
                self._shard_keys.setdefault(shard, []).append(record["clip_id"])
                pending.samples.append(index_row(record, shard, split, writer.last_members))
                pending.open_shards.add(shard)
            else:
                pending.rejects.append(reject_row(record))
        for uri in ({r["uri"] for r in records} if finished is None else finished):
            if uri in self._pending:  # a video that gave no record at all is caught by the build's accounting
                self._pending[uri].complete = True
        self._commit()

    def _writer(self, split: str, bucket: str) -> ShardWriter:
        subdir = f"{split}/{bucket}" if bucket else split
        if subdir not in self.writers:
            start = _next_shard_number(self.dest, f"{SHARDS_DIR}/{subdir}", self.options.shard_prefix)
            self.writers[subdir] = ShardWriter(
                self.dest, self.options.shard_prefix, self.options.shard_max_samples, self.options.shard_max_bytes,
                start_index=start, open_shards=self.options.open_shards, subdir=f"{SHARDS_DIR}/{subdir}",
                on_finalized=self._on_finalized)
        return self.writers[subdir]

    def _on_finalized(self, name: str) -> None:
        short = name[len(SHARDS_DIR) + 1:]
        self._finalized[short] = self._shard_keys.pop(short, [])
        for pending in self._pending.values():
            pending.open_shards.discard(short)

    def track_stats(self, run: str, started_at: str, source: Callable[[], Stats]) -> None:
        """Journal, with every commit, what ``source()`` (the runner's stats) gained since the last one."""
        self._run, self._stats_source = {"run": run, "started_at": started_at}, source

    def _stats_since_last_commit(self) -> dict | None:
        if self._stats_source is None:
            return None
        now = self._stats_source().copy()
        delta, self._stats_committed = now.since(self._stats_committed), now
        if not delta.counters and not delta.seconds:
            return None
        return {**self._run, **delta.to_dict()}

    def _commit(self, final: bool = False) -> None:
        done = [uri for uri, p in self._pending.items() if p.complete and not p.open_shards]
        if not done and not self._finalized and not final:
            return
        stats = self._stats_since_last_commit()
        if not done and not self._finalized and stats is None:
            return
        videos = [{"uri": uri, "source": self._pending[uri].source, "samples": self._pending[uri].samples,
                   "rejects": self._pending[uri].rejects} for uri in done]
        entry = {"kind": "commit", "config_hash": self.config_hash, "shards": self._finalized, "videos": videos}
        if stats:
            entry["stats"] = stats
        self.journal.append(entry)
        self._finalized = {}
        for uri in done:
            del self._pending[uri]
        if done and self.on_commit is not None:
            self.on_commit(done)

    def mark_pending(self, rejects: list[dict]) -> None:
        """Journal inputs that are rejected but not done (reject records: ``build/build_stopped``,
        ``input/...``): a re-run processes them (retry-failed too, when transient); rejects until then."""
        videos: dict[str, dict] = {}
        for r in rejects:
            if r["uri"] not in self.journal.state.videos:
                videos.setdefault(r["uri"], {"uri": r["uri"], "source": _source_of(r), "rejects": []})["rejects"].append(
                    reject_row(r))
        if videos:
            self.journal.append({"kind": "pending", "videos": list(videos.values())})

    def close(self) -> list[str]:
        """Publish every open shard, commit, and write index.parquet and rejects.parquet."""
        for writer in self.writers.values():
            writer.close()
        self._commit(final=True)
        # A video left unfinished (the build stopped in the middle of it) is not journaled:
        # its samples are orphans a re-run removes, and the re-run redoes it.
        left = [uri for uri, p in self._pending.items() if p.complete]
        if left:  # cannot happen: every shard is published by now
            raise AssertionError(f"internal error: videos left uncommitted: {sorted(left)[:5]}")
        write_table(self.dest, self.index_rows, INDEX, INDEX_FILE)
        write_table(self.dest, self.reject_rows, REJECT, REJECTS_FILE)
        self.journal.compact()
        return sorted({row["shard"] for row in self.index_rows})

    # ---- what the tables hold --------------------------------------------------------
    @property
    def index_rows(self) -> list[dict]:
        rows = [row for v in self.journal.state.videos.values() for row in v["samples"]]
        return sorted(rows, key=lambda r: (r["uri"], r["start"], r["clip_id"]))

    @property
    def reject_rows(self) -> list[dict]:
        state = self.journal.state
        rows = ([row for v in state.videos.values() for row in v["rejects"]]
                + [row for v in state.pending.values() for row in v["rejects"]])
        return sorted(rows, key=lambda r: (r["uri"] or "", r["clip_id"] or "", r["stage"], r["reason"]))


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


def _source_of(record: dict) -> dict:
    return {k: record.get(k) for k in SOURCE.names if record.get(k) is not None}


def _next_shard_number(dest: Destination, folder: str, prefix: str) -> int:
    numbers = [int(n[len(prefix) + 1:-4]) for n in dest.listdir(folder)
               if n.startswith(prefix + "-") and n.endswith(".tar") and n[len(prefix) + 1:-4].isdigit()]
    return max(numbers, default=-1) + 1


def write_table(dest: Destination, rows: list[dict], schema: pa.Schema, name: str) -> None:
    """A table checked against ``schema``, published whole as ``name`` (index, rejects, ...)."""
    table = pa.Table.from_pylist(rows, schema=schema)
    staged = dest.staging_path(name)
    pq.write_table(table, staged)
    dest.publish(staged, name)

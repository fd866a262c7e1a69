"""DatasetSink: the output folder of a build (shards, index, rejects), resumable; the
coordinator's side of writing.

    OUT/shards/<split>[/<bucket>]/<prefix>-<token>-000000.tar   WebDataset samples (mp4, json, txt)
    OUT/index.parquet        one row per clip (schemas.INDEX), with its split and shard
    OUT/rejects.parquet      one row per rejected input or clip (schemas.REJECT)
    OUT/_journal/            what is done (operators/write/journal.py)

Samples are written where the clips are, by a :class:`SampleWriter` (``writer()``; runners
ship it to their workers), which publishes each shard whole and only then reports its
samples' metadata. The sink receives that metadata (``receive``): index rows, reject rows,
shard names and sizes, never mp4 bytes. The runner says when a video's last metadata has
arrived; the video is then committed to the journal, with the shards holding its samples.
index.parquet and rejects.parquet are written from the journal at close.

Exactly once: a shard that no commit references (written by an attempt whose metadata was
dropped because a retry's was taken, or by a build killed before the commit) is removed,
and a shard holding samples of uncommitted videos is rewritten without them: at close and
when a build resumes (``repair``). A sample whose key (clip id) the dataset already holds
becomes a ``write/duplicate_clip_id`` reject, and its copy is removed the same way.

``write(records)`` is in-process writing (the synthetic world, tests): full records through
a long-lived writer held here, then the same path.

Each commit also carries the counters and timers of the work done since the previous
one (``track_stats``), so the journal knows every run's stats, also of a killed run.
Inputs that are not done but rejected for now (a stopped build did not reach them, or their
manifest row is bad) are journaled as ``pending`` (``mark_pending``): they stay in the rejects
table until a later run processes them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from vidcurate.operators.stats import Stats
from vidcurate.operators.write import commit_files
from vidcurate.operators.write.destination import Destination
from vidcurate.operators.write.journal import Journal
from vidcurate.operators.write.layout import (BEAM_COMMITS_DIR, INDEX_FILE, REJECTS_FILE, SHARDS_DIR, shard_names,
                                              shard_path)
from vidcurate.operators.write.partition import bucket_of, split_of  # noqa: F401  (re-exported)
from vidcurate.operators.write.sample_writer import (HELD, REJECT, SHARD_SAMPLES, SOURCE_OF, WRITTEN, SampleWriter,
                                                    SinkOptions)
from vidcurate.operators.write.samples import reject_row
from vidcurate.operators.write.shards import drop_samples, shard_keys
from vidcurate.operators.write.sorted_rows import TableFile
from vidcurate.schemas.records import INDEX, REJECT as REJECT_SCHEMA, SOURCE, rejected

__all__ = ["DatasetSink", "SinkOptions", "split_of", "bucket_of", "read_table", "write_table"]


@dataclass
class _Pending:
    source: dict = field(default_factory=dict)
    samples: list = field(default_factory=list)
    rejects: list = field(default_factory=list)
    keys: set = field(default_factory=set)  # its sample keys so far
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
        self._pending: dict[str, _Pending] = {}
        self._shard_samples: dict[str, int] = {}  # shards named by metadata, not journaled yet -> samples
        self._local: SampleWriter | None = None   # write(): in-process writing
        self._run: dict | None = None  # track_stats: {"run", "started_at"}
        self._stats_source: Callable[[], Stats] | None = None
        self._stats_committed = Stats()
        self.metadata_bytes = 0  # what reached the coordinator (receive), for the scale-out checks
        # A tar holding one key twice is refused whole by webdataset, so a repeated sample key is a
        # reject. Keys are <video_id>_<start>_<end>: two files can only clash when they share a
        # video_id, so the sink keeps the file of each video_id, and the keys only of the shared ones.
        self._owner: dict[str, str] = {video["source"].get("video_id") or uri: uri
                                       for uri, video in self.journal.state.videos.items()}
        self._shared_keys: dict[str, dict[str, str]] = {}  # video_id of several files -> key -> uri
        # Whole videos a dead distributed run published and did not journal: theirs, before the
        # repair would take their shards for orphans.
        recovered = 0
        for uri, metas, _ in commit_files.read(self.dest):
            self.receive(metas, [uri])
            recovered += 1
        self.dest.remove(BEAM_COMMITS_DIR)
        self.repaired = {**self.repair(), "videos_recovered": recovered}

    # ---- what is already done ----------------------------------------------------------
    @property
    def done_uris(self) -> set[str]:
        return set(self.journal.state.videos)

    def repair(self) -> dict:
        """Make the shards match the journal: drop partial files, shards no commit references and
        samples of videos that are not done."""
        state = self.journal.state
        partials = self.dest.remove_partials(SHARDS_DIR)
        on_disk = shard_names(self.dest)
        # A done video whose shard is gone (deleted by hand) is redone.
        missing = {name for video in state.videos.values() for name in video["shards"]} - set(on_disk)
        redo = [uri for uri, video in state.videos.items() if missing.intersection(video["shards"])]
        if redo:
            self.journal.append({"kind": "retract", "uris": redo})
        done = state.done_samples_by_shard()
        # Shards holding samples that are not done: no commit names them, or done videos have fewer
        # samples in them than they hold.
        rewrite = [name for name in on_disk if state.shards.get(name) != done.get(name, 0)]
        keys: dict[str, set[str]] = {name: set() for name in rewrite}
        if any(done.get(name) for name in rewrite):
            for row in self.journal.rows("index", lambda row: row["shard"] in keys):
                keys[row["shard"]].add(row["key"])
        updates: dict[str, int] = {}
        offsets: dict[str, dict[str, int]] = {}
        orphans = 0
        for name in rewrite:
            path = shard_path(name)
            data = self.dest.read_bytes(path)
            held = shard_keys(data)
            keep = [k for k in held if k in keys[name]]
            orphans += len(held) - len(keep)
            if not keep:
                self.dest.remove(path)
            elif len(keep) < len(held):
                rewritten, offsets[name] = drop_samples(data, set(keep))
                self.dest.write_bytes(path, rewritten)
            updates[name] = len(keep)
        if updates:
            self.journal.append({"kind": "shards", "shards": updates, "mp4_offsets": offsets})
        return {"partial_files": partials, "orphan_samples": orphans, "videos_redone": len(redo)}

    # ---- writing ---------------------------------------------------------------------
    def writer(self, flush_each_call: bool = False) -> SampleWriter:
        """The writer of this output's samples, for a runner to run where the clips are."""
        return SampleWriter(self.dest.root, self.provenance, self.options, flush_each_call)

    def write(self, records: list[dict], finished: Iterable[str] | None = None) -> list[dict]:
        """In-process writing of full records; ``finished``: the source uris whose every record
        has now been written (default: the videos in ``records``, i.e. records of whole videos).
        Returns the metadata settled by this call (samples whose shard got published, rejects)."""
        if self._local is None:
            self._local = self.writer()
        for record in records:  # a video whose samples all wait in open shards is still known here
            self._pending.setdefault(record["uri"], _Pending(source=_source_of(record)))
        metas = [meta for batch in self._local.stream([records]) for meta in batch if not meta.get(HELD)]
        self.receive(metas, {r["uri"] for r in records} if finished is None else finished)
        return metas

    def receive(self, metas: list[dict], finished: Iterable[str] = ()) -> None:
        """Take writers' metadata (``operators/write/sample_writer.py``); ``finished``: the source
        uris whose every record's metadata has now arrived. A duplicate sample key is turned
        into a reject, in ``metas`` too, so the caller's accounting sees it."""
        for position, meta in enumerate(metas):
            if meta.get(HELD):  # samples waiting in an open shard: news for the failure budget only
                continue
            uri = meta["uri"]
            self.metadata_bytes += _size_of(meta)
            pending = self._pending.setdefault(uri, _Pending())
            if not pending.source and meta.get(SOURCE_OF):
                pending.source = meta[SOURCE_OF]
            row = meta.get(WRITTEN)
            earlier = self._writer_of(row, uri, pending) if row is not None else None
            if earlier is not None:
                meta = metas[position] = rejected(
                    {k: v for k, v in meta.items() if k != WRITTEN}, "write", "duplicate_clip_id",
                    f"{uri}: clip {row['key']} is already in the dataset, written from {earlier}; "
                    "sample keys must be unique (give each file its own video_id)")
                meta[REJECT] = reject_row(meta)
                row = None  # its copy in the shard is an orphan, removed by repair()
            if row is not None:
                pending.keys.add(row["key"])
                pending.samples.append(row)
                self._shard_samples[row["shard"]] = meta[SHARD_SAMPLES]
            elif meta.get(REJECT):
                pending.rejects.append(meta[REJECT])
        for uri in finished:
            if uri in self._pending:  # a video that gave no record at all is caught by the build's accounting
                self._pending[uri].complete = True
        self._commit()

    def _writer_of(self, row: dict, uri: str, pending: _Pending) -> str | None:
        """The file that already wrote sample key ``row["key"]`` to the dataset (None: nobody);
        remembers this file's key."""
        key, video_id = row["key"], row.get("video_id") or uri
        if key in pending.keys:
            return uri
        owner = self._owner.setdefault(video_id, uri)
        if owner == uri and video_id not in self._shared_keys:
            return None
        shared = self._shared_keys.get(video_id)
        if shared is None:  # a second file with this video_id: from now on its keys are kept
            shared = self._shared_keys[video_id] = {
                r["key"]: r["uri"] for r in self.journal.rows("index", lambda r: r.get("video_id") == video_id)}
            for other, held in self._pending.items():
                shared.update({r["key"]: other for r in held.samples if r.get("video_id") == video_id})
        if key in shared:
            return shared[key]
        shared[key] = uri
        return None

    def track_stats(self, run: str, started_at: str, source: Callable[[], Stats]) -> None:
        """Journal, with every commit, what ``source()`` (the runner's stats) gained since the last one."""
        self._run, self._stats_source = {"run": run, "started_at": started_at}, source

    def _stats_since_last_commit(self) -> dict | None:
        if self._stats_source is None:
            return None
        now = self._stats_source().copy()
        now.incr("coordinator.metadata_bytes", self.metadata_bytes)  # what reached this process, cumulative
        delta, self._stats_committed = now.since(self._stats_committed), now
        if not delta.counters and not delta.seconds:
            return None
        return {**self._run, **delta.to_dict()}

    def _commit(self, final: bool = False) -> None:
        done = [uri for uri, p in self._pending.items()
                if p.complete and not (self._local is not None and self._local.holds(uri))]
        if not done and not final:
            return
        stats = self._stats_since_last_commit()
        if not done and stats is None:
            return
        videos = [{"uri": uri, "source": self._pending[uri].source or {"uri": uri},
                   "samples": self._pending[uri].samples, "rejects": self._pending[uri].rejects} for uri in done]
        known = self.journal.state.shards
        shards = {row["shard"]: self._shard_samples[row["shard"]] for video in videos for row in video["samples"]
                  if row["shard"] not in known}
        entry = {"kind": "commit", "config_hash": self.config_hash, "shards": shards, "videos": videos}
        if stats:
            entry["stats"] = stats
        self.journal.append(entry)
        for name in shards:
            self._shard_samples.pop(name, None)
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
        """Publish what the in-process writer holds, commit, remove what no commit references,
        and write index.parquet and rejects.parquet."""
        if self._local is not None:
            self.receive(self._local.flush())
            self._local.close()
        self._commit(final=True)
        # A video left unfinished (the build stopped in the middle of it) is not journaled:
        # its samples are orphans, removed now, and a re-run redoes it.
        left = [uri for uri, p in self._pending.items() if p.complete]
        if left:  # cannot happen: every shard is published by now
            raise AssertionError(f"internal error: videos left uncommitted: {sorted(left)[:5]}")
        self.repair()
        tables = {"index": TableFile(self.dest, INDEX_FILE, INDEX),
                  "rejects": TableFile(self.dest, REJECTS_FILE, REJECT_SCHEMA)}
        self.journal.compact({name: table.write for name, table in tables.items()})
        for table in tables.values():
            table.close()
        return sorted({name for video in self.journal.state.videos.values() for name in video["shards"]})

    # ---- what the tables hold (read back from OUT: every row in memory, for small builds) --------
    @property
    def index_rows(self) -> list[dict]:
        return read_table(self.dest, INDEX_FILE).to_pylist()

    @property
    def reject_rows(self) -> list[dict]:
        return read_table(self.dest, REJECTS_FILE).to_pylist()


def read_table(dest: Destination, name: str, columns: list[str] | None = None) -> pa.Table:
    """A published table of OUT (index.parquet, rejects.parquet), or ``columns`` of it."""
    with dest.open(name) as handle:
        return pq.read_table(handle, columns=columns, use_threads=False)


def _source_of(record: dict) -> dict:
    return {k: record.get(k) for k in SOURCE.names if record.get(k) is not None}


def _size_of(meta: dict) -> int:
    """About how many bytes a metadata record is (its JSON length): what the coordinator receives."""
    import json

    return len(json.dumps(meta, default=str))


def write_table(dest: Destination, rows: list[dict], schema: pa.Schema, name: str) -> None:
    """A table checked against ``schema``, published whole as ``name`` (index, rejects, ...)."""
    table = pa.Table.from_pylist(rows, schema=schema)
    staged = dest.staging_path(name)
    pq.write_table(table, staged)
    dest.publish(staged, name)

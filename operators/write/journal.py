"""The build journal: what is done, so a re-run never redoes or duplicates work.

``OUT/_journal/entry-NNNNNNNN.json`` files, each published whole, replayed in order:

  begin    the first entry of a build, written before anything else in OUT: the folder
           is this build's from its first write, so a build interrupted at any moment
           (even before its first commit) is resumed by the same command.
  commit   shards first referenced by this commit (name -> how many samples it was
           published with) and the source videos now done: their source record, index rows and reject rows;
           and the counters and timers of the work since the run's previous entry
           (``stats``, keyed by run), so stats.json describes every run, killed ones too.
           A video is done when the metadata of all its records has arrived; a writer
           reports a sample only once its shard is published.
  pending  inputs that are not done, with the reject rows that say why: inputs a
           stopped build did not reach (a transient ``build/build_stopped`` row) and
           inputs refused on reading (a bad manifest row: the next run reads the manifest
           again, so a fixed row is processed). A re-run or ``retry-failed`` processes
           them; they stay in the rejects table until a run commits them.
  retract  videos to redo (``vidcurate retry-failed``, a lost shard): they are no longer
           done, and wait as pending, with their earlier reject rows (or a
           ``build/redo_pending`` row), until a run commits them again. So no reject
           ever leaves the table without a replacement.
  shards   shard contents rewritten by a repair (orphan samples removed; 0 = deleted):
           name -> samples left, with the new byte offsets of the samples that moved.
  snapshot the whole state (``compact``: a build's close replaces all earlier entries by
           one, so a resume reads one file however many commits the build made). Its index
           and reject rows are parquet tables beside it (``snapshot-N.index.parquet``,
           ``snapshot-N.rejects.parquet``), written before it and read batch by batch.

Memory is flat in the number of clips: the state keeps, per done video, its source record,
which shards hold how many of its samples and how many rejects it has; the rows stay on disk
(in the commit entries and the snapshot tables) and are read back in a stream (``rows``), for
the repair, a retraction, and the sorted tables a close publishes (``compact``). A row is live
when its video's newest commit wrote it (its entry number is the video's ``entry``).

A shard may hold samples of a video that is not done (the run died before the video's
commit, or the video was retracted, or a retried attempt's copy was not taken): those
are orphans. The sink's repair (at close and when a build resumes) removes them, and
shards no commit references, so the finished dataset holds each clip exactly once.
"""
from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vidcurate.operators.write.destination import Destination
from vidcurate.operators.write.layout import JOURNAL_DIR
from vidcurate.operators.write.sorted_rows import TableFile, sorted_tables
from vidcurate.schemas.records import INDEX, REJECT

# The journal's two row tables: schema and sort order (the order of index.parquet and rejects.parquet).
TABLES = {"index": (INDEX, [("uri", "ascending"), ("start", "ascending"), ("clip_id", "ascending")]),
          "rejects": (REJECT, [("uri", "ascending"), ("clip_id", "ascending"), ("stage", "ascending"),
                               ("reason", "ascending")])}
ROWS_OF = {"index": "samples", "rejects": "rejects"}  # where a commit's video keeps each table's rows
ENTRY_COLUMN = "journal_entry"  # in a snapshot table: the entry that committed the row
SNAPSHOT_ROW_GROUP = 16_384  # rows: a snapshot is read back a row group at a time


@dataclass
class JournalState:
    # uri -> {entry, source, shards: {name: samples}, samples, rejects, transient}: a done video
    videos: dict[str, dict] = field(default_factory=dict)
    shards: dict[str, int] = field(default_factory=dict)  # shard name -> samples it holds
    pending: dict[str, dict] = field(default_factory=dict)  # uri -> {uri, source, rejects}: not done, to redo
    runs: dict[str, dict] = field(default_factory=dict)  # run id -> {started_at, counters, seconds}
    moved: dict[str, dict[str, int]] = field(default_factory=dict)  # shard -> key -> new mp4 offset (a repair)
    config_hash: str | None = None
    entries: int = 0
    snapshot: int = 0  # the newest snapshot's entry number: the rows live in it and the entries after it

    def done_samples_by_shard(self) -> Counter:
        held: Counter = Counter()
        for video in self.videos.values():
            held.update(video["shards"])
        return held


class Journal:
    def __init__(self, dest: Destination):
        self.dest = dest
        self.state = self._replay()

    def _entry_names(self) -> list[str]:
        return [name for name in self.dest.listdir(JOURNAL_DIR)  # sorted: the order they were written
                if name.startswith("entry-") and name.endswith(".json")]

    def _read(self, name: str) -> dict:
        try:
            return json.loads(self.dest.read_bytes(f"{JOURNAL_DIR}/{name}"))
        except (ValueError, OSError) as exc:
            raise ValueError(f"{self.dest.path(JOURNAL_DIR + '/' + name)}: unreadable journal entry ({exc}); "
                             "rebuild with --overwrite") from None

    def _replay(self) -> JournalState:
        state = JournalState()
        for name in self._entry_names():
            number = _number(name)
            apply(state, self._read(name), number)
            state.entries = max(state.entries, number)
        return state

    def append(self, entry: dict) -> None:
        if entry.get("kind") == "retract" and "rejects" not in entry:  # they wait as pending with their rejects
            uris = set(entry["uris"])
            entry = {**entry, "rejects": {uri: [] for uri in uris}}
            for row in self.rows("rejects", lambda row: row["uri"] in uris):
                entry["rejects"][row["uri"]].append(row)
        number = self.state.entries + 1
        self.dest.makedirs(JOURNAL_DIR)
        data = json.dumps(entry, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8")
        self.dest.write_bytes(f"{JOURNAL_DIR}/entry-{number:08d}.json", data)
        apply(self.state, entry, number)
        self.state.entries = number

    # ---- the rows, read back -----------------------------------------------------------
    def _live_entries(self) -> list[str]:
        """The newest snapshot and the entries after it (older ones are superseded)."""
        return [name for name in self._entry_names() if _number(name) >= self.state.snapshot]

    def tables(self, table: str) -> Iterator[pa.Table]:
        """The live rows of ``table`` ("index" or "rejects") of done videos as arrow tables (with
        ``ENTRY_COLUMN``), a snapshot row group or a commit entry at a time, with the byte offsets
        a repair moved. Liveness is checked in arrow: no row becomes a Python object."""
        schema = _with_entry(TABLES[table][0])
        live_uris = pa.array(list(self.state.videos), pa.string())
        live_entries = pa.array([video["entry"] for video in self.state.videos.values()], pa.int64())

        def live(part: pa.Table) -> pa.Table:
            entry_of_row = pc.take(live_entries, pc.index_in(part["uri"], value_set=live_uris))
            part = part.filter(pc.fill_null(pc.equal(entry_of_row, part[ENTRY_COLUMN]), False))
            return _moved(part, self.state.moved) if table == "index" and self.state.moved else part

        for name in self._live_entries():
            entry = self._read(name)
            if entry.get("kind") == "snapshot" and "tables" in entry:
                with self.dest.open(f"{JOURNAL_DIR}/{entry['tables'][table]}") as handle:
                    for batch in pq.ParquetFile(handle).iter_batches(batch_size=SNAPSHOT_ROW_GROUP,
                                                                     use_threads=False):
                        yield live(pa.Table.from_batches([batch]).cast(schema))
            elif entry.get("kind") in ("commit", "snapshot"):  # a snapshot before 0.4 held its rows inline
                number = _number(name)
                rows = [{**row, ENTRY_COLUMN: number} for video in entry.get("videos") or []
                        for row in video.get(ROWS_OF[table]) or []]
                del entry
                if rows:
                    yield live(pa.Table.from_pylist(rows, schema=schema))

    def rows(self, table: str, where: Callable[[dict], bool] | None = None) -> Iterator[dict]:
        """The live rows of ``table`` as dicts (those ``where`` holds for, if given)."""
        for part in self.tables(table):
            for row in part.to_pylist():
                del row[ENTRY_COLUMN]
                if where is None or where(row):
                    yield row

    def rows_per_video(self, table: str) -> dict[str, int]:
        """uri -> how many rows of ``table`` it has (the pending inputs' rejects included)."""
        counts = {uri: video[ROWS_OF[table]] for uri, video in self.state.videos.items()}
        if table == "rejects":
            for uri, video in self.state.pending.items():
                counts[uri] = counts.get(uri, 0) + len(video["rejects"])
        return counts

    # ---- compaction --------------------------------------------------------------------
    def compact(self, publish: dict[str, Callable[[pa.Table], None]] | None = None) -> None:
        """Replace every entry by one snapshot of the state, and hand each table, sorted, to
        ``publish[table]`` (the rejects with the pending inputs' rows). The snapshot's tables and
        then the snapshot are published whole before the old entries go, and replaying it resets
        the state, so a crash in between (old entries left, before or after it) replays to the
        same state."""
        names = self._entry_names()
        publish = publish or {}
        snapshot = len(names) > 1 or bool(names) and _number(names[-1]) != self.state.snapshot
        if not snapshot and not publish:
            return
        if pa.default_memory_pool().backend_name == "jemalloc":  # the vidcurate command's pool
            pa.jemalloc_set_decay_ms(0)  # give freed batches back at once: the close's peak is what it holds
        number = self.state.entries + 1
        tables = {table: f"snapshot-{number:08d}.{table}.parquet" for table in TABLES}
        for table, (schema, order) in TABLES.items():
            schema = _with_entry(schema)
            out = TableFile(self.dest, f"{JOURNAL_DIR}/{tables[table]}", schema, SNAPSHOT_ROW_GROUP) if snapshot \
                else None
            parts = self.tables(table)
            if table == "rejects" and self.state.pending:  # the pending inputs' rejects: in no snapshot table
                pending = [row for video in self.state.pending.values() for row in video["rejects"]]
                parts = itertools.chain(parts, [pa.Table.from_pylist(pending, schema=schema)])
            for part in sorted_tables(parts, order, self.rows_per_video(table)):
                if table in publish:
                    publish[table](part.drop_columns([ENTRY_COLUMN]))
                if out is not None:  # the pending inputs' rejects stay in the snapshot's json
                    out.write(part.filter(pc.is_valid(part[ENTRY_COLUMN])))
            if out is not None:
                out.close()
        if not snapshot:
            return
        self.append({"kind": "snapshot", "config_hash": self.state.config_hash, "shards": self.state.shards,
                     "videos": [{"uri": uri, **video} for uri, video in self.state.videos.items()],
                     "pending": list(self.state.pending.values()), "runs": self.state.runs, "tables": tables})
        keep = {f"entry-{number:08d}.json", *tables.values()}
        for name in self.dest.listdir(JOURNAL_DIR):
            if name not in keep and (name.startswith("entry-") or name.startswith("snapshot-")):
                self.dest.remove(f"{JOURNAL_DIR}/{name}")

def apply(state: JournalState, entry: dict, number: int) -> None:
    kind = entry.get("kind")
    if kind == "begin":
        state.config_hash = entry.get("config_hash") or state.config_hash
    elif kind == "commit":
        state.shards.update(_counts(entry.get("shards")))
        for video in entry.get("videos") or []:
            state.videos[video["uri"]] = _summary(video, number)
            state.pending.pop(video["uri"], None)
        _add_run_stats(state, entry.get("stats"))
        state.config_hash = entry.get("config_hash") or state.config_hash
    elif kind == "pending":
        for video in entry["videos"]:
            if video["uri"] not in state.videos:
                state.pending[video["uri"]] = video
    elif kind == "snapshot":
        inline = "tables" not in entry  # before 0.4 a snapshot held every row
        state.videos = {video["uri"]: _summary(video, number) if inline else
                        {k: v for k, v in video.items() if k != "uri"} for video in entry["videos"]}
        state.shards = _counts(entry["shards"])
        state.pending = {video["uri"]: video for video in entry.get("pending") or []}
        state.runs = dict(entry.get("runs") or {})
        state.moved = {}
        state.snapshot = number
        state.config_hash = entry.get("config_hash")
    elif kind == "retract":
        rejects = entry.get("rejects") or {}
        for uri in entry["uris"]:
            video = state.videos.pop(uri, None)
            if video is not None:
                state.pending[uri] = {"uri": uri, "source": video["source"],
                                      "rejects": rejects.get(uri) or [_redo_pending(video["source"])]}
    elif kind == "shards":
        for name, samples in _counts(entry["shards"]).items():
            if samples:
                state.shards[name] = samples
            else:
                state.shards.pop(name, None)
                state.moved.pop(name, None)
        for name, offsets in (entry.get("mp4_offsets") or {}).items():  # samples that moved in a rewritten shard
            state.moved.setdefault(name, {}).update(offsets)
    else:
        raise ValueError(f"unknown journal entry kind {kind!r}")


def _summary(video: dict, number: int) -> dict:
    """What the state keeps of a committed video (its rows stay in the entry)."""
    return {"entry": number, "source": video["source"],
            "shards": dict(Counter(row["shard"] for row in video["samples"])),
            "samples": len(video["samples"]), "rejects": len(video["rejects"]),
            "transient": any(row.get("transient") for row in video["rejects"])}


def _with_entry(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field(ENTRY_COLUMN, pa.int64()))


def _moved(part: pa.Table, moved: dict[str, dict[str, int]]) -> pa.Table:
    """``part`` with the new mp4 offsets of samples a repair moved inside a rewritten shard."""
    offsets = [moved.get(shard, {}).get(key) for shard, key in zip(part["shard"].to_pylist(),
                                                                    part["key"].to_pylist())]
    if not any(offset is not None for offset in offsets):
        return part
    new = pc.coalesce(pa.array(offsets, pa.int64()), part["mp4_offset"])
    return part.set_column(part.schema.get_field_index("mp4_offset"), "mp4_offset", new)


def _number(name: str) -> int:
    return int(name[len("entry-"):-len(".json")])


def _counts(shards: dict | None) -> dict[str, int]:
    """name -> samples (journals before 0.3 listed every sample key)."""
    return {name: len(v) if isinstance(v, list) else int(v) for name, v in (shards or {}).items()}


def _add_run_stats(state: JournalState, stats: dict | None) -> None:
    """Merge one entry's stats ({"run", "started_at", "counters", "seconds"}) into its run's."""
    if not stats:
        return
    run = state.runs.setdefault(stats["run"], {"started_at": stats.get("started_at"), "counters": {},
                                               "seconds": {}})
    for key, value in (stats.get("counters") or {}).items():
        run["counters"][key] = run["counters"].get(key, 0) + value
    for key, value in (stats.get("seconds") or {}).items():
        run["seconds"][key] = round(run["seconds"].get(key, 0.0) + value, 4)


def _redo_pending(source: dict) -> dict:
    return {"uri": source["uri"], "video_id": source.get("video_id"), "clip_id": None, "stage": "build",
            "reason": "redo_pending", "transient": True,
            "detail": f"{source['uri']}: to be redone (retracted); the next run of the build processes it"}

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
           one, so a resume reads one file however many commits the build made).

A shard may hold samples of a video that is not done (the run died before the video's
commit, or the video was retracted, or a retried attempt's copy was not taken): those
are orphans. The sink's repair (at close and when a build resumes) removes them, and
shards no commit references, so the finished dataset holds each clip exactly once.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from vidcurate.operators.write.destination import Destination
from vidcurate.operators.write.layout import JOURNAL_DIR


@dataclass
class JournalState:
    videos: dict[str, dict] = field(default_factory=dict)  # uri -> {source, samples, rejects}
    shards: dict[str, int] = field(default_factory=dict)  # shard name -> samples it holds
    pending: dict[str, dict] = field(default_factory=dict)  # uri -> {uri, source, rejects}: not done, to redo
    runs: dict[str, dict] = field(default_factory=dict)  # run id -> {started_at, counters, seconds}
    config_hash: str | None = None
    entries: int = 0

    def done_keys_by_shard(self) -> dict[str, set[str]]:
        keys: dict[str, set[str]] = {}
        for video in self.videos.values():
            for row in video["samples"]:
                keys.setdefault(row["shard"], set()).add(row["key"])
        return keys


class Journal:
    def __init__(self, dest: Destination):
        self.dest = dest
        self.state = self._replay()

    def _entry_names(self) -> list[str]:
        return [name for name in self.dest.listdir(JOURNAL_DIR)  # sorted: the order they were written
                if name.startswith("entry-") and name.endswith(".json")]

    def _replay(self) -> JournalState:
        state = JournalState()
        for name in self._entry_names():
            try:
                entry = json.loads(self.dest.read_bytes(f"{JOURNAL_DIR}/{name}"))
            except (ValueError, OSError) as exc:
                raise ValueError(f"{self.dest.path(JOURNAL_DIR + '/' + name)}: unreadable journal entry ({exc}); "
                                 "rebuild with --overwrite") from None
            apply(state, entry)
            state.entries = max(state.entries, int(name[len("entry-"):-len(".json")]))
        return state

    def append(self, entry: dict) -> None:
        apply(self.state, entry)
        self.state.entries += 1
        self.dest.makedirs(JOURNAL_DIR)
        data = json.dumps(entry, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8")
        self.dest.write_bytes(f"{JOURNAL_DIR}/entry-{self.state.entries:08d}.json", data)

    def compact(self) -> None:
        """Replace every entry by one snapshot of the state. The snapshot is published whole
        before the old entries go, and replaying it resets the state, so a crash in between
        (old entries left, before or after it) replays to the same state."""
        names = self._entry_names()
        if len(names) <= 1:
            return
        self.append({"kind": "snapshot", "config_hash": self.state.config_hash, "shards": self.state.shards,
                     "videos": list(self.state.videos.values()), "pending": list(self.state.pending.values()),
                     "runs": self.state.runs})
        for name in names:
            self.dest.remove(f"{JOURNAL_DIR}/{name}")


def apply(state: JournalState, entry: dict) -> None:
    kind = entry.get("kind")
    if kind == "begin":
        state.config_hash = entry.get("config_hash") or state.config_hash
    elif kind == "commit":
        state.shards.update(_counts(entry.get("shards")))
        for video in entry.get("videos") or []:
            state.videos[video["uri"]] = video
            state.pending.pop(video["uri"], None)
        _add_run_stats(state, entry.get("stats"))
        state.config_hash = entry.get("config_hash") or state.config_hash
    elif kind == "pending":
        for video in entry["videos"]:
            if video["uri"] not in state.videos:
                state.pending[video["uri"]] = video
    elif kind == "snapshot":
        state.videos = {video["uri"]: video for video in entry["videos"]}
        state.shards = _counts(entry["shards"])
        state.pending = {video["uri"]: video for video in entry.get("pending") or []}
        state.runs = dict(entry.get("runs") or {})
        state.config_hash = entry.get("config_hash")
    elif kind == "retract":
        for uri in entry["uris"]:
            video = state.videos.pop(uri, None)
            if video is not None:
                state.pending[uri] = {"uri": uri, "source": video["source"],
                                      "rejects": video["rejects"] or [_redo_pending(video["source"])]}
    elif kind == "shards":
        for name, samples in _counts(entry["shards"]).items():
            if samples:
                state.shards[name] = samples
            else:
                state.shards.pop(name, None)
        moved = entry.get("mp4_offsets") or {}  # samples that moved inside a rewritten shard
        if moved:
            for video in state.videos.values():
                for row in video["samples"]:
                    if row["key"] in moved.get(row["shard"], {}):
                        row["mp4_offset"] = moved[row["shard"]][row["key"]]
    else:
        raise ValueError(f"unknown journal entry kind {kind!r}")


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

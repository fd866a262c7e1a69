"""The build journal: what is done, so a re-run never redoes or duplicates work.

``OUT/_journal/entry-NNNNNNNN.json`` files, each published whole, replayed in order:

  commit   shards finalized since the last entry (name -> every sample key in it) and
           the source videos now done: their source record, index rows and reject rows.
           A video is done when all its records have arrived and every shard holding
           one of its samples is finalized.
  retract  videos to redo (``vidcurate retry-failed``): they are no longer done.
  shards   shard contents rewritten by a resume (orphan samples removed; [] = deleted),
           with the new byte offsets of the samples that moved.
  snapshot the whole state (``compact``: a build's close replaces all earlier entries by
           one, so a resume reads one file however many commits the build made).

A shard may hold samples of a video that is not done (the run died before the video's
last shard was finalized, or the video was retracted): those are orphans. A resume
removes them from the shards before it starts, so the finished dataset holds each clip
exactly once.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from vidcurate.operators.write.destination import Destination

JOURNAL_DIR = "_journal"


@dataclass
class JournalState:
    videos: dict[str, dict] = field(default_factory=dict)  # uri -> {source, samples, rejects}
    shards: dict[str, list[str]] = field(default_factory=dict)  # shard name -> sample keys
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
                     "videos": list(self.state.videos.values())})
        for name in names:
            self.dest.remove(f"{JOURNAL_DIR}/{name}")


def apply(state: JournalState, entry: dict) -> None:
    kind = entry.get("kind")
    if kind == "commit":
        state.shards.update(entry.get("shards") or {})
        for video in entry.get("videos") or []:
            state.videos[video["uri"]] = video
        state.config_hash = entry.get("config_hash") or state.config_hash
    elif kind == "snapshot":
        state.videos = {video["uri"]: video for video in entry["videos"]}
        state.shards = dict(entry["shards"])
        state.config_hash = entry.get("config_hash")
    elif kind == "retract":
        for uri in entry["uris"]:
            state.videos.pop(uri, None)
    elif kind == "shards":
        for name, keys in entry["shards"].items():
            if keys:
                state.shards[name] = keys
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

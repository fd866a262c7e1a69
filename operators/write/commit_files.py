"""Commit files: the metadata of whole videos, published by workers for the coordinator.

    OUT/_journal/beam/<run>/commit-<uuid>.jsonl    one JSON line per video: {"uri", "metas"}

The Beam runner's commit step writes one per bundle (after a GroupByKey on the video's uri,
so a line holds all of its video's metadata). A file is published whole, after the shards it
names, so every file found is a set of finished videos: the build's process journals the
files of its run as they appear, and the sink journals those a dead run left behind when
the next build opens OUT, before its repair would take their shards for orphans.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

from vidcurate.operators.write.destination import Destination
from vidcurate.operators.write.layout import BEAM_COMMITS_DIR

SUFFIX = ".jsonl"


def encode_video(uri: str, metas: list[dict]) -> str:
    return json.dumps({"uri": uri, "metas": metas}, ensure_ascii=False, default=str)


def publish(dest: Destination, folder: str, lines: list[str]) -> None:
    """Publish one commit file of encoded videos in ``folder`` (under OUT)."""
    dest.write_bytes(f"{folder}/commit-{uuid.uuid4().hex}{SUFFIX}", ("\n".join(lines) + "\n").encode("utf-8"))


def read(dest: Destination, folder: str = BEAM_COMMITS_DIR, seen: set[str] | None = None
         ) -> Iterator[tuple[str, list[dict], int]]:
    """(uri, metadata, bytes read) of every video in the commit files under ``folder`` (its run
    folders too), a file at a time; files in ``seen`` are skipped, and the ones read added to it."""
    seen = set() if seen is None else seen
    for name in dest.listdir(folder):
        path = f"{folder}/{name}"
        if not name.endswith(SUFFIX):  # a run's folder (a file being published ends in .tmp)
            if "." not in name:
                yield from read(dest, path, seen)
            continue
        if path in seen:
            continue
        seen.add(path)
        for line in dest.read_bytes(path).decode("utf-8").splitlines():
            video = json.loads(line)
            yield video["uri"], video["metas"], len(line)

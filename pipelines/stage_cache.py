"""Reuse of earlier stages: run the decoding prefix of a pipeline once per source video.

``run.cache_after: extract_clips`` (the default) keeps, per source video, the records the
pipeline has after that step (clips with their mp4 bytes, keyframes and 16 kHz audio, or
the video's rejects) in ``OUT/_cache/<prefix hash>/<video_id>.pkl``. The prefix hash
covers the resolved configuration of the steps up to and including that one, and the
vidcurate version. A later build whose pipeline starts with the same steps (a new
teacher, another selector, after ``--overwrite``, which keeps ``_cache/``) loads those
records instead of probing, splitting and cutting the video again; its models are not
even loaded when every video is cached. Videos with a transient reject are not cached,
so a retry really retries.

The cache costs about the size of the clips; set ``run.cache_after: null`` to disable it.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from collections import defaultdict

from vidcurate.operators.base import Operator, Resources, is_ok
from vidcurate.operators.stats import Stats
from vidcurate.operators.write.destination import Destination

CACHE_DIR = "_cache"
NAME = "stage_cache"


class CachedStages:
    """Duck-types the operator interface runners use, around a list of operators."""

    name = NAME

    def __init__(self, operators: list[Operator], dest: Destination, prefix_digest: str, progress=None):
        self.operators = operators
        self.dest = dest
        self.folder = f"{CACHE_DIR}/{prefix_digest}"
        self.progress = progress
        self._own = Stats()
        self._ready = False

    # ---- the operator interface ---------------------------------------------------------
    def declared_resources(self) -> Resources:
        return Resources(cpus=1, batch_size=1 << 30)  # a whole chunk at once: sources are few

    def ensure_setup(self) -> None:  # children are set up on the first cache miss only
        pass

    def close(self) -> None:
        if self._ready:
            for op in self.operators:
                op.close()
            self._ready = False

    @property
    def stats(self) -> Stats:
        merged = Stats()
        merged.merge(self._own)
        for op in self.operators:
            merged.merge(op.stats)
        return merged

    def __call__(self, sources: list[dict]) -> list[dict]:
        from vidcurate.pipelines.runners.local import run_operator

        out: list[dict] = []
        misses: list[dict] = []
        for source in sources:
            if not is_ok(source):
                out.append(source)
                continue
            cached = self._load(source)
            if cached is None:
                misses.append(source)
            else:
                out.extend(cached)
        self._own.incr(f"{NAME}.hits", len(sources) - len(misses))
        self._own.incr(f"{NAME}.misses", len(misses))
        if misses:
            if not self._ready:
                for op in self.operators:
                    op.ensure_setup()
                self._ready = True
            records = misses
            for op in self.operators:
                records = run_operator(op, records, self.progress)
            by_uri: dict[str, list[dict]] = defaultdict(list)
            for record in records:
                by_uri[record["uri"]].append(record)
            for source in misses:
                self._save(source, by_uri.get(source["uri"], []))
            out.extend(records)
        return out

    # ---- storage -----------------------------------------------------------------------
    def _key(self, source: dict) -> str:
        return f"{self.folder}/{source['video_id']}.pkl"

    def _load(self, source: dict) -> list[dict] | None:
        key = self._key(source)
        if not self.dest.exists(key):
            return None
        try:
            uri, records = pickle.loads(self.dest.read_bytes(key))
        except Exception:  # a damaged entry is recomputed, never trusted
            self._own.incr(f"{NAME}.unreadable")
            return None
        if uri != source["uri"]:
            return None
        # The manifest's metadata may have changed (titles fixed): take it from the source.
        return [{**record, **source} if is_ok(record) else record for record in records]

    def _save(self, source: dict, records: list[dict]) -> None:
        if any(not is_ok(r) and r.get("error_transient") for r in records):
            return
        self.dest.makedirs(self.folder)
        self.dest.write_bytes(self._key(source), pickle.dumps((source["uri"], records), protocol=5))


def prefix_digest(resolved_pipeline: list[dict], version: str) -> str:
    data = json.dumps({"pipeline": resolved_pipeline, "vidcurate": version}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def split_at(operators: list[Operator], cache_after: str | None) -> int:
    """How many leading operators the cache covers (0: no cache)."""
    if not cache_after:
        return 0
    names = [op.name for op in operators]
    return len(names) - names[::-1].index(cache_after) if cache_after in names else 0

"""The annotation store: one SQLite file (WAL) beside the labels file, the durable record of every label.

    LABELS.sqlite   meta, clips / clip_text / members / walked (the catalog, catalog.py),
                    assignments (who was shown which clip, in which candidate order, and what
                    became of it), coverage (per clip and mode: how many annotators hold or
                    finished it) and judgments (one row per submission)

A submission is committed (``synchronous=FULL``) before the page hears "stored", so a crash or
restart of the server loses no submitted label. The labels parquet (schemas/labels.py) is
derived from the judgments: :meth:`Store.export` rewrites it whole and atomically. A store
created beside an existing labels file imports that file's judgments first, so the rewrite
keeps them. One connection serves every thread, behind one lock: the page's writes are tiny.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone

from vidcurate.schemas.labels import read_labels, write_labels

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS clips(clip_id TEXT PRIMARY KEY, shard TEXT NOT NULL, key TEXT NOT NULL,
    mp4_offset INTEGER, mp4_bytes INTEGER, score REAL, duration REAL, num_frames INTEGER, rank INTEGER NOT NULL,
    covered INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS clip_text(clip_id TEXT PRIMARY KEY, candidates TEXT NOT NULL, caption TEXT,
    disagreement REAL);
CREATE INDEX IF NOT EXISTS clip_text_disagreement ON clip_text(disagreement);
CREATE TABLE IF NOT EXISTS members(shard TEXT, key TEXT, ext TEXT, offset INTEGER, size INTEGER,
    PRIMARY KEY(shard, key, ext));
CREATE TABLE IF NOT EXISTS walked(shard TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS assignments(id INTEGER PRIMARY KEY, clip_id TEXT NOT NULL, annotator TEXT NOT NULL,
    mode TEXT NOT NULL, shown TEXT NOT NULL, stratum INTEGER, served_at REAL NOT NULL, state TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS assignments_who ON assignments(annotator, mode, state);
CREATE INDEX IF NOT EXISTS assignments_clip ON assignments(clip_id, mode);
CREATE INDEX IF NOT EXISTS assignments_open ON assignments(state, served_at);
CREATE TABLE IF NOT EXISTS coverage(clip_id TEXT NOT NULL, mode TEXT NOT NULL, active INTEGER NOT NULL,
    PRIMARY KEY(clip_id, mode));
CREATE INDEX IF NOT EXISTS coverage_open ON coverage(mode, active);
CREATE TABLE IF NOT EXISTS judgments(id INTEGER PRIMARY KEY, assignment_id INTEGER, clip_id TEXT NOT NULL,
    annotator TEXT NOT NULL, mode TEXT NOT NULL, candidates TEXT NOT NULL, choice INTEGER NOT NULL,
    acceptable TEXT, corrected TEXT, seconds REAL, created_at TEXT NOT NULL, submission_id TEXT UNIQUE);
CREATE INDEX IF NOT EXISTS judgments_who ON judgments(annotator, id);
"""
MODES = ("best", "correct", "acceptable")
# clips.covered: one bit per mode, set while any annotator holds or has judged the clip in that mode.
# Partial indexes over the clips whose bit is clear (catalog.py) make "the next fresh clip" one index
# step however many clips are done.
MODE_BITS = {"best": 1, "correct": 2, "acceptable": 4}


def store_path(labels_path: str) -> str:
    """The store beside ``labels_path``: ``labels.parquet`` -> ``labels.sqlite``."""
    return os.path.splitext(labels_path)[0] + ".sqlite"


def mode_of(row: dict) -> str:
    """The page mode a labels row came from: corrected -> correct, acceptable -> acceptable, else best."""
    if row.get("corrected") is not None:
        return "correct"
    return "acceptable" if row.get("acceptable") is not None else "best"


class Store:
    """The SQLite store of one labels file; thread-safe (one lock)."""

    def __init__(self, labels_path: str):
        self.labels_path = os.path.abspath(labels_path)
        self.path = store_path(self.labels_path)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fresh = not os.path.exists(self.path)
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.lock = threading.RLock()
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        if fresh and os.path.exists(self.labels_path):
            self._import_labels(read_labels(self.labels_path))

    def close(self) -> None:
        with self.lock:
            self.db.close()

    @contextmanager
    def transaction(self):
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on error), under the lock."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # -- judgments -----------------------------------------------------------------------
    def _import_labels(self, rows: list[dict]) -> None:
        with self.transaction():
            for row in rows:
                mode = mode_of(row)
                self.db.execute(
                    "INSERT INTO judgments(clip_id, annotator, mode, candidates, choice, acceptable, corrected, "
                    "seconds, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (row["clip_id"], row["annotator"], mode, json.dumps(row["candidates"]), row["choice"],
                     None if row["acceptable"] is None else json.dumps(row["acceptable"]), row["corrected"],
                     row["seconds"], row["created_at"].astimezone(timezone.utc).isoformat()))
                self.db.execute("INSERT INTO coverage(clip_id, mode, active) VALUES (?, ?, 1) "
                                "ON CONFLICT(clip_id, mode) DO UPDATE SET active = active + 1", (row["clip_id"], mode))

    def judgments(self, mode: str | None = None) -> list[dict]:
        """Every stored judgment as a LABELS row (plus ``mode``), oldest first.

        Read on a connection of its own (WAL: readers see the last commit and never wait for the
        writer), so an export of many labels does not hold up the page's requests."""
        query = "SELECT clip_id, annotator, mode, candidates, choice, acceptable, corrected, seconds, created_at " \
                "FROM judgments" + (" WHERE mode = ?" if mode else "") + " ORDER BY id"
        reader = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            found = reader.execute(query, (mode,) if mode else ()).fetchall()
        finally:
            reader.close()
        return [{"clip_id": c, "annotator": a, "mode": m, "candidates": json.loads(shown), "choice": choice,
                 "acceptable": None if ok is None else json.loads(ok), "corrected": corrected, "seconds": seconds,
                 "created_at": datetime.fromisoformat(created)}
                for c, a, m, shown, choice, ok, corrected, seconds, created in found]

    def export(self, path: str | None = None) -> int:
        """Rewrite the labels parquet from the store (atomically: temp file, rename); the row count."""
        rows = self.judgments()
        write_labels([{k: v for k, v in row.items() if k != "mode"} for row in rows], path or self.labels_path)
        return len(rows)

    def counts(self) -> dict:
        """Judgments per mode and per annotator."""
        with self.lock:
            by_mode = dict(self.db.execute("SELECT mode, count(*) FROM judgments GROUP BY mode").fetchall())
            people = self.db.execute("SELECT annotator, mode, count(*) FROM judgments GROUP BY annotator, mode "
                                     "ORDER BY annotator").fetchall()
        per_annotator: dict[str, dict[str, int]] = {}
        for person, mode, number in people:
            per_annotator.setdefault(person, {m: 0 for m in MODES})[mode] = number
        return {"by_mode": {m: by_mode.get(m, 0) for m in MODES}, "by_annotator": per_annotator}


def utc_now() -> datetime:
    return datetime.now(timezone.utc)

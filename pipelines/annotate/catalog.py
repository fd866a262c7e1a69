"""What a built dataset offers the annotation page: its clips, each clip's candidates, its mp4 bytes.

Nothing here reads every clip at start. Opening a catalog streams the index (or the caption
version) once, batch by batch, into the store's ``clips`` table: one small row per clip (its
shard, mp4 byte range and the selector's score), so the page can order clips by score or by a
seeded shuffle with an SQL index. A clip's candidates are read only when the clip is first
served, and then kept in ``clip_text``:

* for the build's own captions, out of the clip's json member in its shard. The first clip
  served from a shard walks that shard's tar headers once (seeking over the data) and keeps
  every member's byte range in ``members``; after that each json is one ranged read.
* for a caption version, out of ``OUT/versions/<name>.parquet``, whose rows are sorted by clip
  id, so the row-group statistics narrow the read to one row group.

The mp4 is served by its byte range in the shard (the index's ``mp4_offset``/``mp4_bytes``),
so no clip is ever unpacked to disk.
"""
from __future__ import annotations

import hashlib
import json
import re
import tarfile
from itertools import combinations

import fsspec
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from vidcurate.operators.write.layout import BUILD_VERSION, INDEX_FILE, VERSIONS_DIR, join, shard_path
from vidcurate.operators.write.versions import resolve_version
from vidcurate.pipelines.annotate.store import MODE_BITS

INDEX_COLUMNS = ["clip_id", "shard", "key", "mp4_offset", "mp4_bytes", "score", "duration", "num_frames"]
WORD = re.compile(r"[a-z0-9]+")


class CatalogError(ValueError):
    """A dataset the page cannot serve, or a clip it does not have (the message names which)."""


def shuffle_rank(seed: int, clip_id: str) -> int:
    """The clip's place in the seeded uniform order (a 63-bit hash)."""
    return int.from_bytes(hashlib.sha256(f"vidcurate-annotate:{seed}:{clip_id}".encode()).digest()[:8], "big") >> 1


def disagreement(texts: list[str]) -> float:
    """How much the teachers disagree on a clip: 1 - the mean word-set Jaccard similarity over
    pairs of candidates (0 with fewer than two candidates; 1 when no two share a word)."""
    words = [set(WORD.findall(t.lower())) for t in texts]
    pairs = [len(a & b) / len(a | b) if a | b else 1.0 for a, b in combinations(words, 2)]
    return 1.0 - sum(pairs) / len(pairs) if pairs else 0.0


def _clip_rows(batch, seed: int):
    """``clips`` rows of one index batch (column-wise: a million rows import in seconds)."""
    column = {name: batch.column(name).to_pylist() for name in batch.schema.names}
    ids, count = column["clip_id"], batch.num_rows
    missing = [None] * count
    return zip(ids, column["shard"], column.get("key") or ids, column["mp4_offset"], column["mp4_bytes"],
               column.get("score", missing), column.get("duration", missing), column.get("num_frames", missing),
               (shuffle_rank(seed, clip_id) for clip_id in ids))


class Catalog:
    """The clips of build ``out`` under caption version ``version``, kept in ``store`` (store.py)."""

    def __init__(self, store, out: str, version: str | None, seed: int):
        self.store, self.db, self.out, self.seed = store, store.db, str(out), seed
        try:
            self.version = resolve_version(self.out, version)
        except ValueError as exc:
            raise CatalogError(str(exc)) from None
        fs, path = fsspec.core.url_to_fs(join(self.out, INDEX_FILE))
        if not fs.exists(path):
            raise CatalogError(f"{self.out!r} holds no finished build ({INDEX_FILE} is missing): build it first")
        self._fs, self._index_path = fs, path

    # -- clips ---------------------------------------------------------------------------
    def import_clips(self, batch_rows: int = 65_536) -> int:
        """Fill ``clips`` from the index (scores from the version when it is not ``build``); once per
        dataset, version and seed (a store opened again on the same ones reads nothing)."""
        found = self.db.execute("SELECT value FROM meta WHERE key = 'catalog'").fetchone()
        wanted = json.dumps({"out": self.out, "version": self.version, "seed": self.seed})
        if found and found[0] == wanted:
            return self.db.execute("SELECT count(*) FROM clips").fetchone()[0]
        with self.store.transaction():
            for table in ("clips", "clip_text", "members", "walked"):
                self.db.execute(f"DELETE FROM {table}")
            # Another dataset or version: clips held under the old one are given back (their candidate
            # orders name the old candidates); what people judged stays, with its candidates as shown.
            self.db.execute("UPDATE assignments SET state = 'released' WHERE state = 'open'")
            self.db.execute("DELETE FROM coverage")
            self.db.execute("INSERT INTO coverage(clip_id, mode, active) SELECT clip_id, mode, count(*) FROM judgments "
                            "GROUP BY clip_id, mode")
            with self._fs.open(self._index_path, "rb") as handle:
                names = set(pq.ParquetFile(handle).schema_arrow.names)
                missing = [c for c in ("clip_id", "shard", "mp4_offset", "mp4_bytes") if c not in names]
                if missing:
                    raise CatalogError(f"{self.out!r}: its {INDEX_FILE} has no {', '.join(missing)} column (a build "
                                       "older than byte-range reads): rebuild it to annotate it")
                handle.seek(0)
                columns = [c for c in INDEX_COLUMNS if c in names]
                for mode in MODE_BITS:  # built once after the bulk insert: faster
                    self.db.execute(f"DROP INDEX IF EXISTS clips_fresh_{mode}")
                    self.db.execute(f"DROP INDEX IF EXISTS clips_fresh_score_{mode}")
                for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_rows, columns=columns):
                    self.db.executemany(
                        "INSERT INTO clips(clip_id, shard, key, mp4_offset, mp4_bytes, score, duration, num_frames, "
                        "rank) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", _clip_rows(batch, self.seed))
            if self.version != BUILD_VERSION:
                self._import_version_scores(batch_rows)
            self.db.executemany("UPDATE clips SET covered = covered | ? WHERE clip_id = ?",
                                [(MODE_BITS[mode], clip_id) for clip_id, mode in
                                 self.db.execute("SELECT clip_id, mode FROM coverage WHERE active > 0").fetchall()])
            for mode, bit in MODE_BITS.items():
                self.db.execute(f"CREATE INDEX clips_fresh_{mode} ON clips(rank) WHERE (covered & {bit}) = 0")
                self.db.execute(f"CREATE INDEX clips_fresh_score_{mode} ON clips(score, rank) "
                                f"WHERE (covered & {bit}) = 0")
            self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('catalog', ?)", (wanted,))
        return self.db.execute("SELECT count(*) FROM clips").fetchone()[0]

    def _import_version_scores(self, batch_rows: int) -> None:
        with fsspec.open(self._version_path(), "rb") as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_rows, columns=["clip_id", "score"]):
                self.db.executemany("UPDATE clips SET score = ? WHERE clip_id = ?",
                                    [(r["score"], r["clip_id"]) for r in batch.to_pylist()])

    def clip(self, clip_id: str) -> dict:
        fields = ("clip_id", "shard", "key", "mp4_offset", "mp4_bytes", "score", "duration", "num_frames")
        row = self.db.execute(f"SELECT {', '.join(fields)} FROM clips WHERE clip_id = ?", (clip_id,)).fetchone()
        if row is None:
            raise CatalogError(f"no clip {clip_id!r} in {self.out!r}")
        return dict(zip(fields, row))

    def mp4_file(self, clip_id: str) -> tuple[str, int, int]:
        """(path of the clip's shard, byte offset of its mp4, size)."""
        clip = self.clip(clip_id)
        return join(self.out, shard_path(clip["shard"])), clip["mp4_offset"], clip["mp4_bytes"]

    # -- candidates ----------------------------------------------------------------------
    def texts(self, clip_id: str) -> dict:
        """{candidates: [{teacher, text}], caption, disagreement} of a clip; read once, then kept."""
        row = self.db.execute("SELECT candidates, caption, disagreement FROM clip_text WHERE clip_id = ?",
                              (clip_id,)).fetchone()
        if row is not None:
            return {"candidates": json.loads(row[0]), "caption": row[1], "disagreement": row[2]}
        clip = self.clip(clip_id)
        found = self._version_row(clip_id) if self.version != BUILD_VERSION else self._sample_json(clip)
        candidates = [{"teacher": str(c.get("teacher") or "unknown"), "text": c["text"].strip()}
                      for c in found.get("candidates") or [] if isinstance(c.get("text"), str) and c["text"].strip()]
        caption = found.get("caption")
        spread = disagreement([c["text"] for c in candidates])
        with self.store.transaction():
            self.db.execute("INSERT OR REPLACE INTO clip_text(clip_id, candidates, caption, disagreement) "
                            "VALUES (?, ?, ?, ?)", (clip_id, json.dumps(candidates), caption, spread))
        return {"candidates": candidates, "caption": caption, "disagreement": spread}

    def _version_path(self) -> str:
        return join(self.out, VERSIONS_DIR, f"{self.version}.parquet")

    def _version_row(self, clip_id: str) -> dict:
        table = pads.dataset(self._version_path(), format="parquet").to_table(
            columns=["clip_id", "caption", "candidates"], filter=pads.field("clip_id") == clip_id)
        if table.num_rows == 0:
            raise CatalogError(f"clip {clip_id!r} has no row in caption version {self.version!r}")
        return table.to_pylist()[0]

    def _sample_json(self, clip: dict) -> dict:
        place = self._member(clip["shard"], clip["key"], "json")
        if place is None:
            raise CatalogError(f"clip {clip['clip_id']!r}: no {clip['key']}.json in shard {clip['shard']!r}")
        with fsspec.open(join(self.out, shard_path(clip["shard"])), "rb") as handle:
            handle.seek(place[0])
            data = handle.read(place[1])
        try:
            return json.loads(data)
        except ValueError as exc:
            raise CatalogError(f"clip {clip['clip_id']!r}: its json in shard {clip['shard']!r} is not valid JSON "
                               f"({exc})") from None

    def _member(self, shard: str, key: str, ext: str) -> tuple[int, int] | None:
        if self.db.execute("SELECT 1 FROM walked WHERE shard = ?", (shard,)).fetchone() is None:
            self._walk(shard)
        return self.db.execute("SELECT offset, size FROM members WHERE shard = ? AND key = ? AND ext = ?",
                               (shard, key, ext)).fetchone()

    def _walk(self, shard: str) -> None:
        """Keep the byte range of every member of ``shard`` (headers only; member data is seeked over)."""
        rows = []
        try:
            with fsspec.open(join(self.out, shard_path(shard)), "rb") as handle, \
                    tarfile.open(fileobj=handle, mode="r:") as tar:
                for member in tar:
                    key, dot, ext = member.name.rpartition("/")[2].partition(".")
                    if dot and member.isfile():
                        rows.append((shard, key, ext, member.offset_data, member.size))
        except (OSError, tarfile.TarError) as exc:
            raise CatalogError(f"shard {shard!r} of {self.out!r} cannot be read ({exc})") from None
        with self.store.transaction():
            self.db.executemany("INSERT OR REPLACE INTO members(shard, key, ext, offset, size) VALUES (?, ?, ?, ?, ?)",
                                rows)
            self.db.execute("INSERT OR REPLACE INTO walked(shard) VALUES (?)", (shard,))

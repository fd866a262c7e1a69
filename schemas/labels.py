"""Human judgments of caption candidates (labels), as a versioned pyarrow schema.

One row per judgment: which annotator judged which clip, the candidates in the order
shown (teacher, text), the ``choice`` (an index into them, or -1 for "all bad"), and
optionally every ``acceptable`` candidate (indices), a ``corrected`` caption and the
``seconds`` spent. The synthetic annotators (pipelines/synth) write it; the annotation
page and ``vidcurate teachers choose`` read and write the same file.

``read_labels`` checks every row, so a hand-edited or foreign file fails with the file,
the row (1-based) and the column named, never somewhere downstream. Parquet is the
format (``.parquet``); JSON lines (``.jsonl``, created_at as ISO 8601) are read too.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq

LABELS_VERSION = "1.0"

SHOWN = pa.struct([pa.field("teacher", pa.string(), nullable=False), pa.field("text", pa.string(), nullable=False)])
LABELS = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("annotator", pa.string(), nullable=False),
        pa.field("candidates", pa.list_(SHOWN), nullable=False),  # in the order shown
        pa.field("choice", pa.int32(), nullable=False),  # index into candidates, -1 = all bad
        pa.field("acceptable", pa.list_(pa.int32())),  # indices; null = not asked
        pa.field("corrected", pa.string()),
        pa.field("seconds", pa.float64()),
        pa.field("created_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    ],
    metadata={"vidcurate.schema": "labels", "vidcurate.version": LABELS_VERSION},
)
REQUIRED = ("clip_id", "annotator", "candidates", "choice", "created_at")


class LabelsFileError(ValueError):
    """A labels file that cannot be used; the message names the file, the row and the column."""


def _check_row(row: dict, where: str) -> None:
    def bad(column: str, why: str) -> LabelsFileError:
        return LabelsFileError(f"{where}, column {column!r}: {why}")

    for column in REQUIRED:
        if row.get(column) is None:
            raise bad(column, "missing (null)")
    for column in ("clip_id", "annotator"):
        if not isinstance(row[column], str) or not row[column].strip():
            raise bad(column, f"must be a non-empty string, got {row[column]!r}")
    shown = row["candidates"]
    if not isinstance(shown, list) or not shown:
        raise bad("candidates", "must be a non-empty list of {teacher, text}")
    for number, candidate in enumerate(shown):
        if not isinstance(candidate, dict) or not all(isinstance(candidate.get(k), str) and candidate[k].strip()
                                                      for k in ("teacher", "text")):
            raise bad("candidates", f"candidate {number} must have a non-empty teacher and text, got {candidate!r}")
    choice = row["choice"]
    if isinstance(choice, bool) or not isinstance(choice, int) or not -1 <= choice < len(shown):
        raise bad("choice", f"{choice!r} is not -1 (all bad) or an index of the {len(shown)} candidates")
    acceptable = row.get("acceptable")
    if acceptable is not None:
        if not isinstance(acceptable, list) or any(isinstance(i, bool) or not isinstance(i, int)
                                                   or not 0 <= i < len(shown) for i in acceptable):
            raise bad("acceptable", f"{acceptable!r} must list indices of the {len(shown)} candidates")
        if len(set(acceptable)) != len(acceptable):
            raise bad("acceptable", f"{acceptable!r} lists an index twice")
    corrected = row.get("corrected")
    if corrected is not None and (not isinstance(corrected, str) or not corrected.strip()):
        raise bad("corrected", f"must be a caption or null, got {corrected!r}")
    seconds = row.get("seconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0):
        raise bad("seconds", f"must be a number >= 0 or null, got {seconds!r}")
    if not isinstance(row["created_at"], datetime):
        raise bad("created_at", f"must be a timestamp, got {row['created_at']!r}")


def _jsonl_rows(path: str) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LabelsFileError(f"labels file {path!r}, row {number}: not valid JSON ({exc.msg})") from None
            if isinstance(row, dict) and isinstance(row.get("created_at"), str):
                try:
                    row["created_at"] = datetime.fromisoformat(row["created_at"].replace("Z", "+00:00"))
                except ValueError:
                    raise LabelsFileError(f"labels file {path!r}, row {number}, column 'created_at': not an ISO "
                                          f"8601 time: {row['created_at']!r}") from None
            rows.append(row)
    return rows


def read_labels(path: str) -> list[dict]:
    """Every judgment in ``path`` (LABELS columns), each row checked; LabelsFileError otherwise."""
    if not os.path.isfile(path):
        raise LabelsFileError(f"labels file {path!r}: no such file")
    if path.endswith(".jsonl"):
        rows = _jsonl_rows(path)
        columns = set().union(*(r for r in rows if isinstance(r, dict))) if rows else set(REQUIRED)
    else:
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for a file that is not parquet
            raise LabelsFileError(f"labels file {path!r}: not a readable parquet file ({exc})") from None
        meta = table.schema.metadata or {}
        version = meta.get(b"vidcurate.version", b"").decode()
        if meta.get(b"vidcurate.schema") not in (None, b"labels"):
            raise LabelsFileError(f"labels file {path!r}: holds a {meta[b'vidcurate.schema'].decode()!r} table, "
                                  "not labels")
        if version and version.split(".")[0] != LABELS_VERSION.split(".")[0]:
            raise LabelsFileError(f"labels file {path!r}: labels schema version {version}, this vidcurate reads "
                                  f"{LABELS_VERSION}")
        columns, rows = set(table.column_names), table.to_pylist()
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise LabelsFileError(f"labels file {path!r}: missing column(s) {', '.join(missing)}")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise LabelsFileError(f"labels file {path!r}, row {number}: expected an object, got {row!r}")
        _check_row(row, f"labels file {path!r}, row {number}")
        if row["created_at"].tzinfo is None:
            row["created_at"] = row["created_at"].replace(tzinfo=timezone.utc)
    return [{name: row.get(name) for name in LABELS.names} for row in rows]


def write_labels(rows: list[dict], path: str) -> None:
    """Write ``rows`` as LABELS parquet, each row checked first; published whole (temp file, rename)."""
    for number, row in enumerate(rows, start=1):
        _check_row(row, f"labels row {number} for {path!r}")
    table = pa.Table.from_pylist([{name: row.get(name) for name in LABELS.names} for row in rows], schema=LABELS)
    staged = f"{path}.partial"
    pq.write_table(table, staged)
    os.replace(staged, path)

"""Turn a build's input (a folder of videos or a manifest file) into source records.

Inputs are fsspec URIs: local paths, ``file://`` and, when the user installs the
filesystem package, ``s3://``, ``gs://`` and others.

A manifest is CSV, JSON lines or parquet with a ``uri`` column and optional metadata
columns (``video_id``, ``title``, ``description``, ``subtitles``, ``tags``, ``license``).
Relative URIs in a manifest are resolved against the manifest's folder.

Text metadata (title, description, subtitles) longer than ``max_chars`` is cut when the
source record is made: every clip record carries its source's text into its sample json,
and the journal keeps it per video, so a 1 MB description would be copied whole into
each. Teachers use a title and the first sentence of a description; 10,000 characters
leave text teachers far more than a prompt holds. The record's ``truncated_fields``
(field -> original length in characters) says what was cut, and the sample json shows it.

A folder is searched recursively for video files (by extension); other files (a
README, a stray manifest, thumbnails) are not inputs: they are skipped and counted, not
rejected, so they never weigh on the build's failure ratio.

Problems with the manifest as a whole (unreadable, no ``uri`` column) raise
:class:`ManifestError`. Problems with one row or one file become reject records, so
every input is accounted for.
"""
from __future__ import annotations

import csv
import io
import json
import os
import posixpath
import re
from dataclasses import dataclass, field

import fsspec

from vidcurate.schemas.records import SOURCE, rejected, video_id_for

VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp",
)
MANIFEST_EXTENSIONS = (".csv", ".jsonl", ".ndjson", ".json", ".parquet")
METADATA_COLUMNS = tuple(f.name for f in SOURCE if f.name not in ("uri", "truncated_fields"))
TEXT_COLUMNS = ("title", "description", "subtitles")
METADATA_MAX_CHARS = 10_000  # default cap of each text field (output.metadata_max_chars)


class ManifestError(ValueError):
    """The input as a whole cannot be read; the message names the input and the reason."""


@dataclass
class Inputs:
    """What an input resolved to: source records to process, input-level rejects, and the
    files of a folder that are not videos (``skipped``: their paths; not inputs)."""

    sources: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


INVALID = "__invalid__"  # a manifest row that could not be read: why


def input_reject(uri: str, reason: str, detail: str) -> dict:
    uri = uri.encode("utf-8", "surrogateescape").decode("utf-8", "replace")  # a uri that was not UTF-8
    return rejected({"uri": uri, "video_id": video_id_for(uri)}, "input", reason, detail)


def read_inputs(location: str, max_chars: int = METADATA_MAX_CHARS) -> Inputs:
    """Resolve ``location`` (a folder or a manifest file) into sources and rejects; text
    metadata longer than ``max_chars`` characters is cut (see the module docstring)."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    try:
        fs, path = fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as exc:
        raise ManifestError(f"input {location!r}: cannot open this location: {exc}") from exc
    if not fs.exists(path):
        raise ManifestError(f"input {location!r}: no such file or folder")
    if fs.isdir(path):
        return _read_folder(fs, path, location)
    if path.lower().endswith(MANIFEST_EXTENSIONS):
        return _read_manifest(fs, path, location, max_chars)
    if path.lower().endswith(VIDEO_EXTENSIONS):
        return Inputs(sources=[_source({"uri": _uri(fs, path)}, "")])
    raise ManifestError(
        f"input {location!r}: not a folder, a manifest ({', '.join(MANIFEST_EXTENSIONS)}) "
        f"or a video ({', '.join(VIDEO_EXTENSIONS)})"
    )


def _uri(fs, path: str) -> str:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return os.path.abspath(path)
    return fs.unstrip_protocol(path)


def _read_folder(fs, path: str, location: str) -> Inputs:
    inputs = Inputs()
    for entry in sorted(fs.find(path)):
        name = posixpath.basename(entry)
        if name.startswith("."):
            continue
        uri = _uri(fs, entry)
        if name.lower().endswith(VIDEO_EXTENSIONS):
            inputs.sources.append(_source({"uri": uri}, ""))
        else:
            inputs.skipped.append(uri)
    if not inputs.sources:
        raise ManifestError(
            f"input {location!r}: the folder holds no video files ({', '.join(VIDEO_EXTENSIONS)}); "
            f"{len(inputs.skipped)} other file(s) skipped")
    return inputs


def _read_manifest(fs, path: str, location: str, max_chars: int = METADATA_MAX_CHARS) -> Inputs:
    rows = _manifest_rows(fs, path, location)
    base = posixpath.dirname(path)
    inputs = Inputs()
    seen: set[str] = set()
    first_row_of: dict[str, int] = {}  # video_id -> manifest row that used it first
    for number, row in enumerate(rows, start=1):
        raw = row.get("uri")
        if INVALID in row:
            inputs.rejects.append(input_reject(
                f"{location}#row{number}", "manifest_row_invalid", f"{location} {row[INVALID]}"))
            continue
        if raw is None or str(raw).strip() == "":
            inputs.rejects.append(input_reject(
                f"{location}#row{number}", "manifest_row_invalid", f"{location} row {number}: empty uri"))
            continue
        raw = str(raw).strip()
        if "://" not in raw and not posixpath.isabs(raw):
            raw = posixpath.join(base, raw)
        uri = _uri(fs, raw) if "://" not in raw else raw
        if uri in seen:
            inputs.rejects.append(input_reject(
                f"{uri}#row{number}", "duplicate_uri",
                f"{location} row {number}: {uri} is listed more than once; only the first row is used"))
            continue
        seen.add(uri)
        try:
            source = _source({**row, "uri": uri}, f"{location} row {number}: ", max_chars)
        except ValueError as exc:
            inputs.rejects.append(input_reject(uri, "manifest_row_invalid", str(exc)))
            continue
        # Clip ids derive from the video id, so two files under one id would write samples
        # with the same keys. The second file is an input of its own: its reject carries
        # its own uri, so it is accounted for (unlike a repeated uri, which is one input).
        first = first_row_of.setdefault(source["video_id"], number)
        if first != number:
            inputs.rejects.append(input_reject(
                uri, "duplicate_video_id",
                f"{location} row {number}: video_id {source['video_id']!r} of {uri} is already used by row "
                f"{first}; each file needs its own video_id"))
            continue
        inputs.sources.append(source)
    return inputs


def _manifest_rows(fs, path: str, location: str) -> list[dict]:
    lower = path.lower()
    try:
        if lower.endswith(".parquet"):
            import pyarrow.parquet as pq

            with fs.open(path, "rb") as handle:
                table = pq.read_table(handle)
            columns = table.column_names
            rows = table.to_pylist()
        else:
            with fs.open(path, "rb") as handle:
                # A byte that is not UTF-8 becomes a lone surrogate: its row is rejected, not the manifest.
                text = handle.read().decode("utf-8-sig", "surrogateescape")
            if lower.endswith(".csv"):
                reader = csv.DictReader(io.StringIO(text))
                columns = list(reader.fieldnames or [])
                rows = [dict(r) for r in reader]
            elif lower.endswith(".json") and text.lstrip().startswith("["):
                rows = json.loads(text)
                if not all(isinstance(r, dict) for r in rows):
                    raise ManifestError(f"manifest {location!r}: a .json manifest is an array of objects "
                                        "or JSON lines (one object per line)")
                columns = sorted({k for r in rows for k in r})
            else:
                rows = []
                for number, line in enumerate(text.splitlines(), start=1):
                    if not line.strip():
                        continue
                    try:
                        value = json.loads(line)
                    except json.JSONDecodeError as exc:  # this row is a reject; the others are read
                        value = {INVALID: f"line {number}: invalid JSON: {exc}"}
                    if not isinstance(value, dict):
                        value = {INVALID: f"line {number}: expected a JSON object per line (JSON lines), or a "
                                          ".json file holding one array of objects"}
                    rows.append(value)
                columns = sorted({k for r in rows for k in r} - {INVALID})
                if not columns and rows:
                    raise ManifestError(f"manifest {location!r}: no line is a JSON object: "
                                        f"{rows[0][INVALID]}")
    except ManifestError:
        raise
    except Exception as exc:  # unreadable file: name it and the reason
        raise ManifestError(f"manifest {location!r}: cannot be read: {type(exc).__name__}: {exc}") from exc
    if "uri" not in columns:
        raise ManifestError(
            f"manifest {location!r}: no 'uri' column (columns found: {', '.join(columns) or 'none'}); "
            "a manifest needs a 'uri' column and may add " + ", ".join(METADATA_COLUMNS)
        )
    if not rows:
        raise ManifestError(f"manifest {location!r}: has a header but no rows")
    return rows


def _source(row: dict, where: str, max_chars: int = METADATA_MAX_CHARS) -> dict:
    """A SOURCE record from a manifest row; unknown columns are ignored, text longer than
    ``max_chars`` is cut and listed in ``truncated_fields`` with its original length."""
    uri = row["uri"]
    tags = row.get("tags")
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    elif tags is not None and not isinstance(tags, (list, tuple)):
        raise ValueError(f"{where}'tags' must be a list or a comma-separated string, got {type(tags).__name__}")
    record = {"uri": uri, "video_id": str(row.get("video_id") or video_id_for(uri)), "tags": list(tags or [])}
    for name in ("title", "description", "subtitles", "license"):
        value = row.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{where}'{name}' must be text, got {type(value).__name__}")
        record[name] = value.strip() if isinstance(value, str) and value.strip() else None
        if name in TEXT_COLUMNS and record[name] is not None and len(record[name]) > max_chars:
            record.setdefault("truncated_fields", {})[name] = len(value)
            record[name] = record[name][:max_chars].rstrip()
    for name, value in row.items():  # decoded with surrogateescape: a lone surrogate is a byte that was not UTF-8
        found = _NOT_UTF8.search(value) if isinstance(value, str) else None
        if found:
            bad = found.group().encode("utf-8", "surrogateescape")
            raise ValueError(f"{where}'{name}' is not valid UTF-8 (byte 0x{bad[0]:02x}); write the manifest as UTF-8")
    problem = video_id_problem(record["video_id"])
    if problem:
        raise ValueError(f"{where}video_id {record['video_id']!r} {problem} (it names the clip ids, shard members "
                         "and cache folders)")
    return record


_NOT_UTF8 = re.compile("[\udc80-\udcff]")
VIDEO_ID_MAX_CHARS = 200


def video_id_problem(video_id: str) -> str | None:
    """Why ``video_id`` cannot name files and tar members, or None: ids become clip ids
    (``<video_id>_<start>_<end>``), tar member names and cache folders, so nothing in one may
    leave a folder, hide an extension, or read as an option or a control sequence."""
    if not video_id:
        return "is empty"
    if len(video_id) > VIDEO_ID_MAX_CHARS:
        return f"is longer than {VIDEO_ID_MAX_CHARS} characters"
    if any(c in video_id for c in "./\\"):
        return "may not contain '.', '/' or '\\'"
    if any(ord(c) < 32 or ord(c) == 127 for c in video_id):  # bytes that are not UTF-8: caught per field
        return "may not contain control characters"
    if video_id.startswith("-"):
        return "may not start with '-'"
    return None

"""Caption versions of a build: write one, list them, read one (schemas/versions.py).

    OUT/versions/<name>.parquet   one row per clip of the index (CAPTION_VERSION)
    OUT/versions/<name>.json      provenance: selector and its settings, the version it started
                                  from, clip counts, created_at; written last, so a version
                                  is listed only once its rows are complete

The build's own captions (index.parquet and the shards) are the version named ``build``.
``latest`` is the newest version, else ``build``. A name is never reused: earlier versions
are never overwritten, and writing a version leaves shards and index untouched.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from vidcurate.operators.write.destination import Destination
from vidcurate.operators.write.layout import BUILD_VERSION, VERSIONS_DIR
from vidcurate.schemas.versions import CAPTION_VERSION

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class VersionError(ValueError):
    """A version that does not exist, or a name that cannot be used; the message says which and why."""


def list_versions(out: str) -> list[dict]:
    """Every complete version's provenance, oldest first (the build's own captions not included)."""
    dest = Destination(out)
    found = []
    for name in dest.listdir(VERSIONS_DIR):
        if name.endswith(".json") and not name.startswith("."):
            try:
                found.append(json.loads(dest.read_bytes(f"{VERSIONS_DIR}/{name}")))
            except (OSError, ValueError) as exc:
                raise VersionError(f"{dest.path(VERSIONS_DIR + '/' + name)}: unreadable version record ({exc})") \
                    from None
    return sorted(found, key=lambda v: (v.get("number", 0), v.get("created_at") or "", v["name"]))


def resolve_version(out: str, version: str | None) -> str:
    """The name ``version`` stands for: None or "latest" -> the newest version (else "build")."""
    versions = list_versions(out)
    if version in (None, "latest"):
        return versions[-1]["name"] if versions else BUILD_VERSION
    if version == BUILD_VERSION or any(v["name"] == version for v in versions):
        return version
    known = ", ".join([BUILD_VERSION, *(v["name"] for v in versions)])
    raise VersionError(f"{out!r} has no caption version {version!r}; versions: {known}")


def read_version(out: str, version: str) -> dict[str, dict]:
    """clip_id -> row of a version (not "build": the build's captions are in the index and shards)."""
    name = resolve_version(out, version)
    if name == BUILD_VERSION:
        raise VersionError("the build's own captions are index.parquet and the shards, not a version file")
    dest = Destination(out)
    with open(dest.path(f"{VERSIONS_DIR}/{name}.parquet"), "rb") if dest.local else \
            dest.fs.open(dest.path(f"{VERSIONS_DIR}/{name}.parquet"), "rb") as handle:
        # use_threads=False: a threaded read from a Python file object intermittently aborted the interpreter
        # at exit ("terminate called without an active exception", pyarrow 25)
        rows = pq.read_table(handle, use_threads=False).to_pylist()
    return {row["clip_id"]: row for row in rows}


def version_captions(out: str, version: str | None) -> tuple[str, dict[str, dict] | None]:
    """(the name ``version`` stands for, its rows by clip id), or (``build``, None) for the build's
    own captions: what every reader of captions (loaders, report, card, synth score) overlays."""
    name = resolve_version(out, version)
    return name, (None if name == BUILD_VERSION else read_version(out, name))


def next_name(out: str, prefix: str) -> str:
    """``prefix-1``, ``prefix-2``, ...: the first name no version has."""
    taken = {v["name"] for v in list_versions(out)}
    number = 1
    while f"{prefix}-{number}" in taken:
        number += 1
    return f"{prefix}-{number}"


def write_version(out: str, name: str, rows: list[dict], provenance: dict) -> dict:
    """Publish version ``name`` (rows first, then its record); refuses a name already used."""
    if not NAME.match(name or "") or name in (BUILD_VERSION, "latest"):
        raise VersionError(f"version name {name!r}: use letters, digits, '.', '_' or '-' (at most 64), not "
                           f"'{BUILD_VERSION}' or 'latest'")
    dest = Destination(out)
    if dest.exists(f"{VERSIONS_DIR}/{name}.json") or dest.exists(f"{VERSIONS_DIR}/{name}.parquet"):
        raise VersionError(f"{out!r} already has a caption version {name!r}; versions are never overwritten: "
                           "choose another --version name")
    number = max((v.get("number", 0) for v in list_versions(out)), default=0) + 1  # the order they were made
    dest.makedirs(VERSIONS_DIR)
    staged = dest.staging_path(f"{VERSIONS_DIR}/{name}.parquet")
    pq.write_table(pa.Table.from_pylist(rows, schema=CAPTION_VERSION), staged)
    dest.publish(staged, f"{VERSIONS_DIR}/{name}.parquet")
    record = {"name": name, "number": number, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "clips": len(rows), "captioned": sum(1 for r in rows if r.get("caption")), **provenance}
    dest.write_bytes(f"{VERSIONS_DIR}/{name}.json", json.dumps(record, indent=2, sort_keys=True).encode("utf-8"))
    dest.close()
    return record

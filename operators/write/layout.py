"""The output layout of a build: every file and folder name in OUT, and how to find shards and clips.

    OUT/shards/<split>[/<bucket>]/<prefix>-000000.tar   WebDataset samples (mp4, json, txt, ...)
    OUT/index.parquet        one row per clip (schemas.INDEX): its shard, key and mp4 byte range
    OUT/rejects.parquet      one row per rejected input or clip (schemas.REJECT)
    OUT/stats.json           counters and timers: every run's and their sum
    OUT/config.resolved.yaml the configuration with every default filled in
    OUT/README.md            the dataset card
    OUT/report.html          the build report
    OUT/versions/<name>.parquet  caption versions: re-selected or refined captions (operators/write/versions.py)
    OUT/labels.parquet       human judgments of the candidates (schemas/labels.py), by default:
                             `vidcurate annotate` (its store: OUT/labels.sqlite) and `vidcurate synth`
    OUT/_journal/            what is done (operators/write/journal.py): re-running resumes
    OUT/_cache/              per-video records after run.cache_after (pipelines/build/stage_cache.py)
    OUT/_crashes/            which videos were on a process when it died (operators/crash_ledger.py)

The sink, the journal, the build, the report and the training loaders name these files only
through this module. ``OUT`` is a local folder or any fsspec URL. An index row names its shard
relative to OUT/shards (``train/shard-000000.tar``) and gives its mp4's byte offset and size, so
one clip is read with one ranged read (``read_clip_mp4``), without opening the tar.
"""
from __future__ import annotations

import os
import posixpath
from typing import Optional

SHARDS_DIR = "shards"
INDEX_FILE = "index.parquet"
REJECTS_FILE = "rejects.parquet"
STATS_FILE = "stats.json"
CONFIG_FILE = "config.resolved.yaml"
CARD_FILE = "README.md"
REPORT_FILE = "report.html"
JOURNAL_DIR = "_journal"
BEAM_COMMITS_DIR = JOURNAL_DIR + "/beam"  # the Beam runner's commit files, journaled when its pipeline is done
VERSIONS_DIR = "versions"
EVALS_DIR = "evals"  # selector evaluations against judgments (vidcurate retriever eval), shown by the report
LABELS_FILE = "labels.parquet"  # human judgments (schemas/labels.py): vidcurate annotate, vidcurate synth
BUILD_VERSION = "build"  # the captions the build itself selected (index.parquet and the shards)
CACHE_DIR = "_cache"
CRASHES_DIR = "_crashes"  # the crash ledger: which videos processes died on (operators/crash_ledger.py)
# What a build writes and --overwrite replaces (the stage cache survives an overwrite on purpose).
BUILD_FILES = (SHARDS_DIR, INDEX_FILE, REJECTS_FILE, STATS_FILE, CONFIG_FILE, JOURNAL_DIR, CARD_FILE, REPORT_FILE,
               VERSIONS_DIR, EVALS_DIR, CRASHES_DIR)
DEFAULT_SPLIT = "train"


def crash_ledger_folder(out: str) -> str:
    """The build's crash ledger: OUT/_crashes, or for an object-store OUT a local folder named
    after it (the ledger needs file locks, so it serves the processes of this machine)."""
    if "://" not in out or out.startswith("file://"):
        return os.path.join(os.path.abspath(out.removeprefix("file://")), CRASHES_DIR)
    import hashlib
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"vidcurate-crashes-{hashlib.sha1(out.encode()).hexdigest()[:12]}")


def join(out: str, *parts: str) -> str:
    """A path (or URL) inside the build folder ``out``."""
    if "://" in out:
        return posixpath.join(out.rstrip("/"), *parts)
    return os.path.join(out, *parts)


def shard_path(shard: str) -> str:
    """The path under OUT of an index row's ``shard`` (which is relative to OUT/shards)."""
    return f"{SHARDS_DIR}/{shard}"


def is_published_shard(name: str) -> bool:
    """A finished shard file (``.name.tar.tmp`` files are shards being written)."""
    return name.endswith(".tar") and not posixpath.basename(name).startswith(".")


def read_clip_mp4(out: str | os.PathLike, row: dict) -> bytes:
    """One clip's mp4 bytes, read straight out of its shard by the index row's byte range (a shard
    shorter than that range is a ValueError)."""
    import fsspec

    if row.get("mp4_offset") is None or row.get("mp4_bytes") is None:
        raise ValueError(f"index row of {row.get('clip_id')!r} has no mp4 byte range (a build older than "
                         "mp4_offset): read the shard with webdataset instead")
    with fsspec.open(join(os.fspath(out), shard_path(row["shard"])), "rb") as handle:
        handle.seek(row["mp4_offset"])
        mp4 = handle.read(row["mp4_bytes"])
    if len(mp4) != row["mp4_bytes"]:
        raise ValueError(f"the shard is shorter than the index says (read {len(mp4)} of {row['mp4_bytes']} bytes "
                         f"of clip {row.get('clip_id')!r})")
    return mp4


def read_sample_jsons(out: str | os.PathLike, shard: str, keys: set[str], partial_ok: bool = False
                      ) -> dict[str, dict]:
    """key -> the json member of each sample in ``keys`` of one shard (index ``shard`` path), in one pass.

    A shard cut short or damaged raises ``tarfile.ReadError``; with ``partial_ok`` the members read
    before the damage are returned instead (the caller sees which keys are missing)."""
    import json
    import tarfile

    import fsspec

    found = {}
    with fsspec.open(join(os.fspath(out), shard_path(shard)), "rb") as handle:
        try:
            with tarfile.open(fileobj=handle, mode="r:") as tar:
                for member in tar:
                    key, _, ext = member.name.rpartition("/")[2].partition(".")
                    if ext == "json" and key in keys:
                        found[key] = json.load(tar.extractfile(member))
        except (tarfile.ReadError, EOFError, json.JSONDecodeError):
            if not partial_ok:
                raise
    return found


def shard_urls(out: str | os.PathLike, split: Optional[str] = None) -> list[str]:
    """The shard paths of a build folder ``out`` (a local path or any fsspec URL), sorted.

    From index.parquet's ``shard`` column (paths under ``OUT/shards``); ``split`` keeps
    the shards holding at least one sample of that split (no ``split`` column: every
    sample is "train"). Without an index (a build still running) the shards folder is
    listed instead, which needs ``split=None``.
    """
    out = os.fspath(out)
    plan = read_shard_plan(out)
    if plan is None:
        if split is not None:
            raise FileNotFoundError(f"{join(out, INDEX_FILE)} not found: cannot tell which shards hold "
                                    f"split {split!r}")
        return list_shard_urls(out)
    shards = sorted({s for s, sp in zip(plan["shard"], plan["split"]) if split is None or sp == split})
    return [join(out, SHARDS_DIR, s) for s in shards]


def read_shard_plan(out: str) -> Optional[dict[str, list]]:
    """shard, key and split of every index row, or None without an index."""
    import fsspec
    import pyarrow.parquet as pq

    path = join(out, INDEX_FILE)
    fs, fs_path = fsspec.core.url_to_fs(path)
    if not fs.exists(fs_path):
        return None
    with fs.open(fs_path, "rb") as handle:
        names = pq.ParquetFile(handle).schema_arrow.names
        handle.seek(0)
        columns = ["shard", "key"] + (["split"] if "split" in names else [])
        table = pq.read_table(handle, columns=columns, use_threads=False)  # see versions.read_version
    plan = {name: table.column(name).to_pylist() for name in columns}
    if "split" not in plan:
        plan["split"] = [DEFAULT_SPLIT] * table.num_rows
    return plan


def list_shard_urls(out: str) -> list[str]:
    """Every published shard under OUT/shards (a build still running, or without an index), sorted."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(join(out, SHARDS_DIR))
    if not fs.exists(root):
        raise FileNotFoundError(f"{join(out, SHARDS_DIR)}: no shards folder (is {out!r} a vidcurate build?)")
    found = sorted(p for p in fs.find(root) if is_published_shard(p))
    rel = [posixpath.relpath(p, root.rstrip("/")) for p in found]
    return [join(out, SHARDS_DIR, r) for r in rel]


def shard_names(dest) -> list[str]:
    """The published shards of a build's ``Destination``, as paths relative to OUT/shards, sorted."""
    return [name for name in dest.walk_files(SHARDS_DIR) if is_published_shard(name)]

"""`vidcurate export OUT --version NAME --output NEW`: a self-contained build whose captions are a version's.

For users who want plain shards: NEW holds shards (the same names and samples, each clip's mp4
bytes copied unchanged; its json and txt carry the version's caption, teacher, score, selector
and candidates, and ``caption_version``), index.parquet (byte offsets of the new shards),
rejects.parquet (the build's rejects, plus a reject for each clip the version left without a
caption) and a dataset card. OUT is only read.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tarfile

import pyarrow.parquet as pq
import yaml

from vidcurate.operators.write.destination import Destination
from vidcurate.operators.write.layout import CARD_FILE, CONFIG_FILE, INDEX_FILE, REJECTS_FILE, SHARDS_DIR
from vidcurate.operators.write.samples import with_params_object
from vidcurate.operators.write.shards import ShardWriter
from vidcurate.operators.write.sink import write_table
from vidcurate.operators.write.versions import VersionError, version_captions
from vidcurate.schemas.records import INDEX, REJECT

SHARD_NAME = re.compile(r"^(?:(?P<folder>.+)/)?(?P<prefix>[A-Za-z0-9_-]+)-(?P<number>\d+)\.tar$")


def export(out: str, version: str | None, new: str) -> dict:
    """Write NEW from the build in OUT with ``version``'s captions; returns counts."""
    out, new = os.fspath(out), os.fspath(new)
    if not os.path.isfile(os.path.join(out, INDEX_FILE)):
        raise VersionError(f"{out!r} holds no finished build ({INDEX_FILE} is missing)")
    if os.path.exists(new) and os.listdir(new):
        raise VersionError(f"--output {new!r} is not empty: export writes a new build folder")
    name, overlay = version_captions(out, version)
    index = pq.read_table(os.path.join(out, INDEX_FILE)).to_pylist()
    rejects = pq.read_table(os.path.join(out, REJECTS_FILE)).to_pylist()
    dest = Destination(new)
    rows_out: list[dict] = []
    by_shard: dict[str, list[dict]] = {}
    for row in index:
        by_shard.setdefault(row["shard"], []).append(row)
    for shard, rows in sorted(by_shard.items()):
        match = SHARD_NAME.match(shard)
        if match is None:
            raise VersionError(f"{out!r}: shard name {shard!r} is not <prefix>-<number>.tar")
        members = _read_samples(os.path.join(out, SHARDS_DIR, shard), {r["key"] for r in rows})
        folder = f"{SHARDS_DIR}/{match['folder']}" if match["folder"] else SHARDS_DIR
        writer = ShardWriter(dest, match["prefix"], max_samples=1 << 40, max_bytes=1 << 62,
                             start_index=int(match["number"]), subdir=folder)
        for row in rows:
            chosen = overlay.get(row["clip_id"]) if overlay is not None else None
            if overlay is not None and (chosen is None or not chosen["caption"]):
                reason = (chosen or {}).get("error_reason") or "select/not_in_version"
                stage, _, why = reason.partition("/")
                rejects.append({"uri": row["uri"], "video_id": row["video_id"], "clip_id": row["clip_id"],
                                "stage": stage, "reason": why or reason, "transient": False,
                                "detail": f"clip {row['clip_id']}: no caption in version {name}"})
                continue
            sample = _recaptioned(members[row["key"]], chosen, name)
            written = writer.write(row["key"], sample)
            rows_out.append({**row, **_index_captions(chosen), "shard": written[len(SHARDS_DIR) + 1:],
                             "mp4_offset": writer.last_members["mp4"][0], "members": sorted(writer.last_members)})
        writer.close()
    write_table(dest, rows_out, INDEX, INDEX_FILE)
    write_table(dest, rejects, REJECT, REJECTS_FILE)
    if os.path.isfile(os.path.join(out, CONFIG_FILE)):
        shutil.copyfile(os.path.join(out, CONFIG_FILE), dest.path(CONFIG_FILE))
        _write_card(dest, out, rows_out, rejects, name)
    return {"version": name, "clips": len(rows_out), "rejects": len(rejects), "shards": len(by_shard)}


def _read_samples(path: str, keys: set[str]) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            key, _, ext = member.name.partition(".")
            if member.isfile() and key in keys:
                samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return samples


def _recaptioned(members: dict[str, bytes], chosen: dict | None, version: str) -> dict[str, bytes]:
    if chosen is None:  # the build's own captions
        return dict(members)
    meta = json.loads(members["json"])
    meta.update(caption=chosen["caption"], caption_teacher=chosen["caption_teacher"], score=chosen["score"],
                selector=chosen["selector"], caption_version=version,
                candidates=[with_params_object(c) for c in chosen["candidates"] or []])
    return {**members, "json": json.dumps(meta, ensure_ascii=False).encode("utf-8"),
            "txt": chosen["caption"].encode("utf-8")}


def _index_captions(chosen: dict | None) -> dict:
    if chosen is None:
        return {}
    return {"caption": chosen["caption"], "caption_teacher": chosen["caption_teacher"], "score": chosen["score"],
            "num_candidates": len(chosen["candidates"] or [])}


def _write_card(dest: Destination, out: str, index_rows: list[dict], rejects: list[dict], version: str) -> None:
    from vidcurate.pipelines.build.card import dataset_card

    with open(os.path.join(out, CONFIG_FILE)) as handle:
        resolved = yaml.safe_load(handle) or {}
    sources = [{"uri": uri} for uri in sorted({r["uri"] for r in index_rows})]
    card = dataset_card(resolved, index_rows, rejects, sources, {"config_hash": None, "vidcurate_version": None})
    card += f"\nExported from `{out}` with the captions of version `{version}` (`vidcurate export`).\n"
    dest.write_bytes(CARD_FILE, card.encode("utf-8"))


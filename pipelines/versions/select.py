"""`vidcurate select OUT --selector NAME`: re-select every clip's caption into a new caption version.

The candidates come from a version (default: the latest; ``build`` = the clip jsons in the
shards), so teachers never run again and no mp4 byte is rewritten. Any registered selector
runs through its operator (``consensus`` or ``consensus_selector``), in batches of its declared
size, on the local or the Ray runner (clip_pass.py); a selector that needs the clip itself
(``mp4`` in its ``requires``) gets each clip's bytes by one ranged read of its shard, on the
worker, a group of clips at a time. Clips the selector rejects, or whose mp4 cannot be read,
keep a row with the reason.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Iterator

from vidcurate.operators.base import is_ok
from vidcurate.operators.write.layout import BUILD_VERSION, INDEX_FILE, read_sample_jsons
from vidcurate.operators.write.versions import VersionError, next_name, read_version, resolve_version, write_version
from vidcurate.pipelines.build.registry import OPERATORS, operator_class

log = logging.getLogger(__name__)


def selector_operator(name: str, fields: dict | None = None):
    """The selector operator called ``name`` or ``name_selector``, configured with ``fields``."""
    if ":" in name:  # a user's own selector: package.module:ClassName (an Operator subclass)
        try:
            return operator_class(name)(**(fields or {}))
        except KeyError as exc:
            raise VersionError(f"unknown selector {exc.args[0]}") from None
    op_name = name if name in OPERATORS else f"{name}_selector"
    if op_name not in OPERATORS or not op_name.endswith("_selector"):
        known = sorted(n[:-len("_selector")] for n in OPERATORS if n.endswith("_selector"))
        raise VersionError(f"unknown selector {name!r}; known: {', '.join(known)} (or package.module:ClassName)")
    return operator_class(op_name)(**(fields or {}))


def build_candidates(out: str, warn=None) -> Iterator[dict]:
    """Every clip of the build as {clip_id, video_id, uri, candidates} from the shards' json members
    (none for a clip whose json a damaged shard lost, with a warning naming both)."""
    import pyarrow.parquet as pq

    rows = pq.read_table(os.path.join(out, INDEX_FILE), columns=["clip_id", "video_id", "uri", "shard"]).to_pylist()
    by_shard: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_shard.setdefault(row["shard"], {})[row["clip_id"]] = row
    for shard, wanted in sorted(by_shard.items()):
        found = read_sample_jsons(out, shard, set(wanted), partial_ok=True)
        for key, row in wanted.items():
            if key not in found:  # lost with a damaged shard: the clip is accounted for, without candidates
                (warn or log.warning)(f"shard {shard}: the json of clip {key} cannot be read (the shard is cut "
                                      "short or damaged); it has no candidates")
            meta = found.get(key) or {}
            yield {**row, "candidates": [_as_record_candidate(c) for c in meta.get("candidates") or []]}


def reselect(out: str, selector: str, name: str | None = None, from_version: str | None = None,
             fields: dict | None = None, runner: str = "local", warn=None) -> dict:
    """Write a version whose captions ``selector`` chose among the candidates of ``from_version``;
    the selector runs on ``runner`` (local, or ray: clips are read and scored on the workers).
    ``warn`` (a callable) is told of each clip that could not be read, with the reason."""
    from vidcurate.pipelines.versions.clip_pass import ClipPassError, run_over_clips

    out = os.fspath(out)
    if not os.path.isfile(os.path.join(out, INDEX_FILE)):
        raise VersionError(f"{out!r} holds no finished build ({INDEX_FILE} is missing)")
    source = resolve_version(out, from_version)
    op = selector_operator(selector, fields)
    name = name or next_name(out, f"select-{op.name.removesuffix('_selector')}")
    if source == BUILD_VERSION:
        candidates = {clip["clip_id"]: clip["candidates"] for clip in build_candidates(out, warn)}
    else:
        candidates = {cid: [_as_record_candidate(c) for c in row["candidates"] or []]
                      for cid, row in read_version(out, source).items()}
    rows = []

    def keep(records: list[dict]) -> None:  # a clip that could not be read comes back without its candidates
        rows.extend(_version_row({"candidates": candidates[r["clip_id"]], **r}) for r in records)
        for record in records:
            if warn is not None and record.get("error_stage") == "read_build_clips":
                warn(f"clip {record['clip_id']} kept without a caption: {record.get('error_detail')}")

    try:
        run_over_clips(out, [op], keep=("candidates", "caption", "caption_teacher", "score", "selector"),
                       handle=keep, runner=runner, mp4="mp4" in op.requires, only=candidates,
                       fields={cid: {"candidates": found} for cid, found in candidates.items()})
    except ClipPassError as exc:
        raise VersionError(str(exc)) from None
    provenance = {"selector": op.name, "selector_settings": op.model_dump(mode="json"), "from_version": source,
                  "command": "select"}
    return write_version(out, name, sorted(rows, key=lambda r: r["clip_id"]), provenance)


def _as_record_candidate(candidate: dict) -> dict:
    """A candidate as records carry it (params a JSON string, as schemas.records.CANDIDATE)."""
    params = candidate.get("params")
    return {**candidate, "params": params if isinstance(params, str) or params is None
            else json.dumps(params, sort_keys=True)}


def _version_row(record: dict) -> dict:
    ok = is_ok(record)
    return {"clip_id": record["clip_id"], "caption": record.get("caption") if ok else None,
            "caption_teacher": record.get("caption_teacher") if ok else None,
            "score": record.get("score") if ok else None, "selector": record.get("selector"),
            "candidates": [_as_record_candidate(c) for c in record.get("candidates") or []],
            "error_reason": None if ok else f"{record.get('error_stage')}/{record.get('error_reason')}"}

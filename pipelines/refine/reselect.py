"""A round's selection: the student's new candidate joins each clip's candidates, the selector scores
them all, and a clip's caption changes only when the new candidate wins.

The selector is the one given, or the one that made round 0: for the build's own captions the
last ``*_selector`` step of OUT/config.resolved.yaml with its settings, for a caption version
the selector (and settings) its provenance names, followed back through earlier versions.
Every candidate keeps the score this round's selector gave it; a clip whose caption stays keeps
its caption and teacher, with its candidate's new score. Clips the selector rejects keep their
previous caption (a round never loses a caption) and count as ``kept_rejected``.

``min_margin`` (refine --min-margin) makes a round conservative: the student's candidate replaces a
caption only when its score beats the current caption's by at least that much (under this round's
selector); a narrower win keeps the caption and counts as ``kept_under_margin``.
"""
from __future__ import annotations

import os

import yaml

from vidcurate.operators.base import is_ok
from vidcurate.operators.write.layout import BUILD_VERSION, CONFIG_FILE, INDEX_FILE
from vidcurate.operators.write.versions import list_versions, read_version
from vidcurate.pipelines.versions.select import _as_record_candidate, build_candidates, selector_operator


class RefineError(ValueError):
    """A refinement that cannot run (the message names the input and why)."""


def round0_selector(out: str, version: str) -> tuple[str, dict]:
    """(operator name, settings) of the selector that chose ``version``'s captions."""
    seen = set()
    while version != BUILD_VERSION and version not in seen:
        seen.add(version)
        record = next((v for v in list_versions(out) if v["name"] == version), None)
        if record is None:
            break
        if record.get("selector") and record.get("selector_settings") is not None:
            return record["selector"], dict(record["selector_settings"])
        version = record.get("from_version") or BUILD_VERSION
    path = os.path.join(out, CONFIG_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            steps = (yaml.safe_load(handle) or {}).get("pipeline") or []
    except (OSError, yaml.YAMLError) as exc:
        raise RefineError(f"cannot tell which selector made {out!r}'s captions: {path} unreadable ({exc}); "
                          "name one with --selector") from None
    selectors = [s for s in steps if isinstance(s, dict) and str(s.get("op", "")).endswith("_selector")]
    if not selectors:
        raise RefineError(f"{path} names no selector step: name one with --selector")
    step = dict(selectors[-1])
    return step.pop("op"), step


def previous_rows(out: str, version: str) -> dict[str, dict]:
    """clip id -> {caption, caption_teacher, score, candidates} of ``version`` (``build``: index + shards)."""
    if version != BUILD_VERSION:
        return {cid: {**row, "candidates": [_as_record_candidate(c) for c in row["candidates"] or []]}
                for cid, row in read_version(out, version).items()}
    import pyarrow.parquet as pq

    index = {r["clip_id"]: r for r in pq.read_table(os.path.join(out, INDEX_FILE),
                                                    columns=["clip_id", "caption", "caption_teacher", "score"]
                                                    ).to_pylist()}
    rows = {}
    for clip in build_candidates(out):
        row = index[clip["clip_id"]]
        rows[clip["clip_id"]] = {"clip_id": clip["clip_id"], "caption": row["caption"],
                                 "caption_teacher": row["caption_teacher"], "score": row["score"],
                                 "selector": None, "candidates": clip["candidates"], "error_reason": None}
    return rows


def select_round(out: str, previous: dict[str, dict], student: dict[str, dict], op, label: str,
                 runner: str = "local", min_margin: float = 0.0) -> tuple[list[dict], dict]:
    """(version rows sorted by clip id, counts) of one round: ``student`` maps clip id -> the new
    candidate; the selector runs on ``runner`` (local, or ray), reading clips on the workers."""
    from vidcurate.pipelines.versions.clip_pass import run_over_clips

    counts = {"clips": 0, "changed": 0, "kept": 0, "kept_under_margin": 0, "kept_rejected": 0,
              "no_student_caption": 0}
    fields = {}
    for clip_id, old in previous.items():
        candidates = [c for c in old["candidates"] if c["teacher"] != label]
        if clip_id in student:
            candidates.append(student[clip_id])
        else:
            counts["no_student_caption"] += 1
        fields[clip_id] = {"candidates": candidates}
    rows = []

    def decide(records: list[dict]) -> None:
        rows.extend(_decide(previous[r["clip_id"]], r, label, op.name, counts, min_margin) for r in records)

    run_over_clips(out, [op], keep=("candidates", "caption", "caption_teacher", "score", "selector"), handle=decide,
                   runner=runner, mp4="mp4" in op.requires, fields=fields, only=previous)
    seen = {row["clip_id"] for row in rows}
    for clip_id in sorted(set(previous) - seen):  # not in the index (a version of another build): kept as it was
        rows.append(_decide(previous[clip_id], {"clip_id": clip_id, "status": "rejected"}, label, op.name, counts))
    return sorted(rows, key=lambda r: r["clip_id"]), counts


def _decide(old: dict, record: dict, label: str, selector: str, counts: dict, min_margin: float = 0.0) -> dict:
    counts["clips"] += 1
    # a clip that could not be read comes back without its candidates: it keeps the old ones
    candidates = [_as_record_candidate(c) for c in (record.get("candidates") if "candidates" in record
                                                    else old.get("candidates")) or []]
    rescored = next((c.get("score") for c in candidates if c["text"] == old.get("caption")
                     and c["teacher"] != label), None)
    if is_ok(record) and record.get("caption_teacher") == label and record.get("caption"):
        won = (record.get("score") or 0.0) - (rescored or 0.0)
        if not min_margin or won >= min_margin:
            counts["changed"] += 1
            return {"clip_id": old["clip_id"], "caption": record["caption"], "caption_teacher": label,
                    "score": record.get("score"), "selector": selector, "candidates": candidates,
                    "error_reason": None}
        counts["kept_under_margin"] += 1
    else:
        counts["kept" if is_ok(record) else "kept_rejected"] += 1
    return {"clip_id": old["clip_id"], "caption": old.get("caption"), "caption_teacher": old.get("caption_teacher"),
            "score": rescored if rescored is not None else old.get("score"), "selector": selector,
            "candidates": candidates, "error_reason": old.get("error_reason")}


def selector_for(out: str, version: str, name: str | None, fields: dict | None):
    """The round's selector operator: ``name`` with ``fields``, else round 0's."""
    if name is None:
        name, settings = round0_selector(out, version)
        fields = {**settings, **(fields or {})}
    try:
        return selector_operator(name, fields or {})
    except ValueError as exc:
        raise RefineError(str(exc)) from None

"""What the student learns from: every captioned clip of a caption version, and human corrections.

Pre-training examples are the clips of a version (``build``: the index's captions) that have a
caption, each with the selection score it was chosen with (for gating). Fine-tuning examples
are the ``corrected`` captions of a labels file (the correction mode of `vidcurate annotate`),
newest correction per clip and annotator. Text inputs (title, description, subtitles) come
from each clip's json in its shard, read only when the student's config asks for them.
A validation share of clips (by clip id hash) is held out of pre-training to report the loss.
Cross-fitting (``in_fold``) splits the clips into folds by another hash of the clip id: a
student that leaves a fold out of pre-training is the one that captions it.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from vidcurate.operators.write.layout import INDEX_FILE, read_sample_jsons
from vidcurate.operators.write.versions import version_captions
from vidcurate.pipelines.train.retriever.data import TrainingDataError, in_validation
from vidcurate.schemas.labels import read_labels


@dataclass
class CaptionExample:
    clip_id: str
    caption: str
    score: float | None = None
    texts: dict = field(default_factory=dict)


def version_examples(out: str, version: str | None) -> tuple[str, list[CaptionExample]]:
    """(the version's name, its captioned clips as examples, sorted by clip id)."""
    path = os.path.join(out, INDEX_FILE)
    if not os.path.isfile(path):
        raise TrainingDataError(f"{out!r} holds no finished build ({INDEX_FILE} is missing)")
    try:
        name, overlay = version_captions(out, version)
    except ValueError as exc:
        raise TrainingDataError(str(exc)) from None
    if overlay is None:
        rows = pq.read_table(path, columns=["clip_id", "caption", "score"]).to_pylist()
    else:
        rows = list(overlay.values())
    examples = [CaptionExample(r["clip_id"], r["caption"].strip(), r.get("score")) for r in rows
                if isinstance(r.get("caption"), str) and r["caption"].strip()]
    if not examples:
        raise TrainingDataError(f"caption version {name!r} of {out!r} has no captioned clip to learn from")
    return name, sorted(examples, key=lambda e: e.clip_id)


def correction_examples(labels: str, known: set[str]) -> list[CaptionExample]:
    """The human-corrected captions of clips in the build (one per clip and annotator, the newest)."""
    newest: dict[tuple[str, str], dict] = {}
    for row in read_labels(labels):
        if row.get("corrected") and row["clip_id"] in known:
            key = (row["clip_id"], row["annotator"])
            if key not in newest or row["created_at"] >= newest[key]["created_at"]:
                newest[key] = row
    return [CaptionExample(r["clip_id"], r["corrected"].strip()) for _, r in sorted(newest.items())]


def with_corrections(examples: list[CaptionExample], corrections: list[CaptionExample]
                     ) -> tuple[list[CaptionExample], int]:
    """Pre-training examples with each corrected clip's caption replaced by its human correction (the
    first annotator's, unscored so that gating keeps it), and how many were replaced: a person's
    caption of a clip outranks the teacher caption a version chose for it."""
    fixed: dict[str, str] = {}
    for correction in corrections:
        fixed.setdefault(correction.clip_id, correction.caption)
    out = [CaptionExample(e.clip_id, fixed[e.clip_id], None, e.texts) if e.clip_id in fixed else e
           for e in examples]
    return out, sum(1 for e in examples if e.clip_id in fixed)


def in_fold(clip_id: str, fold: int, folds: int, seed: int = 0) -> bool:
    """Whether ``clip_id`` is in fold ``fold`` of ``folds`` (a hash of the clip id: the same in every round)."""
    digest = hashlib.sha256(f"vidcurate-refine-fold:{seed}:{clip_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % folds == fold


def split_validation(examples: list[CaptionExample], share: float, seed: int
                     ) -> tuple[list[CaptionExample], list[CaptionExample]]:
    train = [e for e in examples if not in_validation(e.clip_id, share, seed)]
    held = [e for e in examples if in_validation(e.clip_id, share, seed)]
    return (train or held), held


def clip_texts(out: str, clip_ids: set[str], fields: list[str]) -> dict[str, dict]:
    """clip id -> {field: text} of the source metadata in each clip's shard json."""
    if not fields:
        return {}
    index = pq.read_table(os.path.join(out, INDEX_FILE), columns=["clip_id", "shard", "key"]).to_pylist()
    by_shard: dict[str, dict[str, str]] = {}
    for row in index:
        if row["clip_id"] in clip_ids:
            by_shard.setdefault(row["shard"], {})[row["key"]] = row["clip_id"]
    found = {}
    for shard, keys in sorted(by_shard.items()):
        for key, meta in read_sample_jsons(out, shard, set(keys)).items():
            found[keys[key]] = {f: (meta.get("source") or {}).get(f) for f in fields}
    return found

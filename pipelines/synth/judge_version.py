"""The simulated annotators judge a caption version: what people on the annotation page would do.

``vidcurate synth annotate OUT --version V`` stands in, on a synthetic world, for a round of
``vidcurate annotate OUT --version V``: the world's own annotators (the AnnotatorConfig in
OUT/config.resolved.yaml) judge the candidates version V holds for each *labelled* clip (held-out
clips are never judged, so scoring stays on unseen clips). A refinement round's version holds
the student's caption among them, so these are judgments of the student's kind of error, which
the world's labels (the six teachers' candidates) never contain.

What a candidate gets wrong is read from its text against the truth with the reader scoring
uses (captions.read_attributes): an attribute stated wrongly or not at all is an error, so a
careful annotator picks a faithful caption and marks "all bad" when none is. The draws are the
annotators' own for this version (seeded by the world's seed and the version's name): the same
command gives the same judgments. They are appended to the labels file after its last
judgment; a clip already judged with exactly these candidates is skipped, so running the
command twice adds nothing.
"""
from __future__ import annotations

import json
import os
import zlib
from collections import Counter
from datetime import timedelta

import pyarrow.parquet as pq
import yaml

from vidcurate.operators.write.layout import CONFIG_FILE, LABELS_FILE
from vidcurate.operators.write.versions import read_version, resolve_version
from vidcurate.pipelines.synth.annotators import EPOCH, AnnotatorConfig, annotate, chosen, shot_attributes
from vidcurate.pipelines.synth.score import caption_errors
from vidcurate.pipelines.synth.write import TRUTH_FILE, SynthError
from vidcurate.schemas.labels import read_labels, write_labels


def world_settings(out: str) -> tuple[int, AnnotatorConfig]:
    """(seed, annotator settings) the world ``out`` was synthesized with."""
    path = os.path.join(out, CONFIG_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            synth = (yaml.safe_load(handle) or {}).get("synth")
        return int(synth["seed"]), AnnotatorConfig(**synth["annotators"])
    except (OSError, yaml.YAMLError, TypeError, KeyError, ValueError) as exc:
        raise SynthError(f"{out!r} is not a synthetic world with readable settings: {path} ({exc!r}); make one "
                         "with `vidcurate synth --clips N --output OUT`") from None


def judge_version(out: str, version: str | None, labels: str | None = None) -> dict:
    """Append the simulated annotators' judgments of ``version``'s candidates (labelled clips only) to
    ``labels`` (default OUT/labels.parquet); returns what was added."""
    truth_path = os.path.join(out, TRUTH_FILE)
    if not os.path.isfile(truth_path):
        raise SynthError(f"{out!r} is not a synthetic world (no {TRUTH_FILE}): the simulated annotators judge "
                         "only clips whose truth is known")
    seed, config = world_settings(out)
    name = resolve_version(out, version)
    rows = read_version(out, name)
    labels = labels or os.path.join(out, LABELS_FILE)
    existing = read_labels(labels) if os.path.isfile(labels) else []
    judged = {(r["clip_id"], _shown(r["candidates"])) for r in existing}
    clips, skipped = [], 0
    for truth in pq.read_table(truth_path, columns=["clip_id", "attributes", "labelled"]).to_pylist():
        row = rows.get(truth["clip_id"])
        if not truth["labelled"] or not row or not row.get("candidates"):
            continue
        if (truth["clip_id"], _shown(row["candidates"])) in judged:
            skipped += 1
            continue
        attributes = json.loads(truth["attributes"])
        candidates = [{"teacher": c["teacher"], "text": c["text"], "errors": caption_errors(c["text"], attributes)}
                      for c in row["candidates"]]
        clips.append((truth["clip_id"], candidates, shot_attributes(attributes)))
    start = max((r["created_at"] for r in existing), default=EPOCH) + timedelta(hours=1)
    added = annotate(clips, seed + zlib.crc32(name.encode("utf-8")), 1.0, config, start=start)
    write_labels(existing + added, labels)
    picks = Counter(chosen(row) or "all bad" for row in added)
    return {"version": name, "labels": labels, "clips": len(clips), "judgments": len(added),
            "skipped_already_judged": skipped, "chosen": dict(sorted(picks.items()))}


def _shown(candidates: list[dict]) -> frozenset:
    return frozenset((c["teacher"], c["text"]) for c in candidates)

"""Scoring captions against the truth of a synthetic dataset (``vidcurate synth score OUT``).

``score(truth_rows, captions_by_clip_id)`` is the one measure, whatever made the captions
(the build's consensus selection in index.parquet, a later caption version, a model's
refinement): every caption is read back with ``captions.read_attributes`` (free text, not
the grammar's word order) and each attribute is right when it states the true value.
A caption is faithful when every attribute is right; a clip without a caption counts as
wrong on everything. ``pick_rates`` are the baselines a selector is judged against: the
faithful share of a random candidate, and of the best candidate (an oracle, the ceiling).

Selection and refinement are judged on the held-out clips (not in labels.parquet), so
anything trained on the labels is not scored on what it saw.
"""
from __future__ import annotations

import json
import os

import pyarrow.parquet as pq

from vidcurate.pipelines.synth.annotators import agreement, chosen
from vidcurate.pipelines.synth.captions import read_attributes
from vidcurate.pipelines.synth.world import ATTRIBUTES
from vidcurate.operators.write.layout import LABELS_FILE
from vidcurate.pipelines.synth.write import TRUTH_FILE, SynthError
from vidcurate.schemas.labels import LabelsFileError, read_labels


def caption_errors(caption: str | None, attributes: dict) -> list[str]:
    """The attributes (ATTRIBUTES) ``caption`` does not state rightly: wrong, missing or ambiguous."""
    stated = read_attributes(caption or "")
    return [a for a in ATTRIBUTES if stated[a] != attributes[a]]


def faithful(caption: str | None, attributes: dict) -> bool:
    return not caption_errors(caption, attributes)


def score(truth_rows: list[dict], captions_by_clip_id: dict[str, str | None]) -> dict:
    """Attribute accuracy (per attribute and overall) and faithful share of the captions of ``truth_rows``."""
    right = {a: 0 for a in ATTRIBUTES}
    whole = 0
    for row in truth_rows:
        attributes = json.loads(row["attributes"])
        stated = read_attributes(captions_by_clip_id.get(row["clip_id"]) or "")
        hits = [stated[a] == attributes[a] for a in ATTRIBUTES]
        for attribute, hit in zip(ATTRIBUTES, hits):
            right[attribute] += hit
        whole += all(hits)
    n = len(truth_rows)
    return {"clips": n, "captioned": sum(1 for r in truth_rows if captions_by_clip_id.get(r["clip_id"])),
            "attributes": {a: right[a] / n if n else None for a in ATTRIBUTES},
            "overall": sum(right.values()) / (n * len(ATTRIBUTES)) if n else None,
            "faithful": whole / n if n else None}


def pick_rates(truth_rows: list[dict]) -> dict:
    """Faithful share of a uniformly random candidate (expected, not sampled) and of the best one."""
    n = len(truth_rows)
    shares = [sum(not c["errors"] for c in r["candidates"]) / len(r["candidates"]) for r in truth_rows
              if r["candidates"]]
    return {"random": sum(shares) / n if n else None,
            "oracle": sum(any(not c["errors"] for c in r["candidates"]) for r in truth_rows) / n if n else None}


def load(out: str) -> tuple[list[dict], dict[str, str | None], list[dict]]:
    """(truth rows, index captions by clip id, label rows) of a synthetic dataset; SynthError if ``out`` is not one."""
    paths = [os.path.join(out, name) for name in (TRUTH_FILE, "index.parquet", LABELS_FILE)]
    missing = [os.path.basename(p) for p in paths if not os.path.isfile(p)]
    if missing:
        raise SynthError(f"{out!r} is not a synthetic dataset (no {', '.join(missing)}); make one with "
                         "`vidcurate synth --clips N --output OUT`")
    try:
        truth = pq.read_table(paths[0]).to_pylist()
        index = pq.read_table(paths[1], columns=["clip_id", "caption"]).to_pylist()
        labels = read_labels(paths[2])
    except LabelsFileError as exc:
        raise SynthError(str(exc)) from None
    except Exception as exc:  # pyarrow raises several types for a file that is not parquet
        raise SynthError(f"{out!r}: cannot read its tables ({exc})") from None
    if not truth or "attributes" not in truth[0] or "candidates" not in truth[0]:
        raise SynthError(f"{out!r}: {TRUTH_FILE} holds no synthetic truth")
    return truth, {r["clip_id"]: r["caption"] for r in index}, labels


def dataset_scores(out: str, version: str | None = None) -> dict:
    """Everything ``vidcurate synth score`` prints: a caption version's captions (default the latest;
    "build" = the index's) on held-out and on all clips, the random and oracle pick rates, and what
    the (simulated) annotators did."""
    from vidcurate.operators.write.versions import version_captions

    truth, captions, labels = load(out)
    name, rows = version_captions(out, version)
    if rows is not None:
        captions = {clip_id: row["caption"] for clip_id, row in rows.items()}
    held_out = [r for r in truth if not r["labelled"]]
    by_clip = {r["clip_id"]: r for r in truth}
    picks = [r for r in labels if r["choice"] >= 0 and r["clip_id"] in by_clip]
    faithful_picks = sum(not by_clip[r["clip_id"]]["candidates"][_truth_position(by_clip[r["clip_id"]], r)]["errors"]
                         for r in picks)
    share, pairs = agreement(labels)
    return {"version": name, "held_out": {**score(held_out, captions), **pick_rates(held_out)},
            "all": {**score(truth, captions), **pick_rates(truth)},
            "labels": {"judgments": len(labels), "clips": len({r["clip_id"] for r in labels}),
                       "all_bad": sum(r["choice"] < 0 for r in labels),
                       "chosen_faithful": faithful_picks / len(picks) if picks else None,
                       "agreement": share, "agreement_pairs": pairs}}


def _truth_position(truth_row: dict, label: dict) -> int:
    teacher = chosen(label)
    return next(i for i, c in enumerate(truth_row["candidates"]) if c["teacher"] == teacher)

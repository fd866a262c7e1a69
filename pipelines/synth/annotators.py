"""Simulated annotators: human judgments of the candidates of a share of the clips (schemas/labels.py).

An annotator sees a clip's candidates in a shuffled order and, being careful with
probability ``accuracy``, picks the best one: a faithful candidate (the longest, as people
prefer the more descriptive of equally right captions; ties at random), or "all bad" (-1)
when none is faithful (with probability ``all_bad_when_none``, else the least wrong). A
careless judgment picks any candidate at random, or "all bad" by mistake
(``all_bad_mistake``). Independently, a share ``acceptable_share`` of judgments also marks
every acceptable (faithful) candidate, each mark flipped with ``acceptable_noise``, and a
share ``correct_share`` writes a corrected caption: the truth in fresh words of the grammar.

A share ``overlap`` of the labelled clips is judged by three annotators instead of one,
so human-human agreement is measurable (:func:`agreement`); it is set by ``accuracy``
(Panda-70M reports 44.9% agreement between people choosing the best caption). Which clips
are labelled, by whom and how is drawn per clip from the seed: deterministic, and the same
clip is judged the same whatever else the world holds.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from vidcurate.pipelines.labels.agreement import agreement as pairwise
from vidcurate.pipelines.synth.captions import realize

EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)  # created_at of the first judgment: no wall clock, no drift


@dataclass(frozen=True)
class AnnotatorConfig:
    accuracy: float = 0.7
    all_bad_when_none: float = 0.9
    all_bad_mistake: float = 0.03
    acceptable_share: float = 0.5
    acceptable_noise: float = 0.05
    correct_share: float = 0.2
    overlap: float = 0.3
    annotators: int = 8


def is_labelled(seed: int, clip_id: str, label_share: float) -> bool:
    """Whether the clip gets human judgments; the others are held out for judging selection and refinement."""
    return random.Random(f"vidcurate-synth-labelled:{seed}:{clip_id}").random() < label_share


def judge(clip_id: str, candidates: list[dict], truth: dict, annotator: str, rng: random.Random,
          config: AnnotatorConfig) -> dict:
    """One judgment (a LABELS row without created_at): ``candidates`` carry text, teacher, errors."""
    order = list(range(len(candidates)))
    rng.shuffle(order)
    shown = [candidates[i] for i in order]
    faithful = [i for i, c in enumerate(shown) if not c["errors"]]
    if rng.random() < config.accuracy:
        if faithful:
            choice = max(faithful, key=lambda i: (len(shown[i]["text"]), rng.random()))
        elif rng.random() < config.all_bad_when_none:
            choice = -1
        else:
            choice = min(range(len(shown)), key=lambda i: (len(shown[i]["errors"]), rng.random()))
    else:
        choice = -1 if rng.random() < config.all_bad_mistake else rng.randrange(len(shown))
    acceptable = None
    if rng.random() < config.acceptable_share:
        acceptable = [i for i in range(len(shown)) if (i in faithful) != (rng.random() < config.acceptable_noise)]
    corrected = realize(truth, rng) if rng.random() < config.correct_share else None
    seconds = round(rng.lognormvariate(math.log(12 + 3 * len(shown)), 0.4), 1)
    return {"clip_id": clip_id, "annotator": annotator,
            "candidates": [{"teacher": c["teacher"], "text": c["text"]} for c in shown],
            "choice": choice, "acceptable": acceptable, "corrected": corrected, "seconds": seconds}


def annotate(clips: list[tuple[str, list[dict], dict]], seed: int, label_share: float,
             config: AnnotatorConfig = AnnotatorConfig(), start: datetime = EPOCH) -> list[dict]:
    """LABELS rows for the labelled ones of ``clips`` ((clip_id, candidates, true stated attributes)).

    ``created_at`` runs on per annotator from ``start`` by the seconds each judgment took."""
    clock = {f"annotator_{n:02d}": start for n in range(config.annotators)}
    rows = []
    for clip_id, candidates, truth in clips:
        if not is_labelled(seed, clip_id, label_share):
            continue
        rng = random.Random(f"vidcurate-synth-annotators:{seed}:{clip_id}")
        people = rng.sample(sorted(clock), 3 if rng.random() < config.overlap else 1)
        for person in people:
            row = judge(clip_id, candidates, truth, person, rng, config)
            row["created_at"] = clock[person]
            clock[person] += timedelta(seconds=row["seconds"] + 5)
            rows.append(row)
    return rows


def chosen(row: dict) -> str | None:
    """The teacher a judgment chose (None for "all bad"): positions differ between annotators."""
    return None if row["choice"] < 0 else row["candidates"][row["choice"]]["teacher"]


def agreement(rows: list[dict]) -> tuple[float | None, int]:
    """Human-human agreement: the share of pairs of judgments of one clip choosing the same
    candidate (both "all bad" agree), and the number of such pairs (pipelines/labels/agreement.py)."""
    found = pairwise(rows)
    return found["overall"], found["pairs"]


def shot_attributes(attributes: dict) -> dict:
    """A truth row's attributes as a Shot states them (what ``realize`` writes a correction from)."""
    stated = {k: attributes[k] for k in ("shape", "colour", "count", "size", "background")}
    stated["movement"] = attributes["direction"] if attributes["motion"] == "moving" else "still"
    return stated


def judge_held_out(truth_rows: list[dict], seed: int, config: AnnotatorConfig = AnnotatorConfig()) -> list[dict]:
    """LABELS rows for the held-out clips of truth.parquet ``truth_rows``, by the same simulated
    annotators (their own random draws): what benchmarks compare a selector's picks with.
    Never part of a dataset's labels.parquet, so nothing trains on them."""
    import json

    clips = []
    for row in truth_rows:
        if row["labelled"]:
            continue
        clips.append((row["clip_id"], row["candidates"], shot_attributes(json.loads(row["attributes"]))))
    return annotate(clips, seed + 7_000_003, 1.0, config)

"""What a caption selector can see, on a synthetic world (``vidcurate synth probe OUT --model CKPT``).

A selector can only take a better caption over a worse one when it tells them apart. This probe
asks the question one attribute at a time: for every held-out clip, the clip's true caption
against the same caption with one attribute wrong, two candidates, scored as a refinement round
scores the current caption against the student's (the retriever's Unmasked Teacher mix over the
two). It counts how often the true caption scores higher (a tie counts half; 50% is blind).

Both captions are written by the world's own grammar (``captions.realize``) from the same random
draws, so the wording differs only where the value does: a paraphrase table's choice depends on
the value written, never on whether it is true. The alterations:

    shape, count, size, background   another value, drawn uniformly
    colour                           another colour, drawn uniformly
    colour pair                      the colour colour_blind confuses it with (red/orange, ...)
    motion                           still <-> moving (a moving clip said still; a still one
                                     said moving in a drawn direction)
    direction                        the opposite direction (moving clips only): a sign error

A selector that is blind to an attribute cannot reject a candidate wrong about it, however it
was trained; comparing this table with the errors a round's student makes (``bench refinement``'s
per-attribute rows) says whether a round can gain.
"""
from __future__ import annotations

import json
import os
import random

import numpy as np
import pyarrow.parquet as pq
import torch

from vidcurate.pipelines.synth.annotators import shot_attributes
from vidcurate.pipelines.synth.captions import realize
from vidcurate.pipelines.synth.teachers import COLOUR_CONFUSION, OPPOSITE
from vidcurate.pipelines.synth.world import BACKGROUNDS, COLOURS, COUNTS, MOVEMENTS, SHAPES, SIZES
from vidcurate.pipelines.synth.write import TRUTH_FILE, SynthError

ALTERATIONS = ("shape", "colour", "colour pair", "count", "size", "motion", "direction", "background")
_VALUES = {"shape": SHAPES, "colour": COLOURS, "count": COUNTS, "size": SIZES, "background": BACKGROUNDS}


def altered(stated: dict, alteration: str, rng: random.Random) -> dict | None:
    """``stated`` (a Shot's attributes: shape, colour, count, size, movement, background) with one
    attribute wrong, or None when the alteration does not apply (a still clip has no direction)."""
    wrong = dict(stated)
    if alteration in _VALUES:
        wrong[alteration] = rng.choice([v for v in _VALUES[alteration] if v != stated[alteration]])
    elif alteration == "colour pair":
        wrong["colour"] = COLOUR_CONFUSION[stated["colour"]]
    elif alteration == "motion":
        moving = [m for m in MOVEMENTS if m != "still"]
        wrong["movement"] = "still" if stated["movement"] != "still" else rng.choice(moving)
    elif alteration == "direction":
        if stated["movement"] == "still":
            return None
        wrong["movement"] = OPPOSITE[stated["movement"]]
    else:
        raise ValueError(f"unknown alteration {alteration!r}; one of {', '.join(ALTERATIONS)}")
    return wrong


def probe_pairs(truth_rows: list[dict], seed: int) -> list[tuple[str, str, str, str]]:
    """(clip id, alteration, true caption, wrong caption) for every clip and alteration that applies."""
    pairs = []
    for row in truth_rows:
        stated = shot_attributes(json.loads(row["attributes"]))
        for alteration in ALTERATIONS:
            draw = random.Random(f"{seed}/{row['clip_id']}/{alteration}")
            wrong = altered(stated, alteration, draw)
            if wrong is None:
                continue
            wording = draw.getrandbits(64)  # the same draws write both captions
            pairs.append((row["clip_id"], alteration, realize(stated, random.Random(wording)),
                          realize(wrong, random.Random(wording))))
    return pairs


@torch.no_grad()
def probe_retriever(model, pairs: list[tuple[str, str, str, str]], frames: dict[str, np.ndarray],
                    batch_size: int = 32) -> dict:
    """Per alteration: pairs, and the share where ``model`` scores the true caption higher (ties half)."""
    model.eval()
    by_clip: dict[str, list[tuple[str, str, str]]] = {}
    for clip_id, alteration, true, wrong in pairs:
        by_clip.setdefault(clip_id, []).append((alteration, true, wrong))
    wins: dict[str, list[float]] = {a: [] for a in ALTERATIONS}
    clip_ids = sorted(by_clip)
    for start in range(0, len(clip_ids), batch_size):
        part = clip_ids[start:start + batch_size]
        scored = model.score_groups(torch.from_numpy(np.stack([frames[c] for c in part])),
                                    [[[true, wrong] for _, true, wrong in by_clip[c]] for c in part])
        for c, groups in zip(part, scored):
            for (alteration, _, _), pair in zip(by_clip[c], groups):
                true_score, wrong_score = pair["scores"]
                wins[alteration].append(1.0 if true_score > wrong_score else 0.5 if true_score == wrong_score else 0.0)
    return {a: {"pairs": len(w), "true_preferred": float(np.mean(w)) if w else None} for a, w in wins.items()}


def probe_world(out: str, checkpoint: str, held_out: bool = True) -> dict:
    """The probe of retriever ``checkpoint`` on world ``out``'s held-out clips (``held_out=False``: all)."""
    from vidcurate.operators.models.retriever import load_retriever
    from vidcurate.pipelines.synth.judge_version import world_settings
    from vidcurate.pipelines.train.retriever.data import clip_frames

    path = os.path.join(out, TRUTH_FILE)
    if not os.path.isfile(path):
        raise SynthError(f"{out!r} is not a synthetic world (no {TRUTH_FILE}): the probe needs the clips' truth")
    rows = [r for r in pq.read_table(path).to_pylist() if not (held_out and r["labelled"])]
    model = load_retriever(checkpoint)
    frames = clip_frames(out, [r["clip_id"] for r in rows], model.config.num_frames, tuple(model.config.frame_size))
    found = probe_retriever(model, probe_pairs(rows, world_settings(out)[0]), frames)
    return {"world": out, "model": checkpoint, "clips": len(rows), "held_out": held_out, "alterations": found}


def probe_table(probes: dict[str, dict], name_width: int) -> list[str]:
    """Report lines: per named retriever, ``probe_retriever``'s share per alteration; [] for no probes."""
    if not probes:
        return []
    names = list(next(iter(probes.values())))
    lines = ["what the selector tells apart (a held-out clip's true caption over one attribute wrong; 50% = blind):",
             f"{'':{name_width}} " + " ".join(f"{a:>11}" for a in names)]
    for model, found in probes.items():
        cells = ["n/a" if found[a]["true_preferred"] is None else f"{found[a]['true_preferred']:.1%}" for a in names]
        lines.append(f"{model:{name_width}} " + " ".join(f"{c:>11}" for c in cells))
    return lines

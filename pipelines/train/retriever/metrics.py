"""How well a retriever agrees with people: R@1, mean rank, calibration (Panda-70M 3.3).

    r_at_1             the top-scored candidate is the one the annotator chose (judgments
                       with a choice; Panda-70M: 21.8% pretrained, 35.9% fine-tuned, 44.9%
                       between two people)
    r_at_1_acceptable  the top-scored candidate is among those the annotator marked
                       acceptable (judgments that mark them)
    mean_rank          the chosen candidate's rank under the scores, 1 = first
    above_threshold    share of clips whose selected caption's matching probability exceeds
                       ``threshold``; Panda-70M's 0.43 rule (89.6% of its clips) is the example
"""
from __future__ import annotations

import numpy as np
import torch

DEFAULT_THRESHOLD = 0.43


def score_examples(model, examples, frames: dict, batch_size: int = 32) -> list[dict]:
    """The retriever's scores for each example's candidates, batched across clips."""
    out = []
    model.eval()
    for start in range(0, len(examples), batch_size):
        part = examples[start:start + batch_size]
        stacked = torch.from_numpy(np.stack([frames[e.clip_id] for e in part]))
        out += model.score_candidates(stacked, [e.texts for e in part])
    return out


def selection_metrics(examples, scores: list[dict], threshold: float = DEFAULT_THRESHOLD) -> dict:
    if not examples:
        return {"judgments": 0, "r_at_1": None, "r_at_1_acceptable": None, "acceptable_judgments": 0,
                "mean_rank": None, "clips": 0, "above_threshold": None, "threshold": threshold}
    hits, ranks, acceptable_hits, chosen_match = [], [], [], {}
    for example, scored in zip(examples, scores):
        values = np.asarray(scored["scores"])
        top = int(values.argmax())
        hits.append(top == example.positive)
        ranks.append(int((values > values[example.positive]).sum()) + 1)
        if example.acceptable:
            acceptable_hits.append(top in example.acceptable)
        chosen_match[example.clip_id] = scored["match"][top]
    return {"judgments": len(examples), "r_at_1": float(np.mean(hits)),
            "r_at_1_acceptable": float(np.mean(acceptable_hits)) if acceptable_hits else None,
            "acceptable_judgments": len(acceptable_hits), "mean_rank": float(np.mean(ranks)),
            "clips": len(chosen_match), "threshold": threshold,
            "above_threshold": float(np.mean([m > threshold for m in chosen_match.values()]))}

"""Inter-annotator agreement on best-caption picks, overall and per pair of annotators: what the
annotation page shows and what `vidcurate synth` reports of its simulated annotators.

Two judgments of one clip agree when they chose the same candidate (the same teacher and text:
positions differ, since every annotator sees their own order) or both said "all bad". Panda-70M
measured 44.9% between two people; the synthetic world's annotators are tuned to about that.
"""
from __future__ import annotations

from collections import defaultdict
from itertools import combinations


def picked(row: dict) -> tuple[str, str] | None:
    """What a judgment chose, independent of the order shown (None: all bad)."""
    if row["choice"] < 0:
        return None
    candidate = row["candidates"][row["choice"]]
    return candidate["teacher"], candidate["text"]


def agreement(rows: list[dict]) -> dict:
    """``{overall, pairs, by_pair}``: the share of agreeing pairs of judgments of one clip, their
    number, and per pair of annotators (sorted names) the clips both judged and their agreement.
    An annotator judging a clip twice is compared with others once per judgment, not with themself."""
    by_clip: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_clip[row["clip_id"]].append(row)
    same = total = 0
    per_pair: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for judged in by_clip.values():
        for a, b in combinations(judged, 2):
            if a["annotator"] == b["annotator"]:
                continue
            agree = picked(a) == picked(b)
            same, total = same + agree, total + 1
            tally = per_pair[tuple(sorted((a["annotator"], b["annotator"])))]
            tally[0], tally[1] = tally[0] + agree, tally[1] + 1
    return {"overall": same / total if total else None, "pairs": total,
            "by_pair": [{"annotators": list(pair), "clips": n, "agreement": agree / n}
                        for pair, (agree, n) in sorted(per_pair.items())]}

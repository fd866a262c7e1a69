"""The refinement's state on disk: what each round has finished, so a crash resumes at its step.

    OUT/refine/state.json          settings, and per round: its step and what it produced
    OUT/refine/r<r>/student/       the round's student checkpoint (and training/ while it trains)
    OUT/refine/r<r>/captions.parquet  the student's caption of every clip (written whole, then renamed)

Steps in order: ``train``, ``caption``, ``select``, ``done``. A step's outputs are published
before the state names the next step, so the state never claims more than is on disk.
"""
from __future__ import annotations

import json
import os

REFINE_DIR, STATE_FILE = "refine", "state.json"
STEPS = ("train", "caption", "select", "done")


def refine_dir(out: str, *parts: str) -> str:
    return os.path.join(out, REFINE_DIR, *parts)


def round_dir(out: str, number: int, *parts: str) -> str:
    return refine_dir(out, f"r{number}", *parts)


def read_state(out: str) -> dict | None:
    path = refine_dir(out, STATE_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_state(out: str, state: dict) -> None:
    os.makedirs(refine_dir(out), exist_ok=True)
    path = refine_dir(out, STATE_FILE)
    with open(f"{path}.tmp", "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2, sort_keys=True)
    os.replace(f"{path}.tmp", path)


def current_round(state: dict) -> dict | None:
    """The newest round not yet done, or None."""
    rounds = state.get("rounds") or []
    return rounds[-1] if rounds and rounds[-1]["step"] != "done" else None

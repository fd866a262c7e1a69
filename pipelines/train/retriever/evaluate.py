"""`vidcurate retriever eval`: a checkpoint's agreement with people on a build's judgments.

Every judgment with a choice counts (no validation split: pass the labels to judge on).
The metrics go to ``OUT/evals/retriever-<checkpoint name>.json`` with what was evaluated,
where the build report shows them.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone

from vidcurate.operators.models.retriever import load_retriever, resolve_device
from vidcurate.operators.write.layout import EVALS_DIR
from vidcurate.pipelines.train.frame_store import frame_store
from vidcurate.pipelines.train.retriever.data import index_rows, read_judgments
from vidcurate.pipelines.train.retriever.metrics import score_examples, selection_metrics


def evaluate_checkpoint(out: str, labels: str, model_ref: str, threshold: float = 0.43,
                        device: str = "auto") -> tuple[dict, str]:
    index = index_rows(out)
    judgments = read_judgments(labels, validation_share=0.0, known_clips=set(index))
    examples = judgments.train
    model = load_retriever(model_ref, resolve_device(device))
    frames = frame_store(out, [e.clip_id for e in examples], model.config.num_frames, model.config.frame_size, index)
    try:
        metrics = selection_metrics(examples, score_examples(model, examples, frames), threshold)
    finally:
        frames.close(remove=True)
    metrics.update(model=model_ref, labels=os.path.abspath(labels), all_bad_left_out=judgments.counts.get("all_bad", 0),
                   evaluated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    name = os.path.basename(os.path.normpath(model_ref)).replace("/", "_") or "retriever"
    path = os.path.join(out, EVALS_DIR, f"retriever-{name}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(f"{path}.tmp", "w", encoding="utf-8") as handle:
        json.dump(metrics, handle, indent=2, sort_keys=True)
    os.replace(f"{path}.tmp", path)
    return metrics, path

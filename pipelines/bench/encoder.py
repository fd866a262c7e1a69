"""`vidcurate bench encoder`: can the student's frame encoder learn the world from clean labels?

The refinement student (pipelines/refine/) can only beat its teachers on clips it has not
learned when its frame encoder generalizes. This probe takes the noise and the decoder out:
the student's own frame encoder and temporal pooling (``StudentConfig().video``, frames and
frame size as the student reads them), trained from scratch with one linear head per scored
attribute on the world's **true** attributes of half of the clips, then scored on the other
half (the split is refine --folds 2's: ``in_fold(clip, 0, 2, seed)``). Per attribute it prints
the accuracy on unseen clips, on the clips it learned, and the majority-class share of the
unseen clips (what a model that ignores the frames reaches). An attribute whose unseen
accuracy stays near that share is one no student on this encoder and this many clips can
caption right on clips it has not learned, whatever its loss does about the noise.

``augment="shift"`` rolls each training batch by up to 8 px each way (the direction of motion
survives a shift; a flip would not).
"""
from __future__ import annotations

import json
import os
import random
import tempfile
import time
from collections import Counter

import numpy as np
import torch
from torch import nn

from vidcurate.operators.models.retriever.towers import TemporalPooling, VideoTower

ATTRIBUTES = ("shape", "colour", "count", "size", "direction", "background")  # motion is read off direction
AUGMENTS = ("none", "shift")
SHIFT = 8
BATCH = 16


def attribute_values() -> dict[str, list]:
    from vidcurate.pipelines.synth.world import BACKGROUNDS, COLOURS, COUNTS, MOVEMENTS, SHAPES, SIZES

    return {"shape": list(SHAPES), "colour": list(COLOURS), "count": list(COUNTS), "size": list(SIZES),
            "direction": ["none", *MOVEMENTS[1:]], "background": list(BACKGROUNDS)}


def run(clips: int, epochs: int, seed: int, augment: str, workdir: str | None, echo=print) -> dict:
    import pyarrow.parquet as pq

    from vidcurate.operators.models.student.config import StudentConfig
    from vidcurate.pipelines.synth.write import synthesized_world
    from vidcurate.pipelines.train.frame_store import frame_store
    from vidcurate.pipelines.train.retriever.data import index_rows
    from vidcurate.pipelines.train.student.data import in_fold
    from vidcurate.pipelines.train.augment import shift_batch

    if augment not in AUGMENTS or clips < 2 or epochs < 1:
        raise ValueError(f"need --augment one of {', '.join(AUGMENTS)} (got {augment!r}), --clips >= 2 and "
                         f"--epochs >= 1 (got {clips}, {epochs})")
    workdir = workdir or tempfile.mkdtemp(prefix="vidcurate-bench-encoder-")
    world = synthesized_world(os.path.join(workdir, f"world-{clips}-{seed}"), clips, seed, 0.0, echo)
    values = attribute_values()
    truth = pq.read_table(os.path.join(world, "truth.parquet"), columns=["clip_id", "attributes"]).to_pylist()
    labels = {r["clip_id"]: [values[a].index(json.loads(r["attributes"])[a]) for a in ATTRIBUTES] for r in truth}
    unseen = sorted(c for c in labels if in_fold(c, 0, 2, seed))
    learned = sorted(c for c in labels if not in_fold(c, 0, 2, seed))
    if not unseen or not learned:
        raise ValueError(f"{clips} clips leave one half of the split empty; use more clips")
    config = StudentConfig()
    store = frame_store(world, sorted(labels), config.num_frames, config.frame_size, index_rows(world))
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = _Probe(config, [len(values[a]) for a in ATTRIBUTES])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)  # the student's scratch defaults

    def batch(ids):
        return (torch.from_numpy(np.stack([store[c] for c in ids])), torch.tensor([labels[c] for c in ids]))

    echo(f"training the student's frame encoder on the true attributes of {len(learned)} clips, {epochs} epochs")
    started, order, history = time.perf_counter(), list(learned), []
    for epoch in range(1, epochs + 1):
        rng.shuffle(order)
        model.train()
        losses = []
        for start in range(0, len(order), BATCH):
            frames, target = batch(order[start:start + BATCH])
            frames = shift_batch(frames, SHIFT if augment == "shift" else 0, rng)
            loss = sum(torch.nn.functional.cross_entropy(logits, target[:, k])
                       for k, logits in enumerate(model(frames)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "seconds": time.perf_counter() - started})
    results = {"clips": len(labels), "epochs": epochs, "seed": seed, "augment": augment, "world": world,
               "learned_clips": len(learned), "unseen_clips": len(unseen), "history": history,
               "unseen": _accuracy(model, batch, unseen), "learned": _accuracy(model, batch, learned),
               "majority": {a: max(Counter(labels[c][k] for c in unseen).values()) / len(unseen)
                            for k, a in enumerate(ATTRIBUTES)}}
    store.close(remove=True)
    with open(os.path.join(workdir, "bench_encoder.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    return results


class _Probe(nn.Module):
    """The student's frame encoder and temporal pooling (operators/models/student/model.py), one
    linear head per attribute on the pooled clip token."""

    def __init__(self, config, sizes: list[int], width: int = 128):
        super().__init__()
        self.video = VideoTower(config.video, width)
        self.temporal = TemporalPooling(config.video.pooling, self.video.width, config.num_frames)
        self.heads = nn.ModuleList(nn.Linear(self.video.width, n) for n in sizes)

    def forward(self, frames: torch.Tensor) -> list[torch.Tensor]:
        pooled, _ = self.temporal(self.video(frames))
        return [head(pooled) for head in self.heads]


def _accuracy(model, batch, ids: list[str]) -> dict:
    right = np.zeros(len(ATTRIBUTES))
    model.eval()
    with torch.no_grad():
        for start in range(0, len(ids), 32):
            frames, target = batch(ids[start:start + 32])
            for k, logits in enumerate(model(frames)):
                right[k] += int((logits.argmax(1) == target[:, k]).sum())
    return {a: float(right[k] / len(ids)) for k, a in enumerate(ATTRIBUTES)}


def report(results: dict) -> str:
    lines = [f"The student's frame encoder on clean labels: {results['learned_clips']} clips learned, "
             f"{results['unseen_clips']} unseen, {results['epochs']} epochs, augment {results['augment']} "
             f"(seed {results['seed']}; {results['history'][-1]['seconds']:.0f} s)",
             f"{'attribute':12} {'unseen':>8} {'learned':>8} {'majority':>9}"]
    for a in ATTRIBUTES:
        lines.append(f"{a:12} {results['unseen'][a]:8.1%} {results['learned'][a]:8.1%} {results['majority'][a]:9.1%}")
    near = [a for a in ATTRIBUTES if results["unseen"][a] < results["majority"][a] + 0.1]
    lines.append("within 10 points of the majority share on unseen clips (not learned from the frames): "
                 + (", ".join(near) if near else "none"))
    return "\n".join(lines)

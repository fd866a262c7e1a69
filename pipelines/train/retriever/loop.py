"""Fine-tuning the retriever on judgments: one loop, run locally or by Ray Train on every worker.

    CKPT/                 the best epoch's retriever (by validation R@1 counting acceptable
                          candidates when marked, else R@1; ties to the lower mean rank), a
                          loadable checkpoint, with metrics.json (every epoch)
    CKPT/training/        the last epoch's retriever, optimizer moments and trainer state:
                          ``resume=True`` continues from it (a killed run loses at most an epoch)

Defaults: pretrained towers get Panda-70M's AdamW lr 2e-5, weight decay 0.02, batch 32,
10 epochs. From-scratch towers start from random weights and need a larger step: lr 1e-3
(with linear warm-up over the first epoch, cosine decay after), the same weight decay and
batch, 10 epochs: on a 3000-clip synthetic world (2,200 judgments) validation R@1 counting
acceptable candidates stopped rising after 7-10 epochs while the loss kept falling.
Under Ray Train (``workers``), every worker takes its share of each epoch's shuffled
examples (``batch_size / workers`` per step), DDP averages the gradients, rank 0 evaluates
and writes checkpoints (CKPT must be on storage every worker's node can reach).
"""
from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from vidcurate.pipelines.train.augment import shift_batch
from vidcurate.operators.models.retriever import (RetrieverConfig, create_retriever, load_retriever,
                                                  load_training_state, resolve_device, save_retriever)
from vidcurate.pipelines.train.frame_store import frame_store
from vidcurate.pipelines.train.retriever.data import TrainingDataError, index_rows, read_judgments
from vidcurate.pipelines.train.retriever.losses import LossConfig
from vidcurate.pipelines.train.retriever.metrics import DEFAULT_THRESHOLD, score_examples, selection_metrics
from vidcurate.pipelines.train.retriever.objective import RetrievalObjective

TRAINING_DIR, METRICS_FILE = "training", "metrics.json"


@dataclass
class FinetuneOptions:
    config: RetrieverConfig = field(default_factory=RetrieverConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    epochs: Optional[int] = None  # default: 10
    lr: Optional[float] = None  # default: 2e-5 when a tower is pretrained, 1e-3 when both are from scratch
    weight_decay: float = 0.02
    batch_size: int = 32
    validation_share: float = 0.1
    threshold: float = DEFAULT_THRESHOLD
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    workers: int = 0  # 0: this process; N: Ray Train with N workers
    progress: bool = True
    init_from: Optional[str] = None  # start from this checkpoint's weights (and its config)
    shift: int = 0  # roll each training batch's frames by up to this many pixels each way (augment.py)

    def pretrained(self, config: RetrieverConfig | None = None) -> bool:
        """Whether a tower of ``config`` (default: this run's own) is pretrained. With ``init_from`` the
        run trains the checkpoint's towers, so finetune asks about the loaded model's config."""
        config = config or self.config
        return config.video.kind == "pretrained" or config.text.kind == "pretrained"

    def resolved_epochs(self) -> int:
        return self.epochs if self.epochs is not None else 10

    def resolved_lr(self, config: RetrieverConfig | None = None) -> float:
        return self.lr if self.lr is not None else (2e-5 if self.pretrained(config) else 1e-3)

    def check(self) -> None:
        if self.shift < 0:
            raise TrainingDataError(f"shift must be >= 0 pixels, got {self.shift}")
        if self.batch_size < 1:
            raise TrainingDataError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.resolved_epochs() < 1:
            raise TrainingDataError(f"epochs must be >= 1, got {self.resolved_epochs()}")
        if not 0 < self.validation_share < 1:
            raise TrainingDataError(f"validation share must be between 0 and 1, got {self.validation_share}")
        if self.workers < 0:
            raise TrainingDataError(f"workers must be >= 0, got {self.workers}")
        if self.workers and self.batch_size < self.workers:
            raise TrainingDataError(f"batch size {self.batch_size} is smaller than {self.workers} workers")


def finetune(out: str, labels: str, output: str, options: FinetuneOptions,
             echo: Callable[[str], None] = print) -> dict:
    """Fine-tune on ``labels``' judgments of build ``out``'s clips; the best checkpoint goes to ``output``."""
    options.check()
    if options.workers:
        from vidcurate.pipelines.train.retriever.ray_train import finetune_on_ray

        return finetune_on_ray(out, labels, output, options, echo)
    return train_loop(out, labels, output, options, echo=echo)


def train_loop(out: str, labels: str, output: str, options: FinetuneOptions, rank: int = 0, world_size: int = 1,
               prepare: Callable | None = None, report: Callable | None = None,
               echo: Callable[[str], None] = print) -> dict:
    torch.manual_seed(options.seed)
    random.seed(options.seed)
    index = index_rows(out)
    judgments = read_judgments(labels, options.validation_share, options.seed, known_clips=set(index))
    if not judgments.train:
        raise TrainingDataError(f"labels file {labels!r}: no judgment with a chosen caption to train on "
                                f"({judgments.counts})")
    device = resolve_device(options.device)
    model = load_retriever(options.init_from).train() if options.init_from else create_retriever(options.config)
    config = model.config
    # This rank's fixed part of the judgments (shuffled every epoch) and every validation clip: frames
    # decoded once into a file on local disk (pipelines/train/frame_store.py), not held in memory.
    part = judgments.train[rank::world_size]
    frames = frame_store(out, [e.clip_id for e in part + judgments.validation], config.num_frames,
                         config.frame_size, index, progress=options.progress and rank == 0)
    model.to(device)
    objective = RetrievalObjective(model, options.loss, seed=options.seed + rank)
    if prepare is not None:
        objective = prepare(objective)
    epochs, lr = options.resolved_epochs(), options.resolved_lr(config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                  weight_decay=options.weight_decay, betas=(0.9, 0.999))
    per_rank = max(1, options.batch_size // world_size)
    steps_per_epoch = math.ceil(len(judgments.train) / world_size / per_rank)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(steps_per_epoch, epochs * steps_per_epoch))
    state = {"epoch": 0, "best": None, "history": []}
    resume_dir = os.path.join(output, TRAINING_DIR)
    if options.resume and os.path.isfile(os.path.join(resume_dir, "trainer_state.json")):
        resumed = load_retriever(resume_dir, device)
        model.load_state_dict(resumed.state_dict())
        model.train()
        state = load_training_state(resume_dir, optimizer)
        schedule.last_epoch = state["epoch"] * steps_per_epoch - 1
        schedule.step()
        if rank == 0:
            echo(f"resuming {output} after epoch {state['epoch']}")
    provenance = {"build": os.path.abspath(out), "labels": os.path.abspath(labels), **judgments.counts,
                  "loss": vars(options.loss), "lr": lr, "weight_decay": options.weight_decay,
                  "batch_size": options.batch_size, "workers": max(1, world_size), "seed": options.seed,
                  "shift": options.shift}
    for epoch in range(state["epoch"], epochs):
        model.train()
        # the negatives mined in an epoch depend on (seed, rank, epoch) only: a resumed run mines the same
        getattr(objective, "module", objective).generator.manual_seed(options.seed * 1_000_003 + rank * 7919 + epoch)
        order = list(part)
        random.Random(f"{options.seed}:{epoch}").shuffle(order)
        mine = order[:steps_per_epoch * per_rank]
        shifts = random.Random(f"{options.seed}:{rank}:{epoch}:shift")  # a resumed epoch shifts the same
        losses = _run_epoch(objective, optimizer, schedule, mine, frames, per_rank,
                            f"epoch {epoch + 1}/{epochs}", options.progress and rank == 0, options.shift, shifts)
        metrics = selection_metrics(judgments.validation, score_examples(model, judgments.validation, frames),
                                    options.threshold)
        entry = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else None, **metrics}
        state["history"].append(entry)
        state["epoch"] = epoch + 1
        better = _better(entry, state["best"])
        if better:
            state["best"] = entry
        if rank == 0:
            config.trained_on = {**provenance, "epochs": epoch + 1}
            summary = {"best": state["best"], "history": state["history"], "training": provenance}
            if better:
                save_retriever(model, output, extra={METRICS_FILE: summary}, keep=(TRAINING_DIR,))
            else:
                _write_metrics(output, summary)
            save_retriever(model, resume_dir, optimizer, {k: state[k] for k in ("epoch", "best", "history")})
            echo(epoch_line(entry))
        if report is not None:
            report({k: v for k, v in entry.items() if v is not None})
    frames.close(remove=True)
    return {"best": state["best"], "history": state["history"], "training": provenance, "output": output}


def _run_epoch(objective, optimizer, schedule, examples, frames, batch_size, label, progress, shift=0,
               shifts=None) -> list[float]:
    from tqdm import tqdm

    losses = []
    batches = [examples[i:i + batch_size] for i in range(0, len(examples), batch_size)]
    for batch in tqdm(batches, desc=label, disable=not progress, leave=False):
        stacked = shift_batch(torch.from_numpy(np.stack([frames[e.clip_id] for e in batch])), shift, shifts)
        loss, _ = objective(stacked, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    return losses


def _warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def _better(entry: dict, best: dict | None) -> bool:
    """Validation R@1 counting any acceptable candidate where the judgments mark them (a person's
    single pick among several right captions is a noisy target), else R@1 against the pick;
    ties go to the lower mean rank."""
    if best is None:
        return True
    key = "r_at_1_acceptable" if entry.get("r_at_1_acceptable") is not None else "r_at_1"
    if entry[key] is None or best.get(key) is None:
        return False
    return (entry[key], -entry["mean_rank"]) > (best[key], -best["mean_rank"])


def _write_metrics(output: str, summary: dict) -> None:
    import json

    path = os.path.join(output, METRICS_FILE)
    with open(f"{path}.tmp", "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2, sort_keys=True)
    os.replace(f"{path}.tmp", path)


def epoch_line(entry: dict) -> str:
    def pct(value):
        return "n/a" if value is None else f"{value:.1%}"
    loss = "n/a" if entry["loss"] is None else f"{entry['loss']:.3f}"
    rank = "n/a" if entry["mean_rank"] is None else f"{entry['mean_rank']:.2f}"
    return (f"epoch {entry['epoch']}: loss {loss}; validation R@1 {pct(entry['r_at_1'])}, R@1 acceptable "
            f"{pct(entry['r_at_1_acceptable'])}, mean rank {rank} ({entry['judgments']} judgments)")

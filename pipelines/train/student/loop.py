"""Training the student captioner: pre-train on a version's captions with noise control, then
fine-tune on human corrections; one loop, run in this process or by Ray Train on every worker.

    CKPT/            the trained student (a loadable checkpoint) with metrics.json: every epoch's
                     training loss, validation loss (plain token cross-entropy on held-out clips),
                     the TaiLr gamma used and AdaTaiLr's noise estimate
    CKPT/training/   the last finished epoch's student, optimizer moments and trainer state:
                     ``resume=True`` continues from it (a killed run loses at most one epoch)

Phases: ``pretrain`` (every captioned clip of the version but the validation share, with the
noise control of losses.py and optional score gating; with ``corrections_in_pretrain``, a clip with
a human correction learns the correction instead) for ``epochs``, then ``finetune`` (the
labels' corrected captions, clean by construction: plain likelihood) for ``finetune_epochs``
when there are corrections. Defaults for scratch models: AdamW lr 1e-3 (warm-up over the first
epoch, cosine decay), weight decay 0.01, batch 16, 30 pre-training and 5 fine-tuning epochs at
lr 3e-4; pretrained parts: lr 5e-5. The scratch frame encoder needs steps: on a 600-clip
synthetic world (570 training captions of one teacher that confuses colours on 40% of clips),
the greedy captions' attribute accuracy was 67.8% after 20 epochs and 91.5% after 60 (shape 33%
-> 85%, direction 42% -> 95%), on the clips it had learned: on clips it had not (refine --folds 2)
it was 66.9%, and a longer run memorizes more (the validation loss rose from epoch 20 on); 30 is
the default because a real corpus has far more clips per epoch, and ``epochs`` scales it down.
``init_from`` starts from an earlier student (a later flywheel round continues the last one:
"repeat with the stronger model").
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from vidcurate.operators.models.checkpoint_folder import load_training_state
from vidcurate.operators.models.student import (StudentConfig, create_student, load_student, resolve_device,
                                                save_student)
from vidcurate.pipelines.train.augment import shift_batch
from vidcurate.pipelines.train.frame_store import frame_store
from vidcurate.pipelines.train.retriever.data import TrainingDataError, index_rows
from vidcurate.pipelines.train.retriever.loop import _warmup_cosine
from vidcurate.pipelines.train.student.data import (clip_texts, correction_examples, in_fold, split_validation,
                                                    version_examples, with_corrections)
from vidcurate.pipelines.train.student.losses import (GammaSchedule, NoiseControl, caption_contrastive_loss,
                                                      gate_weights, token_loss)

TRAINING_DIR, METRICS_FILE = "training", "metrics.json"


@dataclass
class StudentTrainOptions:
    config: StudentConfig = field(default_factory=StudentConfig)
    control: NoiseControl = field(default_factory=NoiseControl)
    epochs: int = 30
    finetune_epochs: int = 5
    lr: Optional[float] = None  # default 1e-3 scratch, 5e-5 with pretrained parts
    finetune_lr: Optional[float] = None  # default lr * 0.3
    weight_decay: float = 0.01
    batch_size: int = 16
    validation_share: float = 0.05
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    workers: int = 0
    progress: bool = True
    init_from: Optional[str] = None
    corrections_in_pretrain: bool = False  # True: a corrected clip pre-trains on its correction (measured: no gain)
    leave_out: Optional[tuple[int, int]] = None  # (fold, folds): pre-train without that fold's clips (cross-fitting)
    shift: int = 0  # augmentation: each training batch's frames rolled by up to this many pixels each way (0: off)

    def pretrained(self) -> bool:
        return self.config.video.kind == "pretrained" or self.config.decoder.kind == "pretrained"

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else (5e-5 if self.pretrained() else 1e-3)

    def check(self) -> None:
        self.control.check()
        if self.batch_size < 1 or self.epochs < 0 or self.finetune_epochs < 0 or self.epochs + self.finetune_epochs < 1:
            raise TrainingDataError(f"need batch_size >= 1 and at least one epoch (batch {self.batch_size}, "
                                    f"epochs {self.epochs}, finetune epochs {self.finetune_epochs})")
        if not 0 < self.validation_share < 1:
            raise TrainingDataError(f"validation share must be between 0 and 1, got {self.validation_share}")
        if self.leave_out is not None and not (self.leave_out[1] >= 2 and 0 <= self.leave_out[0] < self.leave_out[1]):
            raise TrainingDataError(f"leave_out must be (fold, folds) with folds >= 2 and 0 <= fold < folds, "
                                    f"got {self.leave_out}")
        if self.shift < 0:
            raise TrainingDataError(f"need shift >= 0 pixels (got {self.shift})")
        if self.workers < 0 or (self.workers and self.batch_size < self.workers):
            raise TrainingDataError(f"need workers >= 0 and batch size >= workers (got {self.workers}, "
                                    f"{self.batch_size})")


def train_student(out: str, version: str | None, output: str, options: StudentTrainOptions,
                  labels: str | None = None, echo: Callable[[str], None] = print) -> dict:
    """Train a student on version ``version`` of build ``out`` (and ``labels``' corrections) into ``output``."""
    options.check()
    if options.workers:
        from vidcurate.pipelines.train.student.ray_train import train_on_ray

        return train_on_ray(out, version, output, options, labels, echo)
    return train_loop(out, version, output, options, labels, echo=echo)


def train_loop(out: str, version: str | None, output: str, options: StudentTrainOptions, labels: str | None = None,
               rank: int = 0, world_size: int = 1, prepare: Callable | None = None, report: Callable | None = None,
               echo: Callable[[str], None] = print) -> dict:
    torch.manual_seed(options.seed)
    random.seed(options.seed)
    name, examples = version_examples(out, version)
    if options.leave_out:
        examples = [e for e in examples if not in_fold(e.clip_id, *options.leave_out, options.seed)]
        if not examples:
            raise TrainingDataError(f"caption version {name!r} of {out!r}: no captioned clip outside fold "
                                    f"{options.leave_out[0]} of {options.leave_out[1]}")
    train, held = split_validation(examples, options.validation_share, options.seed)
    index = index_rows(out)
    corrections = correction_examples(labels, set(index)) if labels else []
    replaced = 0
    if corrections and options.corrections_in_pretrain:
        train, replaced = with_corrections(train, corrections)
    device = resolve_device(options.device)
    if options.init_from:
        model = load_student(options.init_from, device)
    else:
        model = create_student(options.config, [e.caption for e in train + corrections])
    config = model.config
    every = train + held + corrections
    # This rank's fixed part of each phase (shuffled every epoch), and every validation clip: its frames
    # are decoded once into a file on local disk (pipelines/train/frame_store.py), not held in memory.
    parts = {"pretrain": train[rank::world_size], "finetune": corrections[rank::world_size]}
    frames = frame_store(out, [e.clip_id for e in parts["pretrain"] + parts["finetune"] + held],
                         config.num_frames, config.frame_size, index, progress=options.progress and rank == 0)
    texts = clip_texts(out, {e.clip_id for e in every}, list(config.text_inputs))
    for example in every:
        example.texts = texts.get(example.clip_id, {})
    model.to(device).train()
    trained = prepare(model) if prepare is not None else model
    phases = [("pretrain", train, options.epochs, options.resolved_lr(), options.control)]
    if corrections and options.finetune_epochs:
        clean = NoiseControl(loss="mle", epsilon=options.control.epsilon)
        phases.append(("finetune", corrections, options.finetune_epochs,
                       options.finetune_lr or options.resolved_lr() * 0.3, clean))
    state = {"phase": 0, "epoch": 0, "history": [], "gamma": None}
    resume_dir = os.path.join(output, TRAINING_DIR)
    optimizer = _optimizer(model, phases[0][3], options)
    if options.resume and os.path.isfile(os.path.join(resume_dir, "trainer_state.json")):
        resumed = load_student(resume_dir, device)
        model.load_state_dict(resumed.state_dict())
        with open(os.path.join(resume_dir, "trainer_state.json"), encoding="utf-8") as handle:
            phase_then = json.load(handle)["phase"]
        optimizer = _optimizer(model, phases[phase_then][3], options)
        state = load_training_state(resume_dir, optimizer)
        if rank == 0:
            echo(f"resuming {output}: {phases[state['phase']][0]} after epoch {state['epoch']}")
    provenance = {"build": os.path.abspath(out), "version": name, "labels": labels and os.path.abspath(labels),
                  "captions": len(train), "validation_captions": len(held), "corrections": len(corrections),
                  "corrected_in_pretrain": replaced, "left_out_fold": options.leave_out and list(options.leave_out),
                  "control": vars(options.control), "batch_size": options.batch_size, "seed": options.seed,
                  "shift": options.shift,
                  "init_from": options.init_from and os.path.abspath(options.init_from),
                  "workers": max(1, world_size)}
    for number, (phase, items, epochs, lr, control) in enumerate(phases):
        if number < state["phase"]:
            continue
        if number > state["phase"]:
            state.update(phase=number, epoch=0, gamma=None)
            optimizer = _optimizer(model, lr, options)
        gammas = GammaSchedule(control)
        if state.get("gamma"):
            gammas.restore(state["gamma"])
        per_rank = max(1, options.batch_size // world_size)
        steps = math.ceil(len(items) / world_size / per_rank)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(steps, max(1, epochs * steps)))
        if state["epoch"]:  # a resumed phase continues its learning-rate schedule where it stopped
            schedule.last_epoch = state["epoch"] * steps - 1
            schedule.step()
        for epoch in range(state["epoch"], epochs):
            model.train()
            order = list(parts[phase])
            random.Random(f"{options.seed}:{phase}:{epoch}").shuffle(order)
            # Dropout and text-dropout draws depend on (seed, phase, epoch, rank) only: a resumed run
            # reaches the same weights as one never interrupted.
            torch.manual_seed(options.seed * 1_000_003 + number * 7919 + epoch * 31 + rank)
            random.seed(options.seed * 7919 + number * 131 + epoch * 31 + rank)
            mine = order[:steps * per_rank]
            clock = time.perf_counter()
            loss, sample_losses, weight, contrast = _run_epoch(trained, optimizer, schedule, mine, frames, per_rank, control,
                                                     gammas.gamma, f"{phase} {epoch + 1}/{epochs}",
                                                     options.progress and rank == 0, options.shift)
            entry = {"phase": phase, "epoch": epoch + 1, "loss": loss, "gamma": gammas.gamma,
                     "mean_token_weight": weight, "contrastive_loss": contrast, "steps": steps, "seconds": time.perf_counter() - clock,
                     "validation_loss": validation_loss(model, held, frames, per_rank)}
            gammas.end_epoch(sample_losses)
            if control.loss == "adatailr":
                entry["noise_estimate"] = gammas.history[-1]["noise_estimate"]
            state["history"].append(entry)
            state.update(epoch=epoch + 1, gamma=gammas.state())
            if rank == 0:
                save_student(model, resume_dir, optimizer, {k: state[k] for k in ("phase", "epoch", "history", "gamma")})
                echo(epoch_line(entry))
            if report is not None:
                report({k: v for k, v in entry.items() if isinstance(v, (int, float))})
    summary = {"history": state["history"], "training": provenance}
    if rank == 0:
        save_student(model, output, extra={METRICS_FILE: summary}, keep=(TRAINING_DIR,))
    frames.close(remove=True)
    return {**summary, "output": output}


def _optimizer(model, lr: float, options: StudentTrainOptions):
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                             weight_decay=options.weight_decay, betas=(0.9, 0.999))


def _run_epoch(model, optimizer, schedule, examples, frames, batch_size, control, gamma, label, progress, shift=0
               ) -> tuple[float | None, list[float], float | None, float | None]:
    """(mean loss, each caption's mean NLL, mean token weight, mean contrastive loss or None) of one epoch."""
    from tqdm import tqdm

    losses, per_sample, weights, contrasts = [], [], [], []
    contrastive = getattr(model, "module", model).config.contrastive
    batches = [examples[i:i + batch_size] for i in range(0, len(examples), batch_size)]
    for batch in tqdm(batches, desc=label, disable=not progress, leave=False):
        stacked = torch.from_numpy(np.stack([frames[e.clip_id] for e in batch]))
        stacked = shift_batch(stacked, shift, random)
        captions = [e.caption for e in batch]
        out = model(stacked, captions, [e.texts for e in batch])
        gate = gate_weights([e.score for e in batch], control)
        loss, sample_nll, mean_weight = token_loss(out.logits, out.targets, out.mask, gamma, control.min_weight,
                                                   control.epsilon, None if gate is None else gate.to(out.logits.device))
        if out.similarity is not None:
            contrast = caption_contrastive_loss(out.similarity, captions)
            loss = loss + contrastive * contrast
            contrasts.append(float(contrast.detach()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        per_sample += sample_nll.tolist()
        weights.append(float(mean_weight))
    mean = (lambda values: float(np.mean(values)) if values else None)
    return mean(losses), per_sample, mean(weights), mean(contrasts)


@torch.no_grad()
def validation_loss(model, examples, frames, batch_size: int) -> float | None:
    """Mean token cross-entropy of the held-out captions (no noise control, no text dropout)."""
    if not examples:
        return None
    model = getattr(model, "module", model)
    model.eval()
    total = count = 0.0
    for i in range(0, len(examples), batch_size):
        batch = examples[i:i + batch_size]
        stacked = torch.from_numpy(np.stack([frames[e.clip_id] for e in batch]))
        out = model(stacked, [e.caption for e in batch], [e.texts for e in batch])
        nll = torch.nn.functional.cross_entropy(out.logits[out.mask].float(), out.targets[out.mask], reduction="sum")
        total, count = total + float(nll), count + float(out.mask.sum())
    model.train()
    return total / max(count, 1.0)


def epoch_line(entry: dict) -> str:
    extra = f", noise estimate {entry['noise_estimate']:.2f}" if entry.get("noise_estimate") is not None else ""
    val = "n/a" if entry["validation_loss"] is None else f"{entry['validation_loss']:.3f}"
    loss = "n/a" if entry["loss"] is None else f"{entry['loss']:.3f}"
    contrast = f", contrastive {entry['contrastive_loss']:.3f}" if entry.get("contrastive_loss") is not None else ""
    return (f"{entry['phase']} epoch {entry['epoch']}: loss {loss} (gamma {entry['gamma']:.2f}{extra}{contrast}); "
            f"validation loss {val}")

"""The student's training loop on Ray Train: TorchTrainer runs ``train_loop`` on N workers under DDP.

Each worker reads the build itself (it must be on storage every node reaches, as the output
folder must), learns the same tokenizer from the same captions, takes its share of each epoch's
shuffled captions and wraps the student with ``ray.train.torch.prepare_model``
(DistributedDataParallel; the worker's GPU when the cluster has GPUs). Rank 0 writes the
checkpoints and reports each epoch (pipelines/train/ray_fit.py runs the trainer).
"""
from __future__ import annotations

import os


def _worker(config: dict) -> None:
    import ray.train
    import ray.train.torch

    from vidcurate.pipelines.train.student.loop import train_loop

    context = ray.train.get_context()
    # find_unused_parameters: a frozen or text-less part of the student gets no gradient in a step
    train_loop(config["out"], config["version"], config["output"], config["options"], config["labels"],
               rank=context.get_world_rank(), world_size=context.get_world_size(),
               prepare=lambda model: ray.train.torch.prepare_model(model, parallel_strategy_kwargs={
                   "find_unused_parameters": True}),
               report=ray.train.report)


def train_on_ray(out: str, version: str | None, output: str, options, labels: str | None, echo=print) -> dict:
    from vidcurate.pipelines.train.ray_fit import fit_on_ray
    from vidcurate.pipelines.train.student.loop import METRICS_FILE, epoch_line

    config = {"out": os.path.abspath(out), "version": version, "output": os.path.abspath(output),
              "labels": labels and os.path.abspath(labels)}
    return fit_on_ray(_worker, config, options, "vidcurate-student", output, METRICS_FILE, epoch_line, echo)

"""The fine-tuning loop on Ray Train: TorchTrainer runs ``train_loop`` on N workers under DDP.

Each worker reads the build and the labels itself (they must be on storage every node
reaches, as CKPT must), takes its share of each epoch's examples and wraps the objective
with ``ray.train.torch.prepare_model`` (DistributedDataParallel, the worker's GPU when the
cluster has GPUs); rank 0 evaluates, writes checkpoints and reports each epoch's metrics
to Ray (pipelines/train/ray_fit.py runs the trainer).
"""
from __future__ import annotations

import os


def _worker(config: dict) -> None:
    import ray.train
    import ray.train.torch

    from vidcurate.pipelines.train.retriever.loop import train_loop

    context = ray.train.get_context()
    train_loop(config["out"], config["labels"], config["output"], config["options"],
               rank=context.get_world_rank(), world_size=context.get_world_size(),
               prepare=ray.train.torch.prepare_model, report=ray.train.report)


def finetune_on_ray(out: str, labels: str, output: str, options, echo=print) -> dict:
    from vidcurate.pipelines.train.ray_fit import fit_on_ray
    from vidcurate.pipelines.train.retriever.loop import METRICS_FILE, epoch_line

    paths = {"out": os.path.abspath(out), "labels": os.path.abspath(labels), "output": os.path.abspath(output)}
    return fit_on_ray(_worker, paths, options, "vidcurate-retriever", output, METRICS_FILE, epoch_line, echo)

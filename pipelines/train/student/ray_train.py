"""The student's training loop on Ray Train: TorchTrainer runs ``train_loop`` on N workers under DDP.

Each worker reads the build itself (it must be on storage every node reaches, as the output
folder must), learns the same tokenizer from the same captions, takes its share of each epoch's
shuffled captions and wraps the student with ``ray.train.torch.prepare_model``
(DistributedDataParallel; the worker's GPU when the cluster has GPUs). Rank 0 writes the
checkpoints and reports each epoch. Ray is joined at RAY_ADDRESS when set, else started locally.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile


def _worker(config: dict) -> None:
    import ray.train
    import ray.train.torch

    from vidcurate.pipelines.train.student.loop import train_loop

    context = ray.train.get_context()
    train_loop(config["out"], config["version"], config["output"], config["options"], config["labels"],
               rank=context.get_world_rank(), world_size=context.get_world_size(),
               prepare=lambda model: ray.train.torch.prepare_model(model, parallel_strategy_kwargs={
                   "find_unused_parameters": True}),
               report=ray.train.report)


def train_on_ray(out: str, version: str | None, output: str, options, labels: str | None, echo=print) -> dict:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from vidcurate.pipelines.train.student.loop import METRICS_FILE, epoch_line

    started_here = False
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False,
                 logging_level=logging.WARNING, configure_logging=True)
        started_here = True
    storage = tempfile.mkdtemp(prefix="vidcurate-ray-train-")
    try:
        use_gpu = bool(ray.cluster_resources().get("GPU", 0)) and options.device != "cpu"
        options.progress = False
        config = {"out": os.path.abspath(out), "version": version, "output": os.path.abspath(output),
                  "labels": labels and os.path.abspath(labels), "options": options}
        trainer = TorchTrainer(_worker, train_loop_config=config,
                               scaling_config=ScalingConfig(num_workers=options.workers, use_gpu=use_gpu,
                                                            resources_per_worker={"CPU": 1}),
                               run_config=RunConfig(name="vidcurate-student", storage_path=storage))
        trainer.fit()
        with open(os.path.join(output, METRICS_FILE), encoding="utf-8") as handle:
            summary = json.load(handle)
        for entry in summary["history"]:
            echo(epoch_line(entry))
        return {**summary, "output": output}
    finally:
        shutil.rmtree(storage, ignore_errors=True)
        if started_here:
            ray.shutdown()

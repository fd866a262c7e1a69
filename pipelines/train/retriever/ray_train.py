"""The fine-tuning loop on Ray Train: TorchTrainer runs ``train_loop`` on N workers under DDP.

Each worker reads the build and the labels itself (they must be on storage every node
reaches, as CKPT must), takes its share of each epoch's examples and wraps the objective
with ``ray.train.torch.prepare_model`` (DistributedDataParallel, the worker's GPU when the
cluster has GPUs); rank 0 evaluates, writes checkpoints and reports each epoch's metrics
to Ray. Ray is joined at RAY_ADDRESS when set, else started locally.
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

    from vidcurate.pipelines.train.retriever.loop import train_loop

    context = ray.train.get_context()
    train_loop(config["out"], config["labels"], config["output"], config["options"],
               rank=context.get_world_rank(), world_size=context.get_world_size(),
               prepare=ray.train.torch.prepare_model, report=ray.train.report)


def finetune_on_ray(out: str, labels: str, output: str, options, echo=print) -> dict:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from vidcurate.pipelines.train.retriever.loop import METRICS_FILE, epoch_line

    started_here = False
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS") or "local"
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, configure_logging=True)
        started_here = True
    storage = tempfile.mkdtemp(prefix="vidcurate-ray-train-")
    try:
        use_gpu = bool(ray.cluster_resources().get("GPU", 0)) and options.device != "cpu"
        paths = {"out": os.path.abspath(out), "labels": os.path.abspath(labels), "output": os.path.abspath(output)}
        options.progress = False  # one bar per worker would interleave; epochs are reported as lines
        trainer = TorchTrainer(_worker, train_loop_config={**paths, "options": options},
                               scaling_config=ScalingConfig(num_workers=options.workers, use_gpu=use_gpu,
                                                            resources_per_worker={"CPU": 1}),
                               run_config=RunConfig(name="vidcurate-retriever", storage_path=storage))
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

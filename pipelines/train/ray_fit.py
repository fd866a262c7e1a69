"""Running a training loop on Ray Train: TorchTrainer with N workers (DDP), the same for every trainer.

``worker`` is the per-worker function (it calls the loop with its rank and world size), ``config``
what it receives. Ray is joined at RAY_ADDRESS when set, else started locally (and shut down
after). Workers use the cluster's GPUs when it has any and ``device`` is not ``cpu``. Rank 0 writes
``output/metrics_file``; its epochs are echoed once the fit is done (a progress bar per worker
would interleave, so progress is off).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from typing import Callable


def fit_on_ray(worker: Callable[[dict], None], config: dict, options, name: str, output: str, metrics_file: str,
               epoch_line: Callable[[dict], str], echo: Callable[[str], None] = print) -> dict:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    started_here = False
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False,
                 logging_level=logging.WARNING, configure_logging=True)
        started_here = True
    storage = tempfile.mkdtemp(prefix="vidcurate-ray-train-")
    try:
        use_gpu = bool(ray.cluster_resources().get("GPU", 0)) and options.device != "cpu"
        options.progress = False
        trainer = TorchTrainer(worker, train_loop_config={**config, "options": options},
                               scaling_config=ScalingConfig(num_workers=options.workers, use_gpu=use_gpu,
                                                            resources_per_worker={"CPU": 1}),
                               run_config=RunConfig(name=name, storage_path=storage))
        trainer.fit()
        with open(os.path.join(output, metrics_file), encoding="utf-8") as handle:
            summary = json.load(handle)
        for entry in summary["history"]:
            echo(epoch_line(entry))
        return {**summary, "output": output}
    finally:
        shutil.rmtree(storage, ignore_errors=True)
        if started_here:
            ray.shutdown()

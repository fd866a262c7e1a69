"""A model stage as a Beam RunInference ModelHandler: the operator is the model.

``load_model`` sets up a copy of the operator (its ``setup()`` loads the weights) once per
process, or once per machine when the handler shares it (``share_model_across_processes``:
RunInference then keeps one copy in a shared process, as Beam does for large models);
``run_inference`` streams a batch of records through it and returns every record it
produced (teachers give one out per record in; RunInference passes them on as they are).
Batching follows the operator's declared batch size; the declared Resources become Beam
resource hints (``min_ram``, and ``accelerator`` for a GPU stage).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from typing import Any, Optional

from apache_beam.ml.inference.base import ModelHandler

from vidcurate.pipelines.runners.beam.transforms import report_stats


class OperatorModelHandler(ModelHandler[dict, dict, Any]):
    def __init__(self, stage, share_across_processes: bool = False, accelerator: str | None = None):
        super().__init__()
        self.stage = stage
        self.resources = stage.declared_resources()
        self._share = share_across_processes
        self._accelerator = accelerator

    def load_model(self):
        model = copy.deepcopy(self.stage)
        model.ensure_setup()
        return model

    def run_inference(self, batch: Sequence[dict], model, inference_args: Optional[dict[str, Any]] = None
                      ) -> Iterable[dict]:
        before = model.stats.copy()
        out = [record for records in model.stream([list(batch)]) for record in records]
        report_stats(model.stats.since(before))
        return out

    def batch_elements_kwargs(self):
        size = self.resources.batch_size
        return {"min_batch_size": size, "max_batch_size": size}

    def share_model_across_processes(self) -> bool:
        return self._share

    def get_resource_hints(self) -> dict:
        hints = {}
        if self.resources.memory_gb:
            hints["min_ram"] = f"{self.resources.memory_gb}GB"
        if self.resources.gpus:
            kind = self._accelerator or "nvidia-tesla-t4"
            hints["accelerator"] = f"type:{kind};count:{math.ceil(self.resources.gpus)};install-nvidia-driver"
        return hints

    def get_metrics_namespace(self) -> str:
        return f"vidcurate.{self.stage.name}"

    def get_num_bytes(self, batch: Sequence[dict]) -> int:
        return sum(len(record.get("mp4") or b"") for record in batch)

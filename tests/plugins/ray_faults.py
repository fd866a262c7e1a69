"""An operator that kills its worker process the first time it runs (a crashed native
library, an OOM kill), for the Ray runner's fault test. Used as ``op: ray_faults:CrashOnce``
with tests/plugins on PYTHONPATH."""
from __future__ import annotations

import os
from typing import ClassVar

from vidcurate.operators.base import Operator, Resources


class CrashOnce(Operator):
    name: ClassVar[str] = "ray_faults:CrashOnce"
    resources: ClassVar[Resources] = Resources(cpus=0.5, batch_size=64)

    marker: str  # created by the first call, which then dies

    def process_batch(self, records: list[dict]) -> list[dict]:
        if not os.path.exists(self.marker):
            with open(self.marker, "w") as handle:
                handle.write(str(os.getpid()))
            os._exit(1)  # no exception, no cleanup: the process is gone
        return records


class CrashOnceInActor(CrashOnce):
    """The same, in an actor (an operator with setup() runs in an actor pool on Ray)."""

    name: ClassVar[str] = "ray_faults:CrashOnceInActor"

    def setup(self) -> None:  # overriding setup() is what makes the Ray runner use an actor
        return None

"""The ``tiny_model`` fixture: tiny random transformers models (vidcurate.pipelines.bench.tiny_models), built once."""
from __future__ import annotations

import pytest

from vidcurate.pipelines.bench.tiny_models import build


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """``tiny_model(name)`` -> folder of that tiny model, built once per test session."""
    built: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in built:
            built[name] = build(name, str(tmp_path_factory.mktemp(f"tiny_{name}")))
        return built[name]

    return get

"""The one interface every caption-generating model backend implements.

A teacher operator turns clip records into :class:`GenerationRequest` objects (a rendered
prompt plus JPEG frames) and hands a whole batch to a backend. Backends differ only in
where the model runs:

  ``transformers``  a local model (folder or hub id) loaded once per worker;
  ``openai``        an OpenAI-compatible server (vLLM, SGLang, TGI) over HTTP.

A backend never raises for one bad request: it returns a :class:`Generation` whose
``error`` is a stable reason code, so the teacher can record the failure per clip.
Raising is reserved for failures of the whole batch (the operator contract then retries
record by record).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to one model: text, optional system text, frames in time order (JPEG bytes)."""

    prompt: str
    images: tuple[bytes, ...] = ()
    system: str | None = None


@dataclass(frozen=True)
class GenerationParams:
    """Decoding parameters; recorded in every candidate's provenance."""

    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    num_beams: int = 1  # local backends only; servers ignore it
    seed: int = 0

    def as_dict(self) -> dict:
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "num_beams": self.num_beams, "seed": self.seed}


@dataclass
class Generation:
    """A backend's answer to one request. ``error`` set means no usable text."""

    text: str = ""
    tokens: int = 0  # generated tokens (0 if the backend cannot tell)
    error: str | None = None  # stable snake_case reason, e.g. http_timeout, http_error, generation_failed
    detail: str = ""
    transient: bool = False  # worth retrying later (network, overload)
    extra: dict = field(default_factory=dict)


class GenerationBackend(Protocol):
    """What teachers call. ``model_id``/``revision`` go into candidate provenance."""

    model_id: str
    revision: str | None

    def generate(self, requests: list[GenerationRequest], params: GenerationParams) -> list[Generation]:
        """One Generation per request, same order."""
        ...

    def close(self) -> None:
        """Free the model / connections."""
        ...

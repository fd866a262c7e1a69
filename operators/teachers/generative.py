"""Model-backed caption teachers: one base, three input mixes, two backends.

  ``video_teacher``  N keyframes of the clip + prompt -> caption (vision-language model);
  ``frame_teacher``  one keyframe drawn between 30% and 70% of the clip (Panda-70M's image
                     teachers) -> caption (image captioner such as BLIP/GIT, or a VLM);
  ``text_teacher``   Panda-70M's prompt with subtitles + title + description, answered
                     by a text or vision-language model (frames optional).

Every teacher names its model (``model``: local folder or hub id, ``revision``) and its
``backend``: ``transformers`` loads the model once per worker (setup) and generates for a
whole batch of clips at once; ``openai`` sends the batch to an OpenAI-compatible server
(vLLM, SGLang, TGI) with concurrent requests. Prompts are templates over the record
(``{title}``, ``{description}``, ``{subtitles}``, ``{duration}``).

Output text is cleaned (boilerplate such as "The video shows" stripped, whitespace
collapsed, optionally cut to the first sentence). An empty or degenerate output is not a
candidate: it is listed in the clip's ``rejected_candidates`` with a reason (and counted),
so a failing teacher is visible in every sample and in the stats, never a silent blank.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import re
import string
from typing import ClassVar, Literal, Optional

from pydantic import Field, PrivateAttr, model_validator

from vidcurate.operators.base import Operator, Resources
from vidcurate.operators.models.generation import Generation, GenerationParams, GenerationRequest
from vidcurate.operators.teachers.candidates import add_candidate, add_candidate_reject, clean_caption

PANDA_TEXT_PROMPT = (
    "You are given some information about a video and will be asked to summarize the video. "
    "The subtitles of the video: \"{subtitles}\" Some descriptions of the video: [\"{title}\", \"{description}\"] "
    "Please faithfully summarize the video in one sentence.")
PANDA_VISION_PROMPT = "Please faithfully summarize the video in one sentence."
PANDA_IMAGE_PROMPT = "Please faithfully summarize the image in one sentence."

BACKENDS = {
    "transformers": "vidcurate.operators.models.transformers_backend:TransformersBackend",
    "openai": "vidcurate.operators.models.openai_backend:OpenAIBackend",
}


class _Blank(string.Formatter):
    """str.format that renders missing or None fields as empty text."""

    def get_value(self, key, args, kwargs):
        value = kwargs.get(key) if isinstance(key, str) else None
        return "" if value is None else value


def render_prompt(template: str, record: dict, max_chars: int = 2000) -> str:
    """The prompt with the record's fields filled in, each text quoted as data (``as_data``)."""
    subtitles = record.get("transcript") or record.get("subtitles") or ""
    duration = record.get("duration")
    fields = {**record, "subtitles": subtitles,
              "duration": f"{duration:.1f}" if isinstance(duration, (int, float)) else ""}
    fields = {k: as_data(v, max_chars) if isinstance(v, str) else v for k, v in fields.items()}
    return _Blank().format(template, **fields)


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")


def as_data(text: str, max_chars: int) -> str:
    """``text`` made safe to put between the template's quotes: control characters, line breaks
    and bidirectional overrides become spaces, quotes and backslashes are escaped (as in a JSON
    string), so a title cannot close its quote and talk to the model as the template; at most
    ``max_chars`` characters, cut at a word with an ellipsis."""
    text = " ".join(_CONTROL.sub(" ", text).split())
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0] + " …"
    return json.dumps(text, ensure_ascii=False)[1:-1]


class GenerativeTeacher(Operator):
    """Shared configuration and batching of model-backed teachers. Subclasses pick frames."""

    resources: ClassVar[Resources] = Resources(cpus=1, batch_size=8)
    modality: ClassVar[str] = "V"  # Panda-70M's input letters: V video, I image, S subtitles, M metadata

    model: str = Field(..., description="Local folder or hub id (transformers), or the served model name (openai).")
    label: Optional[str] = Field(None, description="Teacher name written on its candidates (default: the operator "
                                 "name). Give each step a distinct label when a pipeline runs several of one kind.")
    revision: Optional[str] = Field(None, description="Hub revision (commit, tag or branch) of the model.")
    backend: Literal["transformers", "openai"] = "transformers"
    # transformers backend
    device: Literal["cpu", "cuda", "auto"] = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="auto = bfloat16 on GPUs that support it, else float16 on GPU, float32 on CPU.")
    model_kind: Literal["auto", "vlm", "captioner", "text"] = Field(
        "auto", description="vlm = chat image-text-to-text model, captioner = BLIP/GIT-style, text = causal LM.")
    # openai backend
    endpoint: Optional[str] = Field(None, description="Base URL of an OpenAI-compatible server, e.g. http://host:8000/v1.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key (may be unset).")
    concurrency: int = Field(8, ge=1, le=256, description="Requests in flight at once (openai backend).")
    timeout_seconds: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0, le=20, description="Retries with exponential backoff on 429/5xx/network errors.")
    prompt_field_max_chars: int = Field(2000, ge=16, description="Longest text of one field (title, description, "
                                        "subtitles, ...) put into the prompt; longer text is cut at a word.")
    requests_per_second: Optional[float] = Field(None, gt=0, description="Client-side rate limit (openai backend).")
    # generation
    prompt: str = PANDA_VISION_PROMPT
    system_prompt: Optional[str] = None
    max_new_tokens: int = Field(64, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    num_beams: int = Field(1, ge=1, le=16)
    seed: int = 0
    # cleaning
    first_sentence: bool = Field(True, description="Keep only the first sentence of the output.")
    strip_boilerplate: bool = Field(True, description="Drop openers such as 'The video shows'.")
    min_words: int = Field(3, ge=1, description="Shorter outputs are rejected as degenerate.")
    max_words: int = Field(80, ge=1)
    # scheduling
    batch_size: int = Field(8, ge=1, le=4096, description="Clips per generate call (batched across videos).")
    gpus: float = Field(0.0, ge=0, description="GPUs per worker; fractions share a GPU between workers.")

    _backend = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _endpoint_for_openai(self):
        if self.backend == "openai" and not self.endpoint:
            raise ValueError("backend 'openai' needs 'endpoint', the server's base URL (e.g. http://HOST:8000/v1)")
        return self

    # ---- lifecycle -------------------------------------------------------------------
    def setup(self) -> None:
        module, _, attr = BACKENDS[self.backend].partition(":")
        backend_cls = getattr(importlib.import_module(module), attr)
        self._backend = backend_cls.from_teacher(self)

    def teardown(self) -> None:
        if self._backend is not None:
            self._backend.close()
        self._backend = None

    # ---- what subclasses decide --------------------------------------------------------
    needs_frames: ClassVar[bool] = True  # a vision teacher without frames would caption blind

    def frames(self, record: dict) -> tuple[bytes, ...]:
        raise NotImplementedError

    @property
    def teacher(self) -> str:
        """The name candidates carry; selection, reports and `teachers choose` group by it."""
        return self.label or self.name

    def candidate_modality(self) -> str:
        return self.modality

    def generation_params(self) -> GenerationParams:
        return GenerationParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                                num_beams=self.num_beams, seed=self.seed)

    def request(self, record: dict) -> GenerationRequest:
        return GenerationRequest(prompt=render_prompt(self.prompt, record, self.prompt_field_max_chars),
                                 images=self.frames(record), system=self.system_prompt)

    def provenance(self) -> dict:
        """What produced a candidate: backend, prompt as used, decoding parameters, device and kind."""
        backend = self._backend
        ran = {"endpoint": self.endpoint} if self.backend == "openai" else {
            "dtype": str(getattr(backend, "dtype", self.dtype)).replace("torch.", ""),
            "device": str(getattr(backend, "device", self.device)),
            "model_kind": getattr(backend, "kind", self.model_kind)}
        prompted = getattr(backend, "prompted", True)  # BLIP/GIT caption unconditionally
        return {"backend": self.backend, "prompt": self.prompt if prompted else None,
                "system_prompt": self.system_prompt if prompted else None,
                "first_sentence": self.first_sentence, **self.generation_params().as_dict(), **ran}

    # ---- work ------------------------------------------------------------------------
    def process_batch(self, records: list[dict]) -> list[dict]:
        requests = [self.request(r) for r in records]
        todo = [i for i, req in enumerate(requests) if req.images or not self.needs_frames]
        answers = self._backend.generate([requests[i] for i in todo], self.generation_params()) if todo else []
        if len(answers) != len(todo):
            raise RuntimeError(f"{self.name}: backend returned {len(answers)} answers for {len(todo)} requests")
        generations = [Generation(error="no_keyframes", detail="the clip has no keyframes (set extract_clips "
                                  "keyframes: uniform or middle)") for _ in requests]
        for i, answer in zip(todo, answers):
            generations[i] = answer
        out = []
        for record, req, gen in zip(records, requests, generations):
            record = {**record, "candidates": list(record.get("candidates") or []),
                      "rejected_candidates": list(record.get("rejected_candidates") or [])}
            self.stats.incr(f"{self.name}.tokens", gen.tokens)
            if gen.error:
                self._reject_candidate(record, gen.error, gen.detail, gen.text, gen.transient)
            else:
                text = clean_caption(gen.text, first_sentence_only=self.first_sentence,
                                     strip_boilerplate=self.strip_boilerplate, max_words=self.max_words)
                if add_candidate(record, teacher=self.teacher, modality=self.candidate_modality(), text=text,
                                 min_words=self.min_words, raw=gen.text, model_id=self._backend.model_id,
                                 model_revision=self._backend.revision,
                                 params={**self.provenance(), "num_images": len(req.images)}):
                    self.stats.incr(f"{self.name}.captioned")
                else:
                    self.stats.incr(f"{self.name}.candidate_rejected.{record['rejected_candidates'][-1]['reason']}")
            out.append(record)
        return out

    def _reject_candidate(self, record: dict, reason: str, detail: str, text: str, transient: bool = False) -> None:
        add_candidate_reject(record, teacher=self.teacher, reason=reason, detail=detail, text=text, transient=transient)
        self.stats.incr(f"{self.name}.candidate_rejected.{reason}")


def uniform_pick(frames: list[bytes], n: int) -> tuple[bytes, ...]:
    """``n`` frames spread evenly over ``frames`` (all of them when there are fewer)."""
    if n <= 0:
        return ()
    if len(frames) <= n:
        return tuple(frames)
    step = len(frames) / n
    return tuple(frames[int(step * i + step / 2)] for i in range(n))


def _pick(clip_id: str, salt: str, n: int) -> int:
    """A deterministic 'random' index in range(n), stable across runs and workers."""
    digest = hashlib.blake2b(f"{clip_id}:{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


class VideoTeacher(GenerativeTeacher):
    """Captions each clip from num_frames keyframes with a vision-language model; bad outputs: rejected candidates.

    The frames are spread uniformly over the clip's keyframes (set extract_clips
    ``keyframes: uniform``); an empty or degenerate answer goes to ``rejected_candidates``
    with its reason, so the clip keeps the other teachers' candidates.
    """

    name: ClassVar[str] = "video_teacher"
    requires: ClassVar[tuple[str, ...]] = ("keyframes",)
    provides: ClassVar[tuple[str, ...]] = ("candidates", "rejected_candidates")

    num_frames: int = Field(8, ge=1, le=64, description="Frames sent to the model, uniformly from the keyframes.")

    def frames(self, record: dict) -> tuple[bytes, ...]:
        return uniform_pick(record.get("keyframes") or [], self.num_frames)

    def provenance(self) -> dict:
        return {**super().provenance(), "num_frames": self.num_frames}


class FrameTeacher(GenerativeTeacher):
    """Captions one keyframe from 30-70% of the clip (an image captioner or VLM); bad outputs: rejected candidates.

    Panda-70M's image teachers: the frame is drawn uniformly between 30% and 70% of the
    clip, seeded by the clip id so runs repeat.
    """

    name: ClassVar[str] = "frame_teacher"
    modality: ClassVar[str] = "I"  # one image
    requires: ClassVar[tuple[str, ...]] = ("keyframes",)
    provides: ClassVar[tuple[str, ...]] = ("candidates", "rejected_candidates")

    prompt: str = PANDA_IMAGE_PROMPT
    window: tuple[float, float] = Field((0.3, 0.7), description="Part of the clip the frame is drawn from.")

    def frames(self, record: dict) -> tuple[bytes, ...]:
        frames = list(record.get("keyframes") or [])
        if not frames:
            return ()
        positions = record.get("keyframe_frames") or []
        start, end = record.get("start_frame"), record.get("end_frame")
        if len(positions) == len(frames) and start is not None and end and end > start:
            rel = [(p - start) / (end - start) for p in positions]
            inside = [i for i, r in enumerate(rel) if self.window[0] <= r <= self.window[1]]
            if inside:
                return (frames[inside[_pick(record.get("clip_id", ""), self.name, len(inside))]],)
            middle = min(range(len(rel)), key=lambda i: abs(rel[i] - 0.5))
            return (frames[middle],)
        return (frames[len(frames) // 2],)


class TextTeacher(GenerativeTeacher):
    """Captions each clip from its subtitles, title and description (Panda-70M's text prompt), frames optional.

    Needs no keyframes (``num_frames: 0``); like every model teacher, an empty or degenerate
    answer becomes a rejected candidate, never a reject of the clip.
    """

    name: ClassVar[str] = "text_teacher"
    requires: ClassVar[tuple[str, ...]] = ()
    provides: ClassVar[tuple[str, ...]] = ("candidates", "rejected_candidates")

    needs_frames: ClassVar[bool] = False
    prompt: str = PANDA_TEXT_PROMPT
    num_frames: int = Field(0, ge=0, le=64, description="Keyframes sent with the text (0 = text only).")

    def frames(self, record: dict) -> tuple[bytes, ...]:
        return uniform_pick(record.get("keyframes") or [], self.num_frames)

    def candidate_modality(self) -> str:
        return "V-S-M" if self.num_frames else "S-M"

    def provenance(self) -> dict:
        return {**super().provenance(), "num_frames": self.num_frames}

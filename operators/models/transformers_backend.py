"""Caption generation with a local transformers model (the teachers' ``transformers`` backend).

The model (a local folder, loaded with ``local_files_only``, or a hub id at ``revision``)
is loaded once with its processor or tokenizer. Three kinds:

  ``vlm``        chat vision-language models (AutoModelForImageTextToText + AutoProcessor):
                 the processor's chat template renders an optional system message and one
                 user message holding one ``{"type": "image"}`` per frame, then the prompt;
  ``captioner``  BLIP / GIT-style image captioners: exactly one image. BLIP and GIT were
                 trained to caption with no text (a text input is a caption *prefix* the
                 model continues, not an instruction), so they caption unconditionally and
                 the prompt is ignored; instruction-tuned captioners (BLIP-2,
                 InstructBLIP) get the prompt as their text input;
  ``text``       causal LMs (AutoModelForCausalLM + AutoTokenizer), chat template if the
                 tokenizer has one, else the plain prompt.

``auto`` decides from the config's ``model_type``. A whole list of requests is one
``generate`` call (left padding for decoder-only models), greedy when temperature is 0,
seeded when sampling. Only new tokens are decoded. A request that cannot be prepared
(bad JPEG, wrong number of images for the kind) gets an error Generation; if the batch
fails as a whole, requests are retried one by one and only the failing ones are lost.
"""
from __future__ import annotations

import io

from vidcurate.operators.base import OperatorSetupError
from vidcurate.operators.models.generation import Generation, GenerationParams, GenerationRequest
from vidcurate.operators.models.loading import describe, load_pretrained, require

KINDS = ("vlm", "captioner", "text")
# Image captioners, and whether they take the prompt as text input (see the module docstring).
CAPTIONERS = {"blip": False, "git": False, "blip-2": True, "instructblip": True}
DTYPES = ("auto", "bfloat16", "float16", "float32")


class TransformersBackend:
    """A GenerationBackend running a transformers model in this process."""

    def __init__(self, model: str, revision: str | None = None, device: str = "auto", dtype: str = "auto",
                 kind: str = "auto"):
        self.model_id, self.revision = model, revision
        self._torch = torch = require("torch", "torch", "the transformers caption backend")
        tf = require("transformers", "transformers", "the transformers caption backend")
        where = describe(model)
        # The config first: a wrong reference fails before the device is checked or weights load.
        config = load_pretrained(tf.AutoConfig, model, revision, what="model config")
        self.device = _resolve_device(device, torch)
        self.dtype = _resolve_dtype(dtype, self.device, torch)
        self.model_type = getattr(config, "model_type", "")
        self.kind = _resolve_kind(kind, config, where)
        self.model = load_pretrained(_model_class(self.kind, config, tf), model, revision, what=f"{self.kind} model",
                                     to_device=self.device, dtype=self.dtype)
        text = self.kind == "text"
        self.processor = load_pretrained(tf.AutoTokenizer if text else tf.AutoProcessor, model, revision,
                                         what="tokenizer" if text else "processor")
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        if self.kind != "text" and getattr(self.processor, "image_processor", None) is None:
            raise OperatorSetupError(f"{where} has no image processor: a {self.kind} model needs one "
                                     f"(set model_kind: text for a text-only model)")
        self.prompted = self.kind != "captioner" or CAPTIONERS.get(self.model_type, True)
        self.encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise OperatorSetupError(f"the tokenizer of {where} has neither a pad nor an eos token")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if not self.encoder_decoder:
            self.tokenizer.padding_side = "left"  # decoder-only: new tokens follow every prompt directly
        gen_config = getattr(self.model, "generation_config", None)
        if gen_config is not None and gen_config.pad_token_id is None and self.kind != "captioner":
            gen_config.pad_token_id = self.tokenizer.pad_token_id
        self._start_ids = {getattr(c, k, None) for c in (config, gen_config, getattr(config, "text_config", None))
                           for k in ("decoder_start_token_id", "bos_token_id")} - {None}

    @classmethod
    def from_teacher(cls, teacher) -> "TransformersBackend":
        return cls(teacher.model, revision=teacher.revision, device=teacher.device, dtype=teacher.dtype,
                   kind=teacher.model_kind)

    def close(self) -> None:
        self.model = self.processor = self.tokenizer = None
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()

    # ---- generation ------------------------------------------------------------------
    def generate(self, requests: list[GenerationRequest], params: GenerationParams) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        ready: list[tuple[int, GenerationRequest, list]] = []
        for i, request in enumerate(requests):
            images, error = self._images(request)
            if error:
                results[i] = Generation(error=error[0], detail=error[1])
            else:
                ready.append((i, request, images))
        # Requests with and without images cannot share one processor call.
        for group in ([r for r in ready if r[2]], [r for r in ready if not r[2]]):
            if not group:
                continue
            try:
                answers = self._run(group, params)
            except Exception as exc:
                if len(group) == 1:
                    answers = [_failed(exc)]
                else:  # find the culprit: one by one, the others keep their answers
                    answers = []
                    for item in group:
                        try:
                            answers.extend(self._run([item], params))
                        except Exception as one_exc:
                            answers.append(_failed(one_exc))
            for (i, _, _), answer in zip(group, answers):
                results[i] = answer
        return results

    def _images(self, request: GenerationRequest):
        """PIL images of a request, or (reason, detail) when the request cannot go to this model."""
        n = len(request.images)
        if self.kind == "text" and n:
            return [], ("images_not_supported",
                        f"{self.model_id} is a text model; got {n} image(s) (set num_frames: 0)")
        if self.kind == "captioner" and n != 1:
            return [], ("wrong_image_count", f"the captioner {self.model_id} takes exactly one image, got {n}")
        from PIL import Image

        images = []
        for k, data in enumerate(request.images):
            try:
                with Image.open(io.BytesIO(data)) as image:
                    images.append(image.convert("RGB"))
            except Exception as exc:
                return [], ("bad_image", f"frame {k}: {type(exc).__name__}: {exc}")
        return images, None

    def _run(self, group: list[tuple[int, GenerationRequest, list]], params: GenerationParams) -> list[Generation]:
        torch = self._torch
        requests = [r for _, r, _ in group]
        images = [im for _, _, im in group]
        if self.kind == "text":
            texts, templated = zip(*(self._render(r, 0) for r in requests))
            inputs = self.tokenizer(list(texts), padding=True, return_tensors="pt",
                                    add_special_tokens=not templated[0])
        elif self.kind == "captioner":
            text = {"text": [r.prompt for r in requests]} if self.prompted else {}
            inputs = self.processor(images=[im[0] for im in images], padding=True, return_tensors="pt", **text)
        else:
            texts = [self._render(r, len(im))[0] for r, im in zip(requests, images)]
            bos = self.tokenizer.bos_token
            inputs = self.processor(text=texts, images=images if any(images) else None, padding=True,
                                    return_tensors="pt", add_special_tokens=not (bos and texts[0].startswith(bos)))
        inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                  if torch.is_tensor(v) else v for k, v in inputs.items()}
        sampling = params.temperature > 0
        kwargs = {"max_new_tokens": params.max_new_tokens, "num_beams": params.num_beams, "do_sample": sampling}
        if sampling:
            kwargs.update(temperature=params.temperature, top_p=params.top_p)
            torch.manual_seed(params.seed)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        new = self._new_tokens(getattr(out, "sequences", out), inputs.get("input_ids"))
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        pad = self.tokenizer.pad_token_id
        counts = (new != pad).sum(dim=1).tolist() if pad is not None else [new.shape[1]] * len(new)
        return [Generation(text=t.strip(), tokens=int(c), extra={"kind": self.kind}) for t, c in zip(texts, counts)]

    def _render(self, request: GenerationRequest, n_images: int) -> tuple[str, bool]:
        """The prompt as the model's chat template renders it (text, templated?)."""
        owner = self.processor if getattr(self.processor, "chat_template", None) else self.tokenizer
        if getattr(owner, "chat_template", None):
            if self.kind == "text":
                messages = [{"role": "user", "content": request.prompt}]
                system = [{"role": "system", "content": request.system}] if request.system else []
            else:
                content = [{"type": "image"}] * n_images + [{"type": "text", "text": request.prompt}]
                messages = [{"role": "user", "content": content}]
                system = [{"role": "system", "content": [{"type": "text", "text": request.system}]}] \
                    if request.system else []
            return owner.apply_chat_template(system + messages, add_generation_prompt=True, tokenize=False), True
        image_token = getattr(self.processor, "image_token", None) or "<image>"
        prefix = f"{request.system}\n\n" if request.system else ""
        return prefix + image_token * n_images + request.prompt, False

    def _new_tokens(self, out, input_ids):
        """The generated part of ``out``: after the prompt (decoder-only) or the decoder start token."""
        if input_ids is not None and out.shape[1] >= input_ids.shape[1] and \
                self._torch.equal(out[:, :input_ids.shape[1]], input_ids):
            return out[:, input_ids.shape[1]:]
        if out.shape[1] and all(int(t) in self._start_ids for t in out[:, 0]):
            return out[:, 1:]
        return out


def _failed(exc: Exception) -> Generation:
    return Generation(error="generation_failed", detail=f"{type(exc).__name__}: {exc}"[:500])


def _resolve_device(device: str, torch) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OperatorSetupError(f"device {device!r} requested but CUDA is not available (use device: auto or cpu)")
    return device


def _resolve_dtype(dtype: str, device: str, torch):
    if dtype not in DTYPES:
        raise OperatorSetupError(f"unknown dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _resolve_kind(kind: str, config, where: str) -> str:
    if kind in KINDS:
        return kind
    if kind != "auto":
        raise OperatorSetupError(f"unknown model_kind {kind!r}; allowed: auto, {', '.join(KINDS)}")
    from transformers.models.auto import modeling_auto

    model_type = getattr(config, "model_type", "")
    architectures = getattr(config, "architectures", None) or []
    if model_type in CAPTIONERS:
        return "captioner"
    if model_type in modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return "vlm"
    if model_type in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or \
            any(a.endswith("ForCausalLM") for a in architectures):
        return "text"
    raise OperatorSetupError(f"cannot tell what kind of model {where} is (model_type {model_type!r}, "
                             f"architectures {architectures}): set model_kind to vlm, captioner or text")


def _model_class(kind: str, config, tf):
    """The Auto class for the kind, or the class the config names when the Auto class does not map it."""
    auto = tf.AutoModelForCausalLM if kind == "text" else tf.AutoModelForImageTextToText
    if type(config) in auto._model_mapping:
        return auto
    for name in getattr(config, "architectures", None) or []:
        if hasattr(tf, name):
            return getattr(tf, name)
    return auto

"""A student checkpoint is a folder, loaded by path or hub id like any model; never a pickle.

    config.json          StudentConfig (format "vidcurate.student")
    model.safetensors    every weight (the decoder's tied embeddings stored once)
    decoder/             the decoder's transformers config and its tokenizer
    video_tower/         a pretrained frame encoder's transformers config and image processor
    optimizer.safetensors, trainer_state.json   training state (CKPT/training only)

Written whole by operators/models/checkpoint_folder.py (temporary name, then renamed).
"""
from __future__ import annotations

import os

from vidcurate.operators.base import OperatorSetupError
from vidcurate.operators.models.checkpoint_folder import (checkpoint_path, read_checkpoint_config, resolve_device,
                                                          unwrapped, write_checkpoint)
from vidcurate.operators.models.loading import describe, load_pretrained, require
from vidcurate.operators.models.student.config import WEIGHTS_FILE, StudentConfig
from vidcurate.operators.models.student.model import StudentCaptioner
from vidcurate.operators.models.student.tokenizer import learn_tokenizer

DECODER_DIR, VIDEO_DIR = "decoder", "video_tower"
__all__ = ["create_student", "save_student", "load_student", "resolve_device"]


def _scratch_decoder(config: StudentConfig, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    d = config.decoder
    prefix = config.num_frames + 1 + config.max_text_tokens + 1
    gpt = GPT2Config(vocab_size=len(tokenizer), n_embd=d.width, n_layer=d.layers, n_head=d.heads,
                     n_positions=prefix + d.max_caption_tokens + 8, bos_token_id=tokenizer.bos_token_id,
                     eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                     resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)
    return GPT2LMHeadModel(gpt)


def create_student(config: StudentConfig, captions: list[str] | None = None) -> StudentCaptioner:
    """A new student: a scratch decoder with a tokenizer learned from ``captions``, or a pretrained
    causal LM with its own; a scratch or pretrained frame encoder."""
    if config.decoder.kind == "scratch":
        tokenizer = learn_tokenizer(captions or [], config.decoder.vocab_size)
        decoder = _scratch_decoder(config, tokenizer)
    else:
        if not config.decoder.model:
            raise OperatorSetupError("a pretrained student decoder needs decoder.model: a causal LM folder or hub id")
        transformers = require("transformers", "transformers", "the student's decoder")
        tokenizer = load_pretrained(transformers.AutoTokenizer, config.decoder.model, config.decoder.revision,
                                    what="student decoder's tokenizer")
        decoder = load_pretrained(transformers.AutoModelForCausalLM, config.decoder.model, config.decoder.revision,
                                  what="student decoder")
    student = StudentCaptioner(config, tokenizer, decoder)
    if config.video_init:
        _start_from_retriever(student, config)
    return student


def _start_from_retriever(student: StudentCaptioner, config: StudentConfig) -> None:
    """Copy a retriever's video tower and temporal pooling into the student (their shapes must agree)."""
    from vidcurate.operators.models.retriever import load_retriever

    retriever = load_retriever(config.video_init)
    theirs = retriever.config
    problems = [f"{what} {mine} vs the retriever's {other}" for what, mine, other in (
        ("frames", config.num_frames, theirs.num_frames), ("frame size", tuple(config.frame_size),
                                                           tuple(theirs.frame_size)),
        ("video tower", config.video.model_dump(), theirs.video.model_dump()),
        ("width", student.video.width, retriever.video.width)) if mine != other]
    if problems:
        raise OperatorSetupError(f"video_init {describe(config.video_init)} does not fit the student: "
                                 + "; ".join(problems))
    student.video.load_state_dict(retriever.video.state_dict())
    student.temporal.load_state_dict(retriever.pool.state_dict())


def save_student(model: StudentCaptioner, folder: str, optimizer=None, state: dict | None = None,
                 extra: dict | None = None, keep: tuple[str, ...] = ()) -> str:
    """Write ``model`` (and, given, optimizer and trainer state) to ``folder``, replacing it whole but
    for its entries named in ``keep``; ``extra`` maps more file names to JSON data."""
    model = unwrapped(model)

    def parts(temporary: str) -> None:
        model.decoder.config.save_pretrained(os.path.join(temporary, DECODER_DIR))
        model.tokenizer.save_pretrained(os.path.join(temporary, DECODER_DIR))
        if model.video.image_model is not None:
            model.video.image_model.config.save_pretrained(os.path.join(temporary, VIDEO_DIR))
            model.video.processor.save_pretrained(os.path.join(temporary, VIDEO_DIR))

    return write_checkpoint(folder, model, model.config.model_dump(mode="json"), parts, optimizer, state, extra,
                            keep)


def read_student_config(folder: str, ref: str | None = None) -> StudentConfig:
    return read_checkpoint_config(folder, ref, StudentConfig, "student")


def load_student(ref: str, device: str = "cpu", revision: str | None = None) -> StudentCaptioner:
    """The student in folder or hub id ``ref``, in eval mode on ``device``; errors name the reference."""
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = checkpoint_path(ref, revision, "student", "the student captioner")
    config = read_student_config(path, ref)
    try:
        decoder_dir = os.path.join(path, DECODER_DIR)
        tokenizer = AutoTokenizer.from_pretrained(decoder_dir, local_files_only=True)
        decoder = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(decoder_dir, local_files_only=True))
        video_dir = os.path.join(path, VIDEO_DIR) if config.video.kind == "pretrained" else None
        model = StudentCaptioner(config, tokenizer, decoder, video_source=video_dir, weights=False)
        missing, unexpected = load_model(model, os.path.join(path, WEIGHTS_FILE), strict=False)
    except OperatorSetupError:
        raise
    except Exception as exc:
        raise OperatorSetupError(f"cannot load the student from {describe(ref)}: {type(exc).__name__}: {exc}") from exc
    real_missing = [m for m in missing if not m.endswith("lm_head.weight")]  # tied to the input embeddings
    if real_missing or unexpected:
        raise OperatorSetupError(f"the weights in {path} do not fit the student its config describes: missing "
                                 f"{sorted(real_missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    return model.to(device).eval()

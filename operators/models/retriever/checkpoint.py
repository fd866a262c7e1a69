"""A retriever checkpoint is a folder; loading one is the same ``model: PATH`` (or hub id) as any model.

    config.json          RetrieverConfig (format "vidcurate.retriever"): the towers it names
    model.safetensors    every weight (shared tensors stored once); never a pickle
    video_tower/         a pretrained video tower's transformers config and image processor
    text_tower/          the text tower's tokenizer (and a pretrained encoder's config)

Written whole by operators/models/checkpoint_folder.py (temporary name, then renamed), with
training state (optimizer moments, epoch, best metric) beside it when given.
"""
from __future__ import annotations

import os

import torch

from vidcurate.operators.base import OperatorSetupError
from vidcurate.operators.models.checkpoint_folder import (checkpoint_path, load_training_state,  # noqa: F401
                                                          read_checkpoint_config, resolve_device, unwrapped,
                                                          write_checkpoint)
from vidcurate.operators.models.loading import describe, looks_like_path
from vidcurate.operators.models.retriever.config import CONFIG_FILE, WEIGHTS_FILE, RetrieverConfig
from vidcurate.operators.models.retriever.model import Retriever

VIDEO_DIR, TEXT_DIR = "video_tower", "text_tower"


def create_retriever(config: RetrieverConfig) -> Retriever:
    """A new retriever: scratch parts initialised at random, pretrained towers loaded from their references."""
    return Retriever(config)


def save_retriever(model: Retriever, folder: str, optimizer: torch.optim.Optimizer | None = None,
                   state: dict | None = None, extra: dict | None = None, keep: tuple[str, ...] = ()) -> str:
    """Write ``model`` (and, given, the optimizer and trainer state) to ``folder``, replacing it whole
    but for its entries named in ``keep``; ``extra`` maps more file names to JSON data."""
    model = unwrapped(model)

    def towers(temporary: str) -> None:
        if model.video.image_model is not None:
            model.video.image_model.config.save_pretrained(os.path.join(temporary, VIDEO_DIR))
            model.video.processor.save_pretrained(os.path.join(temporary, VIDEO_DIR))
        model.text.save_files(os.path.join(temporary, TEXT_DIR))

    return write_checkpoint(folder, model, model.config.model_dump(mode="json"), towers, optimizer, state, extra,
                            keep)


def load_retriever(ref: str, device: str = "cpu", revision: str | None = None) -> Retriever:
    """The retriever in folder or hub id ``ref``, in eval mode on ``device``; errors name the reference."""
    folder = checkpoint_folder(ref, revision)
    config = read_config(folder, ref)
    video_dir = os.path.join(folder, VIDEO_DIR) if config.video.kind == "pretrained" else None
    try:
        model = Retriever(config, video_source=video_dir, text_source=os.path.join(folder, TEXT_DIR), weights=False)
        _load_weights(model, os.path.join(folder, WEIGHTS_FILE), ref)
        return model.to(device).eval()
    except OperatorSetupError:
        raise
    except Exception as exc:
        raise OperatorSetupError(f"cannot load the retriever from {describe(ref)}: {type(exc).__name__}: {exc}") from exc


def checkpoint_folder(ref: str, revision: str | None = None) -> str:
    return checkpoint_path(ref, revision, "retriever", "the retriever")


def read_config(folder: str, ref: str | None = None) -> RetrieverConfig:
    return read_checkpoint_config(folder, ref, RetrieverConfig, "retriever")


def is_retriever_checkpoint(ref: str) -> bool:
    return looks_like_path(ref) and os.path.isfile(os.path.join(os.path.expanduser(ref), CONFIG_FILE))


def _load_weights(model: Retriever, path: str, ref: str) -> None:
    from safetensors.torch import load_model

    if not os.path.isfile(path):
        raise OperatorSetupError(f"the retriever checkpoint {describe(ref)} has no {WEIGHTS_FILE}")
    missing, unexpected = load_model(model, path, strict=False)
    if missing or unexpected:
        raise OperatorSetupError(f"the weights in {path} do not fit the model its config describes: "
                                 f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")

"""A retriever checkpoint is a folder; loading one is the same ``model: PATH`` (or hub id) as any model.

    config.json          RetrieverConfig (format "vidcurate.retriever"): the towers it names
    model.safetensors    every weight (shared tensors stored once); never a pickle
    video_tower/         a pretrained video tower's transformers config and image processor
    text_tower/          the text tower's tokenizer (and a pretrained encoder's config)

A folder is written under a temporary name and renamed into place, so a reader never sees
half a checkpoint. Training state (optimizer moments, epoch, best metric) is saved the same
way: tensors in ``optimizer.safetensors``, the rest in ``trainer_state.json``.
"""
from __future__ import annotations

import json
import os
import shutil

import torch

from vidcurate.operators.base import OperatorSetupError
from vidcurate.operators.models.loading import describe, looks_like_path, require, resolve
from vidcurate.operators.models.retriever.config import CONFIG_FILE, FORMAT, WEIGHTS_FILE, RetrieverConfig
from vidcurate.operators.models.retriever.model import Retriever

VIDEO_DIR, TEXT_DIR = "video_tower", "text_tower"
OPTIMIZER_FILE, STATE_FILE = "optimizer.safetensors", "trainer_state.json"


def resolve_device(device: str) -> str:
    """``auto``: cuda when torch sees a GPU, else cpu."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def create_retriever(config: RetrieverConfig) -> Retriever:
    """A new retriever: scratch parts initialised at random, pretrained towers loaded from their references."""
    return Retriever(config)


def save_retriever(model: Retriever, folder: str, optimizer: torch.optim.Optimizer | None = None,
                   state: dict | None = None, extra: dict | None = None, keep: tuple[str, ...] = ()) -> str:
    """Write ``model`` (and, given, the optimizer and trainer state) to ``folder``, replacing it whole
    but for its entries named in ``keep``; ``extra`` maps more file names to JSON data."""
    from safetensors.torch import save_file, save_model

    folder = os.path.abspath(folder)
    temporary = f"{folder}.saving"
    shutil.rmtree(temporary, ignore_errors=True)
    os.makedirs(temporary)
    model = _unwrapped(model)
    save_model(model, os.path.join(temporary, WEIGHTS_FILE))
    if model.video.image_model is not None:
        model.video.image_model.config.save_pretrained(os.path.join(temporary, VIDEO_DIR))
        model.video.processor.save_pretrained(os.path.join(temporary, VIDEO_DIR))
    model.text.save_files(os.path.join(temporary, TEXT_DIR))
    if optimizer is not None:
        tensors, groups = _flatten_optimizer(optimizer.state_dict())
        save_file(tensors, os.path.join(temporary, OPTIMIZER_FILE))
        state = {**(state or {}), "param_groups": groups}
    if state is not None:
        _write_json(os.path.join(temporary, STATE_FILE), state)
    for name, data in (extra or {}).items():
        _write_json(os.path.join(temporary, name), data)
    _write_json(os.path.join(temporary, CONFIG_FILE), model.config.model_dump(mode="json"))
    for name in keep:
        if os.path.exists(os.path.join(folder, name)):
            os.replace(os.path.join(folder, name), os.path.join(temporary, name))
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.replace(temporary, folder)
    return folder


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
    path, local = resolve(os.fspath(ref), what="the retriever")
    if local:
        return path
    hub = require("huggingface_hub", "huggingface-hub", "loading a retriever by hub id")
    try:
        return hub.snapshot_download(path, revision=revision)
    except Exception as exc:
        raise OperatorSetupError(f"cannot load the retriever from {describe(ref)}: {type(exc).__name__}: {exc}") from exc


def read_config(folder: str, ref: str | None = None) -> RetrieverConfig:
    where = describe(ref or folder)
    path = os.path.join(folder, CONFIG_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except FileNotFoundError:
        raise OperatorSetupError(f"{where} is not a retriever checkpoint: it has no {CONFIG_FILE}") from None
    except (OSError, ValueError) as exc:
        raise OperatorSetupError(f"cannot read {path}: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise OperatorSetupError(f"{where} is not a retriever checkpoint: {CONFIG_FILE} has no "
                                 f"\"format\": \"{FORMAT}\"")
    try:
        return RetrieverConfig.model_validate(raw)
    except ValueError as exc:
        raise OperatorSetupError(f"{path}: invalid retriever config: {exc}") from exc


def is_retriever_checkpoint(ref: str) -> bool:
    return looks_like_path(ref) and os.path.isfile(os.path.join(os.path.expanduser(ref), CONFIG_FILE))


def load_training_state(folder: str, optimizer: torch.optim.Optimizer) -> dict:
    """Restore ``optimizer`` from ``folder`` and return the trainer state saved beside it."""
    from safetensors.torch import load_file

    with open(os.path.join(folder, STATE_FILE), encoding="utf-8") as handle:
        state = json.load(handle)
    tensors = load_file(os.path.join(folder, OPTIMIZER_FILE))
    optimizer.load_state_dict(_unflatten_optimizer(tensors, state.pop("param_groups")))
    return state


def _load_weights(model: Retriever, path: str, ref: str) -> None:
    from safetensors.torch import load_model

    if not os.path.isfile(path):
        raise OperatorSetupError(f"the retriever checkpoint {describe(ref)} has no {WEIGHTS_FILE}")
    missing, unexpected = load_model(model, path, strict=False)
    if missing or unexpected:
        raise OperatorSetupError(f"the weights in {path} do not fit the model its config describes: "
                                 f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")


def _unwrapped(model):
    return getattr(model, "module", model)  # DistributedDataParallel wraps the model


def _flatten_optimizer(state_dict: dict) -> tuple[dict, list]:
    tensors = {}
    for index, moments in state_dict["state"].items():
        for name, value in moments.items():
            tensors[f"{index}.{name}"] = (value if torch.is_tensor(value) else torch.tensor(value)).contiguous()
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state_dict["param_groups"]]
    return tensors, groups


def _unflatten_optimizer(tensors: dict, groups: list) -> dict:
    state: dict = {}
    for key, value in tensors.items():
        index, _, name = key.partition(".")
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": [{k: tuple(v) if k == "betas" else v for k, v in g.items()}
                                             for g in groups]}


def _write_json(path: str, data) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")

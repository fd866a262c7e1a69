"""Checkpoint folders of vidcurate's own models (the retriever, the student): how one is written.

    config.json            the model's config (its ``format`` names the model family)
    model.safetensors      every weight (shared tensors stored once); never a pickle
    <the family's files>   tokenizers, towers' transformers configs (``write_files``)
    optimizer.safetensors  optimizer moments, flattened to tensors (training state only)
    trainer_state.json     epoch, history, ... and the optimizer's param groups (training state only)

A folder is written under a temporary name and renamed into place, so a reader never sees half
a checkpoint; entries named in ``keep`` (a ``training/`` subfolder) move over from the old one.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Callable

import torch

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
OPTIMIZER_FILE, STATE_FILE = "optimizer.safetensors", "trainer_state.json"


def resolve_device(device: str) -> str:
    """``auto``: cuda when torch sees a GPU, else cpu."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def write_checkpoint(folder: str, model: torch.nn.Module, config: dict, write_files: Callable[[str], None],
                     optimizer: torch.optim.Optimizer | None = None, state: dict | None = None,
                     extra: dict | None = None, keep: tuple[str, ...] = ()) -> str:
    """Write ``model``'s weights, ``config`` and its family's files (``write_files(temporary_folder)``),
    and, given, the optimizer and trainer state, to ``folder``; ``extra`` maps more file names to JSON."""
    from safetensors.torch import save_file, save_model

    folder = os.path.abspath(folder)
    temporary = f"{folder}.saving"
    shutil.rmtree(temporary, ignore_errors=True)
    os.makedirs(temporary)
    save_model(model, os.path.join(temporary, WEIGHTS_FILE))
    write_files(temporary)
    if optimizer is not None:
        tensors, groups = _flatten_optimizer(optimizer.state_dict())
        save_file(tensors, os.path.join(temporary, OPTIMIZER_FILE))
        state = {**(state or {}), "param_groups": groups}
    if state is not None:
        write_json(os.path.join(temporary, STATE_FILE), state)
    for name, data in (extra or {}).items():
        write_json(os.path.join(temporary, name), data)
    write_json(os.path.join(temporary, CONFIG_FILE), config)
    for name in keep:
        if os.path.exists(os.path.join(folder, name)):
            os.replace(os.path.join(folder, name), os.path.join(temporary, name))
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.replace(temporary, folder)
    return folder


def checkpoint_path(ref: str, revision: str | None, family: str, what: str) -> str:
    """The local folder of checkpoint ``ref``: a folder as given, a hub id downloaded (a snapshot).
    ``family`` names the model in errors ("retriever"), ``what`` how ``resolve`` names the reference."""
    from vidcurate.operators.base import OperatorSetupError
    from vidcurate.operators.models.loading import describe, require, resolve

    path, local = resolve(os.fspath(ref), what=what)
    if local:
        return path
    hub = require("huggingface_hub", "huggingface-hub", f"loading a {family} by hub id")
    try:
        return hub.snapshot_download(path, revision=revision)
    except Exception as exc:
        raise OperatorSetupError(f"cannot load the {family} from {describe(ref)}: {type(exc).__name__}: {exc}") \
            from exc


def read_checkpoint_config(folder: str, ref: str | None, config_class, family: str):
    """The validated ``config.json`` of a checkpoint folder whose ``format`` is ``config_class``'s;
    OperatorSetupError naming the folder otherwise."""
    from vidcurate.operators.base import OperatorSetupError
    from vidcurate.operators.models.loading import describe

    fmt = config_class.model_fields["format"].default
    where, path = describe(ref or folder), os.path.join(folder, CONFIG_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except FileNotFoundError:
        raise OperatorSetupError(f"{where} is not a {family} checkpoint: it has no {CONFIG_FILE}") from None
    except (OSError, ValueError) as exc:
        raise OperatorSetupError(f"cannot read {path}: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != fmt:
        raise OperatorSetupError(f"{where} is not a {family} checkpoint: {CONFIG_FILE} has no "
                                 f"\"format\": \"{fmt}\"")
    try:
        return config_class.model_validate(raw, context={"checkpoint": True})  # as written, no new defaults
    except ValueError as exc:
        raise OperatorSetupError(f"{path}: invalid {family} config: {exc}") from exc


def load_training_state(folder: str, optimizer: torch.optim.Optimizer) -> dict:
    """Restore ``optimizer`` from ``folder`` and return the trainer state saved beside it."""
    from safetensors.torch import load_file

    with open(os.path.join(folder, STATE_FILE), encoding="utf-8") as handle:
        state = json.load(handle)
    tensors = load_file(os.path.join(folder, OPTIMIZER_FILE))
    optimizer.load_state_dict(_unflatten_optimizer(tensors, state.pop("param_groups")))
    return state


def unwrapped(model):
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


def write_json(path: str, data) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")

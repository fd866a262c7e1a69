"""Read a build's output for training: shard lists, a WebDataset pipeline, a DataLoader.

A build folder OUT (local or any fsspec URL) holds ``shards/**/<prefix>-NNNNNN.tar``
(per clip ``<clip_id>.mp4`` H.264, ``<clip_id>.json`` all metadata, ``<clip_id>.txt``
the selected caption when there is one) and ``index.parquet`` (one row per clip, with
its ``shard`` and, in newer builds, its ``split``; without that column every clip is
"train").

Training loop (PyTorch; the same under ``torchrun``, see "Several nodes" below)::

    from vidcurate.pipelines.train.loaders import make_dataloader

    loader = make_dataloader("out/demo", batch_size=8, num_workers=4, split="train",
                             num_frames=8, size=(224, 224), shuffle=1000)
    for epoch in range(epochs):
        for batch in loader:
            frames = batch["frames"].cuda()            # uint8 [B, T, H, W, 3]
            loss = model(frames, batch["caption"])     # captions: list[str]
            loss.backward(); optimizer.step(); optimizer.zero_grad()

What a sample is (``webdataset_pipeline``)::

    {"frames": torch.uint8 [T, H, W, 3]    # output="uint8" (default)
             | torch.float32 [T, 3, H, W]  # output="float": values in [0, 1], no mean/std
     "caption": str,                       # the .txt member, else json "caption", else ""
     "clip_id": str, "meta": dict}         # meta: the sample's json (source, span, candidates...;
                                           # candidates' params a dict, also from older shards)

Frames: ``num_frames`` frames uniformly spaced over the clip (the middle frame of each
of T equal segments; a clip shorter than T frames repeats frames), resized to exactly
``size = (height, width)`` (aspect ratio not kept; ``size=None`` keeps the clip's own
size, then batches need clips of one size). Decoded with decord from the mp4 bytes
(``decord.VideoReader(io.BytesIO(mp4), width=..., height=...)``). If decord cannot
read a sample (or is not installed) the sample is decoded with PyAV instead and a
warning is logged; ``decoder="pyav"`` uses PyAV only. A sample neither can decode
raises, unless ``handler=webdataset.warn_and_continue`` (skip it with a warning).

Captions: split-only builds (``vidcurate split``) have no captions; their samples load
with ``caption=""``. ``require_caption=True`` drops samples without a caption.

Exactly once per epoch: shards are split first across nodes (``webdataset.split_by_node``:
``RANK``/``WORLD_SIZE`` from the environment, else ``torch.distributed``; or pass
``rank=``/``world_size=``), then across the DataLoader workers of each node
(``webdataset.split_by_worker``), so every sample is read by exactly one worker of
one node per pass. The unit of the split is the SHARD: with fewer shards than
nodes x workers some workers idle, and nodes get unequal numbers of samples when
shards differ in size. For DDP, which needs equal batch counts on every rank, either
write many equal shards (``output.shard_max_samples``) or use ``resampled=True``
(every worker draws shards at random, with replacement, forever) and bound the epoch
with ``.with_epoch(samples_per_worker)`` on the returned pipeline. ``shuffle=N``
shuffles the shard order within each worker's share and samples in an N-sample
buffer (before decoding, so the buffer holds mp4 bytes, not frames).

Splits: ``split="validation"`` reads only the shards holding that split (from
index.parquet) and, should a shard hold several splits, only that split's samples.
Given shard URLs instead of a build folder, the split is taken from each sample's json
(``provenance.split``; absent means "train").

Other readers of the same shards::

    import ray
    ds = ray.data.read_webdataset(shard_urls(out))   # rows: __key__, mp4 (bytes), json (dict), txt (str)

    from datasets import load_dataset, Video
    ds = load_dataset("webdataset", data_files={"train": shard_urls(out, split="train")}, split="train")
    ds = ds.cast_column("mp4", Video(decode=False))   # mp4 stays bytes; Video(decode=True) needs torchcodec
"""
from __future__ import annotations

import functools
import io
import json
import logging
import os
import posixpath
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, Literal, Optional, Sequence

import numpy as np
import webdataset as wds

from vidcurate.operators.frames import decode_frames, frame_indices  # noqa: F401  (public here too)
from vidcurate.operators.write.layout import read_shard_plan, shard_urls  # noqa: F401  (shard_urls: public here too)
from vidcurate.operators.write.samples import with_params_object

log = logging.getLogger(__name__)

def _is_build_folder(location: str) -> bool:
    return not (location.endswith(".tar") or "{" in location or "::" in location)


# ---- the pipeline ----------------------------------------------------------------------

def webdataset_pipeline(out_or_urls: str | os.PathLike | Sequence[str], num_frames: int = 8,
                        size: Optional[int | tuple[int, int]] = (224, 224), split: Optional[str] = None,
                        shuffle: int = 0, resampled: bool = False,
                        decoder: Literal["decord", "pyav"] = "decord", *,
                        output: Literal["uint8", "float"] = "uint8", require_caption: bool = False,
                        rank: Optional[int] = None, world_size: Optional[int] = None,
                        handler: Callable[[Exception], bool] = wds.reraise_exception,
                        decode_threads: int = 1, version: Optional[str] = None) -> wds.DataPipeline:
    """A ``webdataset.DataPipeline`` of decoded clips (see the module docstring).

    ``version``: for a build folder, the caption version whose captions (and candidates with
    their scores) replace the shards' (operators/write/versions.py): a name, "build" (the
    shards' own), or None = the latest. A clip that version left without a caption loads with
    ``caption=""`` (``require_caption=True`` drops it).

    ``out_or_urls``: a build folder (local or fsspec URL), a list of shard URLs, or one
    URL / brace pattern (``.../shard-{000000..000009}.tar``). ``rank``/``world_size``
    override what ``webdataset.split_by_node`` reads (env ``RANK``/``WORLD_SIZE`` or
    ``torch.distributed``); they are ignored with ``resampled=True``, which does not
    split. ``handler`` is webdataset's exception handler for reading and decoding.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if decoder not in ("decord", "pyav"):
        raise ValueError(f"decoder must be 'decord' or 'pyav', got {decoder!r}")
    if output not in ("uint8", "float"):
        raise ValueError(f"output must be 'uint8' or 'float', got {output!r}")
    if (rank is None) != (world_size is None):
        raise ValueError("pass both rank and world_size, or neither")
    if world_size is not None and not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} out of range for world_size {world_size}")
    if isinstance(size, int):
        size = (size, size)

    keep_keys = None
    overlay = None
    if isinstance(out_or_urls, (str, os.PathLike)) and _is_build_folder(os.fspath(out_or_urls)):
        out = os.fspath(out_or_urls)
        overlay = caption_overlay(out, version)
        urls = shard_urls(out, split)
        if split is not None:
            keep_keys = _keys_of_split_in_mixed_shards(out, split)
        split_from_json = None
    else:
        urls = (wds.shardlists.expand_urls(os.fspath(out_or_urls)) if isinstance(out_or_urls, (str, os.PathLike))
                else [os.fspath(u) for u in out_or_urls])
        split_from_json = split
    if not urls:
        raise ValueError(f"no shards in {out_or_urls!r}" + (f" for split {split!r}" if split else ""))

    stages: list[Any] = []
    if resampled:
        stages.append(wds.ResampledShards(urls))
    else:
        stages.append(wds.SimpleShardList(urls))
        if world_size is None:
            stages.append(wds.split_by_node)
        else:
            stages.append(functools.partial(_split_by_rank, rank=rank, world_size=world_size))
        stages.append(wds.split_by_worker)
        if shuffle > 0:
            stages.append(wds.shuffle(len(urls), initial=len(urls)))
    stages.append(functools.partial(_open_shards, handler=handler))
    stages.append(functools.partial(wds.tariterators.tar_file_expander, handler=handler))
    stages.append(functools.partial(wds.tariterators.group_by_keys, handler=handler))
    stages.append(functools.partial(_parse, keep_keys=keep_keys, split=split_from_json,
                                    require_caption=require_caption, handler=handler, overlay=overlay))
    if shuffle > 0:
        stages.append(wds.shuffle(shuffle, initial=min(shuffle, 100)))
    stages.append(wds.map(_Decoder(num_frames, size, decoder, output, decode_threads), handler=handler))
    return wds.DataPipeline(*stages)


def _split_by_rank(src: Iterable, rank: int, world_size: int) -> Iterator:
    """``webdataset.split_by_node`` with an explicit rank and world size."""
    yield from islice(src, rank, None, world_size)


def _keys_of_split_in_mixed_shards(out: str, split: str) -> Optional[frozenset[str]]:
    """Keys of ``split``, needed only if a shard holding it holds other splits too (else None)."""
    plan = read_shard_plan(out)
    if plan is None:
        return None
    splits_of: dict[str, set] = {}
    for shard, sp in zip(plan["shard"], plan["split"]):
        splits_of.setdefault(shard, set()).add(sp)
    if all(len(s) == 1 for s in splits_of.values()):
        return None
    return frozenset(k for k, sp in zip(plan["key"], plan["split"]) if sp == split)


def _open_shards(src: Iterable[dict], handler=wds.reraise_exception) -> Iterator[dict]:
    """Open each shard URL with fsspec (``pipe:`` URLs with webdataset's gopen), close it after."""
    import fsspec

    for sample in src:
        url = sample["url"]
        try:
            stream = wds.gopen(url) if url.startswith("pipe:") else fsspec.open(url, "rb").open()
        except Exception as exn:
            exn.args = exn.args + (url,)
            if handler(exn):
                continue
            break
        try:
            yield {**sample, "stream": stream}
        finally:
            stream.close()


def caption_overlay(out: str, version: Optional[str]) -> Optional[dict[str, dict]]:
    """clip_id -> {caption, caption_teacher, score, selector, candidates} of a caption version of the
    build in ``out``; None for the shards' own captions (version "build", or no version yet)."""
    from vidcurate.operators.write.versions import version_captions

    _, rows = version_captions(out, version)
    if rows is None:
        return None
    return {clip_id: {k: row[k] for k in ("caption", "caption_teacher", "score", "selector", "candidates")}
            for clip_id, row in rows.items()}


def _parse(src: Iterable[dict], keep_keys=None, split=None, require_caption=False,
           handler=wds.reraise_exception, overlay: Optional[dict[str, dict]] = None) -> Iterator[dict]:
    """Raw tar members -> {mp4, caption, clip_id, meta}; drops samples of other splits."""
    for sample in src:
        try:
            key = sample["__key__"]
            if keep_keys is not None and key not in keep_keys:
                continue
            if "mp4" not in sample:
                raise ValueError(f"sample {key} in {sample.get('__url__')} has no .mp4 member")
            meta = json.loads(sample["json"]) if "json" in sample else {}
            if meta.get("candidates"):  # params as an object, also from shards that wrote a JSON string
                meta["candidates"] = [with_params_object(c) for c in meta["candidates"]]
            if split is not None and sample_split(meta) != split:
                continue
            caption = sample["txt"].decode("utf-8") if "txt" in sample else (meta.get("caption") or "")
            if overlay is not None and (meta.get("clip_id") or key) in overlay:
                meta.update(overlay[meta.get("clip_id") or key])
                meta["candidates"] = [with_params_object(c) for c in meta["candidates"] or []]
                caption = meta["caption"] or ""
            if require_caption and not caption:
                continue
            yield {"mp4": sample["mp4"], "caption": caption, "clip_id": meta.get("clip_id") or key,
                   "meta": meta, "__key__": key, "__url__": sample.get("__url__")}
        except Exception as exn:
            if handler(exn):
                continue
            break


def sample_split(meta: dict) -> str:
    """The split a sample's json names (``split`` or ``provenance.split``); "train" if none."""
    return meta.get("split") or (meta.get("provenance") or {}).get("split") or DEFAULT_SPLIT


# ---- decoding --------------------------------------------------------------------------

class _Decoder:
    """Picklable map stage: mp4 bytes -> frames tensor (DataLoader workers may be spawned)."""

    def __init__(self, num_frames: int, size, decoder: str, output: str, threads: int):
        self.num_frames, self.size, self.decoder, self.output, self.threads = num_frames, size, decoder, output, threads

    def __call__(self, sample: dict) -> dict:
        import torch

        hint = ((sample["meta"].get("clip") or {}).get("num_frames"))
        frames = decode_frames(sample["mp4"], self.num_frames, self.size, self.decoder, self.threads,
                               num_frames_hint=hint, name=sample["__key__"])
        tensor = torch.from_numpy(np.ascontiguousarray(frames))
        if self.output == "float":
            tensor = tensor.permute(0, 3, 1, 2).float().div_(255.0)
        return {"frames": tensor, "caption": sample["caption"], "clip_id": sample["clip_id"], "meta": sample["meta"]}


# ---- DataLoader ------------------------------------------------------------------------

def collate(samples: list[dict]) -> dict:
    """Stack frames into one tensor; captions, clip ids and metadata stay lists."""
    import torch

    return {"frames": torch.stack([s["frames"] for s in samples]),
            "caption": [s["caption"] for s in samples],
            "clip_id": [s["clip_id"] for s in samples],
            "meta": [s["meta"] for s in samples]}


def make_dataloader(out: str | os.PathLike | Sequence[str], batch_size: int, num_workers: int = 0, *,
                    loader_kwargs: Optional[dict] = None, **pipeline_kwargs):
    """A ``torch.utils.data.DataLoader`` over ``webdataset_pipeline(out, **pipeline_kwargs)``.

    Batches are made inside each worker (the last batch of a worker may be short; pass
    ``loader_kwargs={"drop_last": True}`` to drop it). Each batch is
    ``{"frames": [B, T, H, W, 3] uint8 (or [B, T, 3, H, W] float), "caption": [str],
    "clip_id": [str], "meta": [dict]}``. ``loader_kwargs`` go to the DataLoader
    (``pin_memory``, ``prefetch_factor``, ``persistent_workers``...).
    """
    import torch.utils.data

    dataset = webdataset_pipeline(out, **pipeline_kwargs)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                                       collate_fn=collate, **(loader_kwargs or {}))

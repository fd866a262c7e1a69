"""Writing a synthetic dataset in exactly a build's format, plus the truth and the labels.

    OUT/shards/<split>/shard-*.tar, index.parquet, rejects.parquet, stats.json,
    config.resolved.yaml, README.md, report.html, _journal/    as `vidcurate build` writes them
    OUT/truth.parquet    per clip: the true caption, attributes (JSON), every candidate's errors
    OUT/labels.parquet   simulated human judgments of the labelled clips (schemas/labels.py)
    OUT/sources/         with ``sources=True``: every source video whole (multi-shot ones too)

The build's own writer does the writing: records shaped like a build's (SOURCE, PROBE,
CLIP fields, the mp4, candidates added by ``add_candidate``) go through the real
``consensus_selector`` (bundled MiniLM) and the real ``DatasetSink``; the card and the
report are the build's. So anything that reads a build reads this, and the consensus
selection in the index is a real selector's, scored against the truth by score.py.
Rendering runs in a process pool (``workers``); everything random is drawn from the seed
per clip, so truth.parquet and labels.parquet are byte-identical for a seed.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from vidcurate.operators.stats import Stats
from vidcurate.operators.teachers.candidates import add_candidate
from vidcurate.operators.write.destination import Destination
from vidcurate.operators.write.layout import CARD_FILE, CONFIG_FILE, LABELS_FILE, STATS_FILE
from vidcurate.operators.write.sink import DatasetSink, SinkOptions
from vidcurate.pipelines.build.card import dataset_card
from vidcurate.pipelines.build.config import OutputConfig
from vidcurate.pipelines.synth import render
from vidcurate.pipelines.synth.annotators import AnnotatorConfig, agreement, annotate, is_labelled
from vidcurate.pipelines.synth.captions import realize
from vidcurate.pipelines.synth.teachers import TEACHERS, _stated, candidates_for, title_of
from vidcurate.pipelines.synth.world import FPS, HEIGHT, MAX_NOISE, WIDTH, Source, draw_world
from vidcurate.schemas.labels import write_labels

TRUTH_FILE, SOURCES_DIR = "truth.parquet", "sources"
TRUTH = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("start_frame", pa.int64(), nullable=False),  # in the source video, at FPS
        pa.field("end_frame", pa.int64(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),  # the true caption (one paraphrase of it)
        pa.field("attributes", pa.string(), nullable=False),  # JSON: shape, colour, count, size, motion, ...
        pa.field("candidates", pa.list_(pa.struct([pa.field("teacher", pa.string()), pa.field("text", pa.string()),
                                                   pa.field("errors", pa.list_(pa.string()))]))),
        pa.field("labelled", pa.bool_(), nullable=False),  # judged in labels.parquet; else held out
    ],
    metadata={"vidcurate.schema": "synth_truth", "vidcurate.version": "1.0"},
)


class SynthError(ValueError):
    """Bad arguments or an output folder that cannot take a synthetic dataset."""


@dataclass
class SynthOptions:
    clips: int
    seed: int = 0
    noise: float = 0.2
    label_share: float = 0.5
    annotators: AnnotatorConfig = field(default_factory=AnnotatorConfig)
    workers: int = 2
    sources: bool = False

    def check(self) -> None:
        if self.clips < 1:
            raise SynthError(f"--clips must be >= 1, got {self.clips}")
        if not 0 <= self.noise <= MAX_NOISE:
            raise SynthError(f"--noise must be between 0 and {MAX_NOISE}, got {self.noise}")
        if not 0 <= self.label_share <= 1:
            raise SynthError(f"--label-share must be between 0 and 1, got {self.label_share}")
        if not 0 <= self.annotators.accuracy <= 1:
            raise SynthError(f"--annotator-accuracy must be between 0 and 1, got {self.annotators.accuracy}")
        if self.workers < 1:
            raise SynthError(f"--workers must be >= 1, got {self.workers}")


def _claim(out: str, overwrite: bool) -> None:
    if os.path.isfile(out):
        raise SynthError(f"output {out!r} is a file, not a folder")
    if os.path.isdir(out) and os.listdir(out):
        if not os.path.exists(os.path.join(out, TRUTH_FILE)):
            raise SynthError(f"output {out!r} is not empty and holds no synthetic dataset; choose another folder")
        if not overwrite:
            raise SynthError(f"output {out!r} holds a synthetic dataset; pass --overwrite to replace it")
        shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)


def _records(source: Source, mp4s: list[bytes], seed: int, noise: float) -> list[dict]:
    """A source's clip records as a build's teachers leave them (SOURCE + PROBE + CLIP + candidates)."""
    base = {"uri": source.uri, "video_id": source.video_id, "title": title_of(source, seed),
            "description": f"Synthetic source video {source.number} of seed {seed}: {len(source.shots)} shot(s).",
            "tags": ["synthetic"], "license": "CC0-1.0 (synthetic)",
            "duration": source.frames / FPS, "fps": float(FPS), "num_frames": source.frames, "width": WIDTH,
            "height": HEIGHT, "video_codec": "h264", "pixel_format": "yuv420p", "rotation": 0,
            "variable_frame_rate": False, "has_audio": False, "size_bytes": sum(map(len, mp4s)), "status": "ok"}
    records = []
    for index, (shot, mp4) in enumerate(zip(source.shots, mp4s)):
        start, end = shot.start_frame / FPS, (shot.start_frame + shot.frames) / FPS
        record = {**base, "clip_id": source.clip_id(index), "start": start, "end": end,
                  "start_frame": shot.start_frame, "end_frame": shot.start_frame + shot.frames,
                  "shots": [[start, end]], "split_reason": "shot", "mp4": mp4, "clip_num_frames": shot.frames,
                  "clip_fps": float(FPS), "clip_width": WIDTH, "clip_height": HEIGHT}
        for candidate in candidates_for(source, index, seed, noise):
            add_candidate(record, teacher=candidate["teacher"], modality=candidate["modality"],
                          text=candidate["text"], model_id=f"synthetic:{candidate['teacher']}",
                          params={"noise": noise, "seed": seed})
        records.append(record)
    return records


def resolved_config(options: SynthOptions, selector_model: str) -> dict:
    """config.resolved.yaml: the world's parameters and the pipeline as the card lists it."""
    return {"synth": {k: v for k, v in asdict(options).items() if k not in ("workers", "sources")},
            "pipeline": [{"op": "synthetic_teacher", "label": t.name, "model": f"synthetic: {t.profile}"}
                         for t in TEACHERS] + [{"op": "consensus_selector", "model": selector_model}],
            "output": OutputConfig().model_dump()}


def truth_and_labels(sources: list[Source], options: SynthOptions) -> tuple[list[dict], list[dict]]:
    """The truth rows and the label rows of a world (no video): what the shortcut check trains on."""
    truth, clips = [], []
    for source in sources:
        for index, shot in enumerate(source.shots):
            clip_id = source.clip_id(index)
            candidates = candidates_for(source, index, options.seed, options.noise)
            caption = realize(_stated(shot), random.Random(f"vidcurate-synth-truth:{options.seed}:{clip_id}"))
            truth.append({"clip_id": clip_id, "video_id": source.video_id, "start_frame": shot.start_frame,
                          "end_frame": shot.start_frame + shot.frames, "caption": caption,
                          "attributes": json.dumps(shot.attributes, sort_keys=True),
                          "candidates": [{k: c[k] for k in ("teacher", "text", "errors")} for c in candidates],
                          "labelled": is_labelled(options.seed, clip_id, options.label_share)})
            clips.append((clip_id, candidates, _stated(shot)))
    return truth, annotate(clips, options.seed, options.label_share, options.annotators)


def synthesized_world(world: str, clips: int, seed: int, noise: float, echo) -> str:
    """``world``, a synthetic world of ``clips`` clips (seed, noise), made unless its truth.parquet is already
    there: the benchmarks' reusable worlds."""
    if not os.path.isfile(os.path.join(world, "truth.parquet")):
        echo(f"synthesizing {clips} clips (seed {seed}, noise {noise}) in {world}")
        synthesize(world, SynthOptions(clips=clips, seed=seed, noise=noise), overwrite=True, report=False)
    return world


def synthesize(out: str, options: SynthOptions, overwrite: bool = False, report: bool = True) -> dict:
    """Write the synthetic dataset to the local folder ``out``; returns a summary (counts, speed, agreement)."""
    from vidcurate.pipelines.build.registry import operator_class
    from vidcurate.pipelines.build.run import build_stats, vidcurate_version
    from vidcurate.pipelines.report import write_report

    options.check()
    _claim(out, overwrite)
    started = time.perf_counter()
    sources = draw_world(options.clips, options.seed, options.noise)
    truth, labels = truth_and_labels(sources, options)
    tasks = [(shot, options.seed, s.clip_id(i)) for s in sources for i, shot in enumerate(s.shots)]
    pool = multiprocessing.get_context("fork").Pool(options.workers) if options.workers > 1 else None
    rendered = pool.imap(render.render_clip, tasks, chunksize=4) if pool else map(render.render_clip, tasks)
    selector = operator_class("consensus_selector")()
    resolved = resolved_config(options, selector.model)
    text = yaml.safe_dump(resolved, sort_keys=False).encode("utf-8")
    config_hash = hashlib.sha256(text).hexdigest()[:16]
    dest = Destination(out)
    provenance = {"config_hash": config_hash, "vidcurate_version": vidcurate_version()}
    sink = DatasetSink(dest, provenance, SinkOptions(splits=dict(OutputConfig().splits)), config_hash)
    sink.journal.append({"kind": "begin", "config_hash": config_hash})
    dest.write_bytes(CONFIG_FILE, text)
    mine = Stats()
    sink.track_stats("synth", "1970-01-01T00:00:00+00:00", lambda: Stats.total([mine, selector.stats]))
    try:
        batch: list[tuple[Source, list[dict]]] = []
        for number, source in enumerate(sources):
            tick = time.perf_counter()
            mp4s = [next(rendered) for _ in source.shots]
            mine.add_time("synth_render.process", time.perf_counter() - tick)
            mine.incr("synth_render.records_out", len(mp4s))
            if options.sources:
                os.makedirs(os.path.join(out, SOURCES_DIR), exist_ok=True)
                render.join_shots(mp4s, os.path.join(out, SOURCES_DIR, f"{source.video_id}.mp4"))
            batch.append((source, _records(source, mp4s, options.seed, options.noise)))
            if sum(len(r) for _, r in batch) >= 64 or number == len(sources) - 1:
                selected = iter(selector([r for _, records in batch for r in records]))
                for done, records in batch:
                    sink.write([next(selected) for _ in records], [done.uri])
                batch = []
    finally:
        if pool:
            pool.terminate()
    sink.close()
    pq.write_table(pa.Table.from_pylist(truth, schema=TRUTH), os.path.join(out, TRUTH_FILE))
    write_labels(labels, os.path.join(out, LABELS_FILE))
    dest.write_bytes(STATS_FILE, json.dumps(build_stats(sink.journal.state.runs), indent=2).encode("utf-8"))
    card = dataset_card(resolved, sink.index_rows, sink.reject_rows,
                        [v["source"] for v in sink.journal.state.videos.values()], provenance)
    dest.write_bytes(CARD_FILE, card.encode("utf-8"))
    if report:
        write_report(out)
    seconds = time.perf_counter() - started
    share, pairs = agreement(labels)
    return {"clips": len(truth), "sources": len(sources), "multi_shot_sources": sum(len(s.shots) > 1 for s in sources),
            "labelled_clips": sum(r["labelled"] for r in truth), "judgments": len(labels),
            "agreement": share, "agreement_pairs": pairs, "seconds": seconds, "clips_per_second": len(truth) / seconds}

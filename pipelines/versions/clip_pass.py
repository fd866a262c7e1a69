"""Operators over a finished build's clips, through any of the build's runners (local, Ray).

`vidcurate select` and each round of `vidcurate refine` run a selector or the student captioner on
every clip of a build. Here that is a small pipeline handed to a registered runner, so on Ray it
runs on the cluster the way a build's teachers do, and nothing is held whole in one process:

    source records   clip groups: up to ``clips_per_group`` clips of one shard (index rows, plus
                     per-clip ``fields`` such as the candidates to select among)
    read_build_clips on the worker: one record per clip, its mp4 read from the shard by byte range
    the operators    e.g. student_teacher, or a selector
    keep_fields      only ``keep`` (no mp4 bytes) goes back to the driver

``run_over_clips`` hands the records the runner emits to a callback (ok and rejected: a clip that
cannot be read or that an operator rejects comes back as a reject naming it), in the order the
runner finishes them. Ray needs OUT on storage its workers can read (a shared file system or an fsspec URL):
when a worker cannot see OUT, the pass ends with a ClipPassError naming the host, after the runner
finished (nothing is written from a pass that could not read its clips).
The Beam runner is not offered: it runs only with the build's sample writer.
"""
from __future__ import annotations

import os
from typing import Callable, Iterable, Iterator

from vidcurate.operators.write.build_clips import KeepFields, ReadBuildClips
from vidcurate.operators.write.layout import INDEX_FILE

RUNNERS = ("local", "ray")  # Beam's runner needs a sample writer (pipelines/runners/beam/runner.py)
INDEX_COLUMNS = ["clip_id", "video_id", "shard", "key", "mp4_offset", "mp4_bytes", "num_frames"]


class ClipPassError(ValueError):
    """A clip pass that cannot start (the message names the input and why)."""


def clip_groups(out: str, fields: dict[str, dict] | None = None, only: Iterable[str] | None = None,
                clips_per_group: int = 64) -> Iterator[dict]:
    """Source records for the runner: the index's clips (those of ``only``, else all), by shard and in
    shard order, ``clips_per_group`` at a time; ``fields`` maps clip id -> fields added to its record."""
    import pyarrow.parquet as pq

    rows = pq.read_table(os.path.join(out, INDEX_FILE), columns=INDEX_COLUMNS).to_pylist()
    wanted = set(only) if only is not None else None
    by_shard: dict[str, list[dict]] = {}
    for row in rows:
        if wanted is None or row["clip_id"] in wanted:
            by_shard.setdefault(row["shard"], []).append(row)
    for shard, members in sorted(by_shard.items()):
        members.sort(key=lambda r: r["mp4_offset"] or 0)
        for number, start in enumerate(range(0, len(members), clips_per_group)):
            clips = [{**row, "fields": (fields or {}).get(row["clip_id"], {})}
                     for row in members[start:start + clips_per_group]]
            yield {"uri": f"{shard}#{number}", "shard": shard, "clips": clips}


def run_over_clips(out: str, operators: list, keep: Iterable[str], handle: Callable[[list[dict]], None],
                   runner: str = "local", mp4: bool = True, source_fields: bool = False,
                   fields: dict[str, dict] | None = None, only: Iterable[str] | None = None,
                   clips_per_group: int = 64, run=None):
    """Run ``operators`` over every clip (of ``only``, else all) with ``runner``; ``handle`` gets the
    records as the runner emits them, each reduced to ``keep`` (+ clip_id, status and the error
    fields). ``run``: a RunConfig (default: the runner's defaults). Returns the stages' Stats."""
    from vidcurate.pipelines.build.config import RunConfig
    from vidcurate.pipelines.runners import runner_class

    if runner not in RUNNERS:
        raise ClipPassError(f"runner {runner!r} cannot run over a build's clips; one of: {', '.join(RUNNERS)}")
    if not os.path.isfile(os.path.join(out, INDEX_FILE)):
        raise ClipPassError(f"{out!r} holds no finished build ({INDEX_FILE} is missing)")
    kept = tuple(dict.fromkeys(("clip_id", *keep, "status", "error_stage", "error_reason", "error_detail")))
    stages = [ReadBuildClips(out=out, mp4=mp4, source_fields=source_fields), *operators, KeepFields(fields=kept)]
    engine = runner_class(runner).from_config(stages, run or RunConfig(runner=runner))
    unreachable: list[str] = []

    def emit(records: list[dict], _finished) -> None:
        unreachable.extend(r.get("error_detail") or "" for r in records if r.get("error_reason") == "out_unreachable")
        if records and not unreachable:
            handle(records)

    stats = engine.run(clip_groups(out, fields, only, clips_per_group), emit)
    if unreachable:
        raise ClipPassError(f"{len(unreachable)} clips could not be read on the {runner} runner's workers: "
                            f"{unreachable[0].partition(': ')[2]}")
    return stats

"""The build pipeline: inputs -> operators (via a runner) -> shards, index, rejects, stats.

    from vidcurate.pipelines.build import build
    from vidcurate.pipelines.config import load_config
    result = build("videos/", "out/", load_config())   # the embedded default config
    print(result.summary())

Output folder::

    shards/<prefix>-000000.tar   WebDataset samples: <clip_id>.mp4 / .json / .txt
    index.parquet                one row per clip (schemas.INDEX)
    rejects.parquet              one row per rejected input or clip (schemas.REJECT)
    stats.json                   counters and timers per operator, merged
    config.resolved.yaml         the configuration with every default filled in
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

import yaml

from vidcurate.operators.base import is_ok
from vidcurate.operators.write.sink import INDEX_FILE, REJECTS_FILE, DatasetSink
from vidcurate.pipelines.config import BuildConfig
from vidcurate.pipelines.runners.local import LocalRunner
from vidcurate.schemas.manifest import read_inputs
from vidcurate.schemas.records import rejected

STATS_FILE = "stats.json"
CONFIG_FILE = "config.resolved.yaml"
OUTPUT_NAMES = ("shards", INDEX_FILE, REJECTS_FILE, STATS_FILE, CONFIG_FILE)


class BuildError(RuntimeError):
    """The build stopped: it was failing wholesale (run.max_failure_ratio)."""


class OutputError(ValueError):
    """The output folder cannot take this build (it is a file, or holds a build already)."""


def vidcurate_version() -> str:
    try:
        return version("vidcurate")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class BuildResult:
    output: str
    inputs: int = 0
    inputs_with_samples: int = 0
    clips: int = 0
    rejects: Counter = field(default_factory=Counter)
    shards: list = field(default_factory=list)
    stage_seconds: dict = field(default_factory=dict)
    wall_seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"vidcurate build -> {self.output}",
            f"  videos in:      {self.inputs} ({self.inputs_with_samples} gave clips)",
            f"  clips out:      {self.clips} in {len(self.shards)} shard(s)",
            f"  rejects:        {sum(self.rejects.values())}"
            + "".join(f"\n    {n:5d}  {key}" for key, n in self.rejects.most_common()),
            "  time per stage (s):"
            + "".join(f"\n    {secs:8.2f}  {stage}" for stage, secs in self.stage_seconds.items()),
            f"  wall time:      {self.wall_seconds:.1f} s",
        ]
        return "\n".join(lines)


class FailureBudget:
    """Tracks which inputs yielded a sample; stops a build failing wholesale."""

    def __init__(self, max_ratio: float, min_inputs: int):
        self.max_ratio, self.min_inputs = max_ratio, min_inputs
        self.inputs: set[str] = set()
        self.with_samples: set[str] = set()
        self.reject_reasons: dict[str, Counter] = {}

    def record(self, records: list[dict]) -> None:
        for r in records:
            self.inputs.add(r["uri"])
            if is_ok(r):
                self.with_samples.add(r["uri"])
            else:
                self.reject_reasons.setdefault(r["uri"], Counter())[f"{r['error_stage']}/{r['error_reason']}"] += 1

    def check(self, final: bool = False) -> None:
        total = len(self.inputs)
        failed = total - len(self.with_samples)
        if total and (final or total >= self.min_inputs) and failed / total > self.max_ratio:
            reasons = Counter(self.reject_reasons[u].most_common(1)[0][0]
                              for u in self.inputs - self.with_samples if u in self.reject_reasons)
            common = ", ".join(f"{k} ({n})" for k, n in reasons.most_common(3))
            raise BuildError(
                f"stopped: {failed} of {total} inputs ({failed / total:.0%}) yielded no clip, above "
                f"run.max_failure_ratio {self.max_ratio:.0%}; most common reasons: {common}. "
                f"See rejects.parquet for every input and reason.")


def build(input_location: str, output: str, config: BuildConfig, overwrite: bool = False) -> BuildResult:
    started = time.perf_counter()
    operators = config.operators()          # a bad config fails before anything is touched,
    inputs = read_inputs(input_location)    # and so does a bad manifest: OUT is left as it was
    _prepare_output(output, overwrite)
    resolved = config.resolved(operators)
    with open(os.path.join(output, CONFIG_FILE), "w") as handle:
        yaml.safe_dump(resolved, handle, sort_keys=False)
    provenance = {"config_hash": config.digest(resolved), "vidcurate_version": vidcurate_version()}
    sink = DatasetSink(output, provenance, config.output.shard_prefix,
                       config.output.shard_max_samples, config.output.shard_max_bytes)
    budget = FailureBudget(config.run.max_failure_ratio, config.run.failure_ratio_min_inputs)

    def emit(records: list[dict]) -> None:
        sink.write(records)
        budget.record(records)
        budget.check()

    runner = LocalRunner(operators, config.run.videos_per_chunk)
    error: BuildError | None = None
    try:
        emit(inputs.rejects)
        runner.run(inputs.sources, emit)
    except BuildError as exc:
        error = exc
        # Inputs the stop left unprocessed are rejects too (transient: a re-run may succeed).
        sink.write([rejected(s, "build", "build_stopped", f"{s['uri']}: not processed, the build stopped early",
                             transient=True) for s in inputs.sources if s["uri"] not in budget.inputs])
    stats = runner.stats()
    result = BuildResult(output=output, shards=sink.close())
    with open(os.path.join(output, STATS_FILE), "w") as handle:
        json.dump(stats.to_dict(), handle, indent=2)
    _account_for_every_input(inputs, sink)
    result.stage_seconds = {k.rsplit(".", 1)[0]: round(v, 3) for k, v in stats.seconds.items()
                            if k.endswith(".process")}
    result.inputs = len(inputs.sources) + len({r["uri"] for r in inputs.rejects})
    result.inputs_with_samples = len(budget.with_samples)
    result.clips = len(sink.index_rows)
    result.rejects = Counter(f"{r['stage']}/{r['reason']}" for r in sink.reject_rows)
    result.wall_seconds = time.perf_counter() - started
    if error is not None:
        raise error
    budget.check(final=True)
    return result


def _prepare_output(output: str, overwrite: bool) -> None:
    if os.path.exists(output) and not os.path.isdir(output):
        raise OutputError(f"output {output!r} is a file, not a folder")
    existing = [n for n in OUTPUT_NAMES if os.path.exists(os.path.join(output, n))]
    if existing and not overwrite:
        raise OutputError(f"output {output!r} already holds a build ({', '.join(existing)}); "
                          "pass --overwrite to replace it")
    for name in existing:
        path = os.path.join(output, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    os.makedirs(output, exist_ok=True)


def _account_for_every_input(inputs, sink: DatasetSink) -> None:
    """Every input must be in the index or the rejects table; anything else is a bug in vidcurate."""
    seen = {row["uri"] for row in sink.index_rows} | {row["uri"] for row in sink.reject_rows}
    missing = [s["uri"] for s in inputs.sources if s["uri"] not in seen]
    if missing:
        raise AssertionError(f"internal error: {len(missing)} input(s) vanished without a sample or a reject: "
                             f"{missing[:5]}")

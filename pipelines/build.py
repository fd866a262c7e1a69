"""The build pipeline: inputs -> operators (via a runner) -> shards, index, rejects, stats.

    from vidcurate.pipelines.build import build
    from vidcurate.pipelines.config import load_config
    result = build("videos/", "out/", load_config())   # the embedded default config
    print(result.summary())

Output folder (a local folder or an fsspec URL)::

    shards/<split>/<prefix>-000000.tar   WebDataset samples: <clip_id>.mp4 / .json / .txt
    index.parquet                one row per clip (schemas.INDEX)
    rejects.parquet              one row per rejected input or clip (schemas.REJECT)
    stats.json                   counters and timers per operator: every run's and their sum
    config.resolved.yaml         the configuration with every default filled in
    _journal/                    what is done: re-running the same command resumes

Builds are resumable and incremental: a re-run with the same config skips every source
video the journal lists as done (after a crash, after adding inputs), removes samples of
videos that were not finished, and rewrites the tables. A different config is refused
unless ``overwrite`` (which keeps the stage cache, so earlier stages are not redone).
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version

import yaml

from vidcurate.operators.base import is_ok
from vidcurate.operators.stats import Stats
from vidcurate.operators.write.destination import Destination
from vidcurate.operators.write.journal import JOURNAL_DIR, Journal
from vidcurate.operators.write.sink import INDEX_FILE, REJECTS_FILE, SHARDS_DIR, DatasetSink, SinkOptions
from vidcurate.pipelines.card import dataset_card
from vidcurate.pipelines.config import BuildConfig
from vidcurate.pipelines.progress import Progress
from vidcurate.pipelines.reject_hints import hint_for
from vidcurate.pipelines.report import write_report
from vidcurate.pipelines.runners.local import LocalRunner
from vidcurate.pipelines.runners.ray_runner import RayRunner
from vidcurate.pipelines.stage_cache import CachedStages, prefix_digest, split_at
from vidcurate.schemas.manifest import Inputs, read_inputs
from vidcurate.schemas.records import rejected

STATS_FILE = "stats.json"
CONFIG_FILE = "config.resolved.yaml"
CARD_FILE = "README.md"
REPORT_FILE = "report.html"
log = logging.getLogger(__name__)
OUTPUT_NAMES = (SHARDS_DIR, INDEX_FILE, REJECTS_FILE, STATS_FILE, CONFIG_FILE, JOURNAL_DIR, CARD_FILE, REPORT_FILE)


class BuildError(RuntimeError):
    """The build stopped, or finished with too many inputs failed (run.max_failure_ratio).

    ``result`` is the summary of what the build did (set once the outputs are written)."""

    def __init__(self, message: str, result: "BuildResult | None" = None):
        super().__init__(message)
        self.result = result


class OutputError(ValueError):
    """The output folder cannot take this build (it is a file, unwritable, or holds another build)."""


def vidcurate_version() -> str:
    try:
        return version("vidcurate")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class BuildResult:
    output: str
    inputs: int = 0
    inputs_done_before: int = 0  # skipped: a previous run of this build finished them
    inputs_with_samples: int = 0
    clips: int = 0
    rejects: Counter = field(default_factory=Counter)
    shards: list = field(default_factory=list)
    stage_seconds: dict = field(default_factory=dict)
    wall_seconds: float = 0.0
    retried: int | None = None  # retry-failed: source videos re-run
    skipped_files: int = 0  # files of an input folder that are not videos (not inputs)

    def summary(self) -> str:
        lines = [
            f"vidcurate build -> {self.output}",
            *([f"  retried:        {self.retried} source video(s) with transient rejects or not reached"
               if self.retried else "  retried:        nothing to retry (no transient rejects)"]
              if self.retried is not None else []),
            f"  videos in:      {self.inputs} "
            + (f"({self.inputs_done_before} done by an earlier run, skipped; {self.inputs_with_samples} of the "
               f"others gave clips)" if self.inputs_done_before else f"({self.inputs_with_samples} gave clips)"),
            *([f"  skipped:        {self.skipped_files} non-video file(s) in the input folder"]
              if self.skipped_files else []),
            f"  clips out:      {self.clips} in {len(self.shards)} shard(s)",
            f"  rejects:        {sum(self.rejects.values())}"
            + "".join(f"\n    {n:5d}  {key}" for key, n in self.rejects.most_common()),
            "  time per stage (s):"
            + "".join(f"\n    {secs:8.2f}  {stage}" for stage, secs in self.stage_seconds.items()),
            f"  wall time:      {self.wall_seconds:.1f} s",
        ]
        return "\n".join(lines)


class FailureBudget:
    """Tracks the samples and rejects of every input; stops a build failing wholesale."""

    def __init__(self, max_ratio: float, min_inputs: int):
        self.max_ratio, self.min_inputs = max_ratio, min_inputs
        self.inputs: set[str] = set()
        self.samples: Counter = Counter()  # uri -> samples it gave
        self.reject_reasons: dict[str, Counter] = {}

    def record(self, records: list[dict]) -> None:
        for r in records:
            self.inputs.add(r["uri"])
            if is_ok(r):
                self.samples[r["uri"]] += 1
            else:
                self.reject_reasons.setdefault(r["uri"], Counter())[f"{r['error_stage']}/{r['error_reason']}"] += 1

    def outcome(self, uri: str) -> str:
        """What one input gave: samples written and rejects by stage/reason."""
        rejects = ", ".join(f"{n} {reason}" for reason, n in self.reject_reasons.get(uri, Counter()).most_common())
        return f"{self.samples[uri]} clips written; rejected: {rejects or 'none'}"

    def check(self, final: bool = False, earlier: bool = False) -> None:
        """Raise BuildError when too many inputs yielded no clip. Mid-build (``final`` False) only
        once ``min_inputs`` inputs are done; ``earlier``: every input was done by earlier runs."""
        total = len(self.inputs)
        failed = total - len(self.samples)
        if total and (final or total >= self.min_inputs) and failed / total > self.max_ratio:
            reasons = self.failure_reasons()
            common = ", ".join(f"{k} ({n})" for k, n in reasons.most_common(3))
            verdict = ("nothing to do (every input was processed by an earlier run), and" if earlier
                       else "failed:" if final else "stopped:")
            hint = hint_for(reasons.most_common(1)[0][0]) if reasons else None
            raise BuildError(
                f"{verdict} {failed} of {total} inputs ({failed / total:.0%}) yielded no clip, above "
                f"run.max_failure_ratio {self.max_ratio:.0%}; most common reasons: {common}. "
                f"See rejects.parquet for every input and reason."
                + (f"\nhint ({reasons.most_common(1)[0][0]}): {hint}" if hint else ""))

    def failure_reasons(self) -> Counter:
        """stage/reason -> inputs that yielded no clip with it as their most common reason."""
        return Counter(self.reject_reasons[u].most_common(1)[0][0]
                       for u in self.inputs - self.samples.keys() if u in self.reject_reasons)


def build(input_location: str | None, output: str, config: BuildConfig, overwrite: bool = False,
          sources: list[dict] | None = None, progress: bool | None = None, report: bool = True) -> BuildResult:
    """Build (or resume, or extend) the dataset in ``output`` from ``input_location``.

    ``sources`` replaces reading ``input_location`` (used by ``retry_failed``). ``progress``:
    None = bars on a terminal and a rare line in logs, False = silent (pipelines/progress.py).
    ``report=False`` skips OUT/report.html (benchmarks; ``vidcurate report OUT`` writes it later)."""
    started = time.perf_counter()
    operators = config.operators()          # a bad config fails before anything is touched,
    inputs = (read_inputs(input_location, config.output.metadata_max_chars) if sources is None
              else Inputs(sources=sources, rejects=[]))
    resolved = config.resolved(operators)   # and so does a bad manifest: OUT is left as it was
    config_hash = config.digest(resolved)
    dest, journal = _prepare_output(output, overwrite, config_hash,
                                    yaml.safe_dump(resolved, sort_keys=False).encode("utf-8"))
    provenance = {"config_hash": config_hash, "vidcurate_version": vidcurate_version()}
    budget = FailureBudget(config.run.max_failure_ratio, config.run.failure_ratio_min_inputs)

    committed: list[str] = []  # videos journaled since the last log: logged once committed, not before

    def log_committed() -> None:
        for uri in committed:
            log.info("%s: %s", uri, budget.outcome(uri))
        committed.clear()

    out = config.output
    sink = DatasetSink(dest, provenance, SinkOptions(out.shard_prefix, out.shard_max_samples, out.shard_max_bytes,
                                                     out.open_shards, dict(out.splits), tuple(out.bucket_by),
                                                     out.split_seed, tuple(out.extra_members)), config_hash,
                       journal=journal, on_commit=committed.extend)
    done = sink.done_uris
    todo = [s for s in inputs.sources if s["uri"] not in done]

    finished: set[str] = set()
    unreadable = len({r["uri"] for r in inputs.rejects})
    log.info("%s: %d inputs, %d to do (%d done by an earlier run, %d rejected on reading); %s runner",
             output, len(inputs.sources) + unreadable, len(todo), len(inputs.sources) - len(todo), unreadable,
             config.run.runner)

    def emit(records: list[dict], videos_finished: list[str]) -> None:
        sink.write(records, videos_finished)  # may turn a record into a reject (a duplicate sample key)
        budget.record(records)
        log_committed()
        if videos_finished:  # judged on whole videos only
            finished.update(videos_finished)
            budget.check()

    cached = split_at(operators, config.run.cache_after)
    stages = operators
    if cached:
        stages = [CachedStages(operators[:cached], dest,
                               prefix_digest(resolved["pipeline"][:cached], vidcurate_version())),
                  *operators[cached:]]
    display = Progress(len(todo), ([stages[0].name] if cached else []) + [op.name for op in operators],
                       enabled=progress)
    if cached:
        stages[0].progress = display
    if config.run.runner == "ray":
        runner = RayRunner(stages, config.run.videos_per_chunk, config.run.ray_address, config.run.max_actors,
                           progress=progress, fuse_cpu_stages=config.run.fuse_cpu_stages)
        display = Progress(0, [], enabled=False)  # Ray Data draws its own progress bars
    else:
        runner = LocalRunner(stages, config.run.videos_per_chunk, progress=display)
    sink.track_stats(_run_id(), datetime.now(timezone.utc).isoformat(timespec="seconds"), runner.stats)
    input_rejects = [r for r in inputs.rejects if r["uri"] not in done]
    error: BuildError | None = None
    try:
        # Refused on reading (bad manifest rows): pending, not done, so a fixed row is processed
        # by the next run; until then they are in the rejects table like any reject.
        budget.record(input_rejects)
        sink.mark_pending(input_rejects)
        committed.extend(sorted({r["uri"] for r in input_rejects}))
        log_committed()
        budget.check()
        if todo:  # nothing left to do: no model is loaded
            with display:
                runner.run(todo, emit)
    except BuildError as exc:
        error = exc
        # Inputs the stop left unfinished are journaled as transient rejects: re-running the
        # same command, or retry-failed, processes them; until then the rejects table lists them.
        sink.mark_pending([rejected(s, "build", "build_stopped", f"{s['uri']}: not processed, the build stopped "
                                    "early", transient=True) for s in todo if s["uri"] not in finished])
    result = BuildResult(output=output, shards=sink.close())
    log_committed()
    runs = sink.journal.state.runs
    dest.write_bytes(STATS_FILE, json.dumps(build_stats(runs), indent=2).encode("utf-8"))
    _account_for_every_input(inputs, sink)
    card = dataset_card(resolved, sink.index_rows, sink.reject_rows,
                        [v["source"] for v in sink.journal.state.videos.values()], provenance)
    dest.write_bytes(CARD_FILE, card.encode("utf-8"))
    if report and dest.local:  # the report reads the output folder back
        try:
            write_report(dest.root)
        except Exception as exc:  # a report problem must not fail a finished build
            log.warning("could not write %s: %s", REPORT_FILE, exc)
    order = [op.name for op in operators]
    stats = runner.stats()
    result.stage_seconds = {k.rsplit(".", 1)[0]: round(v, 3) for k, v in sorted(
        stats.seconds.items(), key=lambda kv: order.index(kv[0].rsplit(".", 1)[0])
        if kv[0].rsplit(".", 1)[0] in order else len(order)) if k.endswith(".process")}
    result.inputs = len(inputs.sources) + len({r["uri"] for r in inputs.rejects})
    result.inputs_done_before = len({s["uri"] for s in inputs.sources} & done)
    result.skipped_files = len(inputs.skipped)
    result.inputs_with_samples = len(budget.samples)
    index_rows = sink.index_rows
    result.clips = len(index_rows)
    result.rejects = Counter(f"{r['stage']}/{r['reason']}" for r in sink.reject_rows)
    result.wall_seconds = time.perf_counter() - started
    dest.close()
    if error is not None:
        error.result = result
        raise error
    # Judged on the whole dataset of these inputs, including videos done by earlier runs.
    final = FailureBudget(config.run.max_failure_ratio, config.run.failure_ratio_min_inputs)
    wanted = {s["uri"] for s in inputs.sources} | {r["uri"] for r in inputs.rejects}
    final.record([{"uri": row["uri"], "status": "ok"} for row in index_rows if row["uri"] in wanted])
    final.record([rejected({"uri": row["uri"]}, row["stage"], row["reason"]) for row in sink.reject_rows
                  if row["uri"] in wanted])
    try:
        final.check(final=True, earlier=not todo and any(s["uri"] in done for s in inputs.sources))
    except BuildError as exc:
        exc.result = result
        raise
    return result


def build_stats(runs: dict[str, dict]) -> dict:
    """stats.json: every run's counters and timers (from the journal, so killed runs count too)
    and their sum; a resume or re-run adds a run, never replaces the earlier ones."""
    total = Stats()
    ordered = sorted(runs.items(), key=lambda kv: (kv[1].get("started_at") or "", kv[0]))
    for _, run in ordered:
        total.merge(Stats.from_dict(run))
    return {**total.to_dict(),
            "runs": [{"run": name, "started_at": run.get("started_at"), **Stats.from_dict(run).to_dict()}
                     for name, run in ordered]}


def _run_id() -> str:
    return f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def retry_failed(output: str) -> BuildResult:
    """Re-run the source videos of ``output`` that have a transient reject (timeouts, network, ...),
    and the inputs a stopped build did not finish."""
    from vidcurate.pipelines.config import load_config

    dest = Destination(output)
    if not dest.exists(CONFIG_FILE) or not dest.exists(JOURNAL_DIR):
        raise OutputError(f"{output!r} holds no resumable build (no {CONFIG_FILE} and {JOURNAL_DIR}/)")
    state = Journal(dest).state
    failed = sorted(uri for uri, video in state.videos.items()
                    if any(row.get("transient") for row in video["rejects"]))
    waiting = [v["source"] for _, v in sorted(state.pending.items()) if any(r["transient"] for r in v["rejects"])]
    sources = [state.videos[uri]["source"] for uri in failed] + waiting
    if failed:  # their samples become orphans, removed by the build below; the new run's rows replace them
        Journal(dest).append({"kind": "retract", "uris": failed})
    result = build(None, output, load_config(dest.path(CONFIG_FILE)), sources=sources)
    result.retried = len(sources)
    return result


def _prepare_output(output: str, overwrite: bool, config_hash: str, resolved_config: bytes
                    ) -> tuple[Destination, Journal]:
    """Check OUT can take this build, then claim it: the journal's ``begin`` entry comes before any
    other write, so the same command resumes a build interrupted at any moment. OUT's problems
    (a file, not writable, another build's) raise OutputError before any work is done."""
    try:
        dest = Destination(output)
    except ValueError as exc:
        raise OutputError(str(exc)) from None
    try:
        if dest.exists() and dest.isfile():
            raise OutputError(f"output {output!r} is a file, not a folder")
        existing = [n for n in OUTPUT_NAMES if dest.exists(n)]
        if existing and not overwrite:
            if not dest.exists(JOURNAL_DIR):
                raise OutputError(f"output {output!r} holds files of another build ({', '.join(existing)}) and no "
                                  f"{JOURNAL_DIR}/ to resume from; pass --overwrite to replace it")
            previous = Journal(dest).state.config_hash
            if previous and previous != config_hash:
                raise OutputError(f"output {output!r} holds a build made with another config (hash {previous}, "
                                  f"now {config_hash}); pass --overwrite to rebuild it, or choose another output")
        if overwrite:
            for name in existing:
                dest.remove(name)
        dest.makedirs()
        journal = Journal(dest)
        if not journal.state.entries:
            journal.append({"kind": "begin", "config_hash": config_hash})
        dest.write_bytes(CONFIG_FILE, resolved_config)
    except OSError as exc:  # under a file, /proc, read-only or full filesystem, no permission
        where = exc.filename or output
        raise OutputError(f"output {output!r} cannot be created or written: {exc.strerror or exc} ({where})") from None
    return dest, journal


def _account_for_every_input(inputs, sink: DatasetSink) -> None:
    """Every input must be in the index or the rejects table; anything else is a bug in vidcurate."""
    seen = {row["uri"] for row in sink.index_rows} | {row["uri"] for row in sink.reject_rows}
    missing = [s["uri"] for s in inputs.sources if s["uri"] not in seen]
    if missing:
        raise AssertionError(f"internal error: {len(missing)} input(s) vanished without a sample or a reject: "
                             f"{missing[:5]}")

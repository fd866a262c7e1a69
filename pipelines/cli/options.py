"""Options and helpers shared by the commands: the build options declared once, and how a
build's outcome becomes output and an exit code."""
from __future__ import annotations

import logging
import sys

import click

from vidcurate.operators.base import OperatorSetupError
from vidcurate.pipelines.build.config import ConfigError, load_config
from vidcurate.pipelines.runners import describe_runners, runner_names
from vidcurate.schemas.manifest import ManifestError

USAGE_ERRORS = (ConfigError, ManifestError, OperatorSetupError)
PROCESS_ARGV: list[str] | None = None  # the program's arguments, when run as the `vidcurate` program (main())


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
                 help="Log a line per input once it is committed: clips written, rejects by stage and reason."),
)


RUNNER_OPTION = click.option(
    "--runner", type=click.Choice(runner_names()), default=None,
    help=f"Execution engine (overrides run.runner): {describe_runners()}.")


def forwarded_build_options(command):
    for option in reversed(FORWARDED_BUILD_OPTIONS):
        command = option(command)
    return command


def run_overrides(max_failure_ratio: float | None, max_actors: int | None, beam_options: tuple[str, ...] = ()
                  ) -> dict:
    """The run.* settings given on the command line (None: the config's value stays)."""
    given = {"max_failure_ratio": max_failure_ratio, "max_actors": max_actors,
             "beam_options": list(beam_options) or None}
    return {key: value for key, value in given.items() if value is not None}


# Flags after ``--`` (and flags vidcurate does not know) are Beam's PipelineOptions.
BEAM_OPTIONS_ARGUMENT = click.argument("beam_options", nargs=-1, type=click.UNPROCESSED, metavar="[-- BEAM_OPTIONS]")
PASS_UNKNOWN_OPTIONS = {"ignore_unknown_options": True}


def report_build(run, resume_command: str = "the same command") -> None:
    """Run a build; print its summary. Errors: exit 2 (usage, output), 1 (stopped or failed: the
    summary, the reason and a hint), 130 (Ctrl-C: what is committed stays, the command resumes)."""
    from vidcurate.pipelines.build import BuildError, OutputError
    from vidcurate.pipelines.build.outcome import WorkerLost
    from vidcurate.pipelines.build.supervisor import WORKER_LOST

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
    except WorkerLost as exc:  # the supervisor restarts the build
        click.echo(f"vidcurate: {exc}", err=True)
        sys.exit(WORKER_LOST)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: finished videos are kept; run {resume_command} again to resume", err=True)
        sys.exit(130)
    click.echo(result.summary())


def supervise_if_program(output: str) -> None:
    """As the `vidcurate` program, run the build in a child this process restarts if it dies
    (pipelines/build/supervisor.py), and exit with its code; otherwise return."""
    from vidcurate.pipelines.build.supervisor import supervise, supervising

    if PROCESS_ARGV is not None and supervising():
        from vidcurate.operators.write.layout import crash_ledger_folder

        sys.exit(supervise(PROCESS_ARGV, crash_ledger_folder(output)))


def run_build(input_location, output, config_path, runner, overwrite, verbose, run_overrides=None,
               step_overrides=None) -> None:
    from vidcurate.pipelines.build import build

    supervise_if_program(output)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")

    def run():
        config = load_config(config_path, runner)
        if run_overrides:
            config.run = config.run.model_copy(update=run_overrides)
        for op, fields in (step_overrides or {}).items():
            config = config.with_step_fields(op, **fields)
        config.operators()  # validate the overridden steps before anything runs
        return build(input_location, output, config, overwrite=overwrite)

    report_build(run)

"""`vidcurate submit`: the build as a Ray job on a cluster (Ray's job API: pipelines/runners/ray_jobs.py)."""
from __future__ import annotations

import os
import sys

import click

from vidcurate.pipelines.build.config import ConfigError, bundled_configs
from vidcurate.pipelines.cli.build import build as build_command
from vidcurate.pipelines.cli.options import forwarded_build_options
from vidcurate.pipelines.runners import runner_names
from vidcurate.pipelines.runners.ray_jobs import check_reachable, follow_job, job_config, stage_package


@click.command()
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
@click.option("--runner", type=click.Choice(runner_names()), default="ray", show_default=True,
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
        check_reachable(url)
    except OSError as exc:
        fail(f"cannot reach the Ray job server at {address} ({exc.strerror or exc}); give the head's "
             "dashboard address, e.g. --address http://HEAD:8265")

    with tempfile.TemporaryDirectory(prefix="vidcurate-submit-") as staging:
        try:
            config_arg, job_dir = job_config(config_path, working_dir, runner, staging)
        except ConfigError as exc:
            fail(str(exc))
        runtime_env: dict = {"env_vars": env}
        if job_dir:
            runtime_env["working_dir"] = job_dir
            runtime_env["excludes"] = [".git", ".venv", "__pycache__"]
        if ship_package:
            runtime_env["py_modules"] = [stage_package(staging)]
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
        status = follow_job(client, job_id, echo=lambda lines: click.echo(lines, nl=False))
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


def forwarded_build_argv(values: dict) -> list[str]:
    """The `vidcurate build` arguments that give it these forwarded option values."""
    argv: list[str] = []
    for param in build_command.params:
        value = values.get(param.name)
        if param.name not in values or value is None or value is False:
            continue
        argv += [param.opts[-1]] if value is True else [param.opts[-1], str(value)]
    return argv

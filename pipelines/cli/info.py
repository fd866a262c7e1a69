"""Commands that describe things: a build's report, the operators, the bundled configs."""
from __future__ import annotations

import sys

import click

from vidcurate.pipelines.build.config import ConfigError, load_config
from vidcurate.pipelines.report import SCAN_CLIPS


@click.command()
@click.argument("output", metavar="OUT")
@click.option("--samples", type=click.IntRange(min=0), default=12, show_default=True,
              help="Sample clips shown with a thumbnail and every caption candidate.")
@click.option("--version", default=None,
              help="Caption version whose captions the page shows (default: the latest; 'build': the index's).")
@click.option("--scan-clips", type=click.IntRange(min=0), default=SCAN_CLIPS, show_default=True,
              help="Teacher statistics read the json of whole shards until this many clips are counted "
                   "(0: every shard), so a huge build's report reads a few shards, not the dataset.")
def report(output: str, samples: int, scan_clips: int, version: str | None) -> None:
    """(Re)write OUT/report.html: counts, rejects, plots and sample clips of a build.

    OUT is a build's output folder. The page is one self-contained HTML file (plots and
    thumbnails embedded). Prints its path; exit code 2 when OUT holds no build.
    """
    from vidcurate.pipelines.report import ReportError, write_report

    try:
        path = write_report(output, samples=samples, scan_clips=scan_clips, version=version)
    except ReportError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(path)


@click.command()
@click.argument("name", required=False)
def ops(name: str | None) -> None:
    """List the operators, or show one operator's fields, defaults and resources."""
    from vidcurate.pipelines.build.config import unknown_operator
    from vidcurate.pipelines.build.registry import (OPERATORS, default_resources, field_lines, operator_class,
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


@click.command("config")
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

"""`vidcurate select` and `vidcurate versions`: caption versions of a finished build."""
from __future__ import annotations

import sys

import click

from vidcurate.operators.base import OperatorSetupError


@click.command()
@click.argument("output", metavar="OUT")
@click.option("--selector", default="consensus", show_default=True,
              help="A registered selector: consensus, retriever (needs --model), weighted (the retriever "
                   "with per-teacher priors) or teacher (one teacher's captions, needs --teacher); or its "
                   "operator name, e.g. consensus_selector.")
@click.option("--model", default=None, help="The selector's model: for retriever and weighted, a checkpoint "
              "folder from `vidcurate retriever finetune` or a hub id.")
@click.option("--threshold", type=float, default=None,
              help="retriever/weighted: reject clips whose chosen caption's matching probability is below this "
                   "(Panda-70M kept > 0.43).")
@click.option("--priors-from", default=None,
              help="weighted: a labels file; each teacher's prior is how often people chose its caption.")
@click.option("--teacher", default=None, help="teacher: whose candidate becomes every clip's caption.")
@click.option("--only-teacher", is_flag=True, default=None,
              help="teacher: keep only that teacher's candidates in the version (a single-captioner corpus, "
                   "e.g. refinement's round 0).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="Where the selector's model runs (default: the selector's own default).")
@click.option("--version", "name", default=None,
              help="Name of the new version (default: select-<selector>-N). Never overwrites one.")
@click.option("--from-version", default=None,
              help="Whose candidates to select from: a version name, 'build' (the shards'), default the latest.")
@click.option("--runner", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where the selector runs: this process, or Ray (joins RAY_ADDRESS, else a local instance; "
                   "the workers read the clips from OUT, which they must reach).")
def select(output: str, selector: str, model: str | None, threshold: float | None, priors_from: str | None,
           teacher: str | None, only_teacher: bool | None, device: str | None, name: str | None, from_version: str | None, runner: str) -> None:
    """Re-select every clip's caption of the build in OUT into a new caption version.

    Teachers are not run again and shards, index and earlier versions stay as they are
    (OUT/versions/NAME.parquet holds the new captions and every candidate's score); the
    card (README.md) and report.html are rewritten for the new version.
    Exit code 2 for a missing build, an unknown selector or version, or a name in use.
    """
    from vidcurate.operators.write.versions import VersionError
    from vidcurate.pipelines.versions.select import reselect

    from pydantic import ValidationError

    fields = {k: v for k, v in {"model": model, "threshold": threshold, "priors_from": priors_from,
                                "teacher": teacher, "only_teacher": only_teacher, "device": device}.items() if v is not None}
    try:
        record = reselect(output, selector, name, from_version, fields, runner,
                          warn=lambda text: click.echo(f"warning: {text}", err=True))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'selector'}: {e['msg']}" for e in exc.errors())
        click.echo(f"error: selector {selector!r}: {problems}", err=True)
        sys.exit(2)
    except (VersionError, OperatorSetupError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"{output}: version {record['name']}: {record['captioned']} of {record['clips']} clips captioned "
               f"by {record['selector']} (candidates from {record['from_version']})")
    # The card and the report describe the latest version, which this now is.
    from vidcurate.pipelines.build.card import write_card
    from vidcurate.pipelines.report import write_report

    write_card(output, record["name"])
    try:
        write_report(output, version=record["name"])
    except Exception as exc:  # the version is written; a report problem must not hide that
        click.echo(f"warning: could not rewrite report.html: {exc}", err=True)


@click.command()
@click.argument("output", metavar="OUT")
def versions(output: str) -> None:
    """List the caption versions of the build in OUT, oldest first, with their provenance."""
    from vidcurate.operators.write.layout import INDEX_FILE
    from vidcurate.operators.write.versions import VersionError, list_versions
    import os

    if not os.path.isfile(os.path.join(output, INDEX_FILE)):
        click.echo(f"error: {output!r} holds no finished build ({INDEX_FILE} is missing)", err=True)
        sys.exit(2)
    try:
        found = list_versions(output)
    except VersionError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo("build  (the build's own captions: index.parquet and the shards)")
    for v in found:
        latest = "  [latest]" if v is found[-1] else ""
        click.echo(f"{v['name']}  {v['created_at']}  {v.get('command')} by {v.get('selector')} from "
                   f"{v.get('from_version')}: {v['captioned']}/{v['clips']} clips captioned{latest}")


@click.command()
@click.argument("output", metavar="OUT")
@click.option("--version", default=None, help="The caption version to export (default: the latest).")
@click.option("-o", "--output", "new", required=True, help="A new, empty folder for the exported build.")
def export(output: str, version: str | None, new: str) -> None:
    """Write a self-contained build (shards, index, rejects, card) whose captions are a version's.

    The clips' mp4 bytes are copied unchanged; clips the version left without a caption
    become rejects. OUT is only read. Exit code 2 for an unknown version or a non-empty NEW.
    """
    from vidcurate.operators.write.versions import VersionError
    from vidcurate.pipelines.versions.export import export as run_export

    try:
        done = run_export(output, version, new)
    except VersionError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"{new}: {done['clips']} clips in {done['shards']} shard(s) with the captions of version "
               f"{done['version']}; {done['rejects']} rejects")

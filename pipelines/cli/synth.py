"""`vidcurate synth ...`: a synthetic dataset whose true content is known, and scoring against it."""
from __future__ import annotations

import os
import sys

import click

from vidcurate.pipelines.synth.world import ATTRIBUTES


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group(invoke_without_command=True)
@click.option("--clips", type=int, default=None, help="Clips to generate (required to generate).")
@click.option("--seed", type=int, default=0, show_default=True, help="The same seed gives the same dataset.")
@click.option("--noise", type=float, default=0.2, show_default=True,
              help="Share of wrong candidates, every teacher wrong on about this share (0-0.6).")
@click.option("--label-share", type=float, default=0.5, show_default=True,
              help="Share of clips with simulated human judgments; the rest is held out for scoring.")
@click.option("--annotator-accuracy", type=float, default=0.6, show_default=True,
              help="Probability that an annotator picks the best candidate (else a random one): sets "
                   "human-human agreement (Panda-70M: 44.9%).")
@click.option("--workers", type=int, default=min(2, os.cpu_count() or 1), show_default=True,
              help="Processes rendering and encoding clips.")
@click.option("--sources", is_flag=True, help="Also write every source video whole to OUT/sources/ "
              "(multi-shot ones too: inputs for `vidcurate split` or `build`).")
@click.option("--overwrite", is_flag=True, help="Replace the synthetic dataset in OUT.")
@click.option("-o", "--output", default=None, help="Output folder (required to generate).")
@click.pass_context
def synth(ctx, clips, seed, noise, label_share, annotator_accuracy, workers, sources, overwrite, output) -> None:
    """Write a synthetic dataset in a build's format, with truth.parquet and labels.parquet.

    Clips of drawn objects (shape, colour, count, size, motion, direction) over plain or
    real-footage backgrounds, captioned by six simulated teachers with their own error
    profiles, selected by the real consensus selector and judged by simulated annotators
    on a share of the clips. Exit code 2 for bad arguments. `vidcurate synth score OUT`
    scores the dataset's captions against the truth.
    """
    if ctx.invoked_subcommand is not None:
        return
    from vidcurate.pipelines.synth.annotators import AnnotatorConfig
    from vidcurate.pipelines.synth.write import SynthError, SynthOptions, synthesize

    if clips is None or output is None:
        _fail("vidcurate synth needs --clips N and --output OUT (or a command: score)")
    options = SynthOptions(clips=clips, seed=seed, noise=noise, label_share=label_share,
                           annotators=AnnotatorConfig(accuracy=annotator_accuracy), workers=workers, sources=sources)
    try:
        summary = synthesize(output, options, overwrite=overwrite)
    except SynthError as exc:
        _fail(str(exc))
    agreement = summary["agreement"]
    click.echo(f"{output}: {summary['clips']} clips from {summary['sources']} source videos "
               f"({summary['multi_shot_sources']} with several shots) in {summary['seconds']:.1f} s "
               f"({summary['clips_per_second']:.1f} clips/s)")
    click.echo(f"labels: {summary['judgments']} judgments of {summary['labelled_clips']} clips; human-human "
               f"agreement {'n/a' if agreement is None else f'{agreement:.1%}'} over {summary['agreement_pairs']} "
               "pairs")


@synth.command("score")
@click.argument("output", metavar="OUT")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
@click.option("--version", default=None, help="Caption version to score (default: the latest; 'build': the index).")
def synth_score(output: str, as_json: bool, version: str | None) -> None:
    """Attribute accuracy and faithful share of OUT's captions (index.parquet) against the truth.

    Judged on the held-out clips (not in labels.parquet), and on all clips. The random
    and oracle pick rates are the faithful share of a random and of the best candidate:
    the floor and the ceiling of any selector. Exit code 2 when OUT is not a synthetic dataset.
    """
    import json

    from vidcurate.operators.write.versions import VersionError
    from vidcurate.pipelines.synth.score import dataset_scores
    from vidcurate.pipelines.synth.write import SynthError

    try:
        scores = dataset_scores(output, version)
    except (SynthError, VersionError) as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(scores, indent=2))
        return
    for name in ("held_out", "all"):
        part = scores[name]
        if not part["clips"]:
            click.echo(f"{name.replace('_', '-')} clips: none")
            continue
        click.echo(f"{name.replace('_', '-')} clips: {part['clips']} ({part['captioned']} captioned)")
        click.echo("  attribute accuracy: " + ", ".join(f"{a} {part['attributes'][a]:.1%}" for a in ATTRIBUTES)
                   + f"; overall {part['overall']:.1%}")
        click.echo(f"  faithful captions: {part['faithful']:.1%} (version {scores['version']}); "
                   f"random pick {part['random']:.1%}; best candidate {part['oracle']:.1%}")
    labels = scores["labels"]
    agreement, picked = labels["agreement"], labels["chosen_faithful"]
    click.echo(f"labels: {labels['judgments']} judgments of {labels['clips']} clips, {labels['all_bad']} 'all bad'; "
               f"chosen candidate faithful {'n/a' if picked is None else f'{picked:.1%}'}; human-human agreement "
               f"{'n/a' if agreement is None else f'{agreement:.1%}'} over {labels['agreement_pairs']} pairs")


@synth.command("annotate")
@click.argument("output", metavar="OUT")
@click.option("--version", default=None, help="The caption version whose candidates are judged (default: the latest).")
@click.option("--labels", default=None, help="Labels file the judgments are appended to (default: OUT/labels.parquet).")
def synth_annotate(output: str, version: str | None, labels: str | None) -> None:
    """The world's simulated annotators judge VERSION's candidates of the labelled clips.

    What `vidcurate annotate OUT --version V` gets from people, on a synthetic world: after
    `vidcurate refine`, the round's version holds the student's captions among the candidates,
    so these judgments teach a retriever (`vidcurate retriever finetune --init`) the student's
    kind of error. Held-out clips are never judged. Running it again adds nothing. Exit code 2
    when OUT is not a synthetic world or the version or labels file is unusable.
    """
    from vidcurate.operators.write.versions import VersionError
    from vidcurate.pipelines.synth.judge_version import judge_version
    from vidcurate.pipelines.synth.write import SynthError
    from vidcurate.schemas.labels import LabelsFileError

    try:
        added = judge_version(output, version, labels)
    except (SynthError, VersionError, LabelsFileError) as exc:
        _fail(str(exc))
    chosen = ", ".join(f"{teacher} {n}" for teacher, n in added["chosen"].items()) or "none"
    click.echo(f"{added['labels']}: {added['judgments']} judgments of {added['clips']} labelled clips of version "
               f"{added['version']} added ({added['skipped_already_judged']} clips already judged with these "
               f"candidates); chosen: {chosen}")


@synth.command("probe")
@click.argument("output", metavar="OUT")
@click.option("--model", "checkpoint", required=True, help="The retriever checkpoint to probe (a folder or hub id).")
@click.option("--all-clips", is_flag=True, help="Probe every clip, the labelled ones too (default: held-out only).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def synth_probe(output: str, checkpoint: str, all_clips: bool, as_json: bool) -> None:
    """What a retriever can tell apart, one attribute at a time, on a synthetic world.

    For every held-out clip: its true caption against the same caption with one attribute
    wrong (shape, colour, colour pair, count, size, motion, direction, background), the two
    scored as a refinement round scores the current caption against the student's. Prints
    how often the true caption scores higher (50% is blind). Exit code 2 when OUT is not a
    synthetic world or the checkpoint cannot be loaded.
    """
    import json

    from vidcurate.operators.base import OperatorSetupError
    from vidcurate.pipelines.synth.probe import probe_world
    from vidcurate.pipelines.synth.write import SynthError
    from vidcurate.pipelines.train.retriever.data import TrainingDataError

    try:
        found = probe_world(output, checkpoint, held_out=not all_clips)
    except (SynthError, OperatorSetupError, TrainingDataError) as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    click.echo(f"{checkpoint} on {found['clips']} {'held-out ' if found['held_out'] else ''}clips of {output}: "
               "the true caption scored above one with the attribute wrong (50% = blind)")
    for alteration, part in found["alterations"].items():
        share = "n/a" if part["true_preferred"] is None else f"{part['true_preferred']:.1%}"
        click.echo(f"  {alteration:<12} {share:>6}  ({part['pairs']} pairs)")

"""`vidcurate teachers ...`: choosing which caption teachers to run."""
from __future__ import annotations

import sys

import click


@click.group()
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

    from vidcurate.pipelines.labels.teacher_choice import LabelsError, choose_teachers, coverage_alone, read_labels

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

"""`vidcurate refine OUT --rounds N`: noise-controlled iterative refinement (the data flywheel)."""
from __future__ import annotations

import json
import sys

import click


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.command()
@click.argument("output", metavar="OUT")
@click.option("--rounds", type=click.IntRange(min=1), default=2, show_default=True, help="Rounds to run in all "
              "(a resumed run continues; more rounds than before continue from the last).")
@click.option("--loss", type=click.Choice(["mle", "tailr", "adatailr"]), default="adatailr", show_default=True,
              help="The student's loss: plain likelihood, TaiLr with a fixed gamma, or vidcurate's adaptive TaiLr.")
@click.option("--gamma", type=click.FloatRange(0, 1), default=0.8, show_default=True, help="tailr: gamma.")
@click.option("--min-weight", type=click.FloatRange(0, 1), default=0.2, show_default=True,
              help="tailr/adatailr: smallest token weight.")
@click.option("--gate", type=click.Choice(["none", "hard", "soft"]), default="none", show_default=True,
              help="Per-caption gating by selection score: drop captions under --gate-threshold, or weight by score.")
@click.option("--gate-threshold", type=click.FloatRange(0, 1), default=0.43, show_default=True)
@click.option("--from-version", default=None, help="Round 0's captions: a version, 'build', default the latest.")
@click.option("--selector", default=None, help="The selector of every round (default: the one that made round 0).")
@click.option("--model", default=None, help="The selector's model (retriever/weighted: a checkpoint).")
@click.option("--labels", default=None, help="A labels file whose corrected captions fine-tune the student.")
@click.option("--epochs", type=click.IntRange(min=0), default=30, show_default=True, help="Pre-training epochs.")
@click.option("--finetune-epochs", type=click.IntRange(min=0), default=5, show_default=True,
              help="Epochs on the human corrections (when --labels has any).")
@click.option("--lr", type=float, default=None, help="Learning rate (default 1e-3 scratch, 5e-5 pretrained).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--student-config", default=None, help="A JSON file of the student's config (operators/models/"
              "student/config.py): frame encoder, decoder, frames, text inputs.")
@click.option("--video-init", default=None, help="A retriever checkpoint whose video tower starts the student's "
              "frame encoder (its frame count and size are used).")
@click.option("--decoding", type=click.Choice(["greedy", "panda"]), default="greedy", show_default=True,
              help="How the student captions: greedy, or Panda's 3 beams with sampling (top-p 0.9, temp 1.5).")
@click.option("--min-margin", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="A conservative round: the student's caption replaces a clip's caption only when its selection "
                   "score beats the current caption's by at least this much.")
@click.option("--min-change", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Stop early when a round changes fewer than this share of the captions.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Train on Ray Train with N workers (DDP); 0 = this process.")
@click.option("--runner", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where re-captioning and re-selection run: this process, or Ray (joins RAY_ADDRESS, else a "
                   "local instance; the workers read the clips from OUT, which they must reach).")
@click.option("--folds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Cross-fitting: train K students, each on every fold of clips but one, and caption each clip "
                   "with the student that did not learn its caption (1: one student for every clip).")
@click.option("--shift", type=click.IntRange(min=0), default=0, show_default=True,
              help="Augmentation: roll each training batch's frames by up to this many pixels each way (0: off).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def refine(output: str, rounds: int, loss: str, gamma: float, min_weight: float, gate: str, gate_threshold: float,
           from_version: str | None, selector: str | None, model: str | None, labels: str | None, epochs: int,
           finetune_epochs: int, lr: float | None, batch_size: int, student_config: str | None,
           video_init: str | None, decoding: str, min_margin: float,
           min_change: float, workers: int, runner: str, folds: int, shift: int, device: str, seed: int) -> None:
    """Refine OUT's captions round after round: train a student captioner on them (noise-controlled),
    caption every clip with it, re-select, and write caption version refine-r<N>.

    State is kept in OUT/refine/: the same command resumes a crashed run at its step.
    `vidcurate synth score OUT --version refine-r1` scores a round on a synthetic world.
    Exit code 2 for a missing build or version, a bad config or labels file.
    """
    from pydantic import ValidationError

    from vidcurate.operators.base import OperatorSetupError
    from vidcurate.operators.models.student import StudentConfig
    from vidcurate.pipelines.refine.loop import RefineOptions, refine as run
    from vidcurate.pipelines.refine.reselect import RefineError
    from vidcurate.pipelines.train.retriever.data import TrainingDataError
    from vidcurate.pipelines.train.student.loop import StudentTrainOptions
    from vidcurate.pipelines.train.student.losses import NoiseControl
    from vidcurate.schemas.labels import LabelsFileError

    try:
        config = StudentConfig.model_validate(json.load(open(student_config, encoding="utf-8"))) \
            if student_config else StudentConfig()
    except (OSError, ValueError) as exc:
        _fail(f"student config {student_config!r}: {exc}")
    if video_init:
        try:
            config = config.with_video_init(video_init)
        except OperatorSetupError as exc:
            _fail(str(exc))
    control = NoiseControl(loss=loss, gamma=gamma, min_weight=min_weight, gate=gate, gate_threshold=gate_threshold)
    train = StudentTrainOptions(config=config, control=control, epochs=epochs, finetune_epochs=finetune_epochs, lr=lr,
                                batch_size=batch_size, seed=seed, device=device, workers=workers, shift=shift)
    fields = {"model": model} if model else {}
    options = RefineOptions(rounds=rounds, from_version=from_version, selector=selector, selector_fields=fields,
                            labels=labels, train=train, decoding=decoding, min_change=min_change,
                            runner=runner, folds=folds, min_margin=min_margin)
    try:
        state = run(output, options, echo=click.echo)
    except ValidationError as exc:
        _fail(f"selector {selector or '(round 0)'}: {exc}")
    except (RefineError, TrainingDataError, LabelsFileError, OperatorSetupError, ValueError) as exc:
        _fail(str(exc))
    versions = ", ".join(r["version"] for r in state["rounds"] if r["step"] == "done")
    click.echo(f"{output}: {len(state['rounds'])} round(s) done: {versions}")

"""`vidcurate retriever finetune|eval`: the caption-selection retriever, trained on human judgments."""
from __future__ import annotations

import json
import os
import sys

import click

from vidcurate.operators.base import OperatorSetupError


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group()
def retriever() -> None:
    """Fine-tune and evaluate the video-text retriever that selects captions (`select --selector retriever`)."""


# finetune's options that build the towers: a checkpoint given with --init brings its own
ARCHITECTURE = {"video_tower": "--video-tower", "video_model": "--video-model", "text_tower": "--text-tower",
                "text_model": "--text-model", "pooling": "--pooling", "spatial": "--spatial", "frames": "--frames"}


@retriever.command("finetune")
@click.argument("output_dir", metavar="OUT")
@click.option("--labels", required=True, help="Judgments of OUT's clips (schemas/labels.py: parquet or jsonl).")
@click.option("-o", "--output", "checkpoint", required=True, help="Checkpoint folder to write (the best epoch).")
@click.option("--epochs", type=int, default=None, help="Default: 10 (Panda-70M).")
@click.option("--lr", type=float, default=None, help="AdamW learning rate (default: 2e-5 pretrained, 1e-3 scratch).")
@click.option("--weight-decay", type=float, default=0.02, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True, help="Judgments per step (all workers).")
@click.option("--loss", type=click.Choice(["panda", "plain"]), default="panda", show_default=True,
              help="panda: the clip's other candidates as negatives at weight 1, other clips' at 0.01; "
                   "plain: in-batch contrastive over the chosen captions only.")
@click.option("--video-tower", type=click.Choice(["scratch", "pretrained", "none"]), default="scratch",
              show_default=True, help="none: a text-only model (no frames), the baseline the video must beat.")
@click.option("--video-model", default=None, help="For --video-tower pretrained: a CLIP/SigLIP folder or hub id.")
@click.option("--text-tower", type=click.Choice(["scratch", "pretrained"]), default="scratch", show_default=True)
@click.option("--text-model", default=None, help="Tokenizer (scratch) or encoder (pretrained); 'same' = the video "
              "model's text tower. Default: the bundled all-MiniLM-L6-v2.")
@click.option("--pooling", type=click.Choice(["motion", "attention", "mean"]), default="motion", show_default=True,
              help="Temporal pooling: attention over the frames; motion: the same over each frame and its change "
                   "from the frame before (sees the direction of motion); mean: the average frame.")
@click.option("--spatial", type=click.Choice(["grid", "grid_max"]), default="grid", show_default=True,
              help="Scratch video tower: each frame pooled to a 3x4 grid (where things are), or that grid with a "
                   "global max pool beside it (what is there, wherever it is).")
@click.option("--frames", type=int, default=12, show_default=True, help="Frames per clip (Panda-70M: 12).")
@click.option("--init", "init_from", default=None, help="Start from this checkpoint's weights and config.")
@click.option("--resume", is_flag=True, help="Continue the run whose state is in CKPT/training.")
@click.option("--workers", type=int, default=0, show_default=True,
              help="0: train here; N: Ray Train with N workers (DDP; one GPU each on a GPU cluster).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--validation-share", type=float, default=0.1, show_default=True,
              help="Share of the labelled clips held out to evaluate every epoch and pick the best one.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--shift", type=int, default=0, show_default=True,
              help="Roll each training batch's frames by up to this many pixels each way (0: off).")
def finetune_command(output_dir, labels, checkpoint, epochs, lr, weight_decay, batch_size, loss, video_tower,
                     video_model, text_tower, text_model, pooling, spatial, frames, init_from, resume, workers, device,
                     validation_share, seed, shift) -> None:
    """Fine-tune the retriever on judgments of OUT's clips; the best epoch goes to CKPT.

    Frames come from the clips' mp4s in OUT's shards. Every epoch prints validation R@1
    (agreement with the person's choice), R@1 counting any acceptable candidate and the
    mean rank; CKPT/metrics.json keeps them. Exit code 2 for bad labels, options or towers.
    """
    from pydantic import ValidationError

    from vidcurate.operators.models.retriever import RetrieverConfig, TextTowerConfig, VideoTowerConfig
    from vidcurate.pipelines.train.retriever.data import TrainingDataError
    from vidcurate.pipelines.train.retriever.losses import LossConfig
    from vidcurate.pipelines.train.retriever.loop import FinetuneOptions, finetune
    from vidcurate.schemas.labels import LabelsFileError

    if init_from:
        context = click.get_current_context()
        given = [name for name in ARCHITECTURE if context.get_parameter_source(name).name != "DEFAULT"]
        if given:
            _fail(f"--init {init_from} trains that checkpoint's towers as they are; "
                  f"{', '.join(ARCHITECTURE[n] for n in given)} cannot change them (leave them out, or start without "
                  "--init)")
    try:
        text = TextTowerConfig(kind=text_tower, **({"model": text_model} if text_model else {}))
        config = RetrieverConfig(video=VideoTowerConfig(kind=video_tower, model=video_model, pooling=pooling,
                                                        spatial=spatial),
                                 text=text, num_frames=frames)
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    options = FinetuneOptions(config=config, loss=LossConfig.preset(loss), epochs=epochs, lr=lr,
                              weight_decay=weight_decay, batch_size=batch_size, validation_share=validation_share,
                              seed=seed, device=device, resume=resume, workers=workers, init_from=init_from,
                              shift=shift)
    try:
        summary = finetune(output_dir, labels, checkpoint, options, echo=click.echo)
    except (TrainingDataError, LabelsFileError, OperatorSetupError) as exc:
        _fail(str(exc))
    best, counts = summary["best"], summary["training"]
    click.echo(f"{checkpoint}: best epoch {best['epoch']} (validation R@1 {best['r_at_1']:.1%}); trained on "
               f"{counts['train']} judgments of {counts['clips']} clips ({counts.get('all_bad', 0)} 'all bad' left "
               f"out, {counts.get('repeated_judgments', 0)} repeated judgments kept)")


@retriever.command("eval")
@click.argument("output_dir", metavar="OUT")
@click.option("--labels", required=True, help="Judgments of OUT's clips to evaluate against.")
@click.option("--model", "model_ref", required=True, help="Retriever checkpoint folder or hub id.")
@click.option("--threshold", type=float, default=0.43, show_default=True,
              help="Calibration: share of clips whose chosen caption's matching probability exceeds this.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def eval_command(output_dir, labels, model_ref, threshold, device, as_json) -> None:
    """R@1 against the human choice, R@1 counting acceptable ones, mean rank and calibration.

    Every judgment with a choice counts ("all bad" ones are left out). The metrics are also
    written to OUT/evals/retriever-<name>.json, which the build report shows.
    """
    from vidcurate.pipelines.train.retriever.data import TrainingDataError
    from vidcurate.pipelines.train.retriever.evaluate import evaluate_checkpoint
    from vidcurate.schemas.labels import LabelsFileError

    try:
        metrics, path = evaluate_checkpoint(output_dir, labels, model_ref, threshold, device)
    except (TrainingDataError, LabelsFileError, OperatorSetupError) as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return

    def pct(value):
        return "n/a" if value is None else f"{value:.1%}"
    click.echo(f"{model_ref} on {metrics['judgments']} judgments of {metrics['clips']} clips of {output_dir}:")
    click.echo(f"  R@1 (the person's choice) {pct(metrics['r_at_1'])}; R@1 (any acceptable) "
               f"{pct(metrics['r_at_1_acceptable'])} over {metrics['acceptable_judgments']}; mean rank "
               f"{metrics['mean_rank']:.2f}" if metrics["mean_rank"] is not None else "  no judgment with a choice")
    click.echo(f"  matching probability > {threshold:g}: {pct(metrics['above_threshold'])} of clips")
    click.echo(f"  written to {os.path.relpath(path)}")

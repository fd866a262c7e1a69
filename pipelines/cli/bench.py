"""`vidcurate bench ...`: benchmarks that print ratios against baselines measured in the same run."""
from __future__ import annotations

import click


class _SuiteOrBenchmark(click.Group):
    """``vidcurate bench [NAME ...] [--quick] [--json FILE] [--workdir DIR]`` runs the suite (every
    benchmark, or the NAMEs, at the suite's sizes); ``vidcurate bench NAME --option ...`` runs one
    benchmark with its own options (``vidcurate bench NAME --help``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        suite = _suite_call(args)
        if suite is not None:
            ctx.meta["vidcurate.suite"] = suite
            args = []
        return super().parse_args(ctx, args)


def _suite_call(args: list[str]) -> dict | None:
    """The suite's names and flags if ``args`` hold nothing else; None otherwise."""
    from vidcurate.pipelines.bench.suite import names

    call = {"names": [], "quick": False, "json": None, "workdir": None}
    i = 0
    while i < len(args):
        arg = args[i]
        flag, _, value = arg.partition("=")
        if arg in names():
            call["names"].append(arg)
        elif arg == "--quick":
            call["quick"] = True
        elif flag in ("--json", "--workdir"):
            if not value:
                if i + 1 == len(args):
                    return None
                i, value = i + 1, args[i + 1]
            call[flag[2:]] = value
        else:
            return None
        i += 1
    return call


@click.group(cls=_SuiteOrBenchmark, invoke_without_command=True)
@click.pass_context
def bench(ctx: click.Context) -> None:
    """Benchmarks: ratios against baselines measured in the same run, on the same inputs.

    \b
    vidcurate bench [NAME ...] [--quick] [--json FILE] [--workdir DIR]
        the suite: every benchmark (or the NAMEs) at the suite's sizes, each one's report,
        then one table of headline figures and targets; --quick: sizes that only check that
        each runs (about 3 minutes); --json: every figure, for machines.
    vidcurate bench NAME [OPTIONS]
        one benchmark with its own options (vidcurate bench NAME --help).

    Suite names: split, scenes, peers, shards, teachers, loader, runners, coordinator, selection,
    refinement, annotate. docs/PERFORMANCE.md holds the latest full run. Outside the suite:
    encoder (the refinement student's frame encoder on a world's true attributes).
    """
    if ctx.invoked_subcommand is not None:
        return
    from vidcurate.pipelines.bench import suite

    call = ctx.meta.get("vidcurate.suite") or {"names": [], "quick": False, "json": None, "workdir": None}
    result = suite.run(call["names"], call["quick"], call["workdir"], echo=click.echo)
    if call["json"]:
        suite.write_json(result, call["json"])
        click.echo(f"figures written to {call['json']}")
    failed = [name for name, entry in result["benchmarks"].items() if "error" in entry]
    if failed:
        raise click.ClickException(f"benchmark(s) failed: {', '.join(failed)}")


@bench.command("scenes")
@click.option("--videos", default=6, show_default=True, help="Spliced videos of real footage.")
@click.option("--shots", default=10, show_default=True, help="Shots per video.")
@click.option("--seed", default=0, show_default=True)
@click.option("--workdir", default=None, help="Where the videos and bench_scenes.json go (default: a temp dir).")
def bench_scenes(videos: int, shots: int, seed: int, workdir: str | None) -> None:
    """Shot detection vs PySceneDetect detect(ContentDetector) on videos with known cuts: speed, precision, recall."""
    from vidcurate.pipelines.bench.scenes import report, run

    click.echo(report(run(videos, shots, seed, workdir)))


@bench.command("loader")
@click.option("--copies", default=4, show_default=True, help="How many times the demo inputs are built.")
@click.option("--repeats", default=2, show_default=True, help="Runs per measurement; the best is kept.")
@click.option("--workdir", default=None, help="Where the dataset goes (default: a temp dir; one there is reused).")
def bench_loader(copies: int, repeats: int, workdir: str | None) -> None:
    """The training loader's clips/s vs decord alone on the same shards."""
    from vidcurate.pipelines.bench.loader import report, run

    click.echo(report(run(copies, repeats, workdir)))


@bench.command("split")
@click.option("--seconds", default=80.0, show_default=True, help="Length of the looped real-footage input.")
@click.option("--height", type=int, default=None, help="Rescale the input to this height (e.g. 1080).")
@click.option("--repeats", default=3, show_default=True,
              help="Rounds; each runs every measurement once (short ones twice); the best is kept.")
@click.option("--long-factor", default=20, show_default=True, help="Memory check: how much longer the long input is.")
@click.option("--workdir", default=None, help="Where inputs, outputs and bench_split.json go (default: a temp dir).")
def bench_split(seconds: float, height: int | None, repeats: int, long_factor: int, workdir: str | None) -> None:
    """The splitting stage vs Panda-70M-style tools, the one-pass limit and decode-only."""
    from vidcurate.pipelines.bench.split import run

    run(seconds, height, repeats, long_factor, workdir, echo=click.echo)


@bench.command("shards")
@click.option("--total-mb", default=400.0, show_default=True, help="Bytes of real mp4 samples to write.")
@click.option("--shard-mb", default=64.0, show_default=True, help="Shard size limit.")
@click.option("--open-shards", default=4, show_default=True)
@click.option("--repeats", default=3, show_default=True, help="Runs per measurement; the best is kept.")
@click.option("--workdir", default=None, help="Where to write (default: the system temp dir).")
def bench_shards(total_mb: float, shard_mb: float, open_shards: int, repeats: int, workdir: str | None) -> None:
    """Shard writing throughput vs a plain tar write of the same bytes."""
    from vidcurate.pipelines.bench.shards import report, run

    click.echo(report(run(total_mb, shard_mb, open_shards, repeats, workdir)))


@bench.command("selection")
@click.option("--small", is_flag=True, help="A smaller world and shorter fine-tunes (800 clips, 5 epochs; about "
              "6 min). Not the suite's --quick: `bench selection --quick` runs the suite's tiny size.")
@click.option("--clips", type=int, default=None, help="Clips in the synthetic world (default 3000; small 800).")
@click.option("--epochs", type=int, default=None, help="Epochs of each fine-tune (default 10; small 5).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--noise", type=float, default=0.2, show_default=True, help="The world's share of wrong candidates.")
@click.option("--repeats", type=int, default=3, show_default=True, help="Throughput rounds; the best is kept.")
@click.option("--workdir", default=None, help="Where the world, checkpoints and bench_selection.json go "
              "(default: a temp dir; a world already there is reused).")
def bench_selection(small: bool, clips: int | None, epochs: int | None, seed: int, noise: float, repeats: int,
                    workdir: str | None) -> None:
    """Selectors on held-out synthetic clips: random, consensus, retrievers, text-only, vs human-human."""
    from vidcurate.pipelines.bench.selection import report, run

    click.echo(report(run(clips, epochs, seed, noise, small, workdir, repeats, echo=click.echo)))


@bench.command("refinement")
@click.option("--small", is_flag=True, help="Smaller worlds, one round of 60 epochs (600 clips; about 45 min per "
              "noise rate). Not the suite's --quick: `bench refinement --quick` runs the suite's tiny size.")
@click.option("--clips", type=int, default=None, help="Clips per world (default 2000; small 600).")
@click.option("--epochs", type=int, default=None, help="Student pre-training epochs per round (default 30; small 60).")
@click.option("--rounds", type=int, default=None, help="Rounds per loss (default 2; small 1).")
@click.option("--noise", "noises", default="0.2,0.4", show_default=True, help="Noise rates, comma-separated.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workdir", default=None, help="Where worlds, rounds and bench_refinement.json go (default: a temp "
              "dir; worlds and finished rounds already there are reused).")
@click.option("--round0", type=click.Choice(["teacher", "consensus"]), default="teacher", show_default=True,
              help="Round 0: one noisy teacher's captions alone (rounds select with a retriever fine-tuned on "
                   "the world's labels), or the consensus of the six teachers (rounds select by consensus).")
@click.option("--teacher", default="colour_blind", show_default=True, help="round0 teacher: whose captions.")
@click.option("--retriever-epochs", type=click.IntRange(min=1), default=10, show_default=True,
              help="Fine-tuning epochs of the retriever (the rounds' selector; the student's frame encoder).")
@click.option("--student-init", type=click.Choice(["scratch", "retriever", "retriever-frozen"]), default="scratch",
              show_default=True, help="The student's frame encoder: from scratch (8 frames), or the world's fine-tuned "
              "retriever's video tower (its 12 frames), trained on or frozen.")
@click.option("--corrections", is_flag=True, help="Fine-tune each round's student on the world's human corrections "
              "(refine --labels).")
@click.option("--folds", type=click.IntRange(min=1), default=1, show_default=True,
              help="refine --folds: cross-fitting students (1: one student learns and captions every clip).")
@click.option("--shift", type=click.IntRange(min=0), default=0, show_default=True,
              help="refine --shift: roll each training batch's frames by up to this many pixels (0: off).")
@click.option("--retriever-shift", type=click.IntRange(min=0), default=0, show_default=True,
              help="retriever finetune --shift for the rounds' retrievers (the world's and each rejudged one).")
@click.option("--retriever-pooling", type=click.Choice(["motion", "attention", "mean"]), default="motion",
              show_default=True, help="retriever finetune --pooling for the world's retriever (attention: the "
              "pooling before stop 39, blind to the direction of motion in practice).")
@click.option("--retriever-spatial", type=click.Choice(["grid", "grid_max"]), default="grid", show_default=True,
              help="retriever finetune --spatial for the world's retriever.")
@click.option("--losses", default="mle,tailr,adatailr", show_default=True,
              help="The losses to refine with, comma-separated.")
@click.option("--contrastive", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="The student's CoCa-style contrastive loss weight beside captioning (0: off; CoCa's ratio 0.5).")
@click.option("--min-margin", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="refine --min-margin: a student caption replaces one only when its score is this much higher.")
@click.option("--rejudge", is_flag=True, help="After each round, the world's annotators judge its candidates on the "
              "labelled clips (synth annotate), the round's retriever is fine-tuned further on them (--init) and "
              "re-selects the round (select --from-version): a selector that has seen the student's errors judged.")
def bench_refinement(small: bool, clips: int | None, epochs: int | None, rounds: int | None, noises: str, seed: int,
                     workdir: str | None, round0: str, teacher: str, retriever_epochs: int, student_init: str,
                     corrections: bool, folds: int, shift: int, retriever_shift: int, retriever_pooling: str,
                     retriever_spatial: str, losses: str, contrastive: float, min_margin: float, rejudge: bool) -> None:
    """The data flywheel with likelihood, TaiLr and AdaTaiLr: accuracy and diversity per round and noise rate."""
    from vidcurate.pipelines.bench.refinement import checked_losses, run
    from vidcurate.pipelines.bench.refinement_report import report

    rates = [float(n) for n in noises.split(",") if n.strip()]
    try:
        chosen = checked_losses(n.strip() for n in losses.split(",") if n.strip())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--losses") from None
    click.echo(report(run(clips, epochs, rounds, rates, seed, small, workdir, echo=click.echo, round0=round0,
                          teacher=teacher, retriever_epochs=retriever_epochs, student_init=student_init,
                          corrections=corrections, folds=folds, shift=shift, retriever_shift=retriever_shift,
                          retriever_pooling=retriever_pooling, retriever_spatial=retriever_spatial, losses=chosen,
                          contrastive=contrastive, min_margin=min_margin, rejudge=rejudge)))


@bench.command("encoder")
@click.option("--clips", type=click.IntRange(min=2), default=600, show_default=True,
              help="Clips of the (noise-free) world; half are learned, half unseen.")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--augment", type=click.Choice(["none", "shift"]), default="none", show_default=True,
              help="shift: roll each training batch by up to 8 px each way.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workdir", default=None, help="Where the world and bench_encoder.json go (default: a temp dir; "
              "a world already there is reused).")
def bench_encoder(clips: int, epochs: int, augment: str, seed: int, workdir: str | None) -> None:
    """The student's frame encoder trained on the world's true attributes: accuracy on unseen clips."""
    from vidcurate.pipelines.bench.encoder import report, run

    click.echo(report(run(clips, epochs, seed, augment, workdir, echo=click.echo)))


_RUNNER_BENCH_OPTIONS = [
    click.option("-c", "--config", "config_path", default=None, help="Config to build with (default: the embedded one)."),
    click.option("--workdir", default=None, help="Where inputs and outputs go (default: a temp dir)."),
    click.option("--copies", default=3, show_default=True, help="How many times the demo inputs are built."),
    click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Rounds; each builds with every runner in turn; the fastest of each is kept."),
]


def _runner_bench_options(command):
    for option in reversed(_RUNNER_BENCH_OPTIONS):
        command = option(command)
    return command


@bench.command("runners")
@_runner_bench_options
@click.option("--runners", "names", default="local,ray,beam", show_default=True,
              help="Runners to compare with the local one, comma-separated.")
def bench_runners(config_path: str | None, workdir: str | None, copies: int, repeats: int, names: str) -> None:
    """The same build on local, Ray and Beam: wall time over local's, startup, bytes the coordinator
    received, its peak memory, stage throughputs."""
    from vidcurate.pipelines.bench.runners import report, run

    chosen = tuple(n.strip() for n in names.split(",") if n.strip())
    click.echo(report(run(config_path, workdir, copies, repeats, chosen)))


@bench.command("ray")
@_runner_bench_options
def bench_ray(config_path: str | None, workdir: str | None, copies: int, repeats: int) -> None:
    """`bench runners --runners local,ray`: Ray-runner wall time over local-runner wall time."""
    from vidcurate.pipelines.bench.runners import report, run

    click.echo(report(run(config_path, workdir, copies, repeats, ("local", "ray"))))


@bench.command("coordinator")
@click.option("--clips", default=1_000_000, show_default=True, help="Clips of the build (a tenth is rejected).")
@click.option("--clips-per-video", default=20, show_default=True)
@click.option("--workers", default=2, show_default=True, help="Processes writing the shards.")
@click.option("--workdir", default=None, help="Where the build's output goes (default: the system temp dir).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def bench_coordinator(clips: int, clips_per_video: int, workers: int, workdir: str | None, as_json: bool) -> None:
    """The coordinator's memory on a build of many clips vs a process holding every row."""
    import json

    from vidcurate.pipelines.bench.coordinator import report, run

    result = run(clips, clips_per_video, workers, workdir)
    click.echo(json.dumps(result, indent=2) if as_json else report(result))


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

    from vidcurate.pipelines.bench.teachers import report, run

    result = run(model=model, teacher=teacher, clips=clips, batch_size=batch_size, max_new_tokens=max_new_tokens,
                 repeats=repeats, device=device)
    click.echo(report(result))
    if json_out:
        with open(json_out, "w") as handle:
            json.dump(result, handle, indent=2)


@bench.command("annotate")
@click.option("--clips", type=int, default=3000, show_default=True, help="Clips in the synthetic world to serve.")
@click.option("--annotators", type=click.IntRange(min=1), default=8, show_default=True,
              help="Simulated annotators, each its own client thread and name.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="How long they submit.")
@click.option("--overlap", "-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="Annotators per clip (the server's --overlap).")
@click.option("--world", default=None, help="Serve this existing synthetic world (`vidcurate synth`) instead of "
              "generating one.")
@click.option("--keep", default=None, help="Keep the world, the labels, the server log and bench_annotate.json in "
              "this folder (default: a temp dir, removed; a world already there is reused).")
def bench_annotate(clips: int, annotators: int, seconds: float, overlap: int, world: str | None,
                   keep: str | None) -> None:
    """The annotation server under load: submission and next-clip latency, every submission stored once."""
    import sys

    from vidcurate.pipelines.bench.annotate import report, run

    summary = run(clips, annotators, seconds, overlap, world, keep, echo=click.echo)
    click.echo(report(summary))
    if not summary["ok"]:
        sys.exit(1)

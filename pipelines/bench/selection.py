"""`vidcurate bench selection`: caption selectors on the held-out clips of one synthetic world.

One world (``vidcurate synth``: clips with known truth, simulated judgments of half of
them) and, for its held-out clips only, judgments by the same simulated annotators
(``judge_held_out``: nothing trains on them). Every selector picks one caption per
held-out clip; two rates are printed per selector:

    agrees with the human pick   share of held-out judgments (with a choice) whose chosen
                                 caption is the selector's pick (Panda-70M's R@1)
    faithful pick                share of held-out clips whose picked caption states every
                                 true attribute (from truth.parquet's candidate errors)

Rows: random (the expectation, not a draw), consensus (the build's own selection), the
untrained retriever, the retriever fine-tuned with plain in-batch contrastive loss, the
retriever fine-tuned with Panda-70M's hard-negative weighting, and a text-only model (no
frames: one learned vector instead of the video) fine-tuned the Panda way; beside them the
world's human-human agreement on the same judgments, the ceiling of agreement between
people (a selector that picks what careful people pick can exceed it: a person is also
compared with a person who is sometimes careless).

Throughput: the retriever_selector operator as ``vidcurate select`` runs it (mp4 bytes in,
frames decoded, every candidate scored) against the bare model's batched forward over
the same clips' frames already decoded, in clips/s, best of ``repeats``.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq
import torch

SMALL = {"clips": 800, "epochs": 5}
FULL = {"clips": 3000, "epochs": 10}


def run(clips: int | None, epochs: int | None, seed: int, noise: float, small: bool, workdir: str | None,
        repeats: int = 3, echo=print) -> dict:
    from vidcurate.operators.models.retriever import RetrieverConfig, VideoTowerConfig, create_retriever, load_retriever
    from vidcurate.pipelines.synth.annotators import AnnotatorConfig, agreement, judge_held_out
    from vidcurate.pipelines.synth.probe import probe_pairs, probe_retriever
    from vidcurate.pipelines.synth.write import synthesized_world
    from vidcurate.pipelines.train.retriever.data import clip_frames, index_rows, read_judgments
    from vidcurate.pipelines.train.retriever.losses import LossConfig
    from vidcurate.pipelines.train.retriever.loop import FinetuneOptions, finetune
    from vidcurate.schemas.labels import write_labels

    preset = SMALL if small else FULL
    clips, epochs = clips or preset["clips"], epochs or preset["epochs"]
    workdir = workdir or tempfile.mkdtemp(prefix="vidcurate-bench-selection-")
    world = synthesized_world(os.path.join(workdir, f"world-{clips}-{seed}-{noise}"), clips, seed, noise, echo)
    truth = pq.read_table(os.path.join(world, "truth.parquet")).to_pylist()
    held_out = {r["clip_id"]: r for r in truth if not r["labelled"]}
    judged = judge_held_out(truth, seed, AnnotatorConfig(accuracy=0.6))
    held_labels = os.path.join(workdir, "held_out_labels.parquet")
    write_labels(judged, held_labels)
    ceiling, pairs = agreement(judged)
    examples = read_judgments(held_labels, validation_share=0.0).train
    index = index_rows(world)
    frames = clip_frames(world, sorted(held_out), 12, RetrieverConfig().frame_size, index)

    results = {"random": _random_rates(examples, held_out),
               "consensus": _rates({c: index[c]["caption"] for c in held_out}, examples, held_out)}
    torch.manual_seed(seed)
    results["retriever, untrained"] = _rates(_picks(create_retriever(RetrieverConfig()).eval(), held_out, frames),
                                             examples, held_out)
    labels = os.path.join(world, "labels.parquet")
    variants = [("retriever, plain contrastive", RetrieverConfig(), LossConfig.preset("plain")),
                ("retriever, Panda hard negatives", RetrieverConfig(), LossConfig.preset("panda")),
                ("text-only, Panda hard negatives", RetrieverConfig(video=VideoTowerConfig(kind="none")),
                 LossConfig.preset("panda"))]
    checkpoints, timings, probes = {}, {}, {}
    probe_cases = probe_pairs(list(held_out.values()), seed)
    for name, config, loss in variants:
        folder = os.path.join(workdir, "ckpt-" + name.split(",")[0].replace(" ", "-") + "-" + loss_name(loss))
        echo(f"fine-tuning {name}: {epochs} epochs")
        started = time.perf_counter()
        finetune(world, labels, folder, FinetuneOptions(config=config, loss=loss, epochs=epochs, seed=seed,
                                                        progress=False), echo=lambda line: None)
        timings[name] = time.perf_counter() - started
        checkpoints[name] = folder
        model = load_retriever(folder)
        results[name] = _rates(_picks(model, held_out, frames), examples, held_out)
        if config.video.kind != "none":
            probes[name] = probe_retriever(model, probe_cases, frames)
    speed = throughput(checkpoints["retriever, Panda hard negatives"], world, index, sorted(held_out)[:256],
                       repeats)
    summary = {"world": world, "clips": clips, "held_out_clips": len(held_out), "held_out_judgments": len(examples),
               "human_human_agreement": ceiling, "agreement_pairs": pairs, "epochs": epochs, "rows": results,
               "fine_tune_seconds": timings, "throughput": speed, "probes": probes}
    with open(os.path.join(workdir, "bench_selection.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    return summary


def loss_name(loss) -> str:
    return "plain" if not loss.other_candidates else "panda"


def _random_rates(examples, held_out: dict) -> dict:
    agree = [sum(t == e.texts[e.positive] for t in e.texts) / len(e.texts) for e in examples]
    faithful = [np.mean([not c["errors"] for c in row["candidates"]]) for row in held_out.values()]
    return {"agreement": float(np.mean(agree)), "faithful": float(np.mean(faithful))}


def _rates(picks: dict, examples, held_out: dict) -> dict:
    agree = [picks.get(e.clip_id) == e.texts[e.positive] for e in examples]
    faithful = [_is_faithful(picks.get(clip_id), row) for clip_id, row in held_out.items()]
    return {"agreement": float(np.mean(agree)), "faithful": float(np.mean(faithful))}


def _is_faithful(text: str | None, truth_row: dict) -> bool:
    return any(c["text"] == text and not c["errors"] for c in truth_row["candidates"])


def _picks(model, held_out: dict, frames: dict) -> dict:
    """The top-scored candidate text per held-out clip, scored as ``retriever eval`` scores."""
    from vidcurate.pipelines.train.retriever.data import Example
    from vidcurate.pipelines.train.retriever.metrics import score_examples

    clips = [Example(clip_id, [c["text"] for c in row["candidates"]], [c["teacher"] for c in row["candidates"]],
                     0, None, "") for clip_id, row in sorted(held_out.items())]
    return {clip.clip_id: clip.texts[int(np.argmax(scored["scores"]))]
            for clip, scored in zip(clips, score_examples(model, clips, frames))}


def throughput(checkpoint: str, world: str, index: dict, clip_ids: list[str], repeats: int) -> dict:
    """clips/s of the selector operator (mp4 in) and of the bare model on decoded frames, best of ``repeats``."""
    from vidcurate.operators.frames import decode_frames
    from vidcurate.operators.select.retriever import RetrieverSelector
    from vidcurate.operators.write.layout import read_clip_mp4
    from vidcurate.pipelines.versions.select import build_candidates

    candidates = {c["clip_id"]: c["candidates"] for c in build_candidates(world) if c["clip_id"] in set(clip_ids)}
    records = [{"clip_id": c, "candidates": candidates[c], "mp4": read_clip_mp4(world, index[c])} for c in clip_ids]
    op = RetrieverSelector(model=checkpoint, device="cpu")
    op.ensure_setup()
    model, config = op._model, op._model.config
    size = op.forward_batch_size
    started = time.perf_counter()
    decoded = torch.from_numpy(np.stack([decode_frames(r["mp4"], config.num_frames, tuple(config.frame_size))
                                         for r in records]))
    decode_seconds = time.perf_counter() - started
    texts = [[c["text"] for c in r["candidates"]] for r in records]
    bare, operator = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, len(records), size):
            model.score_candidates(decoded[start:start + size], texts[start:start + size])
        bare.append(time.perf_counter() - started)
        started = time.perf_counter()
        for _batch in op.stream([records]):
            pass
        operator.append(time.perf_counter() - started)
    op.close()
    bare_rate, op_rate = len(records) / min(bare), len(records) / min(operator)
    # Decoding the frames and the forward pass one after the other: what the operator must do when
    # both share the same CPU cores (on a GPU machine the decode can hide behind the forward).
    serial_rate = len(records) / (min(bare) + decode_seconds)
    return {"clips": len(records), "batch_size": size, "bare_clips_per_s": bare_rate,
            "operator_clips_per_s": op_rate, "ratio": op_rate / bare_rate, "decode_seconds": decode_seconds,
            "decode_then_forward_clips_per_s": serial_rate, "ratio_to_decode_then_forward": op_rate / serial_rate}


def report(summary: dict) -> str:
    from vidcurate.pipelines.synth.probe import probe_table

    ceiling = summary["human_human_agreement"]
    lines = [f"Caption selection on {summary['held_out_clips']} held-out clips ({summary['held_out_judgments']} "
             f"simulated judgments) of a {summary['clips']}-clip synthetic world; fine-tunes of "
             f"{summary['epochs']} epochs", "",
             f"{'selector':<34} {'agrees with human pick':>23} {'faithful pick':>14}"]
    for name, rates in summary["rows"].items():
        lines.append(f"{name:<34} {rates['agreement']:>23.1%} {rates['faithful']:>14.1%}")
    lines.append(f"{'human-human agreement (ceiling)':<34} {ceiling:>23.1%} {'':>14}  over {summary['agreement_pairs']} "
                 "pairs")
    rows = summary["rows"]
    panda, plain = rows["retriever, Panda hard negatives"], rows["retriever, plain contrastive"]
    text_only = rows["text-only, Panda hard negatives"]
    # "every other row": the rows that are not a fine-tuned video retriever (plain vs Panda is the next target)
    others = {k: v for k, v in rows.items() if k not in ("retriever, Panda hard negatives", "retriever, plain contrastive")}
    lines += ["", "targets (agreement with the human pick / faithful pick):"]
    for metric, label in (("agreement", "agreement with the human pick"), ("faithful", "faithful pick")):
        best_other = max(others, key=lambda k: others[k][metric])
        lines.append(_target(f"fine-tuned (Panda) clearly above every other row in {label} (+2 points): "
                             f"{panda[metric]:.1%} vs {best_other} {others[best_other][metric]:.1%}",
                             panda[metric] >= others[best_other][metric] + 0.02))
    lines += [_target(f"hard-negative weighting at least as good as plain: agreement {panda['agreement']:.1%} vs "
                      f"{plain['agreement']:.1%}, faithful {panda['faithful']:.1%} vs {plain['faithful']:.1%}",
                      panda["agreement"] >= plain["agreement"] and panda["faithful"] >= plain["faithful"]),
              _target(f"text-only clearly below the video model (-5 points faithful): {text_only['faithful']:.1%} vs "
                      f"{panda['faithful']:.1%}", text_only["faithful"] <= panda["faithful"] - 0.05),
              _target(f"agreement with the human pick >= 90% of the ceiling: {panda['agreement'] / ceiling:.0%} of it "
                      "(Panda-70M: 80%)", panda["agreement"] >= 0.9 * ceiling)]
    if summary.get("probes"):
        lines += [""] + probe_table(summary["probes"], 34)
    speed = summary["throughput"]
    lines += ["", f"selection throughput on {speed['clips']} clips (forward batch {speed['batch_size']}): operator "
                  f"{speed['operator_clips_per_s']:.1f} clips/s, bare model forward {speed['bare_clips_per_s']:.1f} "
                  f"clips/s: {speed['ratio']:.0%} (target >= 90%)"]
    if "decode_seconds" in speed:
        lines.append(f"  decoding the clips' frames alone: {speed['decode_seconds']:.2f} s; decode then forward, one after "
                     f"the other: {speed['decode_then_forward_clips_per_s']:.1f} clips/s; the operator reaches "
                     f"{speed['ratio_to_decode_then_forward']:.0%} of that (both share the same CPU cores here)")
    lines.append("fine-tune time: " + ", ".join(f"{k} {v:.0f} s" for k, v in summary["fine_tune_seconds"].items()))
    return "\n".join(lines)


def _target(text: str, met: bool) -> str:
    return f"  [{'met' if met else 'MISSED'}] {text}"

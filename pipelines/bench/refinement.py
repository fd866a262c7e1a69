"""`vidcurate bench refinement`: the data flywheel with plain likelihood, fixed TaiLr and AdaTaiLr.

For each noise rate (a synthetic world whose six teachers are each wrong about that share of
the time, one seed), round 0 is one of:

    teacher     (the default) one noisy teacher's captions alone (``teacher_selector`` with
                ``only_teacher``; colour_blind, the first of the world's teachers, fixed before
                any run): Video DataFlywheel's setting, a corpus with one noisy caption per
                clip, so the noise is still there for the loss to control. Every round selects
                with a retriever fine-tuned on the world's labels (shared by the three losses)
                between the current caption and the student's.
    consensus   the world's own consensus selection over the six teachers (round 0's selector
                again in every round). Consensus already removes most of the noise, so this
                setting shows how little is left to refine.

Then, for each loss, a copy of the world (shards hard-linked) is refined for ``rounds`` rounds
with the default student (scratch CNN + small GPT-2), and per round the bench prints, on the
held-out clips (no label of them was seen):

    selected     attribute accuracy and faithful share of the round's caption version
    student      the same for the student's own captions of those clips, greedy and with
                 Panda's sampling preset (3 beams, top-p 0.9, temperature 1.5)
    oracle pick  per clip, whichever of the round's previous caption and the student's greedy one
                 states more attributes right: what a perfect selector makes of this student, so
                 a miss can be told apart as the student's or the selector's
    diversity    distinct-1, distinct-2 and vocabulary size of those captions

With ``folds`` K >= 2 (refine's default is 1) each clip is captioned by the student that left
its fold out (cross-fitting, pipelines/refine/loop.py); ``folds`` 1 trains one student on every
clip and captions every clip with it. With ``corrections``, each round's student is then fine-tuned on the human corrections of the
world's labels (``refine --labels``: clean captions of some labelled clips, none held out).

With ``rejudge``, each round is also re-selected (a row of its own, after the round's): the world's
simulated annotators judge the round's candidates (its previous caption and the student's) on the
labelled clips, the round's retriever is fine-tuned further on the labels plus those judgments, and
it selects between the same two candidates again (``rejudged_round``). The next round still starts
from the round as refine selected it.

Reference rows (not rounds): the consensus of the six teachers and, in the teacher setting,
the fine-tuned retriever's pick among the six (Panda-70M's selection). Targets (from the
issue): the flywheel raises accuracy over round 0; at the highest noise AdaTaiLr >= fixed
TaiLr >= plain likelihood; diversity loss small. Measured, never tuned. Each round also records how
its selector treated the student (``selector_diagnostics``). The printing is refinement_report.py.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq

LOSSES = ("mle", "tailr", "adatailr")
SMALL = {"clips": 600, "epochs": 60, "rounds": 1}
FULL = {"clips": 2000, "epochs": 30, "rounds": 2}
ROUND0 = ("teacher", "consensus")
# The student's frame encoder: new (8 frames), the retriever's video tower (trained on), or that tower kept frozen.
STUDENT_INIT = ("scratch", "retriever", "retriever-frozen")
ROUND0_TEACHER = "colour_blind"  # the first of the world's teachers (pipelines/synth/teachers.py)
RETRIEVER_EPOCHS = 10  # the retriever's default from scratch (pipelines/train/retriever/loop.py)


def distinct(captions: list[str]) -> dict:
    """distinct-1/2 (unique n-grams over all n-grams) and vocabulary size of lower-cased word tokens."""
    words = [c.lower().replace(".", " ").replace(",", " ").split() for c in captions if c]
    grams = {n: [tuple(w[i:i + n]) for w in words for i in range(len(w) - n + 1)] for n in (1, 2)}
    return {"distinct_1": len(set(grams[1])) / max(len(grams[1]), 1),
            "distinct_2": len(set(grams[2])) / max(len(grams[2]), 1), "vocabulary": len(set(grams[1]))}


def checked_losses(names) -> list[str]:
    """``names`` as a list, or a ValueError naming what is not one of LOSSES."""
    names = list(names)
    if not names or set(names) - set(LOSSES):
        raise ValueError(f"losses must be some of {', '.join(LOSSES)} (got {', '.join(names) or 'none'})")
    return names


def run(clips: int | None, epochs: int | None, rounds: int | None, noises: list[float], seed: int, small: bool,
        workdir: str | None, echo=print, round0: str = "teacher", teacher: str = ROUND0_TEACHER,
        retriever_epochs: int = RETRIEVER_EPOCHS, student_init: str = "scratch", corrections: bool = False,
        folds: int = 1, shift: int = 0, losses: list[str] | None = None, contrastive: float = 0.0,
        min_margin: float = 0.0, rejudge: bool = False, retriever_shift: int = 0,
        retriever_pooling: str = "motion", retriever_spatial: str = "grid") -> dict:
    from vidcurate.operators.models.student.config import StudentConfig
    from vidcurate.pipelines.refine.loop import RefineOptions, refine
    from vidcurate.pipelines.train.student.loop import StudentTrainOptions
    from vidcurate.pipelines.train.student.losses import NoiseControl

    losses = checked_losses(losses or LOSSES)
    if round0 not in ROUND0 or student_init not in STUDENT_INIT:
        raise ValueError(f"round 0 must be one of {', '.join(ROUND0)} (got {round0!r}) and the student's start one "
                         f"of {', '.join(STUDENT_INIT)} (got {student_init!r})")
    if rejudge and round0 != "teacher":
        raise ValueError("rejudge re-tunes the rounds' retriever: it needs round 0 'teacher' (consensus has none)")
    preset = SMALL if small else FULL
    clips, epochs, rounds = clips or preset["clips"], epochs or preset["epochs"], rounds or preset["rounds"]
    workdir = workdir or tempfile.mkdtemp(prefix="vidcurate-bench-refinement-")
    results = {"clips": clips, "epochs": epochs, "rounds": rounds, "seed": seed, "round0": round0,
               "teacher": teacher if round0 == "teacher" else None, "student_init": student_init,
               "corrections": corrections, "folds": folds, "shift": shift, "losses": losses, "contrastive": contrastive,
               "min_margin": min_margin, "rejudge": rejudge, "retriever_shift": retriever_shift,
               "retriever_pooling": retriever_pooling, "retriever_spatial": retriever_spatial, "noises": {}}
    for noise in noises:
        world, held = _world(workdir, clips, seed, noise, echo)
        rows = {"consensus of the six teachers (reference)": {"selected": _scores(held, _captions(world, None))}}
        checkpoint = _retriever(world, workdir, retriever_epochs, seed, echo, retriever_shift, retriever_pooling,
                                retriever_spatial) \
            if round0 == "teacher" or student_init != "scratch" else None
        config = StudentConfig(contrastive=contrastive)
        if student_init != "scratch":
            config = config.with_video_init(checkpoint).model_copy(
                update={"video_trainable": student_init == "retriever"})
        if round0 == "teacher":
            start, start_row = f"round0-{teacher}", f"round 0 ({teacher} alone)"
            selector, fields = "retriever", {"model": checkpoint}
            _version(world, start, "teacher", {"teacher": teacher, "only_teacher": True})
            _version(world, "retriever-six", "retriever", fields)
            rows["retriever over the six teachers (reference)"] = {
                "selected": _scores(held, _captions(world, "retriever-six"))}
        else:
            start, start_row, selector, fields = None, "round 0 (consensus)", None, {}
        rows[start_row] = {"selected": _scores(held, _captions(world, start)), "round0": True}
        for loss in losses:
            copy = os.path.join(workdir, f"refine-{round0}-{student_init}-{noise}-{loss}"
                                         + ("-corrections" if corrections else "") + f"-folds{folds}"
                                         + (f"-shift{shift}" if shift else "")
                                         + (f"-contrastive{contrastive:g}" if contrastive else "")
                                         + (f"-margin{min_margin:g}" if min_margin else "")
                                         + (f"-rshift{retriever_shift}" if retriever_shift else "")
                                         + (f"-r{retriever_pooling}" if retriever_pooling != "attention" else "")
                                         + (f"-r{retriever_spatial}" if retriever_spatial != "grid" else ""))
            if not os.path.isdir(copy):
                shutil.copytree(world, copy, copy_function=os.link)
            train = StudentTrainOptions(config=config, control=NoiseControl(loss=loss), epochs=epochs, seed=seed,
                                        progress=False, device="auto", shift=shift)
            echo(f"noise {noise}: refining with {loss} for {rounds} round(s)")
            started = time.perf_counter()
            labels = os.path.join(copy, "labels.parquet") if corrections else None
            state = refine(copy, RefineOptions(rounds=rounds, from_version=start, selector=selector,
                                               selector_fields=fields, train=train, labels=labels,
                                               folds=folds, min_margin=min_margin),
                           echo=lambda line: None)
            seconds = time.perf_counter() - started
            for done in state["rounds"]:
                rows[f"{loss}, round {done['round']}"] = _round_row(copy, done, held, seed, seconds, folds)
                if rejudge:
                    name, folder = rejudged_round(copy, done, checkpoint, retriever_epochs, seed, echo,
                                                  retriever_shift)
                    rows[f"{loss} r{done['round']}, selector tuned on its judgments"] = {
                        **rejudged_row(copy, done, name, held), "rejudged": True, "retriever": folder}
        results["noises"][str(noise)] = {"held_out_clips": len(held), "rows": rows,
                                         "probes": selector_probes(world, held, checkpoint, rows)}
        with open(os.path.join(workdir, "bench_refinement.json"), "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    results["workdir"] = workdir
    return results


def _world(workdir: str, clips: int, seed: int, noise: float, echo) -> tuple[str, list[dict]]:
    """(folder, held-out truth rows) of the world for ``noise``, synthesized unless already there."""
    from vidcurate.pipelines.synth.write import synthesized_world

    world = synthesized_world(os.path.join(workdir, f"world-{clips}-{seed}-{noise}"), clips, seed, noise, echo)
    truth = pq.read_table(os.path.join(world, "truth.parquet")).to_pylist()
    return world, [r for r in truth if not r["labelled"]]


def _retriever(world: str, workdir: str, epochs: int, seed: int, echo, shift: int, pooling: str,
               spatial: str) -> str:
    """A retriever fine-tuned on the world's labels (the labelled clips only), once per world and tower options."""
    from vidcurate.operators.models.retriever import RetrieverConfig, VideoTowerConfig
    from vidcurate.pipelines.train.retriever.loop import FinetuneOptions, finetune

    folder = os.path.join(workdir, f"retriever-{os.path.basename(world)}" + (f"-shift{shift}" if shift else "")
                          + (f"-{pooling}" if pooling != "attention" else "")
                          + (f"-{spatial}" if spatial != "grid" else ""))
    config = RetrieverConfig(video=VideoTowerConfig(pooling=pooling, spatial=spatial))
    if not os.path.isfile(os.path.join(folder, "config.json")):
        echo(f"fine-tuning the round selector's retriever on {world}'s labels: {epochs} epochs")
        finetune(world, os.path.join(world, "labels.parquet"), folder,
                 FinetuneOptions(config=config, epochs=epochs, seed=seed, progress=False, resume=True, shift=shift),
                 echo=lambda line: None)
    return folder


def _version(world: str, name: str, selector: str, fields: dict, from_version: str = "build") -> None:
    from vidcurate.operators.write.versions import list_versions
    from vidcurate.pipelines.versions.select import reselect

    if name not in {v["name"] for v in list_versions(world)}:
        reselect(world, selector, name, from_version, fields)


def rejudged_round(copy: str, done: dict, checkpoint: str, epochs: int, seed: int, echo,
                   shift: int = 0) -> tuple[str, str]:
    """The name of ``done``'s round re-selected by the round's retriever fine-tuned further (from its own
    weights, ``epochs`` epochs) on the world's labels plus the simulated annotators' judgments of the
    round's candidates on the labelled clips (`vidcurate synth annotate`): what a user gets by judging a
    round on the annotation page, `retriever finetune --init` and `select --from-version`."""
    from vidcurate.pipelines.synth.judge_version import judge_version
    from vidcurate.pipelines.train.retriever.loop import FinetuneOptions, finetune

    version, name = done["version"], f"{done['version']}-rejudged"
    labels = os.path.join(copy, f"labels-{version}.parquet")
    if not os.path.isfile(labels):
        shutil.copyfile(os.path.join(copy, "labels.parquet"), labels)
    judge_version(copy, version, labels)  # adds nothing to clips already judged with these candidates
    folder = os.path.join(copy, "refine", f"r{done['round']}", "retriever-rejudged")
    if not os.path.isfile(os.path.join(folder, "config.json")):
        echo(f"fine-tuning the round selector further on {labels}: {epochs} epochs")
        finetune(copy, labels, folder, FinetuneOptions(epochs=epochs, seed=seed, progress=False, resume=True,
                                                       init_from=checkpoint, shift=shift), echo=lambda line: None)
    _version(copy, name, "retriever", {"model": folder}, from_version=version)
    return name, folder


def selector_probes(world: str, held: list[dict], checkpoint: str | None, rows: dict) -> dict:
    """What each round selector (the world's retriever, each rejudged one) tells apart on the held-out
    clips, one attribute at a time (`vidcurate synth probe`); {} when the rounds select by consensus."""
    from vidcurate.operators.models.retriever import load_retriever
    from vidcurate.pipelines.synth.judge_version import world_settings
    from vidcurate.pipelines.synth.probe import probe_pairs, probe_retriever
    from vidcurate.pipelines.train.retriever.data import clip_frames

    if checkpoint is None:
        return {}
    selectors = {"the world's retriever (round selector)": checkpoint}
    selectors.update({name: row["retriever"] for name, row in rows.items() if row.get("retriever")})
    pairs = probe_pairs(held, world_settings(world)[0])
    found, frames = {}, None
    for name, folder in selectors.items():
        model = load_retriever(folder)
        frames = frames or clip_frames(world, [r["clip_id"] for r in held], model.config.num_frames,
                                       tuple(model.config.frame_size))
        found[name] = probe_retriever(model, pairs, frames)
    return found


def rejudged_row(copy: str, done: dict, name: str, held: list[dict]) -> dict:
    """The re-selected round's scores, how its selector treated the student, and the captions it changed."""
    previous, greedy = _captions(copy, done["from_version"]), _student_greedy(copy, done["round"])
    now = _captions(copy, name)
    return {"selected": _scores(held, now), "selector": selector_diagnostics(copy, {**done, "version": name}, held,
                                                                             previous, greedy),
            "changed": sum(now[c] != previous.get(c) for c in now)}


def _captions(out: str, version: str | None) -> dict:
    """clip id -> caption of ``version`` (None: the build's own, in the index)."""
    path = os.path.join(out, "versions", f"{version}.parquet") if version not in (None, "build") \
        else os.path.join(out, "index.parquet")
    return {r["clip_id"]: r["caption"] for r in pq.read_table(path, columns=["clip_id", "caption"]).to_pylist()}


def _round_row(copy: str, done: dict, held: list[dict], seed: int, seconds: float, folds: int) -> dict:
    from vidcurate.pipelines.refine.loop import fold_clips

    greedy = _student_greedy(copy, done["round"])
    held_ids, sampled, history = [r["clip_id"] for r in held], {}, []
    for student, fold in zip(done["students"], fold_clips(copy, folds, seed)):
        mine = [c for c in held_ids if fold is None or c in fold]  # each clip by the student that captioned it
        sampled.update(_student_captions(copy, student, mine, "panda", seed))
        with open(os.path.join(student, "metrics.json"), encoding="utf-8") as handle:
            history += json.load(handle)["history"]
    previous = _captions(copy, done["from_version"])
    return {"selected": _scores(held, _captions(copy, done["version"])), "student_greedy": _scores(held, greedy),
            "oracle": _scores(held, oracle_pick(held, previous, greedy)),
            "selector": selector_diagnostics(copy, done, held, previous, greedy),
            "student_panda": _scores(held, sampled), "changed": done["counts"]["changed"],
            "gammas": [e["gamma"] for e in history], "seconds": seconds,
            "steps": sum(e.get("steps", 0) for e in history),
            "train_seconds": sum(e.get("seconds", 0.0) for e in history)}


def _student_greedy(copy: str, round_number: int) -> dict:
    """clip id -> the round's student caption (greedy, the candidate refine made)."""
    path = os.path.join(copy, "refine", f"r{round_number}", "captions.parquet")
    return {r["clip_id"]: r["text"] for r in pq.read_table(path, columns=["clip_id", "text"]).to_pylist()}


MARGINS = (0.1, 0.2, 0.3, 0.5)  # score margins the round's selection is replayed with (refine --min-margin)


def selector_diagnostics(copy: str, done: dict, held: list[dict], previous: dict, student: dict) -> dict:
    """How the round's selector treated the student on the held-out clips: how often it took the student's
    caption where it states fewer attributes right than the previous one, and where more; and the
    round replayed from its saved candidate scores as if ``refine --min-margin m`` had been given, for
    each m of MARGINS (accuracy / faithful share and captions changed)."""
    from vidcurate.operators.write.versions import read_version
    from vidcurate.pipelines.synth.score import score

    label, rows = f"student-r{done['round']}", read_version(copy, done["version"])
    counts = {"worse": 0, "worse_taken": 0, "better": 0, "better_taken": 0}
    wins = {}  # clip id -> the student's score minus the previous caption's, where the selector took it
    for truth in held:
        clip_id = truth["clip_id"]
        mine, theirs = (score([truth], {clip_id: c})["overall"] for c in (student.get(clip_id), previous.get(clip_id)))
        row = rows.get(clip_id) or {}
        taken = row.get("caption_teacher") == label
        if taken:
            scores = {(c["teacher"] == label, c["text"]): c.get("score") or 0.0 for c in row.get("candidates") or []}
            wins[clip_id] = scores.get((True, row["caption"]), 0.0) - scores.get((False, previous.get(clip_id)), 0.0)
        kind = "worse" if mine < theirs else "better" if mine > theirs else None
        if kind:
            counts[kind] += 1
            counts[f"{kind}_taken"] += taken
    margins = {}
    for margin in MARGINS:
        kept = {c: (student.get(c) if wins.get(c, -1.0) >= margin else previous.get(c)) for c in
                (r["clip_id"] for r in held)}
        found = _scores(held, kept)
        margins[str(margin)] = {"accuracy": found["accuracy"], "faithful": found["faithful"],
                                "changed": sum(1 for c in wins if wins[c] >= margin)}
    return {**counts, "margins": margins}


def oracle_pick(held: list[dict], previous: dict, student: dict) -> dict:
    """clip id -> whichever of the previous caption and the student's states more attributes right (the
    previous one on a tie): what a perfect selector would make of this round's student."""
    from vidcurate.pipelines.synth.score import score

    def right(row: dict, caption: str | None) -> float:
        return score([row], {row["clip_id"]: caption})["overall"]

    return {r["clip_id"]: student.get(r["clip_id"]) if right(r, student.get(r["clip_id"])) >
            right(r, previous.get(r["clip_id"])) else previous.get(r["clip_id"]) for r in held}


def _scores(held: list[dict], captions: dict) -> dict:
    from vidcurate.pipelines.synth.score import score

    found = score(held, captions)
    return {"accuracy": found["overall"], "faithful": found["faithful"], "attributes": found["attributes"],
            **distinct([captions.get(r["clip_id"]) or "" for r in held])}


def _student_captions(out: str, student: str, clip_ids: list[str], decoding: str, seed: int) -> dict:
    """clip id -> the student's caption of each of ``clip_ids`` with ``decoding`` (None: no usable caption)."""
    from vidcurate.pipelines.refine.loop import caption_clips

    made = {r["clip_id"]: r["text"] for r in caption_clips(out, student, "student", decoding, seed=seed,
                                                            only=set(clip_ids))}
    return {clip_id: made.get(clip_id) for clip_id in clip_ids}

"""The data flywheel (Video DataFlywheel, arXiv 2409.19532) on a finished build: for round r = 1..N,

    1. train   the student on the current captions (pre-training with noise control), then on the
               human corrections of the labels file when there are any (pipelines/train/student);
               round r > 1 starts from round r-1's student ("repeat with the stronger model")
    2. caption every clip with the student: a candidate of teacher ``student-r<r>`` with its
               checkpoint and decoding parameters (operators/teachers/student.py)
    3. select  with the given selector, else round 0's; a caption changes only when the new
               candidate wins (reselect.py); steps 2 and 3 run on the local or the Ray runner
               (``runner``; pipelines/versions/clip_pass.py: the workers read the clips from OUT)
    4. write   caption version ``refine-r<r>`` (never overwriting one), with the round's counts and,
               on a synthetic world, its scores against the truth

Cross-fitting (``folds`` K >= 2; the default is 1): the clips are split into K folds by clip id
(pipelines/train/student/data.py ``in_fold``, the same folds every round), K students are trained,
student k on every fold but k, and each clip is captioned by the student that never learned its
caption. With K = 1 one student learns every caption and captions the same clips, so what it
gives back can be its training caption: on a 600-clip world at 40% colour noise (60 epochs), it
repeated the wrong colour on 209 of the 236 clips whose caption had it wrong, and its captions'
attribute accuracy was 91.5% on the clips it had learned against 66.9% on clips it had not
(cross-fitted). The cross-fitted candidate is the honest one, but the selector must then reject
a weaker student: the fine-tuned retriever took 327 of them and the round fell to 79.6%
(one student: 92.8%; round 0: 94.5%), so K = 1 stays the default until a student generalizes.
With K = 2 the training cost is that of one student (each learns half the clips).

Round 0 is ``from_version`` (default: the latest). The loop stops after ``rounds`` rounds, or
when a round changes fewer than ``min_change`` of the clips' captions. Running the same command
again resumes: a finished round is skipped, an unfinished one continues at its step (and the
student's training at its last epoch). Asking for more rounds than were run continues from the last.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from vidcurate.operators.write.versions import VersionError, list_versions, resolve_version, write_version
from vidcurate.pipelines.refine.reselect import RefineError, previous_rows, select_round, selector_for
from vidcurate.pipelines.refine.state import current_round, read_state, round_dir, write_state
from vidcurate.pipelines.train.student.loop import StudentTrainOptions, train_student

CAPTIONS_FILE = "captions.parquet"
STUDENT_CANDIDATE = pa.schema([("clip_id", pa.string()), ("teacher", pa.string()), ("modality", pa.string()),
                               ("text", pa.string()), ("model_id", pa.string()), ("model_revision", pa.string()),
                               ("params", pa.string())])


@dataclass
class RefineOptions:
    rounds: int = 1
    from_version: str | None = None
    selector: str | None = None
    selector_fields: dict = field(default_factory=dict)
    labels: str | None = None
    train: StudentTrainOptions = field(default_factory=StudentTrainOptions)
    decoding: str = "greedy"
    min_change: float = 0.0
    runner: str = "local"  # where captioning and selection run: local, or ray (pipelines/versions/clip_pass.py)
    folds: int = 1  # cross-fitting: K students, each captions the fold it did not learn; 1 = one student for all
    min_margin: float = 0.0  # a student's caption replaces one only when its score is higher by this much


def refine(out: str, options: RefineOptions, echo: Callable[[str], None] = print) -> dict:
    """Run (or resume) the rounds; the state with every round's outcome."""
    out = os.path.abspath(out)
    if options.rounds < 1:
        raise RefineError(f"--rounds must be >= 1, got {options.rounds}")
    if options.folds < 1:
        raise RefineError(f"--folds must be >= 1, got {options.folds}")
    if options.labels and not os.path.isfile(options.labels):
        raise RefineError(f"labels file {options.labels!r}: no such file")
    if not os.path.isfile(os.path.join(out, "index.parquet")):
        raise RefineError(f"{out!r} holds no finished build (index.parquet is missing)")
    state = read_state(out)
    if state is None:
        try:
            start = resolve_version(out, options.from_version)
        except VersionError as exc:
            raise RefineError(str(exc)) from None
        state = {"from_version": start, "rounds": [], "stopped": None, "start_scores": _truth_scores(out, start),
                 "settings": {"loss": options.train.control.loss, "decoding": options.decoding,
                              "folds": options.folds}}
    elif options.from_version and options.from_version != state["from_version"]:
        raise RefineError(f"{out}/refine was started from version {state['from_version']!r}, not "
                          f"{options.from_version!r}: move {out}/refine away to start over")
    elif state["settings"].get("folds", 1) != options.folds:
        raise RefineError(f"{out}/refine was started with --folds {state['settings'].get('folds', 1)}, not "
                          f"{options.folds}: run it with those folds, or move {out}/refine away to start over")
    state["stopped"] = None
    while True:
        active = current_round(state)
        if active is None:
            done = len(state["rounds"])
            if done >= options.rounds or (done and _too_few_changes(state["rounds"][-1], options.min_change)):
                break
            source = state["rounds"][-1]["version"] if done else state["from_version"]
            active = {"round": done + 1, "step": "train", "from_version": source,
                      "version": f"refine-r{done + 1}"}
            state["rounds"].append(active)
            write_state(out, state)
        _run_round(out, active, state, options, echo)
    last = state["rounds"][-1] if state["rounds"] else None
    if last and _too_few_changes(last, options.min_change) and len(state["rounds"]) < options.rounds:
        state["stopped"] = f"round {last['round']} changed {last['counts']['changed']} captions, under " \
                           f"--min-change {options.min_change:g} of the clips"
        write_state(out, state)
        echo(f"stopped: {state['stopped']}")
    return state


def _too_few_changes(finished: dict, min_change: float) -> bool:
    counts = finished.get("counts") or {}
    return bool(counts) and counts["changed"] < min_change * max(counts["clips"], 1)


def round_students(out: str, number: int, folds: int) -> list[str]:
    """Round ``number``'s student checkpoints: ``r<r>/student`` alone, or one per fold (``student-f<k>``)."""
    if folds == 1:
        return [round_dir(out, number, "student")]
    return [round_dir(out, number, f"student-f{fold}") for fold in range(folds)]


def fold_clips(out: str, folds: int, seed: int) -> list[set[str] | None]:
    """The clip ids each round student captions: fold k's for student k (None: every clip)."""
    if folds == 1:
        return [None]
    from vidcurate.pipelines.train.student.data import in_fold

    clip_ids = pq.read_table(os.path.join(out, "index.parquet"), columns=["clip_id"]).column(0).to_pylist()
    return [{c for c in clip_ids if in_fold(c, fold, folds, seed)} for fold in range(folds)]


def _run_round(out: str, active: dict, state: dict, options: RefineOptions, echo) -> None:
    number, label = active["round"], f"student-r{active['round']}"
    students = round_students(out, number, options.folds)
    if active["step"] == "train":
        trained = active.setdefault("training", [])
        for fold, student in enumerate(students):
            if fold < len(trained):
                continue  # finished before a crash
            part = f" without fold {fold} of {options.folds}" if options.folds > 1 else ""
            echo(f"round {number}: training the student{part} on {active['from_version']}'s captions")
            before = state["rounds"][-2] if number > 1 else {}
            # a state written before --folds names one "student"
            previous = (before.get("students") or [before["student"]])[fold] if before else None
            train = replace(options.train, resume=True, init_from=options.train.init_from or previous,
                            leave_out=(fold, options.folds) if options.folds > 1 else None)
            summary = train_student(out, active["from_version"], student, train, options.labels, echo=echo)
            trained.append(summary["training"])
            active.setdefault("last_epoch", []).append(summary["history"][-1] if summary["history"] else None)
            write_state(out, state)
        active.update(step="caption", students=students)
        write_state(out, state)
    if active["step"] == "caption":
        echo(f"round {number}: captioning every clip with the student" +
             (" that did not learn its caption" if options.folds > 1 else ""))
        captions = []
        for student, only in zip(students, fold_clips(out, options.folds, options.train.seed)):
            captions += caption_clips(out, student, label, options.decoding, options.train.device,
                                      options.train.seed, only=only, runner=options.runner)
        _write_table(round_dir(out, number, CAPTIONS_FILE), sorted(captions, key=lambda r: r["clip_id"]))
        active.update(step="select", student_captions=len(captions))
        write_state(out, state)
    if active["step"] == "select":
        echo(f"round {number}: selecting among the candidates with the new one")
        existing = {v["name"]: v for v in list_versions(out)}
        if active["version"] not in existing:  # else: written before a crash, the state not yet updated
            previous = previous_rows(out, active["from_version"])
            student_rows = {r["clip_id"]: {k: v for k, v in r.items() if k != "clip_id"} | {"score": None}
                            for r in pq.read_table(round_dir(out, number, CAPTIONS_FILE)).to_pylist()}
            op = selector_for(out, active["from_version"], options.selector, options.selector_fields)
            rows, counts = select_round(out, previous, student_rows, op, label, options.runner, options.min_margin)
            provenance = {"command": "refine", "round": number, "from_version": active["from_version"],
                          "selector": op.name, "selector_settings": op.model_dump(mode="json"), "students": students,
                          "folds": options.folds, "min_margin": options.min_margin,
                          "student_label": label, "decoding": options.decoding, "runner": options.runner,
                          "noise_control": asdict(options.train.control), "counts": counts}
            write_version(out, active["version"], rows, provenance)
        else:
            counts = existing[active["version"]]["counts"]
        active.update(step="done", counts=counts, scores=_truth_scores(out, active["version"]))
        write_state(out, state)
        echo(round_line(active))


def caption_clips(out: str, student: str, label: str, decoding: str = "greedy", device: str = "auto", seed: int = 0,
                  only: set[str] | None = None, runner: str = "local") -> list[dict]:
    """The student's candidate for every clip (of ``only``, when given) it could caption, a flat row per
    clip, sorted by clip id; captioned on ``runner`` (local, or ray: the clips are read on the workers)."""
    from vidcurate.operators.teachers.student import StudentTeacher
    from vidcurate.pipelines.versions.clip_pass import run_over_clips

    rows = []

    def keep(records: list[dict]) -> None:
        for record in records:
            made = [c for c in record.get("candidates") or [] if c["teacher"] == label]
            if made:
                rows.append({"clip_id": record["clip_id"], **{k: made[-1].get(k) for k in STUDENT_CANDIDATE.names
                                                              if k != "clip_id"}})

    op = StudentTeacher(model=student, label=label, decoding=decoding, device=device, seed=seed)
    run_over_clips(out, [op], keep=("candidates",), handle=keep, runner=runner, source_fields=True, only=only)
    return sorted(rows, key=lambda r: r["clip_id"])


def _write_table(path: str, rows: list[dict]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=STUDENT_CANDIDATE), f"{path}.partial")
    os.replace(f"{path}.partial", path)


def _truth_scores(out: str, version: str) -> dict | None:
    """Held-out and all-clip scores against the truth, when ``out`` is a synthetic world."""
    if not os.path.isfile(os.path.join(out, "truth.parquet")):
        return None
    from vidcurate.pipelines.synth.score import dataset_scores

    found = dataset_scores(out, version)
    return {"held_out": {k: found["held_out"][k] for k in ("overall", "faithful", "attributes")},
            "all": {k: found["all"][k] for k in ("overall", "faithful")}}


def round_line(done: dict) -> str:
    counts = done["counts"]
    line = (f"round {done['round']}: {done['version']}: {counts['changed']} of {counts['clips']} captions changed "
            f"(the student's candidate won)")
    if done.get("scores"):
        held = done["scores"]["held_out"]
        line += f"; held-out attribute accuracy {held['overall']:.1%}, faithful {held['faithful']:.1%}"
    return line

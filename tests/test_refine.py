"""Noise-controlled refinement: TaiLr and AdaTaiLr against hand-computed values, the student
captioner's checkpoints, and the flywheel's bookkeeping through the CLI (versions, provenance,
only-winning changes, resume after a kill mid-round), a 2-worker Ray Train run, the student as a
teacher inside a build."""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import VIDCURATE, run_cli, synth_world

from vidcurate.operators.models.retriever.config import VideoTowerConfig
from vidcurate.operators.models.student import (DECODING_PRESETS, DecoderConfig, StudentConfig, create_student,
                                                load_student, save_student)
from vidcurate.pipelines.train.student.losses import (GammaSchedule, NoiseControl, caption_contrastive_loss,
                                                      gate_weights, tailr_weights, token_loss, two_component_noise)

PLUGINS = os.path.join(os.path.dirname(__file__), "plugins")
sys.path.insert(0, PLUGINS)
from refine_selectors import student_wins  # noqa: E402

# Small enough to train in seconds, big enough to write captions that pass the candidate checks.
TINY = {"video": {"channels": [8, 16]}, "decoder": {"width": 64, "layers": 2, "heads": 2, "vocab_size": 300},
        "num_frames": 4, "frame_size": [30, 40]}
TRAIN = ["--epochs", "16", "--lr", "3e-3", "--batch-size", "8", "--device", "cpu", "--folds", "2"]
SELECTOR = ["--selector", "refine_selectors:StudentOnEvenClips"]


# ---- losses --------------------------------------------------------------------------------

def test_tailr_weights_match_the_formula():
    p = torch.tensor([0.9, 0.5, 0.1, 0.01])
    w = tailr_weights(p.log(), gamma=0.5, min_weight=0.0)
    assert torch.allclose(w, p / (0.5 + 0.5 * p))  # 0.947, 0.667, 0.182, 0.0198
    assert torch.allclose(tailr_weights(p.log(), 1.0, 0.0), p)  # gamma 1: w = p
    assert torch.allclose(tailr_weights(p.log(), 1e-9, 0.0), torch.ones(4), atol=1e-6)  # gamma -> 0: likelihood
    assert torch.allclose(tailr_weights(p.log(), 1.0, 0.2), torch.tensor([0.9, 0.5, 0.2, 0.2]))  # clamped


def test_token_loss_against_hand_computed_values():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    targets, mask = torch.tensor([[0, 2]]), torch.tensor([[True, True]])
    log_probs = torch.log_softmax(logits, -1)[0]
    nll = torch.stack([-log_probs[0, 0], -log_probs[1, 2]])
    # gamma 0, eps 0: the mean token cross-entropy
    loss, per_sample, weight = token_loss(logits, targets, mask, 0.0, 0.0, 0.0)
    assert loss.item() == pytest.approx(nll.mean().item()) and weight.item() == 1.0
    assert per_sample.tolist() == pytest.approx([nll.mean().item()])
    # gamma 1, eps 0.1: (0.9 * sum(p * nll) + 0.1 / 3 * sum over tokens of -sum_v log p_v) / 2
    p = (-nll).exp()
    smooth = -log_probs.sum(-1)
    expected = (0.9 * (p * nll).sum() + 0.1 / 3 * smooth.sum()) / 2
    loss, _, weight = token_loss(logits, targets, mask, 1.0, 0.0, 0.1)
    assert loss.item() == pytest.approx(expected.item()) and weight.item() == pytest.approx(p.mean().item())
    # the weights carry no gradient: d loss / d logits equals p-weighted cross-entropy's with w constant
    logits.requires_grad_(True)
    token_loss(logits, targets, mask, 1.0, 0.0, 0.0)[0].backward()
    manual = logits.detach().clone().requires_grad_(True)
    ((p * torch.stack([-torch.log_softmax(manual, -1)[0, 0, 0], -torch.log_softmax(manual, -1)[0, 1, 2]])).sum()
     / 2).backward()
    assert torch.allclose(logits.grad, manual.grad)
    # a padded token counts for nothing
    padded, _, _ = token_loss(logits.detach(), targets, torch.tensor([[True, False]]), 0.0, 0.0, 0.0)
    assert padded.item() == pytest.approx(nll[0].item())


def test_adatailr_estimates_the_noisy_share_and_sets_gamma_from_it():
    rng = np.random.default_rng(0)
    losses = list(rng.normal(1.0, 0.15, 700)) + list(rng.normal(3.0, 0.3, 300))
    rho, fit = two_component_noise(losses)
    assert rho == pytest.approx(0.3, abs=0.03) and fit["separation"] > 3
    assert two_component_noise(list(rng.normal(1.0, 0.2, 1000)))[0] == 0.0  # one blob: no evidence of noise
    schedule = GammaSchedule(NoiseControl(loss="adatailr", gamma_max=0.25))
    assert schedule.gamma == 0.0  # the first epoch is plain likelihood
    schedule.end_epoch(losses)
    assert schedule.gamma == 0.25 and schedule.history[-1]["noise_estimate"] == pytest.approx(rho)
    fixed = GammaSchedule(NoiseControl(loss="tailr", gamma=0.8))
    fixed.end_epoch(losses)
    assert fixed.gamma == 0.8 and GammaSchedule(NoiseControl(loss="mle")).gamma == 0.0


def test_gating_by_selection_score():
    scores = [0.9, 0.2, None]
    assert gate_weights(scores, NoiseControl()) is None
    assert gate_weights(scores, NoiseControl(gate="hard", gate_threshold=0.43)).tolist() == [1.0, 0.0, 1.0]
    assert gate_weights(scores, NoiseControl(gate="soft")).tolist() == pytest.approx([0.9, 0.2, 1.0])


def test_caption_contrastive_loss_against_hand_computed_values():
    sim = torch.tensor([[3.0, 1.0, 0.0], [0.5, 2.0, 1.5], [0.0, 1.0, 1.0]])
    # distinct captions: CLIP's symmetric cross-entropy, video to text over rows, text to video over columns
    rows = torch.nn.functional.cross_entropy(sim, torch.arange(3))
    columns = torch.nn.functional.cross_entropy(sim.T, torch.arange(3))
    assert caption_contrastive_loss(sim, ["a", "b", "c"]).item() == pytest.approx(((rows + columns) / 2).item())
    # clips 1 and 2 share a caption: neither is the other's negative, either way
    def ce(row, target, keep):
        return -(row[target] - torch.logsumexp(row[keep], 0))
    v2t = torch.stack([ce(sim[0], 0, [0, 1, 2]), ce(sim[1], 1, [0, 1]), ce(sim[2], 2, [0, 2])]).mean()
    t2v = torch.stack([ce(sim[:, 0], 0, [0, 1, 2]), ce(sim[:, 1], 1, [0, 1]), ce(sim[:, 2], 2, [0, 2])]).mean()
    assert caption_contrastive_loss(sim, ["a", "b", "b"]).item() == pytest.approx(((v2t + t2v) / 2).item(), rel=1e-5)
    # one caption for every clip: nothing to contrast
    assert caption_contrastive_loss(sim, ["a"] * 3).item() == pytest.approx(0.0, abs=1e-6)


# ---- the student ---------------------------------------------------------------------------

def test_student_checkpoint_round_trip_and_decoding(tmp_path):
    config = StudentConfig.model_validate({**TINY, "text_inputs": ["title"]})
    torch.manual_seed(0)
    model = create_student(config, ["Two red squares move left.", "A blue circle rises."] * 10).eval()
    frames = torch.randint(0, 255, (2, 4, 30, 40, 3), dtype=torch.uint8)
    texts = [{"title": "a title"}, {}]
    save_student(model, str(tmp_path / "student"))
    loaded = load_student(str(tmp_path / "student"))
    with torch.no_grad():
        assert torch.equal(model(frames, ["a b c", "d e"], texts)[0], loaded(frames, ["a b c", "d e"], texts)[0])
    assert model.generate(frames, texts) == loaded.generate(frames, texts)
    torch.manual_seed(1)
    sampled = loaded.generate(frames, texts, DECODING_PRESETS["panda"])
    assert len(sampled) == 2 and all(isinstance(s, str) for s in sampled)
    assert not (tmp_path / "student" / "model.pt").exists()
    assert {"config.json", "model.safetensors", "decoder"} <= set(os.listdir(tmp_path / "student"))
    with pytest.raises(Exception, match="not a student checkpoint"):
        load_student(str(tmp_path))


def test_a_partial_video_config_keeps_the_students_defaults_and_old_checkpoints_load_as_written(tmp_path):
    partial = StudentConfig.model_validate(TINY)  # video gives only channels
    assert (partial.video.spatial, partial.video.pooling, partial.video.channels) == ("grid_max", "attention", [8, 16])
    grid = StudentConfig.model_validate({**TINY, "video": {"channels": [8, 16], "spatial": "grid"}})
    assert grid.video.spatial == "grid"
    # a checkpoint saved before video.spatial existed had the grid alone, and still loads as that
    torch.manual_seed(0)
    model = create_student(grid, ["Two red squares move left.", "A blue circle rises."] * 10).eval()
    folder = tmp_path / "old-student"
    save_student(model, str(folder))
    raw = json.loads((folder / "config.json").read_text())
    del raw["video"]["spatial"]
    (folder / "config.json").write_text(json.dumps(raw))
    loaded = load_student(str(folder))
    assert loaded.config.video.spatial == "grid"
    frames = torch.randint(0, 255, (1, 4, 30, 40, 3), dtype=torch.uint8)
    assert model.generate(frames, [{}]) == loaded.generate(frames, [{}])


# ---- the flywheel through the CLI ----------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("refine") / "world"
    synth_world(out, "--clips", "40", "--seed", "3", "--noise", "0.4", "--label-share", "0.5")
    config = out.parent / "tiny-student.json"
    config.write_text(json.dumps(TINY))
    return out, config


def refine_cli(out, config, *args, background=False):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([PLUGINS, os.environ.get("PYTHONPATH", "")])}
    command = [*VIDCURATE, "refine", str(out), "--student-config", str(config), *TRAIN, *args]
    if background:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def refined(world, tmp_path_factory):
    source, config = world
    out = tmp_path_factory.mktemp("refined") / "world"
    shutil.copytree(source, out)
    done = refine_cli(out, config, "--rounds", "2", "--loss", "adatailr", *SELECTOR)
    assert done.returncode == 0, done.stderr + done.stdout
    return out, config, done


def version(out, name):
    return {r["clip_id"]: r for r in pq.read_table(out / "versions" / f"{name}.parquet").to_pylist()}


@pytest.mark.slow
def test_rounds_write_versions_with_provenance(refined):
    out, _, done = refined
    assert "2 round(s) done: refine-r1, refine-r2" in done.stdout
    records = {v["name"]: v for v in (json.loads(p.read_text()) for p in (out / "versions").glob("*.json"))}
    assert records["refine-r1"]["from_version"] == "build" and records["refine-r2"]["from_version"] == "refine-r1"
    assert records["refine-r1"]["selector"] == "refine_selectors:StudentOnEvenClips"
    assert records["refine-r2"]["student_label"] == "student-r2"
    assert records["refine-r1"]["noise_control"]["loss"] == "adatailr"
    state = json.load(open(out / "refine" / "state.json"))
    assert [r["step"] for r in state["rounds"]] == ["done", "done"]
    for fold in (0, 1):  # the stronger model: fold k's student continues from fold k's of the round before
        assert state["rounds"][1]["training"][fold]["init_from"] == state["rounds"][0]["students"][fold]
    student = json.load(open(out / "refine" / "r1" / "student-f0" / "config.json"))
    assert student["video"]["spatial"] == "grid_max"  # --student-config gave only video.channels
    metrics = json.load(open(out / "refine" / "r1" / "student-f0" / "metrics.json"))
    assert len(metrics["history"]) == 16 and metrics["history"][0]["gamma"] == 0.0
    assert all("noise_estimate" in e for e in metrics["history"])
    index = pq.read_table(out / "index.parquet", columns=["clip_id"]).column(0).to_pylist()
    for name in ("refine-r1", "refine-r2"):
        assert sorted(version(out, name)) == sorted(index)  # every clip accounted for
    scored = run_cli("synth", "score", str(out), "--version", "refine-r2")
    assert scored.returncode == 0 and "refine-r2" in scored.stdout


@pytest.mark.slow
def test_a_caption_changes_only_where_the_students_candidate_wins(refined):
    out, _, _ = refined
    index = {r["clip_id"]: r for r in pq.read_table(out / "index.parquet").to_pylist()}
    students = {r["clip_id"]: r for r in pq.read_table(out / "refine" / "r1" / "captions.parquet").to_pylist()}
    assert len(students) >= 10, "the tiny student wrote too few usable captions for this test"
    rows = version(out, "refine-r1")
    changed = {c for c, row in rows.items() if row["caption"] != index[c]["caption"]}
    assert changed == {c for c in students if student_wins(c)}
    for clip_id, row in rows.items():
        teachers = [c["teacher"] for c in row["candidates"]]
        assert teachers.count("student-r1") == (clip_id in students)
        if clip_id in changed:
            assert row["caption"] == students[clip_id]["text"] and row["caption_teacher"] == "student-r1"
        else:
            assert row["caption_teacher"] == index[clip_id]["caption_teacher"]
    params = json.loads(next(c for c in rows[next(iter(students))]["candidates"]
                             if c["teacher"] == "student-r1")["params"])
    assert params["checkpoint"].endswith(("r1/student-f0", "r1/student-f1")) and params["decoding"]["num_beams"] == 1
    state = json.load(open(out / "refine" / "state.json"))
    assert state["rounds"][0]["counts"]["changed"] == len(changed)


@pytest.mark.slow
def test_every_clip_is_captioned_by_the_student_that_never_learned_its_caption(refined):
    """Cross-fitting (the default --folds 2): student k pre-trains on every clip but fold k's, and captions fold k."""
    from vidcurate.pipelines.train.student.data import in_fold

    out, _, _ = refined
    state = json.load(open(out / "refine" / "state.json"))
    captioned = {r["clip_id"] for r in pq.read_table(out / "index.parquet").to_pylist() if r["caption"]}
    for number, done in enumerate(state["rounds"], start=1):
        students = [str(out / "refine" / f"r{number}" / f"student-f{fold}") for fold in (0, 1)]
        assert done["students"] == students
        for fold, training in enumerate(done["training"]):
            assert training["left_out_fold"] == [fold, 2]
            learned = training["captions"] + training["validation_captions"]
            assert learned == sum(1 for c in captioned if not in_fold(c, fold, 2)), training
        made = pq.read_table(out / "refine" / f"r{number}" / "captions.parquet").to_pylist()
        assert made
        for row in made:
            fold = 0 if in_fold(row["clip_id"], 0, 2) else 1
            assert json.loads(row["params"])["checkpoint"] == students[fold]


@pytest.mark.slow
def test_running_again_does_nothing_more(refined):
    out, config, _ = refined
    before = (out / "versions" / "refine-r2.parquet").stat().st_mtime_ns
    done = refine_cli(out, config, "--rounds", "2", *SELECTOR)
    assert done.returncode == 0 and "training" not in done.stdout
    assert (out / "versions" / "refine-r2.parquet").stat().st_mtime_ns == before
    done = refine_cli(out, config, "--rounds", "3", "--folds", "1", *SELECTOR)
    assert done.returncode == 2 and "started with --folds 2, not 1" in done.stderr
    assert not (out / "refine" / "r3").exists()


@pytest.mark.slow
def test_a_kill_mid_round_resumes_at_its_step_and_reaches_the_same_captions(world, refined, tmp_path):
    source, config = world
    out = tmp_path / "world"
    shutil.copytree(source, out)
    process = refine_cli(out, config, "--rounds", "1", "--loss", "adatailr", *SELECTOR, background=True)
    marker = out / "refine" / "r1" / "student-f0" / "training" / "trainer_state.json"
    deadline = time.time() + 600
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    state = json.load(open(out / "refine" / "state.json"))
    assert state["rounds"][0]["step"] == "train"  # killed while training
    done = refine_cli(out, config, "--rounds", "1", "--loss", "adatailr", *SELECTOR)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout
    first = version(refined[0], "refine-r1")
    again = version(out, "refine-r1")
    assert {c: r["caption"] for c, r in again.items()} == {c: r["caption"] for c, r in first.items()}


@pytest.mark.slow
def test_the_ray_runner_recaptions_and_reselects_as_the_local_runner_does(world, refined, tmp_path):
    """--runner ray: the student and the selector run on Ray workers that read the clips from OUT. The run
    starts from the local run's round 1 at its caption step (its trained students copied, as a crash
    after training leaves them): training is not the runner's part, captioning and selecting are."""
    source, config = world
    out = tmp_path / "world"
    shutil.copytree(source, out)
    shutil.copytree(refined[0] / "refine" / "r1", out / "refine" / "r1", ignore=shutil.ignore_patterns("captions.parquet"))
    state = json.load(open(refined[0] / "refine" / "state.json"))
    first = {k: v for k, v in state["rounds"][0].items() if k not in ("counts", "scores", "student_captions")}
    state["rounds"] = [{**first, "step": "caption"}]
    (out / "refine" / "state.json").write_text(json.dumps(state))
    done = refine_cli(out, config, "--rounds", "1", "--loss", "adatailr", *SELECTOR, "--runner", "ray")
    assert done.returncode == 0, done.stderr
    here, there = version(refined[0], "refine-r1"), version(out, "refine-r1")
    assert {c: r["caption"] for c, r in there.items()} == {c: r["caption"] for c, r in here.items()}
    assert {c: r["caption_teacher"] for c, r in there.items()} == {c: r["caption_teacher"] for c, r in here.items()}
    captions = [pq.read_table(o / "refine" / "r1" / "captions.parquet").to_pylist() for o in (refined[0], out)]
    assert [(r["clip_id"], r["text"]) for r in captions[1]] == [(r["clip_id"], r["text"]) for r in captions[0]]
    record = json.load(open(out / "versions" / "refine-r1.json"))
    assert record["runner"] == "ray"


@pytest.mark.slow
def test_min_margin_keeps_captions_the_student_wins_only_narrowly(world, tmp_path):
    """refine --min-margin: the student's candidate (the selector's choice on every clip) replaces a caption
    only where it scores 0.4 above it, not where it wins by 0.1; both kinds are counted and recorded."""
    source, config = world
    out = tmp_path / "world"
    shutil.copytree(source, out)
    done = refine_cli(out, config, "--rounds", "1", "--loss", "mle", "--min-margin", "0.25",
                      "--selector", "refine_selectors:StudentWinsByKnownMargins")
    assert done.returncode == 0, done.stderr + done.stdout
    before = {r["clip_id"]: r for r in pq.read_table(out / "index.parquet").to_pylist()}
    after = version(out, "refine-r1")
    captioned = set(pq.read_table(out / "refine" / "r1" / "captions.parquet").column("clip_id").to_pylist())
    wide = {c for c in captioned if student_wins(c)}
    assert len(wide) >= 5 and len(captioned - wide) >= 5, "the tiny student wrote too few usable captions"
    for clip_id, row in after.items():
        if clip_id in wide:
            assert row["caption_teacher"] == "student-r1" and row["score"] == pytest.approx(0.9)
        else:
            assert (row["caption"], row["caption_teacher"]) == (before[clip_id]["caption"],
                                                                before[clip_id]["caption_teacher"])
            assert row["score"] == pytest.approx(0.5)
    record = json.loads((out / "versions" / "refine-r1.json").read_text())
    assert record["min_margin"] == 0.25
    assert (record["counts"]["changed"], record["counts"]["kept_under_margin"]) == (len(wide),
                                                                                     len(captioned - wide))


def test_refine_errors_name_the_input(world, tmp_path):
    source, config = world
    done = refine_cli(tmp_path, config, "--rounds", "1")
    assert done.returncode == 2 and "index.parquet is missing" in done.stderr
    done = refine_cli(source, config, "--rounds", "1", "--from-version", "nope")
    assert done.returncode == 2 and "no caption version 'nope'" in done.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"decoder": {"kind": "sideways"}}')
    done = refine_cli(source, bad, "--rounds", "1")
    assert done.returncode == 2 and str(bad) in done.stderr
    done = refine_cli(source, config, "--rounds", "1", "--selector", "nonexistent")
    assert done.returncode == 2 and "unknown selector" in done.stderr


@pytest.mark.slow
def test_two_worker_ray_train_run_matches_the_single_process_loss_curve(world, tmp_path):
    from vidcurate.pipelines.train.student.loop import StudentTrainOptions, train_student

    source, _ = world
    config = StudentConfig.model_validate(TINY)

    def run(workers, name):
        options = StudentTrainOptions(config=config, control=NoiseControl(loss="mle", epsilon=0.0), epochs=4,
                                      lr=3e-3, batch_size=8, device="cpu", progress=False, workers=workers)
        return train_student(str(source), None, str(tmp_path / name), options, echo=lambda line: None)

    single, ddp = run(0, "single"), run(2, "ddp")
    assert ddp["training"]["workers"] == 2
    for a, b in zip(single["history"], ddp["history"]):
        assert math.isclose(a["loss"], b["loss"], rel_tol=0.1), (single["history"], ddp["history"])
    load_student(str(tmp_path / "ddp"))


@pytest.mark.slow
def test_the_student_is_a_teacher_inside_a_build(corpus, refined, tmp_path):
    out, _, _ = refined
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"pipeline": [
        {"op": "probe"}, {"op": "split_shots"},
        {"op": "extract_clips", "max_height": 144, "preset": "ultrafast", "asr_audio": False},
        {"op": "metadata_teacher"},
        {"op": "student_teacher", "model": str(out / "refine" / "r2" / "student-f0"), "device": "cpu"},
        {"op": "consensus_selector"}]}))
    built = tmp_path / "built"
    done = run_cli("build", "--input", str(corpus["manifest"]), "--output", str(built), "--config", str(config),
                   "--max-failure-ratio", "0.8")
    assert done.returncode == 0, done.stderr
    stats = json.load(open(built / "stats.json"))["counters"]
    ran = stats.get("student_teacher.captioned", 0) + sum(v for k, v in stats.items()
                                                          if k.startswith("student_teacher.candidate_rejected."))
    clips = pq.read_table(built / "index.parquet").num_rows
    assert clips and ran == clips  # every clip was captioned by the student, or its output rejected with a reason


def test_human_corrections_replace_their_clips_captions_in_pretraining_then_fine_tune(world, tmp_path):
    """With a labels file, a corrected clip pre-trains on its correction (not the version's caption), then
    the corrections fine-tune the student; corrections_in_pretrain=False leaves pre-training as it was."""
    from vidcurate.pipelines.train.student.data import correction_examples, version_examples, with_corrections
    from vidcurate.pipelines.train.student.loop import StudentTrainOptions, train_student

    out, _ = world
    labels = str(out / "labels.parquet")
    _, examples = version_examples(str(out), None)
    corrections = correction_examples(labels, {e.clip_id for e in examples})
    assert corrections, "the synthetic world's annotators write corrections"
    mixed, replaced = with_corrections(examples, corrections)
    fixed = {c.clip_id: c.caption for c in reversed(corrections)}  # the first annotator's, per clip
    assert replaced == len(fixed) and len(mixed) == len(examples)
    for before, after in zip(examples, mixed):
        assert after.caption == fixed.get(before.clip_id, before.caption)
        assert after.score == (None if before.clip_id in fixed else before.score)
    config = StudentConfig.model_validate(TINY)
    for mix in (True, False):
        options = StudentTrainOptions(config=config, epochs=1, finetune_epochs=1, batch_size=8, lr=3e-3,
                                      device="cpu", progress=False, corrections_in_pretrain=mix)
        summary = train_student(str(out), None, str(tmp_path / f"student-{mix}"), options, labels,
                                echo=lambda line: None)
        training = summary["training"]
        assert training["corrections"] == len(corrections)
        assert (training["corrected_in_pretrain"] > 0) is mix and training["corrected_in_pretrain"] <= replaced
        assert [e["phase"] for e in summary["history"]] == ["pretrain", "finetune"]


def test_shift_augmentation_moves_the_training_frames_reproducibly_and_is_recorded(world, tmp_path):
    """StudentTrainOptions.shift (refine --shift) rolls each training batch's frames: the loss curve differs
    from an unshifted run's, is the same on a second run with the same seed (so a resumed training still
    reaches the same weights), and the student's provenance names it; a negative shift is refused."""
    from vidcurate.pipelines.train.retriever.data import TrainingDataError
    from vidcurate.pipelines.train.student.loop import StudentTrainOptions, train_student

    out, _ = world
    config = StudentConfig.model_validate(TINY)

    def losses(shift, name):
        options = StudentTrainOptions(config=config, epochs=2, finetune_epochs=0, batch_size=8, lr=3e-3,
                                      device="cpu", progress=False, shift=shift)
        summary = train_student(str(out), None, str(tmp_path / name), options, echo=lambda line: None)
        assert summary["training"]["shift"] == shift
        return [e["loss"] for e in summary["history"]]

    shifted = losses(6, "shifted")
    assert shifted == losses(6, "shifted-again")
    assert shifted != losses(0, "still")
    with pytest.raises(TrainingDataError, match="shift"):
        StudentTrainOptions(config=config, shift=-1).check()


def test_the_contrastive_loss_trains_beside_captioning_and_its_heads_are_saved(world, tmp_path):
    """StudentConfig.contrastive (CoCa): the epoch metrics carry the contrastive loss, it falls while
    the student learns, the trained clip tokens find their own captions in a batch more often than
    chance, and the checkpoint (with the contrastive heads) loads to the same similarities."""
    from vidcurate.pipelines.train.student.loop import StudentTrainOptions, train_student

    out, _ = world
    config = StudentConfig.model_validate({**TINY, "contrastive": 0.5})
    options = StudentTrainOptions(config=config, epochs=15, finetune_epochs=0, batch_size=8, lr=3e-3, device="cpu",
                                  progress=False)
    lines = []
    summary = train_student(str(out), None, str(tmp_path / "student"), options, echo=lines.append)
    contrast = [e["contrastive_loss"] for e in summary["history"]]
    assert all(c is not None for c in contrast) and contrast[-1] < contrast[0] - 0.2, contrast
    assert "contrastive" in lines[-1]
    student = load_student(str(tmp_path / "student"))
    assert student.config.contrastive == 0.5
    from vidcurate.pipelines.train.frame_store import frame_store
    from vidcurate.pipelines.train.retriever.data import index_rows
    from vidcurate.pipelines.train.student.data import version_examples

    _, examples = version_examples(str(out), None)
    examples = examples[:16]
    frames = frame_store(str(out), [e.clip_id for e in examples], config.num_frames, config.frame_size,
                         index_rows(str(out)), progress=False)
    stacked = torch.from_numpy(np.stack([frames[e.clip_id] for e in examples]))
    captions = [e.caption for e in examples]
    with torch.no_grad():
        similarity = student(stacked, captions).similarity
        again = load_student(str(tmp_path / "student"))(stacked, captions).similarity
    frames.close(remove=True)
    assert torch.allclose(similarity, again)
    def mean_rank(sim):  # of each clip's own caption among the 16 (identical captions share the best rank)
        return float(np.mean([1 + sum(float(sim[n, j]) > float(sim[n, n]) for j in range(len(captions))
                                      if captions[j] != captions[n]) for n in range(len(captions))]))

    torch.manual_seed(0)
    untrained = create_student(config, captions).eval()
    with torch.no_grad():
        before = mean_rank(untrained(stacked, captions).similarity)
    assert mean_rank(similarity) < before - 1.5, (mean_rank(similarity), before)
    plain = create_student(StudentConfig.model_validate(TINY), captions)
    assert plain(stacked, captions).similarity is None and not hasattr(plain, "contrast_video")

"""`vidcurate bench [NAME ...] [--quick] [--json FILE]`: the suite runs its benchmarks and prints
their ratios (never timed assertions: only that each figure is there and is a number)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import run_cli
from vidcurate.pipelines.bench.scenes import score
from vidcurate.pipelines.cli.bench import _suite_call


def test_names_and_suite_flags_run_the_suite_and_anything_else_one_benchmark():
    assert _suite_call([]) == {"names": [], "quick": False, "json": None, "workdir": None}
    assert _suite_call(["split", "shards", "--quick", "--json", "f.json"]) == {
        "names": ["split", "shards"], "quick": True, "json": "f.json", "workdir": None}
    assert _suite_call(["--json=f.json", "--workdir", "w", "loader"])["workdir"] == "w"
    assert _suite_call(["split", "--seconds", "10"]) is None  # split with its own options
    assert _suite_call(["split", "--json"]) is None  # a flag without its value: click reports it
    assert _suite_call(["--help"]) is None
    # --quick always means the suite's tiny size; a benchmark's own smaller preset is --small
    assert _suite_call(["refinement", "--quick"])["quick"] and _suite_call(["refinement", "--small"]) is None
    for name in ("selection", "refinement"):
        shown = run_cli("bench", name, "--help").stdout
        assert "--small" in shown and "  --quick" not in shown


def test_a_detected_cut_counts_once_within_the_tolerance():
    assert score([10, 11, 50, 90], [10, 52, 70]) == (2, 4, 3)  # 10 and 50 hit; 11 is 10's twin; 90 is wrong
    assert score([], [5]) == (0, 0, 1)


@pytest.mark.slow
def test_the_quick_suite_prints_a_table_of_ratios_and_writes_every_figure(tmp_path):
    figures = tmp_path / "bench.json"
    done = run_cli("bench", "scenes", "shards", "loader", "--quick", "--json", str(figures),
                   "--workdir", str(tmp_path / "work"), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    suite = json.loads(figures.read_text())
    assert list(suite["benchmarks"]) == ["scenes", "shards", "loader"] and suite["quick"]
    assert suite["machine"]["cpus"] >= 1
    for name, entry in suite["benchmarks"].items():
        assert entry["headlines"] and entry["result"], name
        for headline in entry["headlines"]:
            assert math.isfinite(headline["value"]) and headline["label"] in done.stdout, headline
    scenes = suite["benchmarks"]["scenes"]["result"]
    assert set(scenes["detectors"]) == {"ours (split_shots content)", "ours (split_shots transnetv2)",
                                        "PySceneDetect detect(ContentDetector)"}
    assert scenes["true_cuts"] > 0 and all(0 <= d["recall"] <= 1 for d in scenes["detectors"].values())
    assert "shot detection on" in done.stdout and "training loader on" in done.stdout  # each one's own report
    assert "vidcurate bench --quick:" in done.stdout and "no verdicts" in done.stdout


@pytest.mark.slow
def test_bench_scaling_and_build_memory_measure_their_two_points(tmp_path):
    figures = tmp_path / "bench.json"
    done = run_cli("bench", "scaling", "build-memory", "--quick", "--json", str(figures), "--workdir",
                   str(tmp_path / "work"), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    memory = json.loads(figures.read_text())["benchmarks"]["build-memory"]["result"]
    assert memory["long"]["clips"] > memory["short"]["clips"] > 0
    assert memory["ratio"] == memory["long"]["peak_rss_mib"] / memory["short"]["peak_rss_mib"] > 0
    assert "peak RSS long / short" in done.stdout
    result = json.loads(figures.read_text())["benchmarks"]["scaling"]["result"]
    local = result["runners"]["local"]
    assert set(local["points"]) == ({"1", "2"} if result["cores"] >= 2 else {"1"})
    for point in local["points"].values():
        assert point["clips"] > 0 and point["seconds"] > 0 and point["stages"]["extract_clips"] > 0
    assert 0 <= local["serial_seconds"] < local["points"]["1"]["seconds"]
    if result["cores"] >= 2:
        assert "predicts" in done.stdout and "clips/s with 2 CPUs / with 1" in done.stdout


@pytest.mark.slow
def test_bench_refinement_starts_from_one_teachers_captions_and_scores_every_loss(tmp_path):
    """A tiny `bench refinement --corrections --folds 1`: round 0 is colour_blind's captions alone (scored as
    `synth score` scores that teacher's candidates), each loss writes a round whose rows carry every
    figure, and each round's student is fine-tuned on the labels' human corrections."""
    import pyarrow.parquet as pq

    from vidcurate.pipelines.synth.score import score
    from vidcurate.pipelines.synth.world import ATTRIBUTES

    work = tmp_path / "work"
    done = run_cli("bench", "refinement", "--clips", "24", "--epochs", "1", "--rounds", "1", "--noise", "0.4",
                   "--retriever-epochs", "1", "--corrections", "--folds", "1", "--workdir", str(work), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((work / "bench_refinement.json").read_text())
    assert result["round0"] == "teacher" and result["teacher"] == "colour_blind" and result["corrections"]
    assert result["folds"] == 1
    labels = pq.read_table(work / "world-24-0-0.4" / "labels.parquet").to_pylist()
    assert any(r["corrected"] for r in labels)
    rows = result["noises"]["0.4"]["rows"]
    assert list(rows) == ["consensus of the six teachers (reference)", "retriever over the six teachers (reference)",
                          "round 0 (colour_blind alone)", "mle, round 1", "tailr, round 1", "adatailr, round 1"]
    truth = pq.read_table(work / "world-24-0-0.4" / "truth.parquet").to_pylist()
    held = [r for r in truth if not r["labelled"]]
    alone = {r["clip_id"]: next(c["text"] for c in r["candidates"] if c["teacher"] == "colour_blind") for r in held}
    assert rows["round 0 (colour_blind alone)"]["selected"]["accuracy"] == pytest.approx(score(held, alone)["overall"])
    for loss in ("mle", "tailr", "adatailr"):
        row = rows[f"{loss}, round 1"]
        assert 0 <= row["changed"] <= len(truth) and row["steps"] > 0
        for column in ("selected", "student_greedy", "student_panda", "oracle"):
            assert 0 <= row[column]["accuracy"] <= 1 and 0 <= row[column]["distinct_2"] <= 1
            attributes = row[column]["attributes"]  # their mean is the attribute accuracy
            assert set(attributes) == set(ATTRIBUTES)
            assert sum(attributes.values()) / len(attributes) == pytest.approx(row[column]["accuracy"])
        # the selector's treatment of the student, and the round replayed with score margins
        found, start = row["selector"], rows["round 0 (colour_blind alone)"]["selected"]
        assert found["worse_taken"] <= found["worse"] and found["better_taken"] <= found["better"]
        assert found["worse"] + found["better"] <= len(held)
        changed = [found["margins"][m]["changed"] for m in ("0.1", "0.2", "0.3", "0.5")]
        assert changed == sorted(changed, reverse=True)
        for replay in found["margins"].values():
            if replay["changed"] == 0:  # nothing changed: round 0's captions
                assert replay["accuracy"] == pytest.approx(start["accuracy"])
        # a perfect pick between round 0 and the student is never worse than either
        assert row["oracle"]["accuracy"] >= max(row["student_greedy"]["accuracy"],
                                                rows["round 0 (colour_blind alone)"]["selected"]["accuracy"])
        copy = work / f"refine-teacher-scratch-0.4-{loss}-corrections-folds1-rmotion"  # the default pooling
        version = pq.read_table(copy / "versions" / "refine-r1.parquet")
        assert version.num_rows == len(truth)
        history = json.loads((copy / "refine" / "r1" / "student" / "metrics.json").read_text())["history"]
        phases = [e["phase"] for e in history]
        assert phases == ["pretrain"] + ["finetune"] * (len(phases) - 1) and len(phases) > 1
    assert "round 0: colour_blind's captions alone" in done.stdout and "AdaTaiLr >= TaiLr" in done.stdout
    assert "the student starts from scratch" in done.stdout and "human corrections" in done.stdout
    assert "one student learns and captions every clip" in done.stdout
    assert "mle, round 1: the selector took the student's caption where it was worse on" in done.stdout
    greedy = rows["mle, round 1"]["student_greedy"]["attributes"]
    line = next(l for l in done.stdout.splitlines() if l.startswith("mle, round 1: student greedy"))
    assert line.split()[-len(ATTRIBUTES):] == [f"{greedy[a]:.1%}" for a in ATTRIBUTES]


@pytest.mark.slow
def test_bench_refinement_freezes_the_retrievers_tower_passes_contrastive_and_margin_on_and_rejudges(tmp_path):
    """`bench refinement --student-init retriever-frozen --contrastive W --min-margin M --rejudge`: the
    student's frame encoder is the world's retriever's video tower and stays exactly that through training,
    the student trains with the contrastive loss, the round is selected with the margin, and the report says
    so; the round's candidates are judged on the labelled clips only (the world's own labels untouched), a
    retriever fine-tuned from the round's on them re-selects the round as a version of its own."""
    import pyarrow.parquet as pq
    from safetensors.torch import load_file

    from vidcurate.schemas.labels import read_labels

    work = tmp_path / "work"
    done = run_cli("bench", "refinement", "--clips", "24", "--epochs", "2", "--rounds", "1", "--noise", "0.4",
                   "--retriever-epochs", "1", "--losses", "mle", "--student-init", "retriever-frozen",
                   "--contrastive", "0.5", "--min-margin", "0.2", "--rejudge", "--retriever-shift", "4", "--retriever-pooling", "motion",
                   "--retriever-spatial", "grid_max", "--workdir", str(work), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((work / "bench_refinement.json").read_text())
    assert (result["student_init"], result["contrastive"], result["min_margin"]) == ("retriever-frozen", 0.5, 0.2)
    copy = work / "refine-teacher-retriever-frozen-0.4-mle-folds1-contrastive0.5-margin0.2-rshift4-rmotion-rgrid_max"
    student = copy / "refine" / "r1" / "student"
    config = json.loads((student / "config.json").read_text())
    assert config["video_trainable"] is False and config["contrastive"] == 0.5 and config["video_init"]
    # --retriever-pooling and --retriever-spatial: the frozen tower's too
    assert (config["video"]["pooling"], config["video"]["spatial"]) == ("motion", "grid_max")
    theirs, mine = load_file(str(work / "retriever-world-24-0-0.4-shift4-motion-grid_max" / "model.safetensors")), \
        load_file(str(student / "model.safetensors"))
    tower = [k for k in mine if k.startswith("video.")]
    assert tower and all(torch.equal(mine[k], theirs[k]) for k in tower)  # frozen: the retriever's weights
    history = json.loads((student / "metrics.json").read_text())["history"]
    assert all(e["contrastive_loss"] is not None for e in history)
    assert json.loads((copy / "versions" / "refine-r1.json").read_text())["min_margin"] == 0.2
    assert "video tower, frozen" in done.stdout and "contrastive loss at weight 0.5" in done.stdout
    assert "score margin of 0.2" in done.stdout and "pools each frame's features with grid_max" in done.stdout
    # --rejudge
    world = work / "world-24-0-0.4"
    truth = pq.read_table(world / "truth.parquet").to_pylist()
    base, judged = read_labels(str(world / "labels.parquet")), read_labels(str(copy / "labels-refine-r1.parquet"))
    added = judged[len(base):]
    assert judged[:len(base)] == base and added and read_labels(str(copy / "labels.parquet")) == base
    assert {r["clip_id"] for r in added} <= {r["clip_id"] for r in truth if r["labelled"]}
    version = {r["clip_id"]: r for r in pq.read_table(copy / "versions" / "refine-r1.parquet").to_pylist()}
    assert all({(c["teacher"], c["text"]) for c in r["candidates"]} ==
               {(c["teacher"], c["text"]) for c in version[r["clip_id"]]["candidates"]} for r in added)
    retriever = copy / "refine" / "r1" / "retriever-rejudged"
    training = json.loads((retriever / "metrics.json").read_text())["training"]
    assert training["labels"] == str(copy / "labels-refine-r1.parquet") and training["judgments"] == len(judged)
    record = json.loads((copy / "versions" / "refine-r1-rejudged.json").read_text())
    assert record["from_version"] == "refine-r1" and record["selector_settings"]["model"] == str(retriever)
    row = result["noises"]["0.4"]["rows"]["mle r1, selector tuned on its judgments"]
    assert row["rejudged"] and 0 <= row["selected"]["accuracy"] <= 1 and "margins" in row["selector"]
    assert "mle r1, selector tuned on its judgments: the selector took" in done.stdout
    assert "re-selected by its retriever fine-tuned further" in done.stdout
    # --retriever-shift: both retrievers trained on shifted batches; what each tells apart is printed
    assert json.loads((work / "retriever-world-24-0-0.4-shift4-motion-grid_max" / "metrics.json").read_text())["training"]["shift"] == 4
    assert training["shift"] == 4 and "retrievers trained on batches shifted by up to 4 px" in done.stdout
    probes = result["noises"]["0.4"]["probes"]
    assert list(probes) == ["the world's retriever (round selector)", "mle r1, selector tuned on its judgments"]
    held = sum(not r["labelled"] for r in truth)
    moving = sum(json.loads(r["attributes"])["motion"] == "moving" for r in truth if not r["labelled"])
    for found in probes.values():
        assert found["shape"]["pairs"] == held and found["direction"]["pairs"] == moving
        assert all(v["true_preferred"] is None or 0 <= v["true_preferred"] <= 1 for v in found.values())
    assert "what the selector tells apart" in done.stdout and "pools frames with motion" in done.stdout


def test_bench_encoder_trains_the_students_frame_encoder_on_true_attributes_and_scores_unseen_clips(tmp_path):
    """`bench encoder`: the student's frame encoder learns half of a noise-free world's clips (refine --folds 2's
    split) from their true attributes and is scored on the other half, beside the unseen clips' majority share;
    it learns the clips it sees (background, which a few epochs memorize, well above chance)."""
    from collections import Counter

    import pyarrow.parquet as pq

    from vidcurate.pipelines.train.student.data import in_fold

    work = tmp_path / "work"
    done = run_cli("bench", "encoder", "--clips", "40", "--epochs", "10", "--workdir", str(work), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((work / "bench_encoder.json").read_text())
    truth = pq.read_table(work / "world-40-0" / "truth.parquet").to_pylist()
    unseen = [r for r in truth if in_fold(r["clip_id"], 0, 2, 0)]
    assert result["unseen_clips"] == len(unseen) and result["learned_clips"] == len(truth) - len(unseen) > 0
    shapes = Counter(json.loads(r["attributes"])["shape"] for r in unseen)
    assert result["majority"]["shape"] == pytest.approx(max(shapes.values()) / len(unseen))
    for part in ("unseen", "learned"):
        assert set(result[part]) == {"shape", "colour", "count", "size", "direction", "background"}
        assert all(0 <= v <= 1 for v in result[part].values())
    assert result["learned"]["background"] >= 0.8 and len(result["history"]) == 10
    assert "unseen  learned  majority" in done.stdout and "background" in done.stdout


def test_bench_encoder_refuses_an_unknown_augmentation_by_name():
    done = run_cli("bench", "encoder", "--augment", "flip")
    assert done.returncode == 2 and "flip" in done.stderr

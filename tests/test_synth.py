"""The synthetic world (pipelines/synth): a dataset whose true content is known, in a build's format."""
from __future__ import annotations

import io
import json
import os
import random
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import index_table, run_cli, shard_samples, synth_world
from vidcurate.operators.probe import ProbeVideo
from vidcurate.operators.split.shots import ShotSplit
from vidcurate.pipelines.synth.captions import read_attributes, realize
from vidcurate.pipelines.synth.score import dataset_scores, score
from vidcurate.pipelines.synth.teachers import _stated
from vidcurate.pipelines.synth.world import ATTRIBUTES, draw_world
from vidcurate.pipelines.synth.write import SynthOptions, truth_and_labels
from vidcurate.schemas.labels import LabelsFileError, read_labels


def synth(out, clips, seed, noise, *extra):
    return synth_world(out, "--clips", str(clips), "--seed", str(seed), "--noise", str(noise), *extra)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict:
    """Three small datasets through the CLI: seed 5 twice (one with its source videos), seed 6 at noise 0.2."""
    root = tmp_path_factory.mktemp("synth")
    first = synth(root / "a", 24, 5, 0.4, "--sources")
    synth(root / "b", 24, 5, 0.4)
    synth(root / "c", 24, 6, 0.2)
    return {"a": root / "a", "b": root / "b", "c": root / "c", "stdout": first.stdout}


def truth_of(out) -> list[dict]:
    return pq.read_table(os.path.join(out, "truth.parquet")).to_pylist()


def test_the_same_seed_gives_the_same_bytes_and_another_seed_differs(worlds):
    for name in ("truth.parquet", "labels.parquet"):
        same = [open(os.path.join(worlds[w], name), "rb").read() for w in ("a", "b")]
        assert same[0] == same[1], name
        assert same[0] != open(os.path.join(worlds["c"], name), "rb").read(), name
    assert [(r["clip_id"], r["caption"]) for r in index_table(worlds["a"])] == \
           [(r["clip_id"], r["caption"]) for r in index_table(worlds["b"])]
    assert {r["clip_id"] for r in truth_of(worlds["a"])}.isdisjoint(r["clip_id"] for r in truth_of(worlds["c"]))
    assert re.search(r"24 clips from \d+ source videos .* clips/s\)", worlds["stdout"]), worlds["stdout"]


def test_every_sample_decodes_and_the_index_and_shards_match_the_truth(worlds):
    import av

    out = worlds["a"]
    truth = {r["clip_id"]: r for r in truth_of(out)}
    index = index_table(out)
    assert sorted(r["clip_id"] for r in index) == sorted(truth)
    samples = shard_samples(out)
    assert sorted(samples) == sorted(truth)
    for row in index:
        sample, expected = samples[row["clip_id"]], truth[row["clip_id"]]
        with av.open(io.BytesIO(sample["mp4"])) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == expected["end_frame"] - expected["start_frame"] == row["num_frames"]
        assert frames[0].shape == (120, 160, 3)
        meta = json.loads(sample["json"])
        shown = [(c["teacher"], c["text"]) for c in meta["candidates"]]
        assert shown == [(c["teacher"], c["text"]) for c in expected["candidates"]]
        assert sample["txt"].decode() == row["caption"] == meta["caption"] and row["caption"] in dict(shown).values()
        assert meta["selector"].startswith("consensus_selector") and all(c["score"] is not None
                                                                          for c in meta["candidates"])
    for name in ("README.md", "report.html", "rejects.parquet", "stats.json", "config.resolved.yaml"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    assert pq.read_table(os.path.join(out, "rejects.parquet")).num_rows == 0


def test_the_real_splitter_finds_the_cuts_of_multi_shot_sources(worlds):
    out = worlds["a"]
    by_video: dict[str, list[int]] = {}
    for row in truth_of(out):
        by_video.setdefault(row["video_id"], []).append(row["start_frame"])
    multi = {v: sorted(starts) for v, starts in by_video.items() if len(starts) > 1}
    assert multi, "the seed gives no multi-shot source: the test would prove nothing"
    for video_id, starts in multi.items():
        path = os.path.join(out, "sources", f"{video_id}.mp4")
        records = ShotSplit(min_clip_seconds=0)(ProbeVideo()([{"uri": path, "video_id": video_id}]))
        found = sorted(r["start_frame"] for r in records if r.get("status", "ok") == "ok")
        assert len(found) == len(starts) and all(abs(a - b) <= 2 for a, b in zip(found, starts)), (found, starts)


def test_labels_read_back_and_a_malformed_file_names_file_row_and_column(worlds, tmp_path):
    path = os.path.join(worlds["a"], "labels.parquet")
    rows = read_labels(path)
    truth = {r["clip_id"]: r for r in truth_of(worlds["a"])}
    assert rows and {r["clip_id"] for r in rows} == {c for c, r in truth.items() if r["labelled"]}
    for row in rows:
        assert sorted(c["teacher"] for c in row["candidates"]) == sorted(c["teacher"] for c in truth[row["clip_id"]]["candidates"])
        assert -1 <= row["choice"] < len(row["candidates"])

    table = pq.read_table(path)
    missing = tmp_path / "missing.parquet"
    pq.write_table(table.drop(["choice"]), missing)
    with pytest.raises(LabelsFileError, match=rf"{re.escape(str(missing))}.*missing column\(s\) choice"):
        read_labels(str(missing))
    bad = table.to_pylist()
    bad[2]["choice"] = len(bad[2]["candidates"])
    wrong = tmp_path / "wrong.parquet"
    pq.write_table(pa.Table.from_pylist(bad, schema=table.schema), wrong)
    with pytest.raises(LabelsFileError, match=rf"{re.escape(str(wrong))}', row 3, column 'choice'"):
        read_labels(str(wrong))
    lines = tmp_path / "labels.jsonl"
    lines.write_text(json.dumps({"clip_id": "c", "annotator": "x", "candidates": [{"teacher": "t", "text": "A dog."}],
                                 "choice": 0, "acceptable": [0, 4], "created_at": "2024-01-01T00:00:00Z"}) + "\n")
    with pytest.raises(LabelsFileError, match=r"row 1, column 'acceptable'"):
        read_labels(str(lines))


def _features(rows, vectorizer, teachers, fit=False):
    from scipy.sparse import csr_matrix, hstack

    texts = [c["text"] for candidates in rows for c in candidates]
    words = vectorizer.fit_transform(texts) if fit else vectorizer.transform(texts)
    extra = [[len(t.split()), len(t) / 10, *(c["teacher"] == name for name in teachers)]
             for candidates in rows for c, t in zip(candidates, [c["text"] for c in candidates])]
    return hstack([words, csr_matrix(np.array(extra, float))]).tocsr()


def _pick_rate(held_out, scores) -> float:
    hits, offset = 0, 0
    for row in held_out:
        n = len(row["candidates"])
        hits += not row["candidates"][int(np.argmax(scores[offset:offset + n]))]["errors"]
        offset += n
    return hits / len(held_out)


@pytest.mark.parametrize("noise", [0.2, 0.4])
def test_a_text_only_picker_trained_on_the_labels_does_no_better_than_random(noise):
    """The shortcut check: logistic regression on words, length and teacher name, trained on the
    labelled clips' judgments, picks a candidate per held-out clip. Within 5 points of random
    (about 3.5 standard errors at ~1250 clips) or the world gives the answer away."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    options = SynthOptions(clips=2500, seed=11, noise=noise)
    truth, labels = truth_and_labels(draw_world(options.clips, options.seed, noise), options)
    teachers = sorted({c["teacher"] for r in truth for c in r["candidates"]})
    shown, target = [], []
    for label in labels:  # acceptable marks where given, else the choice
        good = set(label["acceptable"]) if label["acceptable"] is not None else {label["choice"]} - {-1}
        shown.append(label["candidates"])
        target += [int(i in good) for i in range(len(label["candidates"]))]
    vectorizer = CountVectorizer(ngram_range=(1, 2))
    model = LogisticRegression(max_iter=500).fit(_features(shown, vectorizer, teachers, fit=True), target)
    held_out = [r for r in truth if not r["labelled"] and any(not c["errors"] for c in r["candidates"])]
    picker = _pick_rate(held_out, model.predict_proba(
        _features([r["candidates"] for r in held_out], vectorizer, teachers))[:, 1])
    random_rate = float(np.mean([np.mean([not c["errors"] for c in r["candidates"]]) for r in held_out]))
    cheat = _pick_rate(held_out, np.array([not c["errors"] for r in held_out for c in r["candidates"]], float))
    print(f"\nnoise {noise}: text-only picker {picker:.1%}, random pick {random_rate:.1%}, truth-seeing cheat "
          f"{cheat:.1%} on {len(held_out)} held-out clips")
    assert cheat == 1.0
    assert abs(picker - random_rate) <= 0.05


def test_score_prints_accuracy_faithful_share_and_agrees_with_the_candidates_errors(worlds):
    for name in ("a", "c"):
        done = run_cli("synth", "score", str(worlds[name]))
        assert done.returncode == 0, done.stderr
        print(f"\n{name}: {done.stdout}")
        assert all(re.search(rf"{a} \d+\.\d%", done.stdout) for a in ATTRIBUTES)
        assert re.search(r"faithful captions: \d+\.\d% .*random pick \d+\.\d%; best candidate", done.stdout)
        assert "human-human agreement" in done.stdout
        # The caption parser's verdict equals the errors the teachers made, clip by clip.
        truth = {r["clip_id"]: r for r in truth_of(worlds[name])}
        index = index_table(worlds[name])
        by_errors = np.mean([not next(c for c in truth[r["clip_id"]]["candidates"]
                                      if c["teacher"] == r["caption_teacher"])["errors"] for r in index])
        assert dataset_scores(str(worlds[name]))["all"]["faithful"] == pytest.approx(by_errors)


def test_score_takes_any_captions_and_a_caption_is_read_in_any_words():
    options = SynthOptions(clips=300, seed=2, noise=0.3)
    sources = draw_world(options.clips, options.seed, options.noise)
    truth, _ = truth_and_labels(sources, options)
    assert score(truth, {r["clip_id"]: r["caption"] for r in truth})["faithful"] == 1.0
    recoloured = {r["clip_id"]: re.sub(r"\b(red|orange|yellow|green|blue|purple)\b", "pink", r["caption"])
                  for r in truth}
    result = score(truth, recoloured)
    assert result["attributes"]["colour"] == 0.0 and result["attributes"]["shape"] == 1.0 and result["faithful"] == 0
    assert score(truth, {})["overall"] == 0.0
    rng = random.Random(0)
    shot = sources[0].shots[0]
    texts = {realize(_stated(shot), rng) for _ in range(30)}
    assert len(texts) > 10 and all(read_attributes(t) == shot.attributes for t in texts)
    assert read_attributes("A big blue star drifting up over a plain white background.") == {
        "shape": "star", "colour": "blue", "count": 1, "size": "large", "motion": "moving", "direction": "up",
        "background": "white"}


def test_bad_arguments_and_a_folder_that_is_not_synthetic_exit_2_with_one_line(tmp_path):
    for args in (["synth", "--clips", "5", "--noise", "0.9", "--output", str(tmp_path / "x")],
                 ["synth", "--clips", "0", "--output", str(tmp_path / "x")],
                 ["synth", "--clips", "5"],
                 ["synth", "score", str(tmp_path)]):
        done = run_cli(*args)
        assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("not a dataset")
    done = run_cli("synth", "--clips", "2", "--output", str(tmp_path / "other"))
    assert done.returncode == 2 and "holds no synthetic dataset" in done.stderr


@pytest.mark.slow
def test_consensus_and_random_pick_rates_at_noise_0_2_and_0_4(tmp_path):
    """Measured, not tuned: the consensus selection's faithful share against a random pick's."""
    for noise in (0.2, 0.4):
        out = tmp_path / f"noise-{noise}"
        synth(out, 200, 21, noise)
        scores = dataset_scores(str(out))
        print(f"\nnoise {noise}: {run_cli('synth', 'score', str(out)).stdout}")
        held = scores["held_out"]
        assert held["random"] <= held["oracle"] and held["clips"] + sum(
            r["labelled"] for r in truth_of(out)) == 200


def test_annotator_accuracy_sets_human_human_agreement_and_the_default_is_near_pandas():
    """More accurate annotators agree more often; the default (0.6) lands near Panda-70M's 44.9%."""
    from vidcurate.pipelines.synth.annotators import AnnotatorConfig, agreement

    sources = draw_world(1500, 3, 0.2)
    rates = []
    for accuracy in (0.4, 0.6, 0.9):
        options = SynthOptions(clips=1500, seed=3, noise=0.2, annotators=AnnotatorConfig(accuracy=accuracy))
        share, pairs = agreement(truth_and_labels(sources, options)[1])
        assert pairs > 500
        rates.append(share)
    print(f"\nagreement at accuracy 0.4 / 0.6 / 0.9: {' / '.join(f'{r:.1%}' for r in rates)}")
    assert rates[0] + 0.05 < rates[1] < rates[2] - 0.2
    assert 0.38 <= rates[1] <= 0.52


def test_synth_annotate_judges_a_versions_candidates_of_labelled_clips_only_and_adds_nothing_twice(tmp_path):
    """A version whose candidates are each clip's true caption (as "student-r1") and a recoloured copy of it:
    the world's annotators judge only labelled clips, read the recoloured one as wrong, mostly choose the
    true one (careful with probability 0.7), and a second run adds no judgment."""
    from vidcurate.operators.write.versions import write_version

    out = tmp_path / "world"
    synth(out, 30, 8, 0.4)
    truth = truth_of(out)
    before = read_labels(str(out / "labels.parquet"))

    def candidate(teacher, text):
        return {"teacher": teacher, "modality": "V", "text": text, "model_id": None, "model_revision": None,
                "params": None, "score": None}

    rows = []
    for r in sorted(truth, key=lambda r: r["clip_id"]):
        wrong = re.sub(r"\b(red|orange|yellow|green|blue|purple)\b", "pink", r["caption"])
        rows.append({"clip_id": r["clip_id"], "caption": wrong, "caption_teacher": "colour_blind", "score": None,
                     "selector": "test", "candidates": [candidate("colour_blind", wrong),
                                                        candidate("student-r1", r["caption"])],
                     "error_reason": None})
    write_version(str(out), "round-test", rows, {"selector": "test"})
    done = run_cli("synth", "annotate", str(out), "--version", "round-test")
    assert done.returncode == 0, done.stderr
    print(f"\n{done.stdout}")
    after = read_labels(str(out / "labels.parquet"))
    added = after[len(before):]
    assert after[:len(before)] == before and added
    labelled = {r["clip_id"] for r in truth if r["labelled"]}
    assert {r["clip_id"] for r in added} == labelled  # every labelled clip, no held-out one
    assert all({c["teacher"] for c in r["candidates"]} == {"colour_blind", "student-r1"} for r in added)
    assert min(r["created_at"] for r in added) > max(r["created_at"] for r in before)
    picks = [r["candidates"][r["choice"]]["teacher"] if r["choice"] >= 0 else None for r in added]
    assert picks.count("student-r1") >= 0.6 * len(picks) > picks.count("colour_blind")
    assert f"{len(added)} judgments of {len(labelled)} labelled clips" in done.stdout
    again = run_cli("synth", "annotate", str(out), "--version", "round-test")
    assert again.returncode == 0 and read_labels(str(out / "labels.parquet")) == after
    assert f"({len(labelled)} clips already judged" in again.stdout
    for args in (["--version", "missing"], ["--labels", str(tmp_path / "broken.parquet")]):
        (tmp_path / "broken.parquet").write_text("not parquet")
        done = run_cli("synth", "annotate", str(out), *args)
        assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    done = run_cli("synth", "annotate", str(tmp_path))
    assert done.returncode == 2 and "not a synthetic world" in done.stderr

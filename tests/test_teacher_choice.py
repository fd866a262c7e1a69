"""`vidcurate teachers choose`: Panda-70M's greedy set cover over acceptability labels,
checked on hand-made labels whose greedy order is known, in every supported file format."""
from __future__ import annotations

import json

import pytest

from conftest import run_cli
from vidcurate.pipelines.labels.teacher_choice import Step, choose_teachers

# Ten clips. Alone: A 5, B 4, C 3, D 1, E 1, F 0. Greedy: A (c1-c5); then C, which adds
# c6-c8 (3), not B, the second best alone (4), which adds only c6; after C, B adds nothing.
# D and E tie on c9 and D wins by name; nothing covers c10, so the cover stops at 90%.
ACCEPTABLE = {
    "A": ["c1", "c2", "c3", "c4", "c5"],
    "B": ["c1", "c2", "c3", "c6"],
    "C": ["c6", "c7", "c8"],
    "D": ["c9"],
    "E": ["c9"],
    "F": [],
}
CLIPS = [f"c{i}" for i in range(1, 11)]
EXPECTED = [("A", 5, 0.5), ("C", 3, 0.8), ("D", 1, 0.9)]


def long_rows(acceptable: dict[str, list[str]], clips: list[str], reverse: bool = False) -> list[dict]:
    rows = [{"clip_id": c, "teacher": t, "acceptable": c in ok} for c in clips for t, ok in acceptable.items()]
    return rows[::-1] if reverse else rows


def write(path, rows: list[dict]):
    suffix = path.suffix
    if suffix == ".csv":
        lines = ["clip_id,teacher,acceptable"] + [f"{r['clip_id']},{r['teacher']},{str(r['acceptable']).lower()}"
                                                   for r in rows]
        path.write_text("\n".join(lines) + "\n")
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def wide_rows(acceptable: dict[str, list[str]], clips: list[str]) -> list[dict]:
    return [{"clip_id": c, "acceptable": [t for t, ok in acceptable.items() if c in ok]} for c in clips]


def choose(path, *args: str) -> dict:
    done = run_cli("teachers", "choose", "--labels", str(path), *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def summary(result: dict) -> list[tuple]:
    return [(s["teacher"], s["newly_covered"], round(s["coverage"], 6)) for s in result["steps"]]


# ---- the algorithm -----------------------------------------------------------------------
def test_greedy_picks_the_most_new_clips_not_the_second_best_alone():
    labels = {c: {t for t, ok in ACCEPTABLE.items() if c in ok} for c in CLIPS}
    steps = choose_teachers(labels, ACCEPTABLE, 8)
    assert steps == [Step(1, "A", 5, 5, 0.5, 5), Step(2, "C", 3, 8, 0.8, 3), Step(3, "D", 1, 9, 0.9, 1)]
    assert choose_teachers(labels, ACCEPTABLE, 2) == steps[:2]
    with pytest.raises(ValueError, match="k must be >= 1"):
        choose_teachers(labels, ACCEPTABLE, 0)
    with pytest.raises(ValueError, match="missing from all_teachers: A"):
        choose_teachers(labels, set(ACCEPTABLE) - {"A"}, 3)


# ---- the command line, every format -----------------------------------------------------
@pytest.mark.parametrize("name,rows", [
    ("labels.csv", long_rows(ACCEPTABLE, CLIPS)),
    ("labels.jsonl", long_rows(ACCEPTABLE, CLIPS)),
    ("labels.parquet", long_rows(ACCEPTABLE, CLIPS)),
    ("wide.jsonl", wide_rows(ACCEPTABLE, CLIPS)),
])
def test_known_greedy_order_in_every_format(tmp_path, name, rows):
    result = choose(write(tmp_path / name, rows), "--k", "8")
    assert summary(result) == EXPECTED
    assert [s["alone"] for s in result["steps"]] == [5, 3, 1]
    assert result["clips"] == 10 and result["best_single"] == {"teacher": "A", "covered": 5, "coverage": 0.5}
    assert result["stopped"] == "no_gain"
    assert "no other teacher is acceptable on any of the 1 uncovered clip(s)" in result["message"]
    # The wide form cannot name a teacher that is never acceptable; the long form can.
    assert result["teachers"] == (["A", "B", "C", "D", "E"] if name == "wide.jsonl" else list("ABCDEF"))


def test_table_output(tmp_path):
    done = run_cli("teachers", "choose", "--labels", str(write(tmp_path / "l.csv", long_rows(ACCEPTABLE, CLIPS))))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{tmp_path / 'l.csv'}: 10 clips, 6 teachers"
    assert lines[1] == "best single teacher: A covers 5 clips (50.0%); all 6 together 9 (90.0%)"
    assert lines[2].split() == ["step", "teacher", "newly", "covered", "coverage", "alone"]
    assert [line.split() for line in lines[3:6]] == [["1", "A", "5", "50.0%", "50.0%"],
                                                     ["2", "C", "3", "80.0%", "30.0%"],
                                                     ["3", "D", "1", "90.0%", "10.0%"]]
    assert lines[6] == "stopped after 3 of k=8: no other teacher is acceptable on any of the 1 uncovered clip(s)"


def test_ties_go_to_the_first_name_whatever_the_row_order(tmp_path):
    tied = {"zeta": ["c1", "c2"], "alpha": ["c3", "c4"], "mid": ["c1"]}
    clips = ["c1", "c2", "c3", "c4"]
    for reverse in (False, True):
        result = choose(write(tmp_path / f"tied{reverse}.jsonl", long_rows(tied, clips, reverse)))
        assert summary(result) == [("alpha", 2, 0.5), ("zeta", 2, 1.0)]
        assert result["best_single"]["teacher"] == "alpha"
        # the D/E tie of the main labels, rows reversed
        result = choose(write(tmp_path / f"main{reverse}.csv", long_rows(ACCEPTABLE, CLIPS, reverse)))
        assert summary(result) == EXPECTED


def test_k_cuts_the_cover_and_a_full_cover_stops_early(tmp_path):
    path = write(tmp_path / "l.parquet", long_rows(ACCEPTABLE, CLIPS))
    result = choose(path, "--k", "2")
    assert summary(result) == EXPECTED[:2] and result["stopped"] == "k" and result["message"] == "chose k=2 teachers"
    assert summary(choose(path, "--k", "1")) == EXPECTED[:1]

    full = {"A": ["c1", "c2", "c3"], "B": ["c3", "c4"], "C": ["c2"]}
    result = choose(write(tmp_path / "full.jsonl", wide_rows(full, ["c1", "c2", "c3", "c4"])), "--k", "8")
    assert summary(result) == [("A", 3, 0.75), ("B", 1, 1.0)]
    assert result["stopped"] == "no_gain" and result["message"] == "stopped after 2 of k=8: every clip is covered"
    assert run_cli("teachers", "choose", "--labels", str(path), "--k", "0").returncode == 2


# ---- malformed files -----------------------------------------------------------------------
@pytest.mark.parametrize("name,text,message", [
    ("bad.jsonl", '{"clip_id": "c1", "teacher": "A", "acceptable": true}\n\n{"clip_id": "c2", "teacher": "A"\n',
     "line 3: not valid JSON"),
    ("bad.jsonl", '{"clip_id": "c1", "teacher": "A", "acceptable": true}\n{"teacher": "A", "acceptable": false}\n',
     "line 2: missing 'clip_id'"),
    ("bad.jsonl", '{"clip_id": "c1", "teacher": "A", "acceptable": "sometimes"}\n',
     "line 1: 'acceptable' must be true or false, got 'sometimes'"),
    ("bad.jsonl", '{"clip_id": "c1", "acceptable": true}\n',
     "line 1: missing 'teacher' (long form: clip_id, teacher, acceptable) or 'acceptable' is not a list"),
    ("bad.jsonl", '{"clip_id": "c1", "acceptable": ["A", 3]}\n',
     "line 1: 'acceptable' must list teacher names, got 3"),
    ("bad.jsonl", '["c1", "A", true]\n', "line 1: expected an object"),
    ("bad.csv", "clip_id,teacher,ok\nc1,A,true\n", "line 1: the header needs clip_id, teacher, acceptable "
                                                   "(missing acceptable; got clip_id, teacher, ok)"),
    ("bad.csv", "clip_id,teacher,acceptable\nc1,A,true\nc2,A,maybe\n",
     "line 3: 'acceptable' must be true or false, got 'maybe'"),
    ("bad.csv", "clip_id,teacher,acceptable\nc1,A\n", "line 2: fewer cells than header columns"),
    ("bad.csv", "clip_id,teacher,acceptable\nc1,A,true\nc1,B,true\nc1,A,false\n",
     "line 4: clip 'c1' teacher 'A' is acceptable=False, but line 2 says acceptable=True"),
    ("empty.jsonl", "\n\n", "holds no labels"),
    ("labels.txt", "clip_id,teacher,acceptable\n", "unknown format '.txt'; use .csv, .jsonl or .parquet"),
    ("fake.parquet", "not parquet", "not a readable parquet file"),
])
def test_malformed_labels_exit_2_naming_file_line_and_reason(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    done = run_cli("teachers", "choose", "--labels", str(path))
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith(f"error: labels file '{path}'") and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_parquet_rows_binary_and_missing_files_are_named(tmp_path):
    path = write(tmp_path / "rows.parquet", [{"clip_id": "c1", "teacher": "A", "acceptable": True},
                                             {"clip_id": None, "teacher": "B", "acceptable": False}])
    done = run_cli("teachers", "choose", "--labels", str(path))
    assert done.returncode == 2 and f"labels file '{path}', row 2: 'clip_id' must be a non-empty string" in done.stderr
    done = run_cli("teachers", "choose", "--labels", str(tmp_path / "missing.csv"))
    assert done.returncode == 2 and "no such file" in done.stderr and "Traceback" not in done.stderr
    (tmp_path / "binary.csv").write_bytes(b"clip_id,teacher,acceptable\n\xff\xfe\x00,A,true\n")
    done = run_cli("teachers", "choose", "--labels", str(tmp_path / "binary.csv"))
    assert done.returncode == 2 and "cannot be read" in done.stderr and "Traceback" not in done.stderr


def test_csv_from_a_spreadsheet_with_a_byte_order_mark(tmp_path):
    path = write(tmp_path / "excel.csv", long_rows(ACCEPTABLE, CLIPS))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n").replace(b"true", b"TRUE"))
    assert summary(choose(path)) == EXPECTED


def test_help():
    done = run_cli("teachers", "choose", "--help")
    assert done.returncode == 0 and "--labels" in done.stdout and "greedy set cover" in done.stdout
    assert "choose" in run_cli("teachers", "--help").stdout

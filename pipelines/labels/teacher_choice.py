"""Choosing a teacher set: Panda-70M's greedy set cover over human acceptability labels.

Panda-70M (Chen et al., CVPR 2024, arXiv 2402.19479, section 3.2) ran 31 teacher
candidates on 1K clips and had people mark which candidates were good captions. The best
single teacher was acceptable on 30.8% of the clips, all 31 together on 84.7%; a greedy
set cover kept 8 teachers that together covered 76.8%. ``choose_teachers`` is that
greedy cover: start with the teacher acceptable on most clips, then repeatedly add the
one that covers most clips no chosen teacher covers yet (ties go to the name that sorts
first, so runs repeat), until ``k`` teachers are chosen or no teacher adds a clip.

``read_labels`` reads the labels (``vidcurate teachers choose --labels FILE``):

  * long form, one row per judgement: ``clip_id, teacher, acceptable`` (true/false), as
    CSV (with that header), JSON lines or parquet;
  * wide form, one row per clip: ``{"clip_id": ..., "acceptable": [teacher, ...]}`` as JSON
    lines (or parquet with a list column).

A clip whose every judgement is "not acceptable" still counts: coverage is a share of all
labelled clips, as in the paper.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator, Mapping

TRUE = {"true", "1", "yes", "y", "t"}
FALSE = {"false", "0", "no", "n", "f", ""}


@dataclass(frozen=True)
class Step:
    step: int              # 1-based
    teacher: str           # the teacher added
    newly_covered: int     # clips it covers that no earlier teacher did
    covered: int           # clips covered by the teachers chosen so far
    coverage: float        # covered / all labelled clips
    alone: int             # clips this teacher covers on its own

    def to_dict(self) -> dict:
        return asdict(self)


def coverage_alone(labels: Mapping[str, set[str]], all_teachers: Iterable[str]) -> dict[str, int]:
    """How many clips each teacher is acceptable on (teachers never accepted: 0)."""
    counts = {teacher: 0 for teacher in all_teachers}
    for accepted in labels.values():
        for teacher in accepted:
            counts[teacher] = counts.get(teacher, 0) + 1
    return counts


def choose_teachers(labels: Mapping[str, set[str]], all_teachers: Iterable[str], k: int) -> list[Step]:
    """Greedy set cover: at most ``k`` steps, stopping early when no teacher adds a clip.

    ``labels`` maps each labelled clip to the teachers acceptable on it (possibly none);
    ``all_teachers`` is every teacher that may be chosen (teachers in ``labels`` but not
    here are an error).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    teachers = sorted(set(all_teachers))
    unknown = sorted({t for accepted in labels.values() for t in accepted} - set(teachers))
    if unknown:
        raise ValueError(f"labels name teachers missing from all_teachers: {', '.join(unknown)}")
    alone = coverage_alone(labels, teachers)
    covers = {t: {clip for clip, accepted in labels.items() if t in accepted} for t in teachers}
    uncovered = set(labels)
    remaining = list(teachers)
    steps: list[Step] = []
    while remaining and len(steps) < k:
        # max gain, then the first name: sorting by (-gain, name) and taking the head
        gain, teacher = min((-len(covers[t] & uncovered), t) for t in remaining)
        if gain == 0:
            break
        uncovered -= covers[teacher]
        remaining.remove(teacher)
        covered = len(labels) - len(uncovered)
        steps.append(Step(len(steps) + 1, teacher, -gain, covered, covered / len(labels) if labels else 0.0,
                          alone[teacher]))
    return steps


# ---- labels files --------------------------------------------------------------------------
class LabelsError(ValueError):
    """A labels file cannot be used; the message names the file, the line or row, and why."""


def read_labels(path: str) -> tuple[dict[str, set[str]], set[str]]:
    """``(labels, teachers)``: clip -> acceptable teachers, and every teacher the file names."""
    ext = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        raise LabelsError(f"labels file {path!r}: no such file")
    readers = {".csv": _csv_rows, ".jsonl": _jsonl_rows, ".json": _jsonl_rows, ".ndjson": _jsonl_rows,
               ".parquet": _parquet_rows}
    if ext not in readers:
        raise LabelsError(f"labels file {path!r}: unknown format {ext or '(no extension)'!r}; "
                          "use .csv, .jsonl or .parquet")
    if _is_judgments_file(path, ext):
        return _from_judgments(path)
    labels: dict[str, set[str]] = {}
    teachers: set[str] = set()
    judged: dict[tuple[str, str], tuple[bool, str]] = {}
    try:
        for position, row in readers[ext](path):
            _add_row(row, path, position, labels, teachers, judged)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelsError(f"labels file {path!r}: cannot be read ({exc})") from None
    if not labels:
        raise LabelsError(f"labels file {path!r}: holds no labels")
    return labels, teachers


def _is_judgments_file(path: str, ext: str) -> bool:
    """A file of the labels schema (schemas/labels.py: one judgment per row, as the annotation page
    and `vidcurate synth` write it), told apart by its columns."""
    try:
        if ext == ".parquet":
            import pyarrow.parquet as pq

            names = set(pq.read_schema(path).names)
        elif ext in (".jsonl", ".ndjson"):
            with open(path, encoding="utf-8") as handle:
                first = next((line for line in handle if line.strip()), "{}")
            names = set(json.loads(first)) if first.lstrip().startswith("{") else set()
        else:
            return False
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return {"annotator", "candidates", "choice"} <= names


def _from_judgments(path: str) -> tuple[dict[str, set[str]], set[str]]:
    """Acceptability from judgments: a teacher is acceptable on a clip when at least half of the
    annotators who marked that clip's acceptable candidates marked it (several annotators may
    disagree; a tie counts as acceptable). Judgments without ``acceptable`` are left out."""
    from collections import Counter

    from vidcurate.schemas.labels import LabelsFileError, read_labels as read_judgments

    try:
        rows = read_judgments(path)
    except LabelsFileError as exc:
        raise LabelsError(str(exc)) from None
    votes: dict[str, Counter] = {}
    raters: Counter = Counter()
    teachers: set[str] = set()
    for row in rows:
        if row.get("acceptable") is None:
            continue
        shown = [c["teacher"] for c in row["candidates"]]
        teachers.update(shown)
        raters[row["clip_id"]] += 1
        votes.setdefault(row["clip_id"], Counter()).update({shown[i] for i in row["acceptable"]})
    if not raters:
        raise LabelsError(f"labels file {path!r}: no judgment marks acceptable candidates (the 'acceptable' "
                          "column is empty), so there is nothing to cover")
    labels = {clip: {t for t, n in votes.get(clip, Counter()).items() if 2 * n >= count}
              for clip, count in raters.items()}
    return labels, teachers


def _add_row(row, path: str, position: str, labels: dict, teachers: set, judged: dict) -> None:
    where = f"labels file {path!r}, {position}"
    if not isinstance(row, dict):
        raise LabelsError(f"{where}: expected an object with clip_id and teacher/acceptable, got {row!r}")
    clip = _name(row, "clip_id", where)
    if "acceptable" not in row:
        raise LabelsError(f"{where}: missing 'acceptable'")
    accepted = labels.setdefault(clip, set())
    value = row["acceptable"]
    if row.get("teacher") is None and isinstance(value, (list, tuple)):  # wide form
        for teacher in value:
            if not isinstance(teacher, str) or not teacher.strip():
                raise LabelsError(f"{where}: 'acceptable' must list teacher names, got {teacher!r}")
            _judge(clip, teacher.strip(), True, where, position, accepted, teachers, judged)
        return
    if "teacher" not in row:
        raise LabelsError(f"{where}: missing 'teacher' (long form: clip_id, teacher, acceptable) "
                          "or 'acceptable' is not a list of teachers (wide form)")
    _judge(clip, _name(row, "teacher", where), _boolean(value, where), where, position, accepted, teachers, judged)


def _judge(clip: str, teacher: str, ok: bool, where: str, position: str, accepted: set, teachers: set,
           judged: dict) -> None:
    before = judged.setdefault((clip, teacher), (ok, position))
    if before[0] != ok:
        raise LabelsError(f"{where}: clip {clip!r} teacher {teacher!r} is acceptable={ok}, "
                          f"but {before[1]} says acceptable={before[0]}")
    teachers.add(teacher)
    if ok:
        accepted.add(teacher)


def _name(row: dict, key: str, where: str) -> str:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise LabelsError(f"{where}: {key!r} must be a non-empty string, got {value!r}"
                          if key in row else f"{where}: missing {key!r}")
    return str(value).strip()


def _boolean(value, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    raise LabelsError(f"{where}: 'acceptable' must be true or false, got {value!r}")


def _jsonl_rows(path: str) -> Iterator[tuple[str, object]]:
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield f"line {number}", json.loads(line)
            except json.JSONDecodeError as exc:
                raise LabelsError(f"labels file {path!r}, line {number}: not valid JSON ({exc.msg})") from None


def _csv_rows(path: str) -> Iterator[tuple[str, dict]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:  # -sig: spreadsheets write a BOM
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [c for c in ("clip_id", "teacher", "acceptable") if c not in header]
        if missing:
            raise LabelsError(f"labels file {path!r}, line 1: the header needs clip_id, teacher, acceptable "
                              f"(missing {', '.join(missing)}; got {', '.join(header) or 'nothing'})")
        reader.fieldnames = header
        for row in reader:
            if None in row:  # more cells than header names
                raise LabelsError(f"labels file {path!r}, line {reader.line_num}: more cells than header columns")
            if any(v is None for v in row.values()):
                raise LabelsError(f"labels file {path!r}, line {reader.line_num}: fewer cells than header columns")
            yield f"line {reader.line_num}", row


def _parquet_rows(path: str) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not parquet
        raise LabelsError(f"labels file {path!r}: not a readable parquet file ({exc})") from None
    for number, row in enumerate(table.to_pylist(), start=1):
        yield f"row {number}", row

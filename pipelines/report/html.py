"""Rendering the report page: what :mod:`.read` found, as the context of the Jinja2 template.

:func:`render` does the arithmetic (totals, shares, means, the per-stage and per-teacher
rows), draws the plots (:mod:`.plots`) and hands plain values to
``templates/report.html.j2``; all markup is in the templates. The environment autoescapes,
so every value from the build (captions, titles, teacher names, reject details, the
config, the output path) is escaped by the engine where it is printed; no template marks
build data ``|safe``. The only values printed unescaped are the environment's own: macro
output and the plots' and thumbnails' base64 data URIs (which escaping leaves unchanged
anyway). Numbers are formatted here, so the template needs no filters of its own.
"""
from __future__ import annotations

import html
import os
import time
from collections import Counter, defaultdict
from functools import lru_cache

from vidcurate.pipelines.report import plots
from vidcurate.pipelines.report.read import CONFIG_FILE, reject_groups, runs, stages

TEMPLATE = "report.html.j2"


def _finalize(value):
    """How every ``{{ }}`` prints: None as nothing; text escaped like :func:`html.escape`.

    Jinja's own escaping (markupsafe) writes quotes as ``&#34;``/``&#39;``; ``html.escape``
    writes ``&quot;``/``&#x27;``, as the report always did, so the page's bytes and anything
    searching it for ``html.escape(text)`` stay as they were. Both escape the same five
    characters. Markup (macro output, ``|safe``) passes unchanged."""
    from markupsafe import Markup

    if value is None:
        return ""
    if hasattr(value, "__html__"):
        return value
    return Markup(html.escape(str(value), quote=True))


@lru_cache(maxsize=1)
def environment():
    """The report's Jinja2 environment: templates from the package's templates/ folder (package
    data), autoescaping on for every template (they are all HTML), undefined names an error
    (a typo in a template fails the report instead of printing an empty cell)."""
    import jinja2

    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
    return jinja2.Environment(loader=jinja2.FileSystemLoader(folder), autoescape=True, finalize=_finalize,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)


def render(data: dict, shards: dict) -> str:
    """The page for a build read by :func:`.read.load` and :func:`.read.scan_shards`."""
    return environment().get_template(TEMPLATE).render(context(data, shards))


def _num(value, digits=2) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def context(data: dict, shards: dict) -> dict:
    """The template's variables: plain strings, numbers, rows of cells and plot data URIs."""
    index, rejects = data["index"], data["rejects"]
    stage_rows = stages(data)
    clips = len(index)
    uris_ok = {r["uri"] for r in index}
    uris_all = uris_ok | {r.get("uri") for r in rejects if r.get("uri")}
    captions = [r["caption"] for r in index if r.get("caption")]
    scores = [float(r["score"]) for r in index if isinstance(r.get("score"), (int, float))]
    durations = [float(r["duration"]) for r in index if r.get("duration") is not None]
    wins = Counter(r["caption_teacher"] for r in index if r.get("caption") and r.get("caption_teacher"))
    teachers = shards["teachers"]
    input_rejects = sum(1 for r in rejects if not r.get("clip_id"))
    out = os.path.abspath(data["out"])
    page = {
        "name": os.path.basename(out), "out": out, "written": time.strftime("%Y-%m-%d %H:%M:%S"),
        "notes": data["notes"] + shards["problems"], "clips": clips, "captioned": bool(captions),
        "summary": [
            ("videos in", len(uris_all), "n-videos"), ("videos with clips", len(uris_ok), "n-videos-ok"),
            ("clips", clips, "n-clips"), ("clips with a caption", len(captions), "n-captions"),
            ("clip hours", f"{sum(durations) / 3600:.3f}", "clip-hours"),
            ("shards", f"{len(shards['names'])} ({shards['bytes'] / 1e6:.1f} MB)", "n-shards"),
            ("rejects", f"{len(rejects)} ({input_rejects} whole inputs, {len(rejects) - input_rejects} clips)",
             "n-rejects")],
        "splits": None, "stages": [], "stage_plot": None, "durations": None, "words_plot": None,
        "scores_plot": None, "teachers_note": None, "teachers": [], "teachers_plot": None, "timed": [],
        "timed_plot": None, "runs": [], "samples": [_card(s) for s in shards["samples"]],
        "config_file": CONFIG_FILE, "config_text": data["config_text"],
        "rejects": [[g["stage"], g["reason"], g["count"], g["inputs"], g["clips"], g["transient"], g["example"]]
                    for g in reject_groups(rejects)],
    }
    if index and "split" in index[0]:
        by_split: dict = defaultdict(lambda: [0, 0.0])
        for r in index:
            by_split[r.get("split")][0] += 1
            by_split[r.get("split")][1] += float(r.get("duration") or 0.0)
        page["splits"] = [[s if s is not None else "(none)", n, f"{n / clips:.1%}", f"{secs / 3600:.3f}"]
                          for s, (n, secs) in sorted(by_split.items(), key=lambda kv: str(kv[0]))]
    if stage_rows:
        page["stages"] = [[r["stage"], r["in"], r["out"], r["rejected"],
                           ", ".join(f"{k}: {v}" for k, v in sorted(r["reasons"].items(), key=lambda kv: -kv[1]))]
                          for r in stage_rows]
        page["stage_plot"] = plots.stage_counts(stage_rows)
    if durations:
        page["durations"] = {"plot": plots.hist(durations, "clip duration", "seconds"), "row": [
            "duration (s)", f"{min(durations):.2f}", f"{sorted(durations)[len(durations) // 2]:.2f}",
            f"{sum(durations) / len(durations):.2f}", f"{max(durations):.2f}"]}
    if captions:
        words = [len(c.split()) for c in captions]
        page["words_plot"] = plots.hist(words, "caption length", "words", bins=min(20, max(words) or 1))
        if scores:
            extra = ("all candidates", shards["candidate_scores"]) if shards["candidate_scores"] else None
            page["scores_plot"] = plots.hist(scores, "caption scores", "score", extra=extra, ylabel="captions")
    if len(shards["read"]) < len(shards["names"]):
        n = shards["clips_read"]
        page["teachers_note"] = (
            f"Candidate statistics (this section and the candidate scores above) are from "
            f"{n} clip{'' if n == 1 else 's'} in {len(shards['read'])} of {len(shards['names'])} shards, "
            "spread over the build; wins are from every clip. "
            "'vidcurate report OUT --scan-clips 0' reads every shard.")
    if wins or teachers:
        captioned = sum(wins.values())
        for t in sorted(set(wins) | set(teachers), key=lambda t: (-wins.get(t, 0), t)):
            c = teachers.get(t, Counter())
            mean = c["score_sum_x1e6"] / 1e6 / c["scored"] if c["scored"] else None
            page["teachers"].append([t, wins.get(t, 0), f"{wins.get(t, 0) / captioned:.1%}" if captioned else "",
                                     c["candidates"], c["clips"], _num(mean, 3), c["rejected_outputs"]])
        page["teachers_plot"] = plots.teachers(wins, captioned, teachers)
    timed = [r for r in stage_rows if r["process"] is not None]
    if timed:
        page["timed"] = [[r["stage"], _num(r["process"]), _num(r["setup"]),
                          f"{r['in'] / r['process']:.1f}" if r["process"] >= 1e-3 and r["in"] else ""]
                         for r in timed]
        page["timed_plot"] = plots.stage_seconds(timed)
    page["runs"] = [[r["run"], r["started_at"], r["probed"], f"{r['seconds']:.2f}"] for r in runs(data)]
    page["evaluations"] = [[e.get("model"), e.get("judgments"), _pct(e.get("r_at_1")), _pct(e.get("r_at_1_acceptable")),
                            _num(e.get("mean_rank")), f"{_pct(e.get('above_threshold'))} (> {e.get('threshold')})",
                            e.get("evaluated_at")] for e in data.get("evaluations") or []]
    return page


def _pct(value) -> str:
    return "" if value is None else f"{value:.1%}"


def _card(sample: dict) -> dict:
    """A sample clip's card: its index row's facts, its source title, caption and candidates."""
    row, meta = sample["row"], sample["meta"]
    return {
        "clip_id": row["clip_id"], "thumb": sample["thumb"],
        "start": _num(row.get("start")), "end": _num(row.get("end")), "duration": _num(row.get("duration")),
        "size": (row["width"], row["height"]) if row.get("width") and row.get("height") else None,
        "split": row.get("split"), "title": (meta.get("source") or {}).get("title") or None,
        "caption": row.get("caption") or None, "teacher": row.get("caption_teacher"),
        "score": _num(row.get("score"), 3) if row.get("score") is not None else None,
        "candidates": [{
            "chosen": c.get("text") == row.get("caption") and c.get("teacher") == row.get("caption_teacher"),
            "teacher": c.get("teacher"), "modality": c.get("modality") or None, "text": c.get("text"),
            "score": _num(c.get("score"), 3) if c.get("score") is not None else None,
        } for c in meta.get("candidates") or []],
        "rejected": [{"teacher": c.get("teacher"), "reason": c.get("reason")}
                     for c in meta.get("rejected_candidates") or []],
    }

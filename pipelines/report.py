"""The build report: one self-contained HTML page about a build's output folder.

    from vidcurate.pipelines.report import write_report
    write_report("out/demo")        # -> "out/demo/report.html"   (or: vidcurate report out/demo)

It reads only what the build wrote (index.parquet, rejects.parquet, stats.json,
config.resolved.yaml, the shards) and shows: the totals, records in/out/rejected per
stage, rejects by stage and reason, clip durations, caption lengths, scores, teacher
win rates and candidates per teacher, time per stage, and a grid of sample clips (a
thumbnail, the chosen caption and every candidate with its teacher and score). Plots
are PNGs made with matplotlib's Agg canvas and embedded as base64, thumbnails JPEGs:
the file has no external references. All text from the build (captions, titles,
details) is HTML-escaped. Split-only builds (no captions) and builds with no clips
get a report too.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
import tarfile
import time
from collections import Counter, defaultdict

INDEX_FILE = "index.parquet"
REJECTS_FILE = "rejects.parquet"
STATS_FILE = "stats.json"
CONFIG_FILE = "config.resolved.yaml"
REPORT_FILE = "report.html"
INDEX_COLUMNS = ("clip_id", "video_id", "uri", "start", "end", "duration", "caption", "caption_teacher", "score",
                 "num_candidates", "width", "height", "num_frames", "shard", "key", "mp4_bytes", "split")
THUMB_WIDTH = 320
SCAN_CLIPS = 20_000  # clips whose json the teacher statistics read, at most (whole shards; 0 = all)

__all__ = ["ReportError", "write_report", "REPORT_FILE"]


class ReportError(ValueError):
    """The folder is not a readable build output (missing, not a folder, no or broken index)."""


def write_report(out: str, samples: int = 12, scan_clips: int = SCAN_CLIPS) -> str:
    """Write ``OUT/report.html`` for the build in ``out`` and return its path.

    Teacher statistics come from the json members of whole shards read until about
    ``scan_clips`` clips are counted (0: every shard), in a fixed spread order that starts
    with the shards of the sample clips, so the report of a huge build costs a few shards,
    not a pass over the dataset; the page says how much was read."""
    data = _load(os.fspath(out))
    shards = _scan_shards(data, _pick_samples(data["index"], samples), scan_clips)
    page = _render(data, shards)
    path = os.path.join(data["out"], REPORT_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(page)
    os.replace(tmp, path)
    return path


# ---- reading the build --------------------------------------------------------------
def _load(out: str) -> dict:
    import pyarrow.parquet as pq

    if not os.path.exists(out):
        raise ReportError(f"{out!r}: no such folder")
    if not os.path.isdir(out):
        raise ReportError(f"{out!r} is a file, not a build output folder")
    index_path = os.path.join(out, INDEX_FILE)
    if not os.path.isfile(index_path):
        raise ReportError(f"{out!r} holds no build: {INDEX_FILE} is missing (is this a vidcurate build's output?)")
    try:
        schema = pq.read_schema(index_path)
        columns = [c for c in INDEX_COLUMNS if c in schema.names]
        index = pq.read_table(index_path, columns=columns).to_pylist()
    except Exception as exc:
        raise ReportError(f"{index_path}: not a readable parquet file ({type(exc).__name__}: {exc})") from None
    rejects, notes = [], []
    rejects_path = os.path.join(out, REJECTS_FILE)
    if os.path.isfile(rejects_path):
        try:
            rejects = pq.read_table(rejects_path).to_pylist()
        except Exception as exc:
            raise ReportError(f"{rejects_path}: not a readable parquet file ({type(exc).__name__}: {exc})") from None
    else:
        notes.append(f"{REJECTS_FILE} is missing: rejects are not shown.")
    stats = {"counters": {}, "seconds": {}}
    stats_path = os.path.join(out, STATS_FILE)
    if os.path.isfile(stats_path):
        try:
            with open(stats_path) as handle:
                loaded = json.load(handle)
            stats = {"counters": dict(loaded.get("counters") or {}), "seconds": dict(loaded.get("seconds") or {})}
        except (ValueError, AttributeError) as exc:
            raise ReportError(f"{stats_path}: not a stats file ({exc})") from None
    else:
        notes.append(f"{STATS_FILE} is missing: per-stage counts and times are not shown.")
    config_text, pipeline = None, []
    config_path = os.path.join(out, CONFIG_FILE)
    if os.path.isfile(config_path):
        import yaml

        with open(config_path) as handle:
            config_text = handle.read()
        try:
            steps = (yaml.safe_load(config_text) or {}).get("pipeline") or []
            pipeline = [s["op"] for s in steps if isinstance(s, dict) and "op" in s]
        except (yaml.YAMLError, AttributeError):
            notes.append(f"{CONFIG_FILE} is not valid YAML.")
    return {"out": out, "index": index, "rejects": rejects, "stats": stats, "config_text": config_text,
            "pipeline": pipeline, "notes": notes}


def _pick_samples(index: list[dict], n: int) -> list[dict]:
    """Up to ``n`` clips spread evenly over the index (deterministic)."""
    if n <= 0 or not index:
        return []
    if len(index) <= n:
        return list(index)
    return [index[round(i * (len(index) - 1) / (n - 1))] if n > 1 else index[0] for i in range(n)]


def _scan_order(names: list[str], first: set[str]) -> list[str]:
    """``first`` (the sample clips' shards), then the rest in a fixed pseudo-random order, so any
    prefix is spread over the splits, buckets and the whole build."""
    spread = sorted(names, key=lambda name: hashlib.sha1(name.encode("utf-8")).hexdigest())
    return [n for n in spread if n in first] + [n for n in spread if n not in first]


def _scan_shards(data: dict, picked: list[dict], scan_clips: int) -> dict:
    """Teacher statistics from the json members of shards read in ``_scan_order`` until
    ``scan_clips`` clips are counted (0: all), and the picked clips' media (their shards come first)."""
    shard_dir = os.path.join(data["out"], "shards")
    wanted = {row["key"]: row for row in picked}
    found: dict[str, dict] = {key: {} for key in wanted}
    teachers: dict[str, Counter] = defaultdict(Counter)
    candidate_scores: list[float] = []
    problems: list[str] = []
    names = sorted(_shard_names(shard_dir))
    for name in {row["shard"] for row in data["index"]} - set(names):
        problems.append(f"shard {name} named in the index is missing")
    total_bytes = sum(os.path.getsize(os.path.join(shard_dir, name)) for name in names)
    sample_shards = {row["shard"] for row in picked}
    read: list[str] = []
    clips_read = 0
    for name in _scan_order(names, sample_shards):
        if scan_clips and clips_read >= scan_clips and name not in sample_shards:
            break
        read.append(name)
        path = os.path.join(shard_dir, name)
        try:
            with tarfile.open(path, "r:") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    key, _, ext = member.name.rpartition("/")[2].partition(".")
                    if ext == "json":
                        meta = json.load(tar.extractfile(member))
                        _count_teachers(meta, teachers, candidate_scores)
                        clips_read += 1
                        if key in found:
                            found[key]["json"] = meta
                    elif key in found and ext == "mp4":
                        found[key]["mp4"] = tar.extractfile(member).read()
                    elif key in found and ext.rpartition(".")[2] in ("jpg", "jpeg") and "jpg" not in found[key]:
                        found[key]["jpg"] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, ValueError) as exc:
            problems.append(f"shard {name}: {type(exc).__name__}: {exc}")
    samples = []
    for key, row in wanted.items():
        media = found[key]
        thumb = None
        try:
            if media.get("jpg"):
                thumb = _thumbnail_from_image(media["jpg"])
            elif media.get("mp4"):
                thumb = _thumbnail_from_mp4(media["mp4"])
        except Exception as exc:  # a thumbnail is decoration: note it, keep going
            problems.append(f"thumbnail of {key}: {type(exc).__name__}: {exc}")
        samples.append({"row": row, "meta": media.get("json") or {}, "thumb": thumb})
    return {"names": names, "bytes": total_bytes, "teachers": teachers, "candidate_scores": candidate_scores,
            "samples": samples, "problems": problems, "read": read, "clips_read": clips_read}


def _shard_names(shard_dir: str) -> list[str]:
    """Shards under OUT/shards, nested by split or bucket or not, as '/'-separated relative paths."""
    names = []
    for root, _dirs, files in os.walk(shard_dir):
        rel = os.path.relpath(root, shard_dir)
        names += [f if rel == "." else f"{rel}/{f}".replace(os.sep, "/")
                  for f in files if f.endswith(".tar") and not f.startswith(".")]
    return names


def _count_teachers(meta: dict, teachers: dict, scores: list) -> None:
    seen = set()
    for cand in meta.get("candidates") or []:
        teacher = str(cand.get("teacher"))
        teachers[teacher]["candidates"] += 1
        seen.add(teacher)
        if isinstance(cand.get("score"), (int, float)):
            scores.append(float(cand["score"]))
            teachers[teacher]["scored"] += 1
            teachers[teacher]["score_sum_x1e6"] += round(cand["score"] * 1e6)
    for teacher in seen:
        teachers[teacher]["clips"] += 1
    for cand in meta.get("rejected_candidates") or []:
        teachers[str(cand.get("teacher"))]["rejected_outputs"] += 1


def _thumbnail_from_mp4(data: bytes) -> str | None:
    import av

    with av.open(io.BytesIO(data)) as container:
        if not container.streams.video:
            return None
        stream = container.streams.video[0]
        duration = None
        if stream.duration is not None and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1e6
        middle = (duration or 0.0) / 2
        if middle > 0 and stream.time_base:
            try:
                container.seek(int(middle / stream.time_base), stream=stream, backward=True, any_frame=False)
            except av.error.FFmpegError:
                container.seek(0)
        image = None
        for frame in container.decode(stream):
            image = frame.to_image()
            if frame.time is None or frame.time >= middle - 1e-3:
                break
    return _jpeg_data_uri(image) if image is not None else None


def _thumbnail_from_image(data: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return _jpeg_data_uri(image.convert("RGB"))


def _jpeg_data_uri(image) -> str:
    image = image.convert("RGB")
    if image.width > THUMB_WIDTH:
        image = image.resize((THUMB_WIDTH, max(1, round(image.height * THUMB_WIDTH / image.width))))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ---- numbers ------------------------------------------------------------------------
def _stages(data: dict) -> list[dict]:
    """records in/out/rejected per operator, in pipeline order, from stats.json."""
    counters, seconds = data["stats"]["counters"], data["stats"]["seconds"]
    names = list(dict.fromkeys(data["pipeline"]))
    for key in [*counters, *seconds]:
        stage = key.split(".", 1)[0]
        if stage not in names and (key.endswith((".records_in", ".records_out", ".process", ".setup"))
                                   or ".rejected." in key):
            names.append(stage)
    rows = []
    for stage in names:
        reasons = {k.split(".rejected.", 1)[1]: v for k, v in counters.items()
                   if k.startswith(f"{stage}.rejected.")}
        rows.append({"stage": stage, "in": counters.get(f"{stage}.records_in", 0),
                     "out": counters.get(f"{stage}.records_out", 0), "rejected": sum(reasons.values()),
                     "reasons": reasons, "process": seconds.get(f"{stage}.process"),
                     "setup": seconds.get(f"{stage}.setup")})
    return rows


def _reject_groups(rejects: list[dict]) -> list[dict]:
    groups: dict[tuple, dict] = {}
    for r in rejects:
        g = groups.setdefault((r.get("stage"), r.get("reason")), {
            "stage": r.get("stage"), "reason": r.get("reason"), "count": 0, "inputs": 0, "clips": 0,
            "transient": 0, "example": r.get("detail")})
        g["count"] += 1
        g["clips" if r.get("clip_id") else "inputs"] += 1
        g["transient"] += bool(r.get("transient"))
    return sorted(groups.values(), key=lambda g: (-g["count"], str(g["stage"]), str(g["reason"])))


# ---- plots --------------------------------------------------------------------------
def _figure(width=6.4, height=3.2):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _label(text) -> str:
    return str(text).replace("$", r"\$")  # no mathtext from names


def _hist(values, title: str, xlabel: str, bins=20, extra=None, ylabel="clips") -> str:
    import numpy as np

    fig = _figure()
    ax = fig.add_subplot()
    edges = np.histogram_bin_edges(np.concatenate([values, extra[1]]) if extra is not None else values, bins=bins)
    if extra is not None:
        ax.hist(extra[1], bins=edges, color="#bbbbbb", label=_label(extra[0]))
    ax.hist(values, bins=edges, color="#3b75af", label="selected" if extra is not None else None, alpha=0.9)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if extra is not None:
        fig.legend(loc="outside right upper")
    return _png(fig)


def _stage_counts_plot(stages: list[dict]) -> str:
    import numpy as np

    rows = stages[::-1]
    y = np.arange(len(rows))
    fig = _figure(height=max(2.4, 0.45 * len(rows) + 1))
    ax = fig.add_subplot()
    for offset, key, color in ((0.27, "in", "#3b75af"), (0.0, "out", "#519e3e"), (-0.27, "rejected", "#c53a32")):
        ax.barh(y + offset, [r[key] for r in rows], height=0.27, color=color, label=key)
    ax.set_yticks(y, [_label(r["stage"]) for r in rows])
    ax.set(title="records per stage", xlabel="records")
    fig.legend(loc="outside right upper")
    return _png(fig)


def _seconds_plot(stages: list[dict]) -> str:
    rows = [r for r in stages if r["process"] is not None][::-1]
    fig = _figure(height=max(2.4, 0.35 * len(rows) + 1))
    ax = fig.add_subplot()
    names = [_label(r["stage"]) for r in rows]
    ax.barh(names, [r["process"] for r in rows], color="#3b75af", label="process")
    ax.barh(names, [r["setup"] or 0.0 for r in rows], left=[r["process"] for r in rows], color="#bbbbbb",
            label="setup")
    ax.set(title="time per stage", xlabel="seconds")
    fig.legend(loc="outside right upper")
    return _png(fig)


def _teachers_plot(wins: Counter, clips_with_caption: int, teachers: dict) -> str:
    names = sorted(set(wins) | set(teachers), key=lambda t: (-wins.get(t, 0), t))
    fig = _figure(width=7.6, height=max(2.4, 0.4 * len(names) + 1.2))
    left, right = fig.subplots(1, 2, sharey=True)
    labels = [_label(t) for t in names][::-1]
    left.barh(labels, [wins.get(t, 0) / clips_with_caption * 100 if clips_with_caption else 0
                       for t in names][::-1], color="#3b75af")
    left.set(title="win rate (% of captioned clips)", xlabel="%")
    right.barh(labels, [teachers.get(t, {}).get("candidates", 0) for t in names][::-1], color="#519e3e",
               label="candidates")
    right.barh(labels, [teachers.get(t, {}).get("rejected_outputs", 0) for t in names][::-1],
               left=[teachers.get(t, {}).get("candidates", 0) for t in names][::-1], color="#c53a32",
               label="rejected outputs")
    right.set(title="candidates per teacher", xlabel="candidates")
    fig.legend(loc="outside lower center", ncols=2)
    return _png(fig)


# ---- html ---------------------------------------------------------------------------
def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value, digits=2) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(head: list[str], rows: list[list], cls: str = "") -> str:
    """Cells are escaped here; pass raw values."""
    out = [f'<table class="{esc(cls)}"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head)
           + "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _plot(plot_id: str, uri: str, alt: str) -> str:
    return f'<figure id="plot-{plot_id}"><img alt="{esc(alt)}" src="{uri}"></figure>'


def _note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#222;max-width:1400px}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right}
figure{display:inline-block;margin:.4em 1em .4em 0}figure img{max-width:100%}
.note{color:#8a5a00;background:#fff7e0;padding:.4em .7em;border-left:3px solid #e0a800}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:1em}
.card{border:1px solid #ddd;border-radius:6px;padding:.7em;background:#fafafa;overflow-wrap:anywhere}
.card img{width:100%;border-radius:4px;background:#000}.card .id{font-family:monospace;font-size:.8em;color:#666}
.caption{font-weight:600;margin:.4em 0}.cands{font-size:.85em;padding-left:1.2em;margin:.3em 0}
.cands li.chosen{font-weight:600}.muted{color:#777}pre{background:#f6f6f6;padding:.8em;overflow:auto}
"""


def _render(data: dict, shards: dict) -> str:
    index, rejects = data["index"], data["rejects"]
    stages = _stages(data)
    clips = len(index)
    uris_ok = {r["uri"] for r in index}
    uris_all = uris_ok | {r.get("uri") for r in rejects if r.get("uri")}
    captions = [r["caption"] for r in index if r.get("caption")]
    scores = [float(r["score"]) for r in index if isinstance(r.get("score"), (int, float))]
    durations = [float(r["duration"]) for r in index if r.get("duration") is not None]
    wins = Counter(r["caption_teacher"] for r in index if r.get("caption") and r.get("caption_teacher"))
    teachers = shards["teachers"]
    parts: list[str] = []
    add = parts.append

    add(f"<h1>vidcurate build report</h1><p class=\"muted\">{esc(os.path.abspath(data['out']))} &middot; "
        f"written {esc(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>")
    for note in data["notes"] + shards["problems"]:
        add(_note(note))
    if not clips:
        add(_note("This build has no clips: every input was rejected or yielded nothing. "
                  "The rejects below say why."))
    elif not captions:
        add(_note("No clip has a caption: this is a split-only build (no teachers or selector), "
                  "so caption, score and teacher sections are empty."))

    add("<h2>Summary</h2>")
    input_rejects = sum(1 for r in rejects if not r.get("clip_id"))
    summary = [
        ("videos in", len(uris_all), "n-videos"), ("videos with clips", len(uris_ok), "n-videos-ok"),
        ("clips", clips, "n-clips"), ("clips with a caption", len(captions), "n-captions"),
        ("clip hours", f"{sum(durations) / 3600:.3f}", "clip-hours"),
        ("shards", f"{len(shards['names'])} ({shards['bytes'] / 1e6:.1f} MB)", "n-shards"),
        ("rejects", f"{len(rejects)} ({input_rejects} whole inputs, {len(rejects) - input_rejects} clips)",
         "n-rejects"),
    ]
    add("<table>" + "".join(f'<tr><th>{esc(k)}</th><td id="{v_id}">{esc(v)}</td></tr>' for k, v, v_id in summary)
        + "</table>")
    if index and "split" in index[0]:
        by_split: dict = defaultdict(lambda: [0, 0.0])
        for r in index:
            by_split[r.get("split")][0] += 1
            by_split[r.get("split")][1] += float(r.get("duration") or 0.0)
        add("<h3>Splits</h3>" + _table(["split", "clips", "share", "clip hours"], [
            [s if s is not None else "(none)", n, f"{n / clips:.1%}", f"{secs / 3600:.3f}"]
            for s, (n, secs) in sorted(by_split.items(), key=lambda kv: str(kv[0]))]))

    add("<h2>Records per stage</h2>")
    if stages:
        add(_table(["stage", "records in", "records out", "rejected", "rejected by reason"], [
            [r["stage"], r["in"], r["out"], r["rejected"],
             ", ".join(f"{k}: {v}" for k, v in sorted(r["reasons"].items(), key=lambda kv: -kv[1]))]
            for r in stages], "stages"))
        add(_plot("stage-counts", _stage_counts_plot(stages), "records in, out and rejected per stage"))
    else:
        add(_note("No per-stage counters (stats.json missing or empty)."))

    add("<h2>Rejects by stage and reason</h2>")
    groups = _reject_groups(rejects)
    if groups:
        add(_table(["stage", "reason", "count", "whole inputs", "clips", "transient", "example detail"], [
            [g["stage"], g["reason"], g["count"], g["inputs"], g["clips"], g["transient"], g["example"]]
            for g in groups], "rejects"))
    else:
        add("<p>No rejects.</p>")

    add("<h2>Clips</h2>")
    if durations:
        add(_plot("durations", _hist(durations, "clip duration", "seconds"), "histogram of clip durations"))
        add(_table(["", "min", "median", "mean", "max"], [[
            "duration (s)", f"{min(durations):.2f}", f"{sorted(durations)[len(durations) // 2]:.2f}",
            f"{sum(durations) / len(durations):.2f}", f"{max(durations):.2f}"]]))
    else:
        add("<p>No clips.</p>")

    add("<h2>Captions</h2>")
    if captions:
        words = [len(c.split()) for c in captions]
        add(_plot("caption-words", _hist(words, "caption length", "words", bins=min(20, max(words) or 1)),
                  "histogram of caption lengths in words"))
        if scores:
            extra = ("all candidates", shards["candidate_scores"]) if shards["candidate_scores"] else None
            add(_plot("scores", _hist(scores, "caption scores", "score", extra=extra, ylabel="captions"),
                      "distribution of selected caption scores"))
        else:
            add(_note("No caption has a score."))
    else:
        add("<p>No captions.</p>")

    add("<h2>Teachers</h2>")
    if len(shards["read"]) < len(shards["names"]):
        add(_note(f"Candidate statistics (this section and the candidate scores above) are from "
                  f"{shards['clips_read']} clip{'' if shards['clips_read'] == 1 else 's'} in {len(shards['read'])} of "
                  f"{len(shards['names'])} shards, "
                  f"spread over the build; wins are from every clip. "
                  "'vidcurate report OUT --scan-clips 0' reads every shard."))
    if wins or teachers:
        captioned = sum(wins.values())
        rows = []
        for t in sorted(set(wins) | set(teachers), key=lambda t: (-wins.get(t, 0), t)):
            c = teachers.get(t, Counter())
            mean = c["score_sum_x1e6"] / 1e6 / c["scored"] if c["scored"] else None
            rows.append([t, wins.get(t, 0), f"{wins.get(t, 0) / captioned:.1%}" if captioned else "",
                         c["candidates"], c["clips"], _num(mean, 3), c["rejected_outputs"]])
        add(_table(["teacher", "wins", "win rate", "candidates", "clips with a candidate", "mean candidate score",
                    "rejected outputs"], rows, "teachers"))
        add(_plot("teachers", _teachers_plot(wins, captioned, teachers), "teacher win rates and candidates"))
    else:
        add("<p>No caption candidates.</p>")

    add("<h2>Time per stage</h2>")
    timed = [r for r in stages if r["process"] is not None]
    if timed:
        add(_table(["stage", "process (s)", "setup (s)", "records/s"], [
            [r["stage"], _num(r["process"]), _num(r["setup"]),
             f"{r['in'] / r['process']:.1f}" if r["process"] >= 1e-3 and r["in"] else ""] for r in timed]))
        add(_plot("stage-seconds", _seconds_plot(timed), "seconds per stage"))
    else:
        add(_note("No timers (stats.json missing or empty)."))

    add(f"<h2>Sample clips ({len(shards['samples'])} of {clips})</h2>")
    if shards["samples"]:
        add('<div class="grid">' + "".join(_card(s) for s in shards["samples"]) + "</div>")
    else:
        add("<p>No clips to show.</p>")

    if data["config_text"]:
        add(f"<h2>Configuration</h2><details><summary>{esc(CONFIG_FILE)}</summary>"
            f"<pre>{esc(data['config_text'])}</pre></details>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>vidcurate report: {esc(os.path.basename(os.path.abspath(data['out'])))}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def _card(sample: dict) -> str:
    row, meta = sample["row"], sample["meta"]
    out = ['<div class="card">']
    out.append(f'<img alt="middle frame of {esc(row["clip_id"])}" src="{sample["thumb"]}">' if sample["thumb"]
               else '<p class="muted">(no thumbnail)</p>')
    facts = [f"{_num(row.get('start'))}&ndash;{_num(row.get('end'))} s ({_num(row.get('duration'))} s)"]
    if row.get("width") and row.get("height"):
        facts.append(f"{esc(row['width'])}&times;{esc(row['height'])}")
    if row.get("split") is not None:
        facts.append(f"split {esc(row['split'])}")
    out.append(f'<div class="id">{esc(row["clip_id"])}</div><div class="muted">{" &middot; ".join(facts)}</div>')
    title = (meta.get("source") or {}).get("title")
    if title:
        out.append(f'<div class="muted">title: {esc(title)}</div>')
    if row.get("caption"):
        score = f" &middot; score {_num(row.get('score'), 3)}" if row.get("score") is not None else ""
        out.append(f'<p class="caption">{esc(row["caption"])}</p>'
                   f'<div class="muted">by {esc(row.get("caption_teacher"))}{score}</div>')
    else:
        out.append('<p class="muted">(no caption)</p>')
    cands = meta.get("candidates") or []
    if cands:
        items = []
        for c in cands:
            chosen = c.get("text") == row.get("caption") and c.get("teacher") == row.get("caption_teacher")
            score = f" {_num(c.get('score'), 3)}" if c.get("score") is not None else ""
            modality = f" [{esc(c.get('modality'))}]" if c.get("modality") else ""
            items.append(f'<li class="{"chosen" if chosen else ""}"><b>{esc(c.get("teacher"))}</b>{modality}'
                         f'{score}: {esc(c.get("text"))}</li>')
        out.append(f'<ul class="cands">{"".join(items)}</ul>')
    rejected = meta.get("rejected_candidates") or []
    if rejected:
        out.append('<ul class="cands muted">' + "".join(
            f"<li>{esc(c.get('teacher'))} rejected: {esc(c.get('reason'))}</li>" for c in rejected) + "</ul>")
    out.append("</div>")
    return "".join(out)

"""Reading a build's output folder into plain data (dicts, lists, numbers, strings) for the report.

Everything the report shows comes from here and only from what the build wrote:
index.parquet, rejects.parquet, stats.json, config.resolved.yaml and the shards. The
shards are the only costly part, so :func:`scan_shards` reads whole shards in a fixed
spread order only until about ``scan_clips`` clips are counted, starting with the
shards of the sample clips (their media are needed for the thumbnails anyway). Nothing
here formats or escapes: that is the template's job (:mod:`.html`).
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
from collections import Counter, defaultdict

from vidcurate.operators.write.destination import Destination
from vidcurate.operators.write.layout import (CONFIG_FILE, EVALS_DIR, INDEX_FILE, REJECTS_FILE, SHARDS_DIR, STATS_FILE,
                                             shard_names)

INDEX_COLUMNS = ("clip_id", "video_id", "uri", "start", "end", "duration", "caption", "caption_teacher", "score",
                 "num_candidates", "width", "height", "num_frames", "shard", "key", "mp4_bytes", "split")
THUMB_WIDTH = 320
SCAN_CLIPS = 20_000  # clips whose json the teacher statistics read, at most (whole shards; 0 = all)


class ReportError(ValueError):
    """The folder is not a readable build output (missing, not a folder, no or broken index)."""


def load(out: str, version: str | None = None) -> dict:
    """The build folder's small files as plain data: index rows, reject rows, stats (summed
    counters and seconds, and the runs), the config text and its pipeline order, and notes on
    what is missing. A missing folder or index, or an unreadable index, rejects or stats file
    is a :class:`ReportError`; a missing rejects or stats file is only a note. ``version``: whose
    captions the page shows (a caption version's name, "build", or None = the latest)."""
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
    stats = {"counters": {}, "seconds": {}, "runs": []}
    stats_path = os.path.join(out, STATS_FILE)
    if os.path.isfile(stats_path):
        try:
            with open(stats_path) as handle:
                loaded = json.load(handle)
            # counters and seconds are the sums over every run; runs (one per build or resume) is
            # only listed, so a stats.json from before runs were kept still reads.
            runs = loaded.get("runs")
            stats = {"counters": dict(loaded.get("counters") or {}), "seconds": dict(loaded.get("seconds") or {}),
                     "runs": [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []}
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
    overlay, version_name = _caption_version(out, version)
    if overlay is not None:
        for row in index:
            chosen = overlay.get(row["clip_id"])
            if chosen is not None:
                row.update(caption=chosen["caption"], caption_teacher=chosen["caption_teacher"], score=chosen["score"],
                           num_candidates=len(chosen["candidates"] or []))
        notes.append(f"Captions of caption version {version_name} (OUT/versions/{version_name}.parquet); the "
                     "teacher statistics count the shards' candidates.")
    return {"out": out, "overlay": overlay, "version": version_name,
            "index": index, "rejects": rejects, "stats": stats, "config_text": config_text,
            "pipeline": pipeline, "notes": notes, "evaluations": evaluations(out, notes)}


def evaluations(out: str, notes: list[str]) -> list[dict]:
    """The selector evaluations in OUT/evals/ (``vidcurate retriever eval``), oldest first;
    an unreadable one is a note."""
    folder = os.path.join(out, EVALS_DIR)
    found = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                found.append({"file": name, **json.load(handle)})
        except (OSError, ValueError, TypeError) as exc:
            notes.append(f"{EVALS_DIR}/{name} is not readable ({exc}): not shown.")
    return sorted(found, key=lambda e: str(e.get("evaluated_at")))


def pick_samples(index: list[dict], n: int) -> list[dict]:
    """Up to ``n`` clips spread evenly over the index (deterministic)."""
    if n <= 0 or not index:
        return []
    if len(index) <= n:
        return list(index)
    return [index[round(i * (len(index) - 1) / (n - 1))] if n > 1 else index[0] for i in range(n)]


def scan_order(names: list[str], first: set[str]) -> list[str]:
    """``first`` (the sample clips' shards), then the rest in a fixed pseudo-random order, so any
    prefix is spread over the splits, buckets and the whole build."""
    spread = sorted(names, key=lambda name: hashlib.sha1(name.encode("utf-8")).hexdigest())
    return [n for n in spread if n in first] + [n for n in spread if n not in first]


def scan_shards(data: dict, picked: list[dict], scan_clips: int) -> dict:
    """Teacher statistics from the json members of shards read in :func:`scan_order` until
    ``scan_clips`` clips are counted (0: all), and the picked clips' media (their shards come first)."""
    shard_dir = os.path.join(data["out"], SHARDS_DIR)
    wanted = {row["key"]: row for row in picked}
    found: dict[str, dict] = {key: {} for key in wanted}
    teachers: dict[str, Counter] = defaultdict(Counter)
    candidate_scores: list[float] = []
    problems: list[str] = []
    names = shard_names(Destination(data["out"]))
    for name in {row["shard"] for row in data["index"]} - set(names):
        problems.append(f"shard {name} named in the index is missing")
    total_bytes = sum(os.path.getsize(os.path.join(shard_dir, name)) for name in names)
    sample_shards = {row["shard"] for row in picked}
    read: list[str] = []
    clips_read = 0
    for name in scan_order(names, sample_shards):
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
        meta = media.get("json") or {}
        if data.get("overlay") and row["clip_id"] in data["overlay"]:  # the version's caption and candidates
            meta = {**meta, **data["overlay"][row["clip_id"]]}
        samples.append({"row": row, "meta": meta, "thumb": thumb})
    return {"names": names, "bytes": total_bytes, "teachers": teachers, "candidate_scores": candidate_scores,
            "samples": samples, "problems": problems, "read": read, "clips_read": clips_read}


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


def stages(data: dict) -> list[dict]:
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


def runs(data: dict) -> list[dict]:
    """One row per build run (a resume or re-run adds one), oldest first as stats.json lists them:
    its id, start time, records probed and the sum of its timers."""
    rows = []
    for run in data["stats"]["runs"]:
        counters, seconds = run.get("counters") or {}, run.get("seconds") or {}
        timed = [v for v in seconds.values() if isinstance(v, (int, float))] if isinstance(seconds, dict) else []
        rows.append({"run": run.get("run"), "started_at": run.get("started_at"),
                     "probed": counters.get("probe.records_in", 0) if isinstance(counters, dict) else 0,
                     "seconds": float(sum(timed))})
    return rows


def reject_groups(rejects: list[dict]) -> list[dict]:
    groups: dict[tuple, dict] = {}
    for r in rejects:
        g = groups.setdefault((r.get("stage"), r.get("reason")), {
            "stage": r.get("stage"), "reason": r.get("reason"), "count": 0, "inputs": 0, "clips": 0,
            "transient": 0, "example": r.get("detail")})
        g["count"] += 1
        g["clips" if r.get("clip_id") else "inputs"] += 1
        g["transient"] += bool(r.get("transient"))
    return sorted(groups.values(), key=lambda g: (-g["count"], str(g["stage"]), str(g["reason"])))


def _caption_version(out: str, version: str | None) -> tuple[dict | None, str]:
    from vidcurate.operators.write.versions import VersionError, version_captions

    try:
        name, rows = version_captions(out, version)
        return rows, name
    except VersionError as exc:
        raise ReportError(str(exc)) from None

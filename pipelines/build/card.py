"""The dataset card: OUT/README.md, what a training team reads first.

Counts, length of video (s, min or hours, as it reads best), splits, the teachers and the
selector that made the captions (from the resolved config), rejects by reason, the
licences of the inputs where the manifest gave them, and how to load the shards. Written
by every build from the index, the rejects and the journal (so it describes the whole
dataset, also after a resume).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from vidcurate.schemas.records import INDEX, REJECT

# Teachers whose config names no model.
BUILT_IN_MODELS = {"ocr_teacher": "bundled RapidOCR PP-OCRv4",
                   "metadata_teacher": "(no model: passes the source's own text through)"}


def readable_duration(seconds: float) -> str:
    """A length of video as a reader says it: "27.3 s", "12.5 min", "3.20 hours" (a small build
    is not "0.00 hours")."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} hours"


def teacher_name(step: dict) -> str:
    """The name a teacher step's candidates carry (``teacher`` in every candidate): its ``label``
    when the operator has one and it is set, else the operator name (see GenerativeTeacher.teacher)."""
    return step.get("label") or step["op"]


def dataset_card(resolved: dict, index_rows, reject_rows, sources: list[dict],
                 provenance: dict, version: dict | None = None) -> str:
    """The card's text, from the index and the rejects (pyarrow tables, or lists of rows).
    ``version``: a caption version's record (operators/write/versions.py) whose captions
    ``index_rows`` carry; the card then says which version it describes."""
    index, rejects = _table(index_rows, INDEX), _table(reject_rows, REJECT)
    seconds = pc.sum(index["duration"]).as_py() or 0.0
    clips, videos = index.num_rows, pc.count_distinct(index["uri"]).as_py()
    per_split = index.group_by("split").aggregate([([], "count_all"), ("uri", "count_distinct")]).to_pylist()
    splits = {row["split"]: row["count_all"] for row in per_split}
    split_videos = {row["split"]: row["uri_count_distinct"] for row in per_split}
    teachers = [step for step in resolved.get("pipeline", []) if step["op"].endswith("_teacher")]
    selectors = [step for step in resolved.get("pipeline", []) if step["op"].endswith("_selector")]
    licences = Counter(s.get("license") or "not given" for s in sources)
    reasons = _counts(rejects, lambda row: f"{row['stage']}/{row['reason']}", ["stage", "reason"])
    winners = _counts(index.filter(pc.is_valid(index["caption_teacher"])), lambda row: row["caption_teacher"],
                      ["caption_teacher"])
    lines = [
        "# Video-text dataset built with vidcurate",
        "",
        f"- clips: **{clips}** from **{videos}** source videos "
        f"({readable_duration(seconds)} of video; mean clip {seconds / max(1, clips):.1f} s)",
        f"- rejected inputs and clips: {rejects.num_rows} (see `rejects.parquet`)",
        f"- config hash `{provenance.get('config_hash')}`, vidcurate {provenance.get('vidcurate_version')}; "
        "the full configuration is in `config.resolved.yaml`",
        "",
        "## Splits (by source video: no video is in two splits)",
        "",
        "| split | clips | source videos |",
        "|---|---|---|",
        *[f"| {name} | {count} | {split_videos[name]} |" for name, count in sorted(splits.items())],
        "",
        "## How captions were made",
        "",
        "| step | model | teacher (as named in candidates) |",
        "|---|---|---|",
        *[f"| {s['op']} | {s.get('model') or BUILT_IN_MODELS.get(s['op'], '')} | {teacher_name(s)} |"
          for s in teachers],
        *[f"| {s['op']} (selects one caption per clip) | {s.get('model') or ''} | |" for s in selectors],
        "",
    ]
    if version is not None:
        lines += [f"Captions: caption version `{version['name']}` ({version.get('command')} by "
                  f"{version.get('selector')}, candidates from {version.get('from_version')}; "
                  f"`OUT/versions/{version['name']}.parquet`); the shards hold the build's own.", ""]
    if winners:
        lines += ["Selected captions by teacher: "
                  + ", ".join(f"{name} {count}" for name, count in winners.most_common()), ""]
    lines += ["## Source licences (as given in the input manifest)", "",
              *[f"- {name}: {count} video(s)" for name, count in licences.most_common()], ""]
    if reasons:
        lines += ["## Rejects by reason", "", *[f"- {key}: {n}" for key, n in reasons.most_common()], ""]
    lines += [
        "## Files",
        "",
        "- `shards/<split>/*.tar`: WebDataset samples `<clip_id>.mp4` (H.264), `.json` (all metadata: source,",
        "  span, probe, every candidate caption with teacher and score, provenance) and `.txt` (the caption)",
        "- `index.parquet`: one row per clip (shard, key, split, duration, caption, score, ...)",
        "- `rejects.parquet`, `stats.json`, `report.html`",
        "",
        "## Loading",
        "",
        "```python",
        "from vidcurate.pipelines.train.loaders import make_dataloader",
        "loader = make_dataloader(\"OUT\", split=\"train\", batch_size=8, num_workers=4)",
        "```",
        "",
    ]
    return "\n".join(lines)


def _table(rows, schema: pa.Schema) -> pa.Table:
    return rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows), schema=schema)


def _counts(table: pa.Table, name: Callable[[dict], str], columns: list[str]) -> Counter:
    """How many rows of ``table`` have each value of ``columns`` (named by ``name``), counted by pyarrow."""
    grouped = table.group_by(columns, use_threads=False).aggregate([([], "count_all")])
    return Counter({name(row): row["count_all"] for row in grouped.to_pylist()})


def write_card(out: str, version: str | None = None) -> str:
    """(Re)write OUT/README.md of a finished build for a caption version (default: the latest);
    returns the version name it describes."""
    import pyarrow.parquet as pq
    import yaml

    from vidcurate.operators.write.destination import Destination
    from vidcurate.operators.write.journal import Journal
    from vidcurate.operators.write.layout import CARD_FILE, CONFIG_FILE, INDEX_FILE, REJECTS_FILE
    from vidcurate.operators.write.versions import list_versions, version_captions

    dest = Destination(out)
    resolved = yaml.safe_load(dest.read_bytes(CONFIG_FILE)) or {}
    index = pq.read_table(dest.path(INDEX_FILE)).to_pylist()
    rejects = pq.read_table(dest.path(REJECTS_FILE)).to_pylist()
    name, chosen = version_captions(out, version)
    record = None
    if chosen is not None:
        index = [{**row, **{k: chosen[row["clip_id"]][k] for k in ("caption", "caption_teacher", "score")}}
                 if row["clip_id"] in chosen else row for row in index]
        record = next(v for v in list_versions(out) if v["name"] == name)
    state = Journal(dest).state  # replayed once: sources and the config hash
    sources = [v["source"] for v in state.videos.values()]
    provenance = {"config_hash": state.config_hash, "vidcurate_version": _installed_version()}
    dest.write_bytes(CARD_FILE, dataset_card(resolved, index, rejects, sources, provenance, record).encode("utf-8"))
    return name


def _installed_version() -> str:
    from vidcurate.pipelines.build.run import vidcurate_version

    return vidcurate_version()

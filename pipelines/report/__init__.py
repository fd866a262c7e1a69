"""The build report: one self-contained HTML page about a build's output folder.

    from vidcurate.pipelines.report import write_report
    write_report("out/demo")        # -> "out/demo/report.html"   (or: vidcurate report out/demo)

It reads only what the build wrote (index.parquet, rejects.parquet, stats.json,
config.resolved.yaml, the shards) and shows: the totals, records in/out/rejected per
stage, rejects by stage and reason, clip durations, caption lengths, scores, teacher
win rates and candidates per teacher, time per stage and per run, and a grid of sample
clips (a thumbnail, the chosen caption and every candidate with its teacher and score).
The file has no external references: plots are embedded PNGs, thumbnails JPEGs, the CSS
is inline. Split-only builds (no captions) and builds with no clips get a report too.

Where each part lives:

- :mod:`.read`: the build folder into plain data (index, rejects, stats.json, config, the
  bounded spread sample of shards for teacher statistics, thumbnails); :class:`ReportError`.
- :mod:`.plots`: the matplotlib figures, as PNG data URIs.
- :mod:`.html` and ``templates/*.html.j2``: the page, rendered by an autoescaping Jinja2
  environment, so all text from the build (captions, titles, details) is HTML-escaped by
  the engine, never by hand.
"""
from __future__ import annotations

import os

from vidcurate.operators.write.destination import Destination
from vidcurate.operators.write.layout import REPORT_FILE
from vidcurate.pipelines.report.read import SCAN_CLIPS, ReportError

__all__ = ["ReportError", "write_report", "REPORT_FILE", "SCAN_CLIPS"]


def write_report(out: str, samples: int = 12, scan_clips: int = SCAN_CLIPS, version: str | None = None) -> str:
    """Write ``OUT/report.html`` for the build in ``out`` and return its path.

    Teacher statistics come from the json members of whole shards read until about
    ``scan_clips`` clips are counted (0: every shard), in a fixed spread order that starts
    with the shards of the sample clips, so the report of a huge build costs a few shards,
    not a pass over the dataset; the page says how much was read."""
    from vidcurate.pipelines.report import html, read

    data = read.load(os.fspath(out), version)
    shards = read.scan_shards(data, read.pick_samples(data["index"], samples), scan_clips)
    page = html.render(data, shards)
    dest = Destination(data["out"])
    dest.write_bytes(REPORT_FILE, page.encode("utf-8"))  # published whole
    return dest.path(REPORT_FILE)

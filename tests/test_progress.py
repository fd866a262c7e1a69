"""Build progress (pipelines/build/progress.py): bars on a terminal, quiet in logs, same records either way."""
from __future__ import annotations

import io
import sys
from typing import ClassVar

from rich.console import Console

from vidcurate.operators.base import Operator, RecordError, Resources
from vidcurate.pipelines.build.progress import Progress
from vidcurate.pipelines.runners.local import LocalRunner

STAGES = ["fan_out", "scorer"]


class FanOut(Operator):
    """One video -> three clips; video 4 is a reject."""

    name: ClassVar[str] = "fan_out"

    def process_record(self, record):
        if record["x"] == 4:
            raise RecordError("bad_video", "x=4")
        return [{**record, "clip": i} for i in range(3)]


class Scorer(Operator):
    name: ClassVar[str] = "scorer"
    resources: ClassVar[Resources] = Resources(batch_size=4)

    def process_batch(self, records):
        return [{**r, "score": r["x"] * 10 + r["clip"]} for r in records]


def run(progress=None) -> tuple[list[dict], dict]:
    emitted: list[dict] = []
    stats = LocalRunner([FanOut(), Scorer()], videos_per_chunk=3, progress=progress).run(
        ({"uri": f"v{i}", "x": i} for i in range(7)), lambda records, done: emitted.extend(records))
    return emitted, stats.to_dict()["counters"]


def test_not_a_terminal_prints_no_bars_and_at_most_a_summary_line(capfd):
    stream = io.StringIO()
    with Progress(7, STAGES, stream=stream) as progress:  # auto: a StringIO is not a TTY
        assert progress.mode == "lines"
        run(progress)
    assert stream.getvalue() == ""  # the run took far less than the 30 s between summary lines
    assert capfd.readouterr().err == ""
    with Progress(7, STAGES) as progress:  # default stream: stderr, captured (not a TTY) by pytest
        assert progress.mode == "lines"
        run(progress)
    assert capfd.readouterr().err == ""


def test_summary_lines_in_logs_are_plain_and_rate_limited():
    stream = io.StringIO()
    with Progress(7, STAGES, stream=stream, summary_every=1e-9) as progress:
        run(progress)
    lines = stream.getvalue().splitlines()
    assert lines and "\x1b" not in stream.getvalue() and "━" not in stream.getvalue()
    assert lines[-1].startswith("vidcurate: 7/7 videos")
    assert "fan_out 7->18" in lines[-1] and "scorer 18->18" in lines[-1]
    stream = io.StringIO()
    with Progress(7, STAGES, stream=stream, summary_every=3600) as progress:
        run(progress)
    assert stream.getvalue() == ""


def test_silent_mode_prints_nothing_even_on_a_terminal():
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with Progress(7, STAGES, enabled=False, console=console) as progress:
        run(progress)
    assert console.file.getvalue() == ""


def test_a_terminal_shows_a_bar_per_stage_with_counts():
    console = Console(file=io.StringIO(), force_terminal=True, width=140, color_system=None)
    with Progress(7, STAGES, enabled=True, console=console) as progress:
        assert progress.mode == "bars"
        run(progress)
    screen = console.file.getvalue()
    final = screen[screen.rfind("videos"):]  # the last render of the bars
    assert "━" in final
    lines = {line.split()[0]: line for line in final.splitlines() if line.strip()}
    assert "7/7" in lines["videos"] and "out     18" in lines["videos"]
    assert "7/7" in lines["fan_out"] and "out     18" in lines["fan_out"] and "/s" in lines["fan_out"]
    assert "18/18" in lines["scorer"] and "out     18" in lines["scorer"]


def test_the_runner_gives_the_same_records_and_stats_with_or_without_progress():
    plain, plain_counters = run()
    console = Console(file=io.StringIO(), force_terminal=True)
    with Progress(7, STAGES, enabled=True, console=console) as progress:
        shown, shown_counters = run(progress)
    assert shown == plain and shown_counters == plain_counters
    assert len(plain) == 19 and sum(r.get("status") == "rejected" for r in plain) == 1
    assert [progress.stages[s].records_in for s in STAGES] == [7, 18] and progress.videos == 7


def test_stderr_terminal_detection(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    assert Progress(1, ["a"]).mode == "bars"
    assert Progress(1, ["a"], enabled=False).mode == "off"
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert Progress(1, ["a"]).mode == "lines"
    assert Progress(1, ["a"], summary_every=None).mode == "off"

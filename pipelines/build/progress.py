"""Progress of a running build: per-stage bars on a terminal, a rare plain line in logs.

    with Progress(total_videos=len(sources), stages=[op.name for op in operators]) as progress:
        LocalRunner(operators, videos_per_chunk, progress=progress).run(sources, emit)

Three modes, chosen by ``enabled``:

* ``None`` (default): bars when the output stream (stderr) is a terminal; otherwise
  (CI, logs) quiet except one plain summary line at most every ``summary_every``
  seconds (30 s; ``None`` or 0 for none).
* ``True``: bars, whatever the stream is (tests pass a forced-terminal rich console).
* ``False``: fully silent.

Each stage shows the records it has taken in out of those that reached it so far
(the first stage: the videos), the records it gave out (ok ones; fan-out makes this
larger, rejects smaller), and its rate in records per second of the stage's own time
when the runner measures it (``seconds``), else of wall time. A top bar counts videos
through the whole pipeline (``videos_done``).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import IO

__all__ = ["Progress"]


@dataclass
class _Stage:
    name: str
    records_in: int = 0
    records_out: int = 0
    seconds: float = 0.0
    measured: bool = False  # seconds come from the runner (stage time), not wall time


class Progress:
    def __init__(self, total_videos: int, stages: list[str], enabled: bool | None = None, *,
                 summary_every: float | None = 30.0, stream: IO[str] | None = None, console=None):
        self.requested = enabled  # None: decide by the stream (bars on a terminal)
        self.total_videos = max(int(total_videos or 0), 0)
        self.stages = {name: _Stage(name) for name in stages}
        self.order = list(self.stages)
        self.videos = 0
        self.summary_every = summary_every
        self._stream = stream if stream is not None else (console.file if console is not None else sys.stderr)
        self._console = console
        if enabled is None:
            self.mode = "bars" if _isatty(self._stream) else "lines"
        else:
            self.mode = "bars" if enabled else "off"
        if self.mode == "lines" and not summary_every:
            self.mode = "off"
        self._started = None
        self._closed = False
        self._last_line = 0.0
        self._bars = None
        self._tasks: dict[str, int] = {}

    # ---- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> "Progress":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        if self._started is not None:
            return
        self._started = self._last_line = time.perf_counter()
        if self.mode == "bars":
            self._start_bars()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bars is not None:
            self._refresh_bars()
            self._bars.stop()

    # ---- what runners call -----------------------------------------------------------
    def advance(self, stage: str, records_in: int, records_out: int, seconds: float | None = None) -> None:
        """``stage`` took ``records_in`` ok records and gave ``records_out`` ok records."""
        if self._started is None:
            self.start()
        state = self.stages.get(stage)
        if state is None:  # a stage not announced up front: append it
            state = self.stages[stage] = _Stage(stage)
            self.order.append(stage)
            if self._bars is not None:
                self._tasks[stage] = self._bars.add_task(stage, total=None, **self._fields(state))
        state.records_in += records_in
        state.records_out += records_out
        if seconds is not None:
            state.seconds += seconds
            state.measured = True
        self._update()

    def videos_done(self, n: int) -> None:
        """``n`` source videos went through every stage (the runner emitted their records)."""
        if self._started is None:
            self.start()
        self.videos += n
        self._update()

    # ---- text ------------------------------------------------------------------------
    def rate(self, state: _Stage) -> float:
        seconds = state.seconds if state.measured else self.elapsed()
        return state.records_in / seconds if seconds > 0 else 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self._started if self._started is not None else 0.0

    def summary_line(self) -> str:
        """One plain line: videos done, elapsed time, each stage's in -> out and rate."""
        videos = f"{self.videos}/{self.total_videos}" if self.total_videos else str(self.videos)
        stages = ", ".join(f"{s.name} {s.records_in}->{s.records_out} ({_rate_text(self.rate(s))})"
                           for s in (self.stages[n] for n in self.order) if s.records_in or s.records_out)
        return f"vidcurate: {videos} videos, {self.elapsed():.0f} s" + (f"; {stages}" if stages else "")

    # ---- internals -------------------------------------------------------------------
    def _expected(self, name: str) -> int | None:
        """Records that reached stage ``name`` so far: the videos, or the previous stage's output."""
        at = self.order.index(name)
        if at == 0:
            return self.total_videos or None
        return self.stages[self.order[at - 1]].records_out or None  # nothing yet: no bar to fill

    def _fields(self, state: _Stage) -> dict:
        return {"out": state.records_out, "rate": _rate_text(self.rate(state))}

    def _update(self) -> None:
        if self._closed or self.mode == "off":
            return
        if self.mode == "bars":
            self._refresh_bars()
            return
        now = time.perf_counter()
        if now - self._last_line >= self.summary_every:
            self._last_line = now
            print(self.summary_line(), file=self._stream, flush=True)

    def _start_bars(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        console = self._console or Console(file=self._stream, force_terminal=True)
        self._bars = RichProgress(
            TextColumn("[bold]{task.description:<20}"), BarColumn(bar_width=30), MofNCompleteColumn(),
            TextColumn("out {task.fields[out]:>6}"), TextColumn("{task.fields[rate]:>9}"), TimeElapsedColumn(),
            console=console, refresh_per_second=4, transient=False)
        self._tasks["\0videos"] = self._bars.add_task("videos", total=self.total_videos or None,
                                                      out=0, rate="")
        for name in self.order:
            self._tasks[name] = self._bars.add_task(name, total=self._expected(name), **self._fields(self.stages[name]))
        self._bars.start()

    def _refresh_bars(self) -> None:
        bars = self._bars
        done = self.stages[self.order[-1]].records_out if self.order else 0
        bars.update(self._tasks["\0videos"], completed=self.videos, out=done,
                    rate=_rate_text(self.videos / self.elapsed()) if self.elapsed() > 0 else "")
        for name in self.order:
            state = self.stages[name]
            expected = self._expected(name)
            bars.update(self._tasks[name], completed=state.records_in,
                        total=max(expected, state.records_in) if expected is not None else None,
                        **self._fields(state))


def _rate_text(per_second: float) -> str:
    return f"{per_second:.0f}/s" if per_second >= 100 else f"{per_second:.1f}/s" if per_second >= 1 \
        else f"{per_second:.2f}/s"


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False

"""What a build tells its caller: the result summary, the failure budget and the errors.

A build's outcome is one of: a ``BuildResult`` (success); ``BuildError`` (it stopped mid-build,
or finished with more than run.max_failure_ratio of its inputs without a clip; it carries the
result, so the summary is printed beside the reason); ``OutputError`` (OUT cannot take this
build). ``FailureBudget`` counts every input's samples and rejects as the build goes.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from vidcurate.operators.base import is_ok
from vidcurate.operators.write.sample_writer import HELD
from vidcurate.pipelines.build.hints import hint_for


class BuildError(RuntimeError):
    """The build stopped, or finished with too many inputs failed (run.max_failure_ratio).

    ``result`` is the summary of what the build did (set once the outputs are written)."""

    def __init__(self, message: str, result: "BuildResult | None" = None):
        super().__init__(message)
        self.result = result


class OutputError(ValueError):
    """The output folder cannot take this build (it is a file, unwritable, or holds another build)."""


class WorkerLost(RuntimeError):
    """The runner lost a worker process in the middle of a video and gave up; the crash is charged
    to the videos it was on (operators/crash_ledger.py), and the supervisor restarts the build."""


@dataclass
class BuildResult:
    output: str
    inputs: int = 0
    inputs_done_before: int = 0  # skipped: a previous run of this build finished them
    inputs_with_samples: int = 0
    clips: int = 0
    rejects: Counter = field(default_factory=Counter)
    shards: list = field(default_factory=list)
    stage_seconds: dict = field(default_factory=dict)
    wall_seconds: float = 0.0
    retried: int | None = None  # retry-failed: source videos re-run
    skipped_files: int = 0  # files of an input folder that are not videos (not inputs)

    def summary(self) -> str:
        lines = [
            f"vidcurate build -> {self.output}",
            *([f"  retried:        {self.retried} source video(s) with transient rejects or not reached"
               if self.retried else "  retried:        nothing to retry (no transient rejects)"]
              if self.retried is not None else []),
            f"  videos in:      {self.inputs} "
            + (f"({self.inputs_done_before} done by an earlier run, skipped; {self.inputs_with_samples} of the "
               f"others gave clips)" if self.inputs_done_before else f"({self.inputs_with_samples} gave clips)"),
            *([f"  skipped:        {self.skipped_files} non-video file(s) in the input folder"]
              if self.skipped_files else []),
            f"  clips out:      {self.clips} in {len(self.shards)} shard(s)",
            f"  rejects:        {sum(self.rejects.values())}"
            + "".join(f"\n    {n:5d}  {key}" for key, n in self.rejects.most_common()),
            "  time per stage (s):"
            + "".join(f"\n    {secs:8.2f}  {stage}" for stage, secs in self.stage_seconds.items()),
            f"  wall time:      {self.wall_seconds:.1f} s",
        ]
        return "\n".join(lines)


class FailureBudget:
    """Tracks the samples and rejects of every input; stops a build failing wholesale."""

    def __init__(self, max_ratio: float, min_inputs: int):
        self.max_ratio, self.min_inputs = max_ratio, min_inputs
        self.inputs: set[str] = set()
        self.samples: Counter = Counter()  # uri -> samples it gave
        self.held: set[str] = set()  # inputs with samples still in an open shard: not failures
        self.reject_reasons: dict[str, Counter] = {}

    def record(self, records: list[dict], times: int = 1) -> None:
        """Count ``records`` (samples or rejects), each ``times`` times."""
        for r in records:
            self.inputs.add(r["uri"])
            if r.get(HELD):
                self.held.add(r["uri"])
            elif is_ok(r):
                self.samples[r["uri"]] += times
            else:
                self.reject_reasons.setdefault(r["uri"], Counter())[f"{r['error_stage']}/{r['error_reason']}"] += times

    def outcome(self, uri: str) -> str:
        """What one input gave: samples written and rejects by stage/reason."""
        rejects = ", ".join(f"{n} {reason}" for reason, n in self.reject_reasons.get(uri, Counter()).most_common())
        return f"{self.samples[uri]} clips written; rejected: {rejects or 'none'}"

    def check(self, final: bool = False, earlier: bool = False) -> None:
        """Raise BuildError when too many inputs yielded no clip. Mid-build (``final`` False) only
        once ``min_inputs`` inputs are done; ``earlier``: every input was done by earlier runs."""
        total = len(self.inputs)
        failed = total - len(self.held.union(self.samples))
        if total and (final or total >= self.min_inputs) and failed / total > self.max_ratio:
            reasons = self.failure_reasons()
            common = ", ".join(f"{k} ({n})" for k, n in reasons.most_common(3))
            verdict = ("nothing to do (every input was processed by an earlier run), and" if earlier
                       else "failed:" if final else "stopped:")
            # The hint of the most common reason that has one.
            hinted = next(((reason, hint_for(reason)) for reason, _ in reasons.most_common() if hint_for(reason)),
                          None)
            raise BuildError(
                f"{verdict} {failed} of {total} inputs ({failed / total:.0%}) yielded no clip, above "
                f"run.max_failure_ratio {self.max_ratio:.0%}; most common reasons: {common}. "
                f"See rejects.parquet for every input and reason."
                + (f"\nhint ({hinted[0]}): {hinted[1]}" if hinted else ""))

    def failure_reasons(self) -> Counter:
        """stage/reason -> inputs that yielded no clip with it as their most common reason."""
        return Counter(self.reject_reasons[u].most_common(1)[0][0]
                       for u in self.inputs - self.samples.keys() - self.held if u in self.reject_reasons)

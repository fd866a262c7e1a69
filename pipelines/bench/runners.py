"""`vidcurate bench runners` (and `bench ray`): the same build on the local, Ray and Beam
runners, wall time over the local runner's, in one run.

Every runner builds the same inputs (the demo's real sample videos, ``copies`` times over
under different names, so each copy is its own source video) with the same config into
fresh output folders. Each build is its own `vidcurate`-equivalent process, so its peak
memory is its own. With ``--repeats N`` the runners take turns N times (rounds: drift of
the machine's speed hits all alike) and the fastest build of each is kept.

Reported per runner:
- wall time, startup included, and the startup alone: Ray's ``ray.init`` + ``ray.shutdown``;
  for Beam, a one-element pipeline with the same options, timed in the same run (the fixed
  cost of starting Beam's runner);
- the bytes the coordinator received: what reached the Ray driver (``ray.driver_bytes``), the
  commit files the Beam process read (``beam.driver_bytes``), or the metadata the local sink
  took (``coordinator.metadata_bytes``), against the bytes written to shards;
- the coordinator's peak RSS: the build process's own (the Ray and Beam workers are other
  processes; the local runner does the work in it too);
- each stage's throughput (records in per second of that stage's own time).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from vidcurate.operators.write.layout import SHARDS_DIR, STATS_FILE
from vidcurate.pipelines import sample_media

RUNNERS = ("local", "ray", "beam")
TARGET = 1.5
_RECEIVED = {"ray": "ray.driver_bytes", "beam": "beam.driver_bytes", "local": "coordinator.metadata_bytes"}

# One build in a fresh process: prints a JSON line with its wall time and its own peak RSS.
_BUILD = """
import json, sys, time
from vidcurate.pipelines.bench.memory import peak_rss_mb
from vidcurate.pipelines.build import build
from vidcurate.pipelines.build.config import load_config
runner, manifest, out, config_path = sys.argv[1:5]
config = load_config(config_path or None, runner)
config.run = config.run.model_copy(update={"max_failure_ratio": 0.9})
started = time.perf_counter()
result = build(manifest, out, config, progress=False, report=False)
print(json.dumps({"seconds": time.perf_counter() - started, "clips": result.clips,
                  "peak_rss_mb": peak_rss_mb()}))
"""

_BEAM_STARTUP = """
import time
import apache_beam as beam
from vidcurate.pipelines.runners.beam.runner import BeamRunner
started = time.perf_counter()
with beam.Pipeline(options=BeamRunner([]).pipeline_options()) as p:
    p | beam.Create([1]) | beam.Map(lambda x: x)
print(time.perf_counter() - started)
"""


def _one(runner: str, manifest: str, out: str, config_path: str | None) -> dict:
    done = subprocess.run([sys.executable, "-c", _BUILD, runner, manifest, out, config_path or ""],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {runner} build failed: {done.stderr[-2000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    stats = json.load(open(os.path.join(out, STATS_FILE)))
    stages = {}
    for key, value in stats["seconds"].items():
        if key.endswith(".process"):
            name = key[: -len(".process")]
            count = stats["counters"].get(f"{name}.records_in", 0)
            stages[name] = {"records": count, "seconds": value, "per_s": count / value if value else 0.0}
    phases = {k: v for k, v in stats["seconds"].items() if k.split(".")[0] in ("ray", "beam")}
    shard_bytes = sum(os.path.getsize(os.path.join(root, n)) for root, _, names in
                      os.walk(os.path.join(out, SHARDS_DIR)) for n in names)
    return {**measured, "stages": stages, "phases": phases, "shard_bytes": shard_bytes,
            "received_bytes": stats["counters"].get(_RECEIVED[runner], 0)}


def _beam_startup() -> float:
    done = subprocess.run([sys.executable, "-c", _BEAM_STARTUP], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"a one-element Beam pipeline failed: {done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def _inputs(folder: str, copies: int) -> str:
    manifest = sample_media.make_demo_inputs(folder)
    rows = [json.loads(line) for line in open(manifest)]
    out = []
    for copy in range(copies):
        for row in rows:
            name = f"copy{copy}_{row['uri']}"
            os.link(os.path.join(folder, row["uri"]), os.path.join(folder, name))
            out.append({**row, "uri": name})
    path = os.path.join(folder, f"manifest-x{copies}.jsonl")
    with open(path, "w") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in out)
    return path


def run(config_path: str | None = None, workdir: str | None = None, copies: int = 3, repeats: int = 1,
        runners: tuple[str, ...] = RUNNERS) -> dict:
    """``repeats`` rounds, each building with every runner in turn; the fastest build of each is kept."""
    runners = ("local", *[r for r in runners if r != "local"])  # local is the baseline
    builds: dict[str, list[dict]] = {runner: [] for runner in runners}
    startup: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="vidcurate-bench-runners-", dir=workdir) as tmp:
        manifest = _inputs(os.path.join(tmp, "inputs"), copies)
        for round_ in range(repeats):
            for runner, results in builds.items():
                results.append(_one(runner, manifest, os.path.join(tmp, f"{runner}{round_}"), config_path))
        if "beam" in builds:
            startup["beam"] = min(_beam_startup() for _ in range(repeats))
    best = {runner: min(results, key=lambda r: r["seconds"]) for runner, results in builds.items()}
    if "ray" in best:
        startup["ray"] = best["ray"]["phases"].get("ray.init", 0.0) + best["ray"]["phases"].get("ray.shutdown", 0.0)
    local = best["local"]["seconds"]
    return {"runners": best, "ratios": {r: b["seconds"] / local for r, b in best.items() if r != "local"},
            "startup": startup, "config": config_path or "default", "copies": copies, "rounds": repeats}


def report(r: dict) -> str:
    best = r["runners"]
    lines = [
        f"Runners, same build: the demo inputs x{r['copies']} ({best['local']['clips']} clips), config {r['config']}, "
        f"{os.cpu_count()} CPUs, best of {r['rounds']} round{'' if r['rounds'] == 1 else 's'}",
        "  runner   wall s (startup incl.)  startup s   / local   target <= 1.5x   coordinator received"
        "          peak RSS of the build process",
    ]
    for runner, b in best.items():
        ratio = r["ratios"].get(runner)
        share = b["received_bytes"] / b["shard_bytes"] if b["shard_bytes"] else 0.0
        lines.append(
            f"  {runner:7s} {b['seconds']:10.1f}            "
            f"{r['startup'].get(runner, 0.0):8.1f}  {'' if ratio is None else f'{ratio:7.2f} x':>9s}   "
            f"{'baseline' if ratio is None else ('met' if ratio <= TARGET else 'MISSED'):14s} "
            f"{b['received_bytes'] / 1e3:9.1f} kB ({100 * share:.2f}% of {b['shard_bytes'] / 1e6:.1f} MB of shards)"
            f"  {b['peak_rss_mb']:7.0f} MB")
    if "ray" in best:
        phases = best["ray"]["phases"]
        lines.append(f"  ray runner (startup incl.): ray.init {phases.get('ray.init', 0):.1f} s, execution "
                     f"{phases.get('ray.execute', 0):.1f} s, shutdown {phases.get('ray.shutdown', 0):.1f} s")
    lines.append("  the local runner's process also does all the work; Ray's and Beam's workers are other processes")
    lines.append("  stage throughput (records/s of stage time)   " + "".join(f"{n:>9s}" for n in best))
    for name in best["local"]["stages"]:
        lines.append(f"    {name:40s} " + "".join(f"{best[n]['stages'].get(name, {'per_s': 0.0})['per_s']:9.1f}"
                                            for n in best))
    return "\n".join(lines)

"""`vidcurate bench scaling`: the CPU stage (probe, split with Panda-70M's code's settings, smart
extraction with keyframes, as `bench split` runs it) with 1 and with 2 CPUs, on the
local and the Ray runner, and a model of how it scales, checked against the second point.

Each build is its own process pinned to its CPUs (``sched_setaffinity``); for Ray it starts Ray itself
with ``num_cpus`` equal to them, so Ray runs that many tasks at once. The inputs are ``videos``
copies of real footage (bikes.mp4 looped, under different names, so each is its own video).

The model is Amdahl's law from the 1-CPU run alone. Its wall time T1 splits into the stages' own
work W (the sum of every stage's process time: decoding, detection, cutting) and the rest
S = T1 - W (the driver: planning, committing, index and tables; Ray's start-up is excluded).
- Ray runs a task per chunk of videos on every CPU, so all of W spreads: T(c) = S + W / c.
- The local runner works one video and one stage at a time in one process; only the encoders'
  threads reach a second CPU: T(c) = S + (W - E) + E / c, E the cutting stage's time.
The bench prints the prediction for 2 CPUs next to the measurement; the gap is what the model
misses (imbalance between videos, memory bandwidth, decoder threads, scheduling).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from vidcurate.operators.write.layout import STATS_FILE

_BUILD = """
import json, os, sys, time
cpus, runner, manifest, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cpus]))
from vidcurate.pipelines.build import build
from vidcurate.pipelines.build.config import BuildConfig
config = BuildConfig(pipeline=[{"op": "probe"}, {"op": "split_shots", "preset": "panda70m-code"},
                               {"op": "extract_clips", "asr_audio": False, "keyframes": "middle"}],
                     output={"require_caption": False}, run={"runner": runner, "cache_after": None})
started = time.perf_counter()
if runner == "ray":
    import logging, ray
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
ready = time.perf_counter()
result = build(manifest, out, config, progress=False, report=False)
done = time.perf_counter()
if runner == "ray":
    ray.shutdown()
print(json.dumps({"seconds": done - ready, "startup": ready - started, "clips": result.clips}))
"""


def _inputs(folder: str, videos: int, seconds: float) -> str:
    from vidcurate.pipelines.bench.split import make_input

    os.makedirs(folder, exist_ok=True)
    first = os.path.join(folder, "video0.mp4")
    make_input(first, seconds, None)
    rows = [{"uri": first}]
    for i in range(1, videos):
        path = os.path.join(folder, f"video{i}.mp4")
        os.link(first, path)
        rows.append({"uri": path})
    manifest = os.path.join(folder, "manifest.jsonl")
    with open(manifest, "w") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    return manifest


def _build(cpus: int, runner: str, manifest: str, out: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _BUILD, str(cpus), runner, manifest, out],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {runner} build on {cpus} CPU(s) failed: {done.stderr[-2000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    stats = json.load(open(os.path.join(out, STATS_FILE)))
    stages = {k[: -len(".process")]: v for k, v in stats["seconds"].items() if k.endswith(".process")}
    return {**measured, "stages": stages, "work": sum(stages.values())}


def run(workdir: str | None = None, videos: int = 4, seconds: float = 20, runners=("local", "ray"),
        repeats: int = 1) -> dict:
    cores = len(os.sched_getaffinity(0))
    counts = [1, 2] if cores >= 2 else [1]
    out: dict = {"cores": cores, "videos": videos, "seconds_of_video": seconds, "runners": {}}
    with tempfile.TemporaryDirectory(prefix="vidcurate-bench-scaling-", dir=workdir) as tmp:
        manifest = _inputs(os.path.join(tmp, "inputs"), videos, seconds)
        for runner in runners:
            points = {}
            for cpus in counts:
                runs = [_build(cpus, runner, manifest, os.path.join(tmp, f"{runner}{cpus}-{i}")) for i in range(repeats)]
                points[cpus] = min(runs, key=lambda r: r["seconds"])
            one = points[1]
            serial = max(0.0, one["seconds"] - one["work"])
            entry = {"points": points, "serial_seconds": serial, "work_seconds": one["work"]}
            if 2 in points:
                spread = one["work"] if runner == "ray" else one["stages"].get("extract_clips", 0.0)
                predicted = serial + (one["work"] - spread) + spread / 2
                entry.update(predicted_seconds_2=predicted, measured_seconds_2=points[2]["seconds"],
                             speedup_2_over_1=one["seconds"] / points[2]["seconds"],
                             model_error=(points[2]["seconds"] - predicted) / points[2]["seconds"])
            out["runners"][runner] = entry
    return out


def report(r: dict) -> str:
    lines = [f"Scaling: the CPU stage on {r['videos']} videos of {r['seconds_of_video']:.0f} s real footage, "
             f"1 and 2 CPUs ({r['cores']} here); Ray's start-up excluded, reported apart"]
    for runner, e in r["runners"].items():
        for cpus, p in e["points"].items():
            lines.append(f"  {runner:5s} {cpus} CPU  {p['seconds']:6.1f} s  {p['clips'] / p['seconds']:5.2f} clips/s "
                         f"({p['clips'] / p['seconds'] / cpus:.2f} per CPU)  start-up {p['startup']:.1f} s  stages "
                         + ", ".join(f"{k} {v:.1f}" for k, v in p["stages"].items()))
        if "predicted_seconds_2" in e:
            spread = "stage work" if runner == "ray" else "the other stages + cutting"
            lines.append(f"  {runner:5s} 2 CPUs / 1 CPU: {e['speedup_2_over_1']:.2f}x faster; model (Amdahl, from the "
                         f"1-CPU run: serial {e['serial_seconds']:.1f} s + {spread} of {e['work_seconds']:.1f} s / c) "
                         f"predicts {e['predicted_seconds_2']:.1f} s, measured {e['measured_seconds_2']:.1f} s "
                         f"({e['model_error']:+.0%})")
    return "\n".join(lines)

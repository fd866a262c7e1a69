"""`vidcurate bench ray`: the Ray runner's wall time over the local runner's, same build.

Both runners build the same inputs (the demo's real sample videos, ``copies`` times over
under different names, so each copy is its own source video) with the same config into
fresh output folders, in this process, one after the other; with ``--repeats N`` that pair
runs N times (rounds) and the fastest build of each runner is kept. The Ray time includes
starting and stopping a local Ray instance and its workers loading the models (about
6 s here, whatever the build's size). Also printed: each stage's throughput (records in
per second of that stage's own time) under both runners.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

from vidcurate.operators.write.layout import STATS_FILE
from vidcurate.pipelines import sample_media
from vidcurate.pipelines.build import build
from vidcurate.pipelines.build.config import load_config


def _one(runner: str, manifest: str, out: str, config_path: str | None) -> dict:
    config = load_config(config_path, runner)
    config.run = config.run.model_copy(update={"max_failure_ratio": 0.9})
    started = time.perf_counter()
    result = build(manifest, out, config, progress=False)
    seconds = time.perf_counter() - started
    stats = json.load(open(os.path.join(out, STATS_FILE)))
    stages = {}
    for key, value in stats["seconds"].items():
        if key.endswith(".process"):
            name = key[: -len(".process")]
            count = stats["counters"].get(f"{name}.records_in", 0)
            stages[name] = {"records": count, "seconds": value, "per_s": count / value if value else 0.0}
    phases = {k: v for k, v in stats["seconds"].items() if k.startswith("ray.")}
    return {"seconds": seconds, "clips": result.clips, "stages": stages, "phases": phases}


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


def run(config_path: str | None = None, workdir: str | None = None, copies: int = 3, repeats: int = 1) -> dict:
    """``repeats`` rounds, each building with the local runner and then with Ray (interleaved,
    so the machine's speed drift hits both alike); the fastest build of each is kept."""
    builds: dict[str, list[dict]] = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory(prefix="vidcurate-bench-ray-", dir=workdir) as tmp:
        manifest = _inputs(os.path.join(tmp, "inputs"), copies)
        for round_ in range(repeats):
            for runner, results in builds.items():
                results.append(_one(runner, manifest, os.path.join(tmp, f"{runner}{round_}"), config_path))
    local, ray = (min(results, key=lambda r: r["seconds"]) for results in builds.values())
    return {"local": local, "ray": ray, "ratio": ray["seconds"] / local["seconds"], "config": config_path or "default",
            "copies": copies, "rounds": repeats, "ray_phases": ray["phases"]}


def report(r: dict) -> str:
    ok = "met" if r["ratio"] <= 1.5 else "MISSED"
    lines = [
        f"Ray vs local runner: the demo inputs x{r['copies']} ({r['local']['clips']} clips), config {r['config']}, "
        f"{os.cpu_count()} CPUs, best of {r['rounds']} round{'' if r['rounds'] == 1 else 's'}",
        f"  local runner                 {r['local']['seconds']:7.1f} s",
        f"  ray runner (startup incl.)   {r['ray']['seconds']:7.1f} s   (ray.init "
        f"{r['ray_phases'].get('ray.init', 0):.1f} s, execution {r['ray_phases'].get('ray.execute', 0):.1f} s, "
        f"shutdown {r['ray_phases'].get('ray.shutdown', 0):.1f} s)",
        f"  ray / local wall time        {r['ratio']:7.2f} x   target <= 1.5x: {ok}",
        "  stage throughput (records/s of stage time)     local      ray",
    ]
    for name, stage in r["local"]["stages"].items():
        other = r["ray"]["stages"].get(name, {"per_s": 0.0})
        lines.append(f"    {name:40s} {stage['per_s']:8.1f} {other['per_s']:8.1f}")
    return "\n".join(lines)

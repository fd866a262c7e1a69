"""`vidcurate bench [NAME ...] [--quick] [--json FILE]`: every benchmark in one run, as ratios.

Each entry runs one benchmark module at the suite's size (full, or ``--quick``: sizes that
only check each benchmark runs end to end; their figures mean little) and reduces its result
to headline figures: a value, what it is measured against (a baseline timed in the same run,
or a published figure, said so), and the target when there is one. The suite prints each
benchmark's own report as it finishes, then one table of the headlines; ``--json`` writes
every benchmark's full result too. docs/PERFORMANCE.md holds the latest full run.

Absolute times drift on shared machines; ratios against a baseline timed in the same run,
on the same inputs, do not (much). No figure here is ever asserted by a test.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Headline:
    label: str
    value: float
    unit: str  # "x" (a ratio), "%" (a share, value in 0-1), or a unit such as "MB"
    target: str = ""  # e.g. ">= 1.5"; empty: reported, no target
    met: bool | None = None

    def row(self, judged: bool = True) -> str:
        shown = f"{self.value:.2f}x" if self.unit == "x" else f"{self.value:.1%}" if self.unit == "%" \
            else f"{self.value:.1f} {self.unit}"
        verdict = "" if self.met is None or not judged else ("met" if self.met else "MISSED")
        return f"{self.label:<58} {shown:>12}  {self.target:<10} {verdict}"


@dataclass(frozen=True)
class Benchmark:
    name: str
    what: str
    run: Callable[[bool, str], dict]          # (quick, workdir) -> the module's result
    report: Callable[[dict], str]             # the module's own report of it
    headlines: Callable[[dict], list[Headline]]


def _at_least(label: str, value: float, target: float, unit: str = "x") -> Headline:
    shown = f">= {target:g}" if unit == "x" else f">= {target:.0%}"
    return Headline(label, value, unit, shown, value >= target)


def _at_most(label: str, value: float, target: float, unit: str = "x") -> Headline:
    return Headline(label, value, unit, f"<= {target:g}", value <= target)


# ---- the entries ---------------------------------------------------------------------------
def _split(quick: bool, workdir: str) -> dict:
    from vidcurate.pipelines.bench import split

    return split.run(seconds=10 if quick else 40, repeats=1 if quick else 2, long_factor=2 if quick else 20,
                     workdir=os.path.join(workdir, "split"), echo=lambda _text: None, transnetv2=not quick)


def _split_headlines(r: dict) -> list[Headline]:
    q = r["ratios"]
    return [_at_least("CPU stage (smart, the default) vs Panda-70M-style", q["smart_speedup_vs_panda_style"], 1.5),
            Headline("CPU stage (smart) vs the one-pass re-encode limit", q["smart_over_one_pass_limit"], "x", "> 1",
                     q["smart_over_one_pass_limit"] > 1),
            Headline("cut quality: smart PSNR - Panda-style PSNR", q["smart_psnr_minus_panda_db"], "dB", ">= 0",
                     q["smart_psnr_minus_panda_db"] >= 0),
            _at_least("2 s GOP input: smart vs Panda-70M-style", q["smart_speedup_vs_panda_style_gop2s"], 1.5),
            Headline("2 s GOP input: smart PSNR - Panda-style PSNR", q["smart_psnr_minus_panda_db_gop2s"], "dB",
                     ">= 0", q["smart_psnr_minus_panda_db_gop2s"] >= 0),
            Headline("CPU stage (one_pass) vs Panda-70M-style", q["speedup_vs_panda_style"], "x"),
            _at_least("CPU stage: one-pass limit's time / ours (one_pass)", q["fraction_of_one_pass_limit"], 0.85, "%"),
            _at_least("decode pass + content detector vs ffmpeg decode-only", q["detection_vs_decode_only"], 0.9, "%"),
            _at_most(f"split: peak RSS on a {r['long_factor']}x longer input / short", q["peak_rss_long_over_short"],
                     1.2),
            Headline("CPU stage clips/s per core (smart)", r["ours_smart"]["clips"] / r["ours_smart"]["cpu_seconds"],
                     "clips/s")]


def _build_memory(quick: bool, workdir: str) -> dict:
    from vidcurate.pipelines.bench import build_memory

    return build_memory.run(seconds=6 if quick else 8, factor=2 if quick else 20, workdir=workdir)


def _scaling(quick: bool, workdir: str) -> dict:
    from vidcurate.pipelines.bench import scaling

    return scaling.run(workdir=workdir, videos=4, seconds=10 if quick else 20,
                       runners=("local",) if quick else ("local", "ray"))


def _scaling_headlines(r: dict) -> list[Headline]:
    heads = []
    for runner, e in r["runners"].items():
        if "speedup_2_over_1" in e:
            heads += [Headline(f"scaling ({runner}): clips/s with 2 CPUs / with 1", e["speedup_2_over_1"], "x"),
                      Headline(f"scaling model ({runner}): measured - predicted, 2 CPUs", e["model_error"], "%")]
    return heads


def _scenes(quick: bool, workdir: str) -> dict:
    from vidcurate.pipelines.bench import scenes

    return scenes.run(videos=2 if quick else 4, shots=4 if quick else 8, workdir=os.path.join(workdir, "scenes"))


def _scenes_headlines(r: dict) -> list[Headline]:
    ours, peer = r["detectors"]["ours (split_shots content)"], r["detectors"]["PySceneDetect detect(ContentDetector)"]
    return [Headline("splitting: ours vs PySceneDetect ContentDetector, speed", peer["seconds"] / ours["seconds"], "x"),
            Headline("splitting: cut F1 ours (known cuts)", ours["f1"], "%"),
            Headline("splitting: cut F1 PySceneDetect (known cuts)", peer["f1"], "%")]


PEER_VIDEOS = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")


def _peers(quick: bool, workdir: str) -> dict:
    """video2dataset's cut detection + exact clipping (its own venv, installed once) and `vidcurate split`
    on the same three real videos, each a fresh process timed from outside (start-up included on both sides)."""
    import shutil
    import subprocess
    import sys

    import pyarrow.parquet as pq

    from vidcurate.pipelines import sample_media
    from vidcurate.pipelines.bench import peers

    folder = os.path.join(workdir, "peers")
    os.makedirs(folder, exist_ok=True)
    videos = [sample_media.sample(name) for name in PEER_VIDEOS]
    peer = peers.run(videos, folder)
    inputs = os.path.join(folder, "inputs")
    os.makedirs(inputs, exist_ok=True)
    for video in videos:
        if not os.path.exists(os.path.join(inputs, os.path.basename(video))):
            shutil.copy(video, inputs)
    out = os.path.join(folder, "ours")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vidcurate.pipelines.cli", "split", inputs, "-o", out, "--overwrite"],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"vidcurate split failed: {done.stderr[-2000:]}")
    rows = pq.read_table(os.path.join(out, "index.parquet"), columns=["uri", "start"]).to_pylist()
    ours = {name: [round(t, 2) for t in sorted(r["start"] for r in rows if os.path.basename(r["uri"]) == name)[1:]]
            for name in PEER_VIDEOS}  # clip starts (s) after the first: where the split cut
    return {"peer": peer, "ours": {"seconds": seconds, "cuts": ours, "clips": len(rows),
                                   "inputs": sorted(os.listdir(inputs))}}


def _peers_report(r: dict) -> str:
    from vidcurate.pipelines.bench import peers

    ours = r["ours"]
    lines = [peers.report(r["peer"]),
             f"vidcurate split on the sample folder ({len(ours['inputs'])} files): {ours['seconds']:.1f} s, "
             f"{ours['clips']} clips; clip starts (s) after the first: "
             + "; ".join(f"{n}: {' '.join(map(str, c)) or '(none)'}" for n, c in ours["cuts"].items())]
    return "\n".join(lines)


def _peers_headlines(r: dict) -> list[Headline]:
    peer = r["peer"]
    if "error" in peer:
        raise RuntimeError(f"the peer could not run: {peer['error']}")
    return [Headline("video2dataset wall time / vidcurate split (3 real videos, start-up incl.)",
                     peer["seconds"] / r["ours"]["seconds"], "x"),
            Headline("video2dataset's own shard time / vidcurate split's wall time", peer["shard_seconds"]
                     / r["ours"]["seconds"], "x"),
            Headline("bikes.mp4 (5 true cuts): cuts video2dataset found", len(peer["cuts"].get("bikes.mp4", [])),
                     "cuts"),
            Headline("clips written: video2dataset (every scene, no length rule)", peer["clips"], "clips"),
            Headline("clips written: vidcurate split (Panda-70M's rules: shots under 2 s dropped)",
                     r["ours"]["clips"], "clips")]


def _shards(quick: bool, workdir: str) -> dict:
    from vidcurate.pipelines.bench import shards

    return shards.run(total_mb=40 if quick else 200, repeats=1 if quick else 2, workdir=workdir)


def _teachers(quick: bool, workdir: str) -> dict:
    from vidcurate.pipelines.bench import teachers

    return teachers.run(clips=8 if quick else 32, repeats=1 if quick else 2, workdir=workdir)


def _loader(quick: bool, workdir: str) -> dict:
    from vidcurate.pipelines.bench import loader

    return loader.run(copies=1 if quick else 4, repeats=1 if quick else 2, workdir=os.path.join(workdir, "loader"))


def _runners(quick: bool, workdir: str) -> dict:
    from vidcurate.pipelines.bench import runners

    return runners.run(workdir=workdir, copies=1, runners=("local",) if quick else runners.RUNNERS)


def _runners_headlines(r: dict) -> list[Headline]:
    """Each runner's ratio, and the default build end to end on the local runner: clips/s per core and
    where its time goes (each stage's share of the stages' own time)."""
    local, cores = r["runners"]["local"], len(os.sched_getaffinity(0))
    heads = [_at_most(f"{name} runner wall time / local", ratio, 1.5) for name, ratio in r["ratios"].items()]
    heads.append(Headline("default build (local), clips/s per core, end to end", local["clips"] / local["seconds"]
                          / cores, "clips/s"))
    total = sum(stage["seconds"] for stage in local["stages"].values()) or 1.0
    for name, stage in sorted(local["stages"].items(), key=lambda kv: -kv[1]["seconds"])[:3]:
        heads.append(Headline(f"default build: share of stage time in {name}", stage["seconds"] / total, "%"))
    return heads


def _coordinator(quick: bool, workdir: str) -> dict:
    from vidcurate.pipelines.bench import coordinator

    return coordinator.run(clips=20_000 if quick else 200_000, workdir=workdir)


def _selection(quick: bool, workdir: str) -> dict:
    from vidcurate.pipelines.bench import selection

    return selection.run(clips=100 if quick else 400, epochs=1 if quick else 3, seed=0, noise=0.2, small=True,
                         workdir=os.path.join(workdir, "selection"), repeats=1, echo=lambda _text: None)


def _selection_headlines(r: dict) -> list[Headline]:
    rows, ceiling = r["rows"], r["human_human_agreement"]
    panda, text_only = rows["retriever, Panda hard negatives"], rows["text-only, Panda hard negatives"]
    return [Headline("selection: agreement with the human pick, fine-tuned", panda["agreement"], "%"),
            _at_least("selection: that agreement / human-human agreement", panda["agreement"] / ceiling, 0.9, "%"),
            Headline("selection: faithful pick, fine-tuned vs text-only (points)",
                     100 * (panda["faithful"] - text_only["faithful"]), "points"),
            _at_least("selection operator vs bare model forward", r["throughput"]["ratio"], 0.9, "%"),
            Headline("selection operator vs decode + forward one after the other",
                     r["throughput"]["ratio_to_decode_then_forward"], "%")]


def _refinement(quick: bool, workdir: str) -> dict:
    from vidcurate.pipelines.bench import refinement

    return refinement.run(clips=80 if quick else 200, epochs=1 if quick else 8, rounds=1,
                          noises=[0.4], seed=0, small=True, workdir=os.path.join(workdir, "refinement"),
                          echo=lambda _text: None, retriever_epochs=2 if quick else 5)


def _refinement_headlines(r: dict) -> list[Headline]:
    from vidcurate.pipelines.bench.refinement_report import round0_row

    rows = r["noises"]["0.4"]["rows"]
    start = round0_row(rows)["selected"]["accuracy"]
    best = max((row for name, row in rows.items() if ", round " in name),
               key=lambda row: row["selected"]["accuracy"])
    steps = sum(row.get("steps", 0) for row in rows.values())
    seconds = sum(row.get("train_seconds", 0) for row in rows.values())  # the training loop's own time
    out = [Headline("refinement: selected accuracy, best round / round 0", best["selected"]["accuracy"] / start, "x")]
    if steps and seconds:
        out.append(Headline("refinement: student training steps/s", steps / seconds, "steps/s"))
    return out


def _annotate(quick: bool, workdir: str) -> dict:
    from vidcurate.pipelines.bench import annotate

    return annotate.run(clips=100 if quick else 1000, annotators=4 if quick else 8, seconds=3 if quick else 20,
                        keep=os.path.join(workdir, "annotate"), echo=lambda _text: None)


def _annotate_headlines(r: dict) -> list[Headline]:
    lat = r["latency_ms"]
    submit = lat.get("submit", next(iter(lat.values())))
    return [Headline("annotation server: submissions stored exactly once", 1.0 if r["ok"] else 0.0, "%", "= 100%",
                     bool(r["ok"])),
            Headline("annotation server: submit latency p95", submit["p95"], "ms")]


def _modules():
    from vidcurate.pipelines.bench import coordinator, runners, selection, shards, split, teachers
    from vidcurate.pipelines.bench import annotate, build_memory, loader, refinement, refinement_report, scaling, scenes

    return {
        "split": Benchmark("split", "the CPU stage (probe + split + stitch + extract + keyframes) vs Panda-70M-style "
                           "tools, the one-pass limit and ffmpeg decode-only; memory on a 20x longer input",
                           _split, split.report, _split_headlines),
        "scenes": Benchmark("scenes", "shot detection vs PySceneDetect's detect(ContentDetector) (Panda-70M's own "
                            "splitter) on synthetic videos with known cuts: speed, precision and recall",
                            _scenes, scenes.report, _scenes_headlines),
        "peers": Benchmark("peers", "a real peer from PyPI in its own venv (video2dataset: cut detection + exact "
                           "clipping) beside `vidcurate split` on the same real videos: wall time and cuts found",
                           _peers, _peers_report, _peers_headlines),
        "shards": Benchmark("shards", "shard writing vs a plain tar write of the same bytes", _shards, shards.report,
                            lambda r: [_at_least("shard writer vs plain tar throughput", r["ratio"], 0.9, "%")]),
        "teachers": Benchmark("teachers", "a teacher inside the pipeline vs its model called directly", _teachers,
                              teachers.report,
                              lambda r: [_at_least("teacher in the pipeline vs direct model calls", r["ratio"], 0.9,
                                                   "%"),
                                         Headline("teacher tokens/s (a tiny random model, CPU)", r["tokens_per_s"],
                                                  "tokens/s")]),
        "loader": Benchmark("loader", "training loader: clips/s decoded from the shards vs decord alone on the same "
                            "mp4s", _loader, loader.report,
                            lambda r: [_at_least("training loader vs decord alone, clips/s", r["ratio"], 0.8, "%")]),
        "runners": Benchmark("runners", "the default build on local, Ray and Beam: wall time over local's; the "
                             "local build end to end: clips/s per core, where the time goes", _runners, runners.report,
                             _runners_headlines),
        "build-memory": Benchmark("build-memory", "the default build's peak RSS on a short input and a 20x longer "
                                  "one", _build_memory, build_memory.report,
                                  lambda r: [_at_most(f"default build: peak RSS on a {r['factor']}x longer input / "
                                                      "short", r["ratio"], 1.2)]),
        "scaling": Benchmark("scaling", "the CPU stage with 1 and 2 CPUs on the local and Ray runners, and an "
                             "Amdahl model from the 1-CPU run checked against the 2-CPU one", _scaling, scaling.report,
                             _scaling_headlines),
        "coordinator": Benchmark("coordinator", "the coordinator's memory vs a process holding every row",
                                 _coordinator, coordinator.report,
                                 lambda r: [_at_most("coordinator memory growth / holding every row", r["ratio"],
                                                     0.25)]),
        "selection": Benchmark("selection", "selectors on held-out synthetic clips vs the human-human ceiling",
                               _selection, selection.report, _selection_headlines),
        "refinement": Benchmark("refinement", "the data flywheel on a synthetic world: accuracy per round",
                                _refinement, refinement_report.report, _refinement_headlines),
        "annotate": Benchmark("annotate", "the annotation server under simulated annotators", _annotate,
                              annotate.report, _annotate_headlines),
    }


def names() -> list[str]:
    return ["split", "scenes", "peers", "shards", "teachers", "loader", "runners", "build-memory", "scaling",
            "coordinator", "selection", "refinement", "annotate"]


def run(chosen: list[str], quick: bool, workdir: str | None = None, echo=print) -> dict:
    """Run the ``chosen`` benchmarks (all when empty); the suite's result (headlines and full results)."""
    entries = _modules()
    unknown = [n for n in chosen if n not in entries]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; the suite has {', '.join(names())}")
    order = [n for n in names() if n in (chosen or names())]
    workdir = workdir or tempfile.mkdtemp(prefix="vidcurate-bench-suite-")
    os.makedirs(workdir, exist_ok=True)
    suite = {"machine": machine(), "quick": quick, "benchmarks": {}}
    started = time.perf_counter()
    for name in order:
        entry = entries[name]
        echo(f"== {name}: {entry.what}")
        clock = time.perf_counter()
        try:
            result = entry.run(quick, workdir)
        except Exception as exc:  # one benchmark failing must not lose the others' figures
            echo(f"   failed: {type(exc).__name__}: {exc}")
            suite["benchmarks"][name] = {"what": entry.what, "error": f"{type(exc).__name__}: {exc}",
                                         "seconds": time.perf_counter() - clock}
            continue
        heads = entry.headlines(result)
        echo(entry.report(result))
        suite["benchmarks"][name] = {"what": entry.what, "seconds": time.perf_counter() - clock,
                                     "headlines": [h.__dict__ for h in heads], "result": result}
    suite["seconds"] = time.perf_counter() - started
    echo(summary(suite))
    return suite


def summary(suite: dict) -> str:
    lines = ["", f"vidcurate bench{' --quick' if suite['quick'] else ''}: {suite['machine']['cpus']} CPUs, "
                 f"{suite['machine']['processor']}, {suite['seconds'] / 60:.1f} min"
                 + (" (quick sizes only check that each benchmark runs: no verdicts)" if suite["quick"] else ""),
             f"{'benchmark / figure':<58} {'value':>12}  {'target':<10} verdict"]
    for name, entry in suite["benchmarks"].items():
        lines.append(f"{name} ({entry['seconds']:.0f} s)" + (f": FAILED {entry['error']}" if "error" in entry else ""))
        lines += ["  " + Headline(**h).row(judged=not suite["quick"]) for h in entry.get("headlines", [])]
    return "\n".join(lines)


def machine() -> dict:
    return {"cpus": len(os.sched_getaffinity(0)), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "memory_gb": round(os.sysconf("SC_PAGE_SIZE")
                                                                    * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def write_json(suite: dict, path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(suite, handle, indent=2, default=str)

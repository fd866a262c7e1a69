"""`vidcurate bench build-memory`: the default build's peak memory on a short input and on one
``factor`` times longer (the issue's 20x), each in its own process.

The input is Big Buck Bunny (real footage with its AAC soundtrack) looped, so every loop adds a
real hard cut and a clip, and every teacher of the default config (speech, OCR, metadata) runs on
every clip. Peak RSS is the build process's VmHWM (it does all the work on the local runner) or its
largest child's (ffmpeg), whichever is larger. A ratio near 1 says the build streams: a long
video's clips are cut, captioned and written a batch at a time.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from vidcurate.operators.media import run_ffmpeg
from vidcurate.pipelines import sample_media

_BUILD = """
import json, resource, sys, time
from vidcurate.pipelines.bench.memory import peak_rss_mb
from vidcurate.pipelines.build import build
from vidcurate.pipelines.build.config import load_config
manifest, out = sys.argv[1:3]
config = load_config(None, "local")
started = time.perf_counter()
result = build(manifest, out, config, progress=False, report=False)
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"seconds": time.perf_counter() - started, "clips": result.clips,
                  "peak_rss_mib": max(peak_rss_mb(), children), "own_peak_rss_mib": peak_rss_mb()}))
"""


def make_input(path: str, seconds: float) -> str:
    """The looped video and a one-row manifest with its title and description (the metadata
    teacher's text, as the demo gives it); returns the manifest's path."""
    loops = max(0, int(seconds // 5.3))
    run_ffmpeg(["-y", "-stream_loop", str(loops), "-i", sample_media.sample("bigbuckbunny.mp4"), "-t", f"{seconds}",
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", "-c:a", "aac", path],
               f"building benchmark input {path}")
    manifest = path[:-4] + ".jsonl"
    with open(manifest, "w") as handle:
        handle.write(json.dumps({"uri": os.path.basename(path), "title": "Big Buck Bunny wakes up",
                                 "description": "A big grey cartoon rabbit crawls out of his burrow and stretches.",
                                 "license": sample_media.BBB_CREDIT}) + "\n")
    return manifest


def _build(manifest: str, out: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _BUILD, manifest, out], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the default build of {manifest} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(seconds: float = 10, factor: int = 20, workdir: str | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="vidcurate-bench-build-memory-", dir=workdir) as tmp:
        short, long = os.path.join(tmp, "short.mp4"), os.path.join(tmp, "long.mp4")
        result = {"seconds_of_video": seconds, "factor": factor,
                  "short": _build(make_input(short, seconds), os.path.join(tmp, "out-short")),
                  "long": _build(make_input(long, seconds * factor), os.path.join(tmp, "out-long"))}
    result["ratio"] = result["long"]["peak_rss_mib"] / result["short"]["peak_rss_mib"]
    return result


def report(r: dict) -> str:
    s, l = r["short"], r["long"]
    return "\n".join([
        f"Default build (local runner, every default teacher), Big Buck Bunny looped: {r['seconds_of_video']:.0f} s vs "
        f"{r['seconds_of_video'] * r['factor']:.0f} s ({r['factor']}x)",
        f"  short: {s['clips']} clips in {s['seconds']:.1f} s, peak RSS {s['peak_rss_mib']:.0f} MiB",
        f"  long:  {l['clips']} clips in {l['seconds']:.1f} s, peak RSS {l['peak_rss_mib']:.0f} MiB",
        f"  peak RSS long / short: {r['ratio']:.2f}x (target <= 1.2)"])

"""Peer benchmark: video2dataset (PyPI) cut detection + clipping on local video files.

video2dataset (iejMac/video2dataset) runs PySceneDetect's ContentDetector over each video
(CutDetectionSubsampler, scenes as [start_frame, end_frame) at the source fps) and, with
``cuts_are_clips``, hands the scenes (in seconds) to its ClippingSubsampler, which splits the
video with one ``ffmpeg -f segment`` call. This module runs that, as a user of the tool would,
and reads back what it wrote.

Everything video2dataset-specific runs in its own virtual environment, made once with this
Python (``sys.executable -m venv``) under ~/.cache/vidcurate/peers/video2dataset and reused
while its pins (PINS) are unchanged. Its requirements clash with ours (numpy<2, torch==2.1.2,
pyarrow<15), hence the separate venv; this side uses the standard library only (ffmpeg's
path comes from imageio-ffmpeg, vidcurate's own ffmpeg, or from PATH).

The run: the input list is a CSV with a ``url`` column of absolute paths (local files are
read, not downloaded); the config (written as JSON, which is YAML) has CutDetectionSubsampler
(threshold 27, min_scene_len 15, mode "all", original fps only, cuts_are_clips) and
ClippingSubsampler (precision PRECISION); output_format "files"; 2 processes x 2 threads,
the videos split into 2 shards, since video2dataset parallelises over shards. ``ffmpeg`` is
a symlink in a bin dir put first on PATH (ffmpeg-python calls it by name; no ffprobe is
needed). Timed: the whole subprocess (its python start-up, imports and spawned workers
included), apart ``python -c "import video2dataset"``, and the workers' own per-shard durations
from its ``*_stats.json``. Counted from its per-clip JSON
and per-shard stats: videos that succeeded, scene boundaries per video (frame numbers at
the source fps: the start frame of every scene but the first), and mp4 clips written.

    python -m vidcurate.pipelines.bench.peers   # the sample videos (bikes: cuts 30/76/137/187/242)
"""
from __future__ import annotations

import csv
import glob
import json
import math
import os
import shutil
import subprocess
import sys
import time

VENV = os.path.join(os.path.expanduser("~/.cache/vidcurate"), "peers", "video2dataset")
PINS = ["video2dataset==1.3.0", "pyarrow<15", "numpy<2"]
PRECISION = "exact"  # "low" stream-copies and can only split at existing keyframes
PROCESSES = 2
TIMEOUT = 1800.0  # seconds, for the install and for the run alike


def _tail(text: str | bytes | None, lines: int = 15) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "\n".join((text or "").strip().splitlines()[-lines:])


def _ffmpeg() -> str:
    try:
        import imageio_ffmpeg  # vidcurate's own ffmpeg (a static build in the wheel)
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # noqa: BLE001 - fall back to PATH
        found = shutil.which("ffmpeg")
        if not found:
            raise RuntimeError("no ffmpeg: neither imageio-ffmpeg nor ffmpeg on PATH")
        return found


def _env(venv: str) -> dict:
    bin_dir = os.path.join(venv, "ffmpeg-bin")
    os.makedirs(bin_dir, exist_ok=True)
    link = os.path.join(bin_dir, "ffmpeg")
    target = _ffmpeg()
    if os.path.realpath(link) != os.path.realpath(target):
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(target, link)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PATH=os.pathsep.join([bin_dir, os.path.join(venv, "bin"), env.get("PATH", "")]),
               VIRTUAL_ENV=venv, WANDB_MODE="disabled", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def _install(venv: str, env: dict) -> float:
    """Make or reuse the venv; returns the seconds spent installing (0.0 when reused)."""
    py, marker = os.path.join(venv, "bin", "python"), os.path.join(venv, ".vidcurate-pins.json")
    if os.path.exists(marker) and os.path.exists(py):
        with open(marker) as handle:
            if json.load(handle) == PINS:
                return 0.0
    start = time.perf_counter()
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, capture_output=True, timeout=300)
    subprocess.run([py, "-m", "pip", "install", "-q", *PINS], check=True, capture_output=True, env=env,
                   timeout=TIMEOUT)
    with open(marker, "w") as handle:
        json.dump(PINS, handle)
    return time.perf_counter() - start


def _config(shard_size: int) -> dict:
    return {
        "subsampling": {
            "CutDetectionSubsampler": {"cuts_are_clips": True, "args": {
                "cut_detection_mode": "all", "framerates": None, "threshold": 27, "min_scene_len": 15}},
            "ClippingSubsampler": {"args": {"min_length": 0.0, "precision": PRECISION}},
        },
        "reading": {"yt_args": {"download_size": 360, "download_audio_rate": 44100, "yt_metadata_args": None},
                    "timeout": 60, "sampler": None},
        "storage": {"number_sample_per_shard": shard_size, "oom_shard_count": 5, "captions_are_subtitles": False},
        "distribution": {"processes_count": PROCESSES, "thread_count": 2, "subjob_size": 1000,
                         "distributor": "multiprocessing"},
    }


def _read_output(out: str) -> dict:
    stats = [json.load(open(p)) for p in glob.glob(os.path.join(out, "*_stats.json"))]
    cuts, fps, clips, errors = {}, {}, {}, {}
    for path in sorted(glob.glob(os.path.join(out, "*", "*.json"))):
        with open(path) as handle:
            meta = json.load(handle)
        name = os.path.basename(meta.get("url", "?"))
        if meta.get("status") != "success":
            errors[name] = meta.get("error_message") or meta.get("status")
            continue
        scenes = (meta.get("cuts") or {}).get("cuts_original_fps") or []
        cuts[name] = [int(start) for start, _ in scenes[1:]]
        fps[name] = (meta.get("cuts") or {}).get("original_fps")
        clips[name] = clips.get(name, 0) + os.path.exists(path[:-len(".json")] + ".mp4")
    return {"ok_videos": sum(s.get("successes", 0) for s in stats), "cuts": cuts, "fps": fps,
            "clips": sum(clips.values()), "clips_per_video": clips, "errors": errors,
            "shards": len(stats), "shard_seconds": sum(s.get("duration", 0.0) for s in stats)}


def run(videos: list[str], workdir: str) -> dict:
    """Run video2dataset's cut detection + clipping over ``videos``; figures, or {"error": ...}."""
    videos = [os.path.abspath(v) for v in videos]
    stage = "installing video2dataset"
    try:
        env = _env(VENV)
        install_seconds = _install(VENV, env)
        py = os.path.join(VENV, "bin", "python")
        stage = "importing video2dataset"
        subprocess.run([py, "-c", "import video2dataset"], check=True, capture_output=True, env=env, timeout=600)
        start = time.perf_counter()  # second import: warm file cache, the cost of every spawned worker
        subprocess.run([py, "-c", "import video2dataset"], check=True, capture_output=True, env=env, timeout=600)
        import_seconds = time.perf_counter() - start
        version = subprocess.run([py, "-c", "import importlib.metadata as m; print(m.version('video2dataset'))"],
                                 check=True, capture_output=True, text=True, env=env).stdout.strip()
        stage = "running video2dataset"
        folder = os.path.join(os.path.abspath(workdir), "video2dataset")
        out, tmp = os.path.join(folder, "out"), os.path.join(folder, "tmp")
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(tmp)
        urls, cfg_path = os.path.join(folder, "urls.csv"), os.path.join(folder, "config.yaml")
        with open(urls, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["url"])
            writer.writerows([v] for v in videos)
        config = _config(max(1, math.ceil(len(videos) / PROCESSES)))
        with open(cfg_path, "w") as handle:
            json.dump(config, handle, indent=2)  # JSON is YAML: OmegaConf.load reads it
        cmd = [os.path.join(VENV, "bin", "video2dataset"), f"--url_list={urls}", "--input_format=csv",
               "--url_col=url", f"--output_folder={out}", "--output_format=files", f"--tmp_dir={tmp}",
               f"--config={cfg_path}"]  # incremental (default): "overwrite" deletes its own _tmp/
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=folder, timeout=TIMEOUT)
        seconds = time.perf_counter() - start
        with open(os.path.join(folder, "log.txt"), "w") as handle:
            handle.write(proc.stdout + "\n---- stderr ----\n" + proc.stderr)
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
        found = _read_output(out)
        if not found["shards"]:
            return {"peer": f"video2dataset {version}",
                    "error": f"no shard stats in {out}; its stderr ends:\n{_tail(proc.stderr)}"}
    except subprocess.CalledProcessError as err:
        return {"peer": "video2dataset", "error": f"{stage} failed (exit {err.returncode}): "
                f"{_tail(err.stderr) or _tail(err.stdout)}"}
    except subprocess.TimeoutExpired as err:
        return {"peer": "video2dataset", "error": f"{stage} timed out after {err.timeout:.0f} s: {_tail(err.stderr)}"}
    except (OSError, RuntimeError) as err:
        return {"peer": "video2dataset", "error": f"{stage} failed: {err}"}
    return {"peer": f"video2dataset {version}", "videos": len(videos), "seconds": seconds,
            "import_seconds": import_seconds, "install_seconds": install_seconds, **found,
            "config": config, "pins": PINS, "output": out}


def report(r: dict) -> str:
    if "error" in r:
        return f"{r['peer']}: ERROR\n{r['error']}"
    lines = [f"{r['peer']}  (ContentDetector 27/15, clipping precision "
             f"{r['config']['subsampling']['ClippingSubsampler']['args']['precision']})",
             f"  videos ok      {r['ok_videos']}/{r['videos']}   shards {r['shards']}",
             f"  wall time      {r['seconds']:.2f} s   (python -c 'import video2dataset': "
             f"{r['import_seconds']:.2f} s; install {r['install_seconds']:.0f} s)",
             f"  in its shards  {r['shard_seconds']:.2f} s   (the workers' own per-shard durations, summed; "
             "the rest is start-up)",
             f"  clips written  {r['clips']}",
             f"  {'video':<26}{'fps':>7}{'clips':>7}  cut frames (scene starts)"]
    for name in sorted(set(r["cuts"]) | set(r["errors"])):
        if name in r["errors"]:
            lines.append(f"  {name:<26}{'-':>7}{'-':>7}  FAILED: {_tail(str(r['errors'][name]), 2)}")
        else:
            fps = r["fps"].get(name)
            lines.append(f"  {name:<26}{fps or 0:>7.2f}{r['clips_per_video'].get(name, 0):>7}  "
                         f"{' '.join(map(str, r['cuts'][name])) or '(none)'}")
    return "\n".join(lines)


if __name__ == "__main__":
    import tempfile

    from vidcurate.pipelines import sample_media

    names = ["bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"]
    with tempfile.TemporaryDirectory(prefix="peers-") as work:
        print(report(run([sample_media.sample(n) for n in names], work)))

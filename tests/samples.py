"""Test media: the real sample videos of vidcurate.pipelines.sample_media, and the generators
only the tests use (long single shots, dissolves, stills, variable frame rate, rotation,
truncated files). Every cut position and defect is known exactly."""
from __future__ import annotations

import os

from vidcurate.operators.media import run_ffmpeg
from vidcurate.pipelines.sample_media import (  # noqa: F401  (re-exported for the tests)
    BBB_CREDIT, BIKES_CUT_FRAMES, BIKES_FRAMES, CARPHONE_FRAMES_AT_25, fit_filter, make_carphone_then_bikes,
    make_demo_inputs, make_truncated, sample, sample_dir, x264_args,
)

BIKES_CUT_SECONDS = (1.2, 3.04, 5.48, 7.48, 9.68)  # bikes.mp4's hard cuts (frames 30, 76, 137, 187, 242 at 25 fps)


def make_long_single_shot(path: str, passes: int = 3) -> float:
    """One continuous shot with no cut: the 4 s carphone clip played forward, backward,
    forward, ... ``passes`` times (25 fps, 176x144). Returns its duration in seconds."""
    n = CARPHONE_FRAMES_AT_25
    graph = [f"[0:v]fps=25,trim=end_frame={n},setpts=PTS-STARTPTS,split={passes}"
             + "".join(f"[s{i}]" for i in range(passes))]
    graph += [f"[s{i}]{'reverse,' if i % 2 else ''}setpts=PTS-STARTPTS[p{i}]" for i in range(passes)]
    graph.append("".join(f"[p{i}]" for i in range(passes)) + f"concat=n={passes}:v=1:a=0[v]")
    run_ffmpeg(["-y", "-i", sample("carphone_pristine.mp4"), "-filter_complex", ";".join(graph), "-map", "[v]",
                *x264_args(), path], f"building {path}")
    return passes * n / 25


def make_sequence(path: str, parts: list[tuple[str, float, float]], dissolve: float = 0.0,
                  width: int = 320, height: int = 136) -> None:
    """Concatenate ``(sample name, start s, end s)`` parts at 25 fps, hard cuts between them,
    or ``dissolve`` seconds of cross-fade (ffmpeg xfade) when > 0."""
    args, chains = [], []
    for i, (name, start, end) in enumerate(parts):
        args += ["-i", sample(name)]
        chains.append(f"[{i}:v]fps=25,trim=start={start}:end={end},setpts=PTS-STARTPTS,{fit_filter(width, height)}[p{i}]")
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
    run_ffmpeg(["-y", *args, "-filter_complex", ";".join(chains), "-map", f"[{out}]", *x264_args(), path],
               f"building {path}")


def make_still(path: str, seconds: float = 4.0) -> None:
    """A still picture held for ``seconds`` (one frame of bikes.mp4, 25 fps)."""
    run_ffmpeg(["-y", "-i", sample("bikes.mp4"), "-vf", f"select=eq(n\\,100),loop=loop={int(seconds * 25)}:size=1,"
                "setpts=N/25/TB,format=yuv420p", "-frames:v", str(int(seconds * 25)), *x264_args(), path],
               f"building {path}")


def make_variable_frame_rate(path: str) -> None:
    """bikes.mp4 with every frame for 5 s, then every other frame, timestamps kept: 25 then
    12.5 frames/s (average ~18.9). Its cuts stay at BIKES_CUT_SECONDS."""
    run_ffmpeg(["-y", "-i", sample("bikes.mp4"), "-vf", "select='lt(n\\,125)+not(mod(n\\,2))'", "-fps_mode", "vfr",
                *x264_args(), path], f"building {path}")


def make_rotated(path: str, degrees: int = 90) -> None:
    """bikes.mp4 (640x272) stored as is with a display-rotation tag: players show it 272x640."""
    run_ffmpeg(["-y", "-display_rotation", str(degrees), "-i", sample("bikes.mp4"), "-c", "copy", path],
               f"building {path}")


def make_truncated_faststart(source: str, path: str, keep: float = 0.5) -> None:
    """``source`` remuxed with its index (moov) first, then cut off: it opens and probes
    fine, and only decoding reveals that most frames are missing."""
    whole = path + ".whole.mp4"
    run_ffmpeg(["-y", "-i", source, "-c", "copy", "-movflags", "+faststart", whole], f"remuxing {source}")
    make_truncated(whole, path, keep)
    os.remove(whole)

"""Drawing a shot's frames with numpy and encoding them as a real mp4 with the bundled ffmpeg.

Frames are WIDTH x HEIGHT (160x120) at FPS (10): small, so thousands of clips render in
minutes on two cores, and enough for tiny test models. Objects are filled masks (circle,
square, triangle, five-pointed star) of radius 8 (small) or 16 (large) px; still objects
sit in a jittered grid, moving ones travel 2.5 px a frame in lanes across the frame.
Backgrounds are a plain colour or real footage: "street" pans slowly over a frame of
bikes.mp4 (one frame, so no cut hides inside a shot), "car" is carphone_pristine.mp4 itself,
both decoded small once per process. Raw RGB goes down a pipe into ffmpeg (libx264,
yuv420p, faststart, one thread: the same frames give the same bytes); a source with
several shots is its shots' mp4s joined by ffmpeg's concat demuxer without re-encoding.
"""
from __future__ import annotations

import os
import random
import subprocess
import tempfile
from functools import lru_cache

import numpy as np

from vidcurate.operators.media import ffmpeg_exe, run_ffmpeg
from vidcurate.pipelines.sample_media import sample
from vidcurate.pipelines.synth.world import FPS, HEIGHT, WIDTH, Shot

RGB = {"red": (220, 30, 30), "orange": (255, 140, 0), "yellow": (240, 220, 20), "green": (30, 170, 50),
       "blue": (30, 60, 220), "purple": (140, 40, 180), "grey": (128, 128, 128), "black": (15, 15, 15),
       "white": (235, 235, 235)}
RADIUS = {"small": 8, "large": 16}
SPEED = 2.5  # px per frame
STEP = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}
PAD = 24  # margin drawn into and cropped away, so objects leave the frame cleanly


@lru_cache(maxsize=None)
def mask(shape: str, radius: int) -> np.ndarray:
    """A boolean (2r+1)^2 mask of ``shape`` inscribed in a circle of ``radius``."""
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1].astype(np.float64)
    if shape == "circle":
        return x * x + y * y <= radius * radius
    if shape == "square":
        side = radius * 0.8
        return (abs(x) <= side) & (abs(y) <= side)
    if shape == "triangle":  # pointing up, base at 0.6 r below the centre
        return (y <= radius * 0.6) & (abs(x) * 1.7 <= y + radius * 0.9)
    if shape == "star":
        angle, dist = np.arctan2(y, x) + np.pi / 2, np.hypot(x, y)
        edge = radius * (0.45 + 0.55 * np.abs(np.cos(2.5 * angle)) ** 3)
        return dist <= edge
    raise ValueError(f"unknown shape {shape!r}")


def _decode(path: str, width: int, height: int, frames: int) -> np.ndarray:
    raw = run_ffmpeg(["-i", path, "-vf", f"fps={FPS},scale={width}:{height},setsar=1", "-frames:v", str(frames),
                      "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"], f"decoding {path}")
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


@lru_cache(maxsize=None)
def footage(name: str) -> np.ndarray:
    """Real-footage backgrounds: "street" one wide bikes.mp4 frame (panned over), "car" carphone's frames."""
    if name == "street":
        return _decode(sample("bikes.mp4"), 282, HEIGHT, 20)[15]  # inside bikes' second shot
    return _decode(sample("carphone_pristine.mp4"), WIDTH, HEIGHT, 40)


def background(name: str, frames: int, rng: random.Random) -> np.ndarray:
    if name in RGB:
        return np.broadcast_to(np.array(RGB[name], np.uint8), (frames, HEIGHT, WIDTH, 3)).copy()
    if name == "street":
        wide = footage("street")
        start = rng.randrange(0, wide.shape[1] - WIDTH - frames)
        return np.stack([wide[:, start + i:start + i + WIDTH] for i in range(frames)])
    clip = footage("car")
    offset = rng.randrange(len(clip))
    return np.stack([clip[(offset + i) % len(clip)] for i in range(frames)])


def positions(shot: Shot, rng: random.Random) -> list[tuple[float, float]]:
    """Start centres of the objects: a 2-column grid when still; else lanes across the
    movement, each path centred in the frame (jittered), so every object is seen moving."""
    dx, dy = STEP[shot.movement]
    travel = SPEED * (shot.frames - 1)
    out = []
    for number in range(shot.count):
        if shot.movement == "still":
            rows = 1 if shot.count <= 2 else 2
            cols = 1 if shot.count == 1 else 2
            out.append(((number % cols + 0.5) / cols * WIDTH + rng.uniform(-10, 10),
                        (number // cols + 0.5) / rows * HEIGHT + rng.uniform(-6, 6)))
            continue
        across = (number + 0.5 + rng.uniform(-0.1, 0.1)) / shot.count
        centre = 0.5 + rng.uniform(-0.1, 0.1)
        if dx:
            out.append((centre * WIDTH - dx * travel / 2, across * HEIGHT))
        else:
            out.append((across * WIDTH, centre * HEIGHT - dy * travel / 2))
    return out


def frames_of(shot: Shot, seed: int, clip_id: str) -> np.ndarray:
    """The shot's frames, uint8 [frames, HEIGHT, WIDTH, 3]; the same (seed, clip) draws the same frames."""
    rng = random.Random(f"vidcurate-synth-render:{seed}:{clip_id}")
    canvas = np.zeros((shot.frames, HEIGHT + 2 * PAD, WIDTH + 2 * PAD, 3), np.uint8)
    canvas[:, PAD:PAD + HEIGHT, PAD:PAD + WIDTH] = background(shot.background, shot.frames, rng)
    shape, radius = mask(shot.shape, RADIUS[shot.size]), RADIUS[shot.size]
    colour = np.array(RGB[shot.colour], np.uint8)
    dx, dy = STEP[shot.movement]
    for cx, cy in positions(shot, rng):
        for t in range(shot.frames):
            x = int(round(cx + dx * SPEED * t)) + PAD - radius
            y = int(round(cy + dy * SPEED * t)) + PAD - radius
            x0, y0 = max(x, 0), max(y, 0)
            x1, y1 = min(x + 2 * radius + 1, canvas.shape[2]), min(y + 2 * radius + 1, canvas.shape[1])
            if x1 <= x0 or y1 <= y0:
                continue
            canvas[t, y0:y1, x0:x1][shape[y0 - y:y1 - y, x0 - x:x1 - x]] = colour
    return np.ascontiguousarray(canvas[:, PAD:PAD + HEIGHT, PAD:PAD + WIDTH])


def encode(frames: np.ndarray, what: str) -> bytes:
    """H.264 mp4 bytes (yuv420p, faststart) of ``frames`` at FPS, through a raw-video pipe into ffmpeg."""
    with tempfile.TemporaryDirectory(prefix="vidcurate-synth-") as folder:
        path = os.path.join(folder, "clip.mp4")
        command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "rawvideo",
                   "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "pipe:0",
                   "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-threads", "1",
                   "-movflags", "+faststart", "-fflags", "+bitexact", "-y", path]
        done = subprocess.run(command, input=frames.tobytes(), capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{what}: ffmpeg failed: {done.stderr.decode('utf-8', 'replace').strip()[-300:]}")
        with open(path, "rb") as handle:
            return handle.read()


def render_clip(task: tuple[Shot, int, str]) -> bytes:
    """(shot, seed, clip_id) -> mp4 bytes; a top-level function, so a process pool can run it."""
    shot, seed, clip_id = task
    return encode(frames_of(shot, seed, clip_id), f"synthetic clip {clip_id}")


def join_shots(mp4s: list[bytes], path: str) -> None:
    """Write a multi-shot source video: the shots' mp4s one after another, not re-encoded."""
    with tempfile.TemporaryDirectory(prefix="vidcurate-synth-") as folder:
        names = []
        for number, data in enumerate(mp4s):
            names.append(os.path.join(folder, f"{number:03d}.mp4"))
            with open(names[-1], "wb") as handle:
                handle.write(data)
        listing = os.path.join(folder, "list.txt")
        with open(listing, "w") as handle:
            handle.writelines(f"file '{name}'\n" for name in names)
        run_ffmpeg(["-f", "concat", "-safe", "0", "-i", listing, "-c", "copy", "-movflags", "+faststart",
                    "-fflags", "+bitexact", "-y", path], f"joining the shots of {path}")

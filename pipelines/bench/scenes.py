"""`vidcurate bench scenes`: shot detection against PySceneDetect on videos whose cuts are known.

Inputs: videos spliced from single shots of the real sample footage (the five shots of
bikes.mp4 whose cut frames are known, and carphone_pristine.mp4, one shot), each piece a
random stretch of one shot, scaled to 320x240 at 25 fps, so every cut lies at a known frame
and no other cut exists. Hard cuts only: the kind ContentDetector is built for.

Detectors, each over the same files, timed after imports:
  ours (split_shots content)   the splitter's decode pass + its ContentDetector (25 / 15 frames)
  ours (split_shots transnetv2) the same decode pass + TransNetV2 on the CPU
  PySceneDetect detect(ContentDetector)  scenedetect.detect(path, ContentDetector(25, min_scene_len=15)):
                               Panda-70M's own splitter call, decoding with OpenCV
A detected cut within ``TOLERANCE`` frames of a true one is a hit (each true cut is hit at
most once); precision, recall and F1 are over all the videos.
"""
from __future__ import annotations

import json
import os
import random
import time

from vidcurate.operators.media import run_ffmpeg
from vidcurate.pipelines import sample_media

TOLERANCE = 2  # frames
FPS = 25
# Single shots of the sample footage: (file, first frame, end frame), frames at 25 fps (bikes.mp4's
# own rate; carphone_pristine.mp4 is resampled from 29.97 fps first, 100 frames).
SHOTS = [("bikes.mp4", 0, 30), ("bikes.mp4", 30, 76), ("bikes.mp4", 76, 137), ("bikes.mp4", 137, 187),
         ("bikes.mp4", 187, 242), ("carphone_pristine.mp4", 0, 99)]
MIN_PIECE = 20  # frames


def make_videos(folder: str, videos: int, shots: int, seed: int = 0) -> list[dict]:
    """``videos`` spliced videos of ``shots`` pieces each; their paths and true cut frames."""
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(seed)
    made = []
    for v in range(videos):
        path = os.path.join(folder, f"spliced_{seed}_{v}_{shots}.mp4")
        pieces, last = [], None
        for _ in range(shots):
            shot = rng.choice([s for s in range(len(SHOTS)) if s != last])
            last = shot
            name, first, end = SHOTS[shot]
            length = rng.randint(MIN_PIECE, end - first)
            start = rng.randint(first, end - length)
            pieces.append((name, start, length))
        cuts, at = [], 0
        for _, _, length in pieces[:-1]:
            at += length
            cuts.append(at)
        if not os.path.exists(path):
            _splice(pieces, path)
        made.append({"path": path, "cuts": cuts, "frames": at + pieces[-1][2]})
    return made


def _splice(pieces: list[tuple[str, int, int]], path: str) -> None:
    inputs, graph = [], []
    for i, (name, start, length) in enumerate(pieces):
        inputs += ["-i", sample_media.sample(name)]
        graph.append(f"[{i}:v]fps={FPS},trim=start_frame={start}:end_frame={start + length},setpts=PTS-STARTPTS,"
                     f"scale=320:240,setsar=1[p{i}]")
    graph.append("".join(f"[p{i}]" for i in range(len(pieces))) + f"concat=n={len(pieces)}:v=1:a=0[v]")
    run_ffmpeg(["-y", *inputs, "-filter_complex", ";".join(graph), "-map", "[v]", "-c:v", "libx264",
                "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", path], f"splicing {path}")


_splitters: dict = {}


def ours(path: str, detector: str) -> list[int]:
    from vidcurate.operators.probe import probe_file
    from vidcurate.operators.split.shots import ShotSplit

    record = {"uri": path, "video_id": "bench", "local_path": path, **probe_file(path, path)}
    if detector not in _splitters:  # set up once (TransNetV2 loads its model), as in a build
        _splitters[detector] = ShotSplit(detector=detector)
        _splitters[detector].ensure_setup()
    shots, _ = _splitters[detector]._decode_pass(record)
    return [start for start, _ in shots[1:]]


def pyscenedetect(path: str) -> list[int]:
    import scenedetect

    scenes = scenedetect.detect(path, scenedetect.ContentDetector(threshold=25, min_scene_len=15))
    return [start.get_frames() for start, _ in scenes[1:]]


def score(found: list[int], truth: list[int]) -> tuple[int, int, int]:
    """(hits, detected, true) with each true cut matched at most once within TOLERANCE."""
    left, hits = sorted(truth), 0
    for cut in sorted(found):
        match = next((t for t in left if abs(t - cut) <= TOLERANCE), None)
        if match is not None:
            left.remove(match)
            hits += 1
    return hits, len(found), len(truth)


DETECTORS = {
    "ours (split_shots content)": lambda path: ours(path, "content"),
    "ours (split_shots transnetv2)": lambda path: ours(path, "transnetv2"),
    "PySceneDetect detect(ContentDetector)": pyscenedetect,
}


def run(videos: int = 6, shots: int = 10, seed: int = 0, workdir: str | None = None) -> dict:
    import tempfile

    folder = workdir or tempfile.mkdtemp(prefix="vidcurate-bench-scenes-")
    made = make_videos(folder, videos, shots, seed)
    for detect in DETECTORS.values():  # imports and model loading before any clock starts
        detect(made[0]["path"])
    result = {"videos": videos, "shots_per_video": shots, "frames": sum(m["frames"] for m in made),
              "true_cuts": sum(len(m["cuts"]) for m in made), "tolerance_frames": TOLERANCE, "detectors": {}}
    for name, detect in DETECTORS.items():
        hits = detected = true = 0
        started = time.perf_counter()
        for video in made:
            h, d, t = score(detect(video["path"]), video["cuts"])
            hits, detected, true = hits + h, detected + d, true + t
        seconds = time.perf_counter() - started
        precision, recall = hits / detected if detected else 0.0, hits / true if true else 0.0
        result["detectors"][name] = {"seconds": seconds, "frames_per_s": result["frames"] / seconds,
                                     "precision": precision, "recall": recall,
                                     "f1": 2 * precision * recall / (precision + recall) if hits else 0.0}
    with open(os.path.join(folder, "bench_scenes.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    return result


def report(r: dict) -> str:
    lines = [f"shot detection on {r['videos']} spliced real-footage videos, {r['frames']} frames, {r['true_cuts']} "
             f"known hard cuts (a hit within {r['tolerance_frames']} frames)",
             f"  {'detector':<40} {'seconds':>8} {'frames/s':>9} {'precision':>10} {'recall':>8} {'F1':>6}"]
    for name, d in r["detectors"].items():
        lines.append(f"  {name:<40} {d['seconds']:8.2f} {d['frames_per_s']:9.0f} {d['precision']:10.1%} "
                     f"{d['recall']:8.1%} {d['f1']:6.1%}")
    peer = r["detectors"]["PySceneDetect detect(ContentDetector)"]["seconds"]
    ours = r["detectors"]["ours (split_shots content)"]["seconds"]
    lines.append(f"  ours (content) vs PySceneDetect detect(): {peer / ours:.2f}x the speed")
    return "\n".join(lines)

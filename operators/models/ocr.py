"""RapidOCR (PP-OCRv4 detector + recognizer, ONNX weights inside the rapidocr-onnxruntime wheel).

One loader for every operator that reads on-screen text (filter_text_area, ocr_teacher):
keyframes arrive as JPEG bytes and are decoded to the BGR uint8 arrays RapidOCR's models
expect (a file path gave garbage). The angle classifier is never run: it cannot change
where a box is, and keyframes of video are upright.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vidcurate.operators.models.loading import require

MODEL_ID = "bundled:rapidocr-ppocrv4"


@dataclass(frozen=True)
class TextLine:
    box: list          # four [x, y] corners
    text: str
    score: float       # recognizer confidence, 0-1


class RapidOCR:
    """Load once per worker; ``lines()`` reads text, ``boxes()`` only detects it."""

    def __init__(self, purpose: str, min_score: float, threads: int = 1):
        rapidocr = require("rapidocr_onnxruntime", "rapidocr-onnxruntime", f"{purpose} (text detection)")
        self.cv2 = require("cv2", "opencv-python-headless", f"{purpose} (keyframe decoding)")
        # text_score is RapidOCR's own cut on recognizer confidence.
        self.engine = rapidocr.RapidOCR(text_score=min_score, print_verbose=False,
                                        intra_op_num_threads=threads, inter_op_num_threads=1)

    def decode(self, jpeg: bytes) -> np.ndarray | None:
        """A JPEG keyframe as a BGR uint8 array (imdecode of the RGB JPEG gives BGR); None if undecodable."""
        return self.cv2.imdecode(np.frombuffer(bytes(jpeg), np.uint8), self.cv2.IMREAD_COLOR)

    def lines(self, bgr: np.ndarray) -> list[TextLine]:
        """Detected and recognised text lines, top to bottom, already cut at ``min_score``."""
        result, _ = self.engine(bgr, use_det=True, use_cls=False, use_rec=True)
        return [TextLine(box, text, float(score)) for box, text, score in result or []]

    def boxes(self, bgr: np.ndarray) -> list:
        """Raw detector boxes, unconfirmed by the recognizer."""
        result, _ = self.engine(bgr, use_det=True, use_cls=False, use_rec=False)
        return list(result or [])

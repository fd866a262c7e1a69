"""Cheap clip filters on fields earlier stages already computed: duration, size, shape, motion.

Defaults, and where they come from:

  * ``filter_duration`` 2.0 .. 1200 s: Panda-70M's later code (min 2.0 s, max 1200 s;
    the paper says 2 s, the released dataset used 2.5 s). Shorter clips rarely hold an
    action worth a caption; the splitter already caps the length, so the max is a guard.
  * ``filter_resolution`` short side >= 256 px: training crops are 224-256 px (CLIP /
    UMT-style encoders at 224, video generators' first stage at 256), so a smaller clip
    would be upsampled. On the samples: bikes 640x272 and Big Buck Bunny 1280x720 pass,
    carphone 176x144 (QCIF) fails.
  * ``filter_aspect`` 0.3 .. 3.5 (width / height): keeps 9:16 phone video (0.56) and
    2.39:1 scope cinema (bikes.mp4 is 2.35), drops strips and banners (4:1 and wider,
    1:3.3 and taller) that no training crop fits. These two bounds are judgement, not
    measurement.
  * ``filter_motion`` 0.5 .. 60 on ``record["motion"]`` (mean absolute difference of
    consecutive frames on the splitter's 32x18 grey thumbnails, 0-255; see
    operators/split/signals.py). Thresholds were checked on real footage decoded 128 px
    wide in RGB, which reads within a few tenths of the thumbnails (splitter values:
    bikes shots 4.2-9.4, carphone 2.6, an encoded still 0.004): the six shots of bikes.mp4 2.8-9.8, Big Buck Bunny 1.5
    (its slowest second 0.6), carphone 2.3-3.7; a still image encoded with H.264 0.003;
    hard cuts between shots 48-83. So 0.5 drops stills and slideshows and keeps
    slow real scenes; 60 (a mean above hard-cut level on every frame pair) only drops
    strobing, flashing or constantly cutting clips. Limitation: strong temporal grain
    on a still reads as motion (about 2 for heavy grain).
"""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from vidcurate.operators.base import RecordError
from vidcurate.operators.filters.base import Filter, RangeFilter, Verdict, clip_label


def clip_size(record: dict) -> tuple[int, int]:
    """(width, height) of the extracted clip, or of the source when extraction has not run."""
    width = record.get("clip_width") or record["width"]
    height = record.get("clip_height") or record["height"]
    if not (width and height and width > 0 and height > 0):
        raise RecordError("invalid_size", f"{clip_label(record)} has size {width}x{height}")
    return int(width), int(height)


class DurationFilter(RangeFilter):
    """Keeps clips lasting ``min_seconds`` to ``max_seconds`` (end - start). Score: seconds."""

    name: ClassVar[str] = "filter_duration"
    requires: ClassVar[tuple[str, ...]] = ("start", "end")
    bounds: ClassVar[tuple[tuple[str, str], ...]] = (("min_seconds", "max_seconds"),)

    min_seconds: float = Field(2.0, ge=0, description="Shorter clips are rejected (Panda-70M code: 2.0 s).")
    max_seconds: float = Field(1200.0, gt=0, description="Longer clips are rejected (Panda-70M code: 1200 s).")

    too_low: ClassVar[str] = "clip_too_short"
    too_high: ClassVar[str] = "clip_too_long"

    def measure(self, record: dict) -> float:
        return record["end"] - record["start"]

    def describe(self, record: dict, seconds: float) -> str:
        return f"is {seconds:.2f} s"


class ResolutionFilter(Filter):
    """Keeps clips at least ``min_width`` x ``min_height``, in either orientation.

    The clip's short side is compared with the smaller of the two minimums and its long
    side with the larger, so ``1280x720`` accepts a 720x1280 phone video as well as a
    1280x720 one: orientation is ``filter_aspect``'s business. Uses the extracted clip's
    size (``clip_width``/``clip_height``), else the source's. Score: the short side (px).
    """

    name: ClassVar[str] = "filter_resolution"
    requires: ClassVar[tuple[str, ...]] = ("width", "height")

    min_width: int = Field(256, ge=1, description="Minimum width in px (orientation-free, see the class doc).")
    min_height: int = Field(256, ge=1, description="Minimum height in px (orientation-free, see the class doc).")

    def measure(self, record: dict) -> float:
        return min(clip_size(record))

    def keep(self, record: dict, short_side: float) -> Verdict:
        width, height = clip_size(record)
        need_short, need_long = sorted((self.min_width, self.min_height))
        if short_side < need_short or max(width, height) < need_long:
            return False, "resolution_too_low", (
                f"{clip_label(record)} is {width}x{height} < min_width x min_height "
                f"{self.min_width}x{self.min_height} (either orientation)")
        return True


class AspectRatioFilter(RangeFilter):
    """Keeps clips whose width / height is within ``min_ratio`` .. ``max_ratio``. Score: the ratio."""

    name: ClassVar[str] = "filter_aspect"
    requires: ClassVar[tuple[str, ...]] = ("width", "height")
    bounds: ClassVar[tuple[tuple[str, str], ...]] = (("min_ratio", "max_ratio"),)

    min_ratio: float = Field(0.3, gt=0, description="Taller clips (width/height below this) are rejected.")
    max_ratio: float = Field(3.5, gt=0, description="Wider clips (width/height above this) are rejected.")
    too_low: ClassVar[str] = "aspect_too_tall"
    too_high: ClassVar[str] = "aspect_too_wide"

    def measure(self, record: dict) -> float:
        width, height = clip_size(record)
        return width / height

    def describe(self, record: dict, ratio: float) -> str:
        width, height = clip_size(record)
        return f"is {width}x{height}, width/height {ratio:.2f}"


class MotionFilter(RangeFilter):
    """Keeps clips whose ``motion`` (0-255 mean frame difference) is within bounds. Score: motion."""

    name: ClassVar[str] = "filter_motion"
    requires: ClassVar[tuple[str, ...]] = ("motion",)
    bounds: ClassVar[tuple[tuple[str, str], ...]] = (("min_motion", "max_motion"),)
    hint: ClassVar[str] = "split_shots computes it"

    min_motion: float = Field(0.5, ge=0, le=255, description="Stiller clips (stills, slideshows) are rejected.")
    max_motion: float = Field(60.0, ge=0, le=255, description="Clips changing more (flashes, strobes) are rejected.")
    too_low: ClassVar[str] = "too_static"
    too_high: ClassVar[str] = "too_much_motion"

    def measure(self, record: dict) -> float:
        return record["motion"]

    def describe(self, record: dict, motion: float) -> str:
        return f"has motion {motion:.3f}"

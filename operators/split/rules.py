"""Panda-70M's splitting rules (arXiv 2402.19479, section 3.1) as pure functions over frame ranges.

Order, as in Panda-70M's code: shots -> artificial cuts -> transition check ->
stitching -> minimum length -> still filter -> maximum length -> redundancy filter ->
end trimming. Every function returns the segments it keeps; what it drops comes back
as ``(segment, reason, detail)`` so the splitter can reject each with its reason.
Distances are Euclidean between unit embeddings (``signals.distance``).

One deliberate change: stitching never grows a clip beyond ``max_frames``. Panda-70M
merged the pieces of one long uniform shot back together and then kept only its first
60 s, which is why long single-shot stock footage came back whole (or cut off); here
such footage becomes consecutive clips of at most ``max_clip_seconds``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from vidcurate.operators.split.signals import FrameSignalsResult, distance

Dropped = tuple["Segment", str, str]


@dataclass
class Segment:
    start: int  # first frame
    end: int  # one past the last frame
    shots: list[tuple[int, int]]  # detected shots overlapping this segment, as frame ranges
    origin: str = "shot"  # "shot" or "artificial_cut"
    events: list[str] = field(default_factory=list)  # audit trail: what was done to it and why
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return self.end - self.start

    def describe(self, fps: float) -> str:
        return f"clip {self.start / fps:.2f}-{self.end / fps:.2f} s"


def artificial_cuts(shots: list[tuple[int, int]], fps: float, piece_seconds: float | None,
                    longer_than_seconds: float) -> list[Segment]:
    """Cut ``piece_seconds`` pieces off each shot while more than ``longer_than_seconds`` remain."""
    segments = []
    for start, end in shots:
        cursor = start
        if piece_seconds:
            piece, limit = int(round(piece_seconds * fps)), longer_than_seconds * fps
            while end - cursor > limit:
                segments.append(Segment(cursor, cursor + piece, [(start, end)], "artificial_cut",
                                        [f"artificial cut after {piece_seconds:g} s of a "
                                         f"{(end - start) / fps:.1f} s shot"]))
                cursor += piece
        origin = "artificial_cut" if cursor > start else "shot"
        segments.append(Segment(cursor, end, [(start, end)], origin))
    return segments


def transition_check(segments: list[Segment], signals: FrameSignalsResult, threshold: float,
                     at: tuple[float, float] = (0.05, 0.95)) -> tuple[list[Segment], list[Dropped]]:
    """Drop segments whose frames near start and end differ by more than ``threshold``."""
    kept, dropped = [], []
    for seg in segments:
        a = signals.at(seg.start + at[0] * seg.frames, seg.start, seg.end)
        b = signals.at(seg.start + at[1] * seg.frames, seg.start, seg.end)
        seg.scores["transition_distance"] = round(distance(a, b), 4)
        if seg.scores["transition_distance"] > threshold:
            dropped.append((seg, "transition", f"start/end distance {seg.scores['transition_distance']:.3f} > "
                                               f"transition threshold {threshold}"))
        else:
            kept.append(seg)
    return kept, dropped


def stitch(segments: list[Segment], signals: FrameSignalsResult, threshold: float,
           max_frames: int) -> list[Segment]:
    """Merge touching neighbours whose boundary frames are within ``threshold``."""
    out: list[Segment] = []
    for seg in segments:
        prev = out[-1] if out else None
        if prev is not None and prev.end == seg.start and prev.frames + seg.frames <= max_frames:
            d = distance(signals.at(prev.end - 1, prev.start, prev.end), signals.at(seg.start, seg.start, seg.end))
            if d <= threshold:
                merged_shots = prev.shots + [s for s in seg.shots if s not in prev.shots]
                out[-1] = replace(prev, end=seg.end, shots=merged_shots,
                                  events=prev.events + seg.events + [f"stitched at frame {seg.start} "
                                                                     f"(boundary distance {d:.3f} <= {threshold})"],
                                  scores={**prev.scores, "stitch_distance": round(d, 4)})
                continue
        out.append(seg)
    return out


def min_length(segments: list[Segment], fps: float, min_seconds: float) -> tuple[list[Segment], list[Dropped]]:
    kept, dropped = [], []
    for seg in segments:
        if seg.frames / fps < min_seconds:
            dropped.append((seg, "too_short", f"{seg.frames / fps:.2f} s < min_clip_seconds {min_seconds}"))
        else:
            kept.append(seg)
    return kept, dropped


def still_filter(segments: list[Segment], signals: FrameSignalsResult,
                 threshold: float) -> tuple[list[Segment], list[Dropped]]:
    """Drop segments whose first and last frames are nearly identical (a still picture)."""
    kept, dropped = [], []
    for seg in segments:
        d = distance(signals.at(seg.start, seg.start, seg.end), signals.at(seg.end - 1, seg.start, seg.end))
        seg.scores["still_distance"] = round(d, 4)
        if d < threshold:
            dropped.append((seg, "still", f"start/end distance {d:.3f} < still threshold {threshold}"))
        else:
            kept.append(seg)
    return kept, dropped


def max_length(segments: list[Segment], fps: float, max_seconds: float) -> list[Segment]:
    """Keep only the first ``max_seconds`` of longer segments."""
    limit = int(round(max_seconds * fps))
    for seg in segments:
        if seg.frames > limit:
            seg.events.append(f"kept the first {max_seconds:g} s of {seg.frames / fps:.1f} s")
            seg.end = seg.start + limit
    return segments


def redundancy_filter(segments: list[Segment], signals: FrameSignalsResult,
                      threshold: float) -> tuple[list[Segment], list[Dropped]]:
    """Drop a segment whose mean embedding is within ``threshold`` of an earlier kept one."""
    kept, dropped, means = [], [], []
    for seg in segments:
        mean = signals.mean(seg.start, seg.end)
        nearest = min((distance(mean, m) for m in means), default=None)
        if nearest is not None:
            seg.scores["redundancy_distance"] = round(nearest, 4)
        if nearest is not None and nearest <= threshold:
            dropped.append((seg, "redundant", f"mean embedding {nearest:.3f} from an earlier clip "
                                              f"<= redundancy threshold {threshold}"))
        else:
            kept.append(seg)
            means.append(mean)
    return kept, dropped


def trim_ends(segments: list[Segment], fraction: float) -> list[Segment]:
    if fraction <= 0:
        return segments
    for seg in segments:
        cut = int(seg.frames * fraction)
        if cut:
            seg.events.append(f"trimmed {fraction:.0%} ({cut} frames) from each end")
            seg.start, seg.end = seg.start + cut, seg.end - cut
    return segments

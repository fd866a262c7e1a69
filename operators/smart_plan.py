"""Where a smart cut may copy: a source's H.264 packets indexed by demuxing alone, and per clip
the run of packets that can be copied unchanged (see smart_cut.py for the whole technique).

Frame numbers are display order from the first frame (as the splitter counts them); decode
positions are the packets' order in the file. A copied run starts at an IDR frame, because
decoding from one needs nothing before it, and ends where the packets so far show exactly the
frames from it up to some frame: any such run decodes as it does in the source.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from fractions import Fraction

from vidcurate.operators import h264_units as h264


class NotSmart(Exception):
    """This source or clip cannot be smart-cut; ``reason`` is a short counter name."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class SourceIndex:
    """The video packets of one source, read by demuxing alone (no decoding)."""
    time_base: Fraction
    rate: Fraction
    width: int
    height: int
    sample_aspect_ratio: Fraction | None
    length_size: int
    parameter_sets: list[bytes]
    frame_pts: list[int]      # frame number (display order) -> pts
    packet_frame: list[int]   # decode position -> frame number
    idr_frames: list[int]     # sorted frame numbers of IDR packets
    idr_positions: list[int]  # their decode positions, sorted

    @property
    def frames(self) -> int:
        return len(self.frame_pts)

    def __post_init__(self):
        self.frame_of_pts = {pts: n for n, pts in enumerate(self.frame_pts)}
        self.frame_position = [0] * len(self.packet_frame)  # frame number -> decode position
        for position, frame in enumerate(self.packet_frame):
            self.frame_position[frame] = position
        # GOPs in decode order: each starts at an IDR (the first at the first packet in any case)
        self.gop_starts = sorted({0, *self.idr_positions})
        self.frame_ticks = round((self.frame_pts[-1] - self.frame_pts[0]) / max(1, self.frames - 1)) or 1

    def gop_at(self, position: int) -> int:
        return bisect.bisect_right(self.gop_starts, position) - 1

    def gop_of(self, frame: int) -> int:
        """Which GOP holds ``frame``'s packet: decoding the frame starts at that GOP's first packet."""
        return self.gop_at(self.frame_position[frame])


def index_source(path: str) -> SourceIndex:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx.name != "h264":
            raise NotSmart("not_h264", ctx.name)
        if ctx.pix_fmt not in ("yuv420p", "yuvj420p"):
            raise NotSmart("pixel_format", str(ctx.pix_fmt))
        try:
            length_size, sets = h264.parse_avcc(bytes(ctx.extradata or b""))
        except h264.NotH264 as exc:
            raise NotSmart("no_avcc", str(exc)) from exc
        packets = []  # (pts, is_idr)
        for packet in container.demux(stream):
            if not packet.size:
                continue
            if packet.pts is None or packet.dts is None:
                raise NotSmart("no_timestamps")
            if packet.is_discard:
                raise NotSmart("edit_list", "the file hides some of its frames")
            idr = packet.is_keyframe and h264.is_idr_sample(bytes(packet), length_size)
            packets.append((packet.pts, idr))
        if not packets:
            raise NotSmart("no_packets")
        frame_pts = sorted(p[0] for p in packets)
        if len(set(frame_pts)) != len(frame_pts):
            raise NotSmart("duplicate_timestamps")
        packet_frame = [0] * len(packets)
        for frame, position in enumerate(sorted(range(len(packets)), key=lambda i: packets[i][0])):
            packet_frame[position] = frame
        idr_positions = [i for i, p in enumerate(packets) if p[1]]
        return SourceIndex(stream.time_base, stream.average_rate or stream.guessed_rate, ctx.width, ctx.height,
                           stream.sample_aspect_ratio, length_size, h264.parameter_sets(sets), frame_pts,
                           packet_frame, sorted(packet_frame[i] for i in idr_positions), idr_positions)


@dataclass
class ClipPlan:
    start: int
    end: int
    copy_from: int  # k1
    copy_to: int    # k2

    @property
    def head(self) -> range:
        return range(self.start, self.copy_from)

    @property
    def tail(self) -> range:
        return range(self.copy_to, self.end)


def plan_clip(index: SourceIndex, start: int, end: int, min_copy: int = 1) -> ClipPlan:
    """Which packets of [start, end) are copied: from the first IDR frame in it, the longest
    run of packets in decode order that shows exactly the frames up to some k2 <= end. Such a
    run needs nothing decoded before it (an IDR starts it, and a frame only refers to frames
    decoded earlier), so it decodes as in the source wherever it ends, even inside a GOP.
    NotSmart when no IDR frame lies inside or the run is shorter than ``min_copy`` frames."""
    if not 0 <= start < end <= index.frames:
        raise NotSmart("frame_count", f"clip {start}-{end} outside the {index.frames} frames demuxed")
    at = bisect.bisect_left(index.idr_frames, start)
    if at == len(index.idr_frames) or index.idr_frames[at] >= end:
        raise NotSmart("no_idr_inside")
    copy_from = copy_to = index.idr_frames[at]
    highest, count = copy_from - 1, 0
    for position in range(index.frame_position[copy_from], len(index.packet_frame)):
        frame = index.packet_frame[position]
        if not copy_from <= frame < end:
            break  # every longer run would show a frame outside the clip
        count, highest = count + 1, max(highest, frame)
        if count == highest - copy_from + 1:  # the run so far shows copy_from .. highest, no gap
            copy_to = highest + 1
    if copy_to - copy_from < min_copy:
        raise NotSmart("short_copy")
    return ClipPlan(start, end, copy_from, copy_to)

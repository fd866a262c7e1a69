"""Smart cutting (``extract_clips`` ``mode: smart``): encode only what a cut forces, copy the rest.

A clip [s, e) of an H.264 source is made of three pieces:
  head    frames s .. k1-1, k1 the first IDR frame at or after s: decoded and re-encoded
  middle  frames k1 .. k2-1, k2 <= e the end of the longest run of the source's packets
          from k1 on that shows exactly those frames: copied unchanged (no encoding, no
          generation loss)
  tail    frames k2 .. e-1: decoded and re-encoded
A copied run starts at an IDR frame only, because decoding from one needs nothing before it (an
open GOP's recovery-point I-frame does; a source without IDRs inside a clip is re-encoded whole,
counted as a fallback). Head and tail are encoded without B-frames and with their
own SPS/PPS in-band, and the pieces are joined as Annex B into one mp4 track (h264_units.py),
so players meet each piece's parameter sets where it starts. Timestamps are the source's,
moved so the clip starts at 0; the head's decode times are moved back so they stay below the
copied piece's (whose B-frames decode ahead of display).

One sequential demux pass over a batch of a video's clips decodes only the GOPs that hold a
head, a tail or a keyframe JPEG's frame, and encodes each head and tail as its frames arrive.
The caller checks every clip's frame count and falls back to a full re-encode where a clip
cannot be cut this way (``NotSmart`` names why).
"""
from __future__ import annotations

import bisect
import io
from dataclasses import dataclass, field
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
        packets = []  # (pts, dts, is_idr)
        for packet in container.demux(stream):
            if not packet.size:
                continue
            if packet.pts is None or packet.dts is None:
                raise NotSmart("no_timestamps")
            if packet.is_discard:
                raise NotSmart("edit_list", "the file hides some of its frames")
            idr = packet.is_keyframe and h264.is_idr_sample(bytes(packet), length_size)
            packets.append((packet.pts, packet.dts, idr))
        if not packets:
            raise NotSmart("no_packets")
        frame_pts = sorted(p[0] for p in packets)
        if len(set(frame_pts)) != len(frame_pts):
            raise NotSmart("duplicate_timestamps")
        frame_of = {pts: n for n, pts in enumerate(frame_pts)}
        packet_frame = [frame_of[p[0]] for p in packets]
        idr_positions = [i for i, p in enumerate(packets) if p[2]]
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


@dataclass
class EncodeSettings:
    preset: str
    crf: int
    keyframe_max_side: int


@dataclass
class _Piece:
    """A head or tail being encoded."""
    frames: range
    packets: list = field(default_factory=list)  # (annexb bytes, pts, dts, keyframe), pts relative to the clip
    encoder: object = None
    done: bool = False


@dataclass(eq=False)
class _Clip:
    plan: ClipPlan
    picks: list[int]
    head: _Piece
    tail: _Piece
    path: str
    middle: list = field(default_factory=list)
    jpegs: dict = field(default_factory=dict)
    written: bool = False

    def complete(self) -> bool:
        return (self.head.done and self.tail.done and len(self.middle) == self.plan.copy_to - self.plan.copy_from
                and all(p in self.jpegs for p in self.picks))


def cut_smart(path: str, index: SourceIndex, plans: list[ClipPlan], picks: list[list[int]],
              settings: EncodeSettings, out_paths: list[str]) -> list[dict[int, bytes] | None]:
    """Write each plan's clip to its ``out_paths`` entry; per clip the keyframe JPEGs
    (source frame -> bytes), or None when the clip could not be completed."""
    import av

    clips = [_Clip(plan, sorted(set(p)), _Piece(plan.head, done=not plan.head), _Piece(plan.tail, done=not plan.tail),
                   path) for plan, p, path in zip(plans, picks, out_paths)]
    wanted: dict[int, list[tuple[_Clip, str]]] = {}
    for clip in clips:
        for role, frames in (("head", clip.plan.head), ("tail", clip.plan.tail), ("pick", clip.picks)):
            for frame in frames:
                wanted.setdefault(frame, []).append((clip, role))
    # Decoding: each GOP holding a wanted frame, from its first packet to the last wanted one's.
    feed_until: dict[int, int] = {}
    for frame in wanted:
        gop = index.gop_of(frame)
        feed_until[gop] = max(feed_until.get(gop, -1), index.frame_position[frame])
    copy_frames: dict[int, list[_Clip]] = {}
    for clip in clips:
        for frame in range(clip.plan.copy_from, clip.plan.copy_to):
            copy_frames.setdefault(frame, []).append(clip)
    first_position = min([index.gop_starts[g] for g in feed_until] +
                         [index.frame_position[c.plan.copy_from] for c in clips])
    pts_frame = {pts: n for n, pts in enumerate(index.frame_pts)}

    with av.open(path) as container:
        stream = container.streams.video[0]
        decoder = stream.codec_context
        decoder.thread_type = "AUTO"  # frame threads: decoding keeps pace with the encoders
        if first_position > 0:
            container.seek(index.frame_pts[index.packet_frame[first_position]], stream=stream, backward=True)

        def take(frames):
            for frame in frames:
                number = pts_frame.get(frame.pts)
                for clip, role in wanted.get(number, ()):
                    if role == "pick":
                        clip.jpegs[number] = _jpeg(frame, settings.keyframe_max_side)
                    else:
                        _encode(getattr(clip, role), clip.plan, number, frame, index, settings)
                    _write_if_complete(clip, index)

        last_fed = None
        for packet in container.demux(stream):
            if not packet.size or packet.pts not in pts_frame:
                continue
            number = pts_frame[packet.pts]
            position = index.frame_position[number]
            if position < first_position:
                continue
            for clip in copy_frames.get(number, ()):
                clip.middle.append((bytes(packet), packet.pts, packet.dts, position, packet.is_keyframe))
                _write_if_complete(clip, index)
            if position <= feed_until.get(index.gop_at(position), -1):
                if last_fed is not None and position != last_fed + 1:
                    take(decoder.decode(None))  # a gap: drain what the decoder holds, start afresh
                    decoder.flush_buffers()
                last_fed = position
                take(decoder.decode(packet))
            if all(c.written for c in clips):
                break
        if not all(c.written for c in clips):
            take(decoder.decode(None))
    return [clip.jpegs if clip.written else None for clip in clips]


def _encode(piece: _Piece, plan: ClipPlan, number: int, frame, index: SourceIndex, settings: EncodeSettings) -> None:
    import av

    if piece.done or number not in piece.frames:
        return
    first = number == piece.frames.start
    if piece.encoder is None:
        if not first:  # its first frame never came: the piece cannot be encoded
            piece.done = True
            piece.packets = None
            return
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height, encoder.pix_fmt = index.width, index.height, "yuv420p"
        encoder.time_base = index.time_base
        encoder.framerate = index.rate
        if index.sample_aspect_ratio:
            encoder.sample_aspect_ratio = index.sample_aspect_ratio
        encoder.max_b_frames = 0  # decode order = display order: the joins' decode times stay simple
        encoder.options = {"preset": settings.preset, "crf": str(settings.crf)}
        piece.encoder = encoder
    origin = index.frame_pts[plan.start]
    frame.pts = index.frame_pts[number] - origin
    frame.time_base = index.time_base
    frame.pict_type = av.video.frame.PictureType.I if first else av.video.frame.PictureType.NONE
    last = number == piece.frames.stop - 1
    out = list(piece.encoder.encode(frame))
    if last:
        out += list(piece.encoder.encode(None))
    piece.packets.extend((bytes(p), p.pts, p.pts, p.is_keyframe) for p in out)
    if last:
        piece.done = True
        piece.encoder = None


def _write_if_complete(clip: _Clip, index: SourceIndex) -> None:
    if clip.written or not clip.complete():
        return
    if clip.head.packets is None or clip.tail.packets is None:
        return  # an encoder missed frames: never complete
    plan, origin = clip.plan, index.frame_pts[clip.plan.start]
    middle = sorted(clip.middle, key=lambda m: m[3])  # decode order
    middle_packets = []
    for n, (data, pts, dts, _, key) in enumerate(middle):
        units = h264.split_length_prefixed(data, index.length_size)
        if n == 0:  # the source's own SPS/PPS replace the head's before its first IDR
            units = index.parameter_sets + [u for u in units if h264.nal_type(u) not in (h264.NAL_SPS, h264.NAL_PPS)]
        middle_packets.append((h264.annexb(units), pts - origin, dts - origin, n == 0 or key))
    # Decode times one frame apart across each join, as in one encoder's output: the head's
    # are moved back by the copied piece's B-frame delay, the tail's follow the copied piece's.
    tick = index.frame_ticks
    head_shift = max(0, clip.head.packets[-1][2] - middle_packets[0][2] + tick) if clip.head.packets else 0
    tail_shift = max(0, clip.tail.packets[0][2] - middle_packets[-1][2] - tick) if clip.tail.packets else 0
    head = [(data, pts, dts - head_shift, key) for data, pts, dts, key in clip.head.packets]
    tail = [(data, pts, dts - tail_shift, key) for data, pts, dts, key in clip.tail.packets]
    _mux(head + middle_packets + tail, index, clip.path)
    clip.written = True
    clip.middle = []


def _mux(packets: list, index: SourceIndex, path: str) -> None:
    import av

    with av.open(path, "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_mux_stream("h264", rate=index.rate, width=index.width, height=index.height)
        stream.time_base = index.time_base
        for data, pts, dts, key in packets:
            packet = av.Packet(data)
            packet.pts, packet.dts, packet.time_base = pts, dts, index.time_base
            packet.duration = index.frame_ticks
            packet.is_keyframe = bool(key)
            packet.stream = stream
            out.mux(packet)


def _jpeg(frame, max_side: int) -> bytes:
    image = frame.to_image()
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()

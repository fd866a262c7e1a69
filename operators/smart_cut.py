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
cannot be cut this way (smart_plan.NotSmart names why).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

from vidcurate.operators import h264_units as h264
from vidcurate.operators.smart_plan import ClipPlan, SourceIndex


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

    with av.open(path) as container:
        stream = container.streams.video[0]
        decoder = stream.codec_context
        decoder.thread_type = "AUTO"  # frame threads: decoding keeps pace with the encoders
        if first_position > 0:
            container.seek(index.frame_pts[index.packet_frame[first_position]], stream=stream, backward=True)

        def take(frames):
            for frame in frames:
                number = index.frame_of_pts.get(frame.pts)
                for clip, role in wanted.get(number, ()):
                    if role == "pick":
                        clip.jpegs[number] = _jpeg(frame, settings.keyframe_max_side)
                    else:
                        _encode(getattr(clip, role), clip.plan, number, frame, index, settings)
                    _write_if_complete(clip, index)

        last_fed = None
        for packet in container.demux(stream):
            number = index.frame_of_pts.get(packet.pts) if packet.size else None
            if number is None:
                continue
            position = index.frame_position[number]
            if position < first_position:
                continue
            for clip in copy_frames.get(number, ()):
                clip.middle.append((bytes(packet), packet.pts, packet.dts, packet.is_keyframe))  # in decode order
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
    origin = index.frame_pts[clip.plan.start]
    middle_packets = []
    for n, (data, pts, dts, key) in enumerate(clip.middle):
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

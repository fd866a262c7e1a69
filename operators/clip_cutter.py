"""Cut all clips of one video in ONE ffmpeg run: one decode, one encoder, no seeking.

The per-clip way (Panda-70M's code: ``ffmpeg -ss S -t D -i video`` once per clip)
restarts ffmpeg and re-decodes from the previous keyframe for every clip. Here one run
selects the clips' frames, re-times them as one continuous stream, forces a keyframe
at every clip start and lets the segment muxer write one mp4 per clip; the same run
writes the keyframe JPEGs, the whole audio track as 16 kHz PCM (sliced per clip) and,
when audio is kept, each clip's audio as its own sample-accurate AAC file (``atrim``),
which PyAV then muxes with the clip's video without re-encoding anything.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from vidcurate.operators.media import run_ffmpeg

ASR_SAMPLE_RATE = 16_000
AAC_ARGS = ["-c:a", "aac", "-b:a", "128k"]


def keyframe_filter(frames: list[int], max_side: int) -> str:
    """ffmpeg filter picking frames ``frames`` (0 = first decoded) scaled to at most ``max_side``."""
    picks = "+".join(f"eq(n\\,{f})" for f in frames)
    return (f"select='{picks}',scale='min({max_side},iw)':'min({max_side},ih)':"
            "force_original_aspect_ratio=decrease")


def read_keyframes(tmp: str, count: int) -> list[bytes | None]:
    """The JPEGs written to ``tmp/kf_%05d.jpg`` by a keyframe output, None where one is missing."""
    out: list[bytes | None] = []
    for number in range(1, count + 1):
        path = os.path.join(tmp, f"kf_{number:05d}.jpg")
        out.append(open(path, "rb").read() if os.path.exists(path) else None)
    return out


def keyframe_output(tmp: str) -> list[str]:
    return ["-fps_mode", "passthrough", "-q:v", "3", os.path.join(tmp, "kf_%05d.jpg")]


def rate_ratio(source_fps: float, out_fps: float | None) -> float | None:
    """out/source frame-rate ratio when a clip is resampled down to ``out_fps``, else None.
    Rounded as it is printed into ffmpeg's expressions, so both sides count alike."""
    if not out_fps or out_fps >= source_fps - 1e-6:
        return None
    return float(f"{out_fps / source_fps:.10f}")


def resampled_frames(frames: int, ratio: float | None) -> int:
    """How many frames a clip of ``frames`` source frames has after ``pick_frames``."""
    return frames if ratio is None else int((frames - 1) * ratio) + 1


def pick_frames(first: int, ratio: float) -> str:
    """ffmpeg expression true for the source frames (``n`` counted from the clip's first,
    ``first``) that a clip resampled to ``ratio`` x the source rate keeps: output frame j
    shows the first source frame at or after its time j / out_fps."""
    return f"gte(floor((n-{first})*{ratio:.10f})-floor((n-{first}-1)*{ratio:.10f})\\,1)"


@dataclass
class CutSettings:
    video_codec_args: list[str]  # encoder args, e.g. -c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p
    video_filters: list[str]  # applied after frame selection (scale, pad)
    keep_audio: bool
    asr_audio: bool
    keyframe_max_side: int
    timeout: float
    source_filters: list[str] = field(default_factory=list)  # before frames are picked by number
    out_fps: float | None = None  # resample clips down to this rate (None: the source's)
    memory_mb: int | None = None  # address space of the ffmpeg run (None: no cap)


@dataclass
class CutClip:
    path: str
    keyframes: list[bytes]
    audio_pcm: bytes | None


def spans_are_cuttable(spans: list[tuple[int, int]]) -> bool:
    """One-pass cutting needs sorted, non-overlapping, non-empty spans."""
    return all(s < e for s, e in spans) and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def batch_origin(spans: list[tuple[int, int]], fps: float, seek: bool) -> tuple[int, float]:
    """(base, t0): the source frame a batch's run starts decoding at (its first span's, when it
    seeks) and the source time of the first decoded sample, half a frame early so ffmpeg's
    dropping of frames before -ss keeps exactly that frame whatever the rounding."""
    base = spans[0][0] if seek and spans and spans[0][0] > 0 else 0
    return base, ((base - 0.5) / fps if base else 0.0)


def cut_one_pass(source: str, spans: list[tuple[int, int]], keyframe_frames: list[list[int]], fps: float,
                 has_audio: bool, settings: CutSettings, tmp: str, what: str, seek: bool = True) -> list[CutClip]:
    """Cut ``spans`` ([start, end) source frames) of ``source``; keyframes are source frames.

    With ``seek`` (not for variable-frame-rate sources, whose frames are renumbered by
    resampling), decoding starts at the first span instead of the start of the file, so a
    long video cut a batch of clips at a time is decoded about once in all. The seek is
    half a frame early and ffmpeg drops frames before it, so frame 0 after it is exactly
    the first span's first frame; audio and PCM times are taken from the same point."""
    base, t0 = batch_origin(spans, fps, seek)
    spans = [(s - base, e - base) for s, e in spans]
    keyframe_frames = [[f - base for f in frames] for frames in keyframe_frames]
    all_keyframes = sorted({f for frames in keyframe_frames for f in frames})
    ratio = rate_ratio(fps, settings.out_fps)
    if ratio is None:
        ranges = "+".join(f"between(n\\,{s}\\,{e - 1})" for s, e in spans)
        timing = "setpts=N/FRAME_RATE/TB"
    else:
        ranges = "+".join(f"between(n\\,{s}\\,{e - 1})*{pick_frames(s, ratio)}" for s, e in spans)
        timing = f"setpts=N/{settings.out_fps:.6f}/TB"
    starts, total = [], 0
    for s, e in spans:
        starts.append(total)
        total += resampled_frames(e - s, ratio)
    graph = []
    video_in = "[0:v:0]"
    if settings.source_filters:  # e.g. constant-rate resampling, before frames are picked by number
        graph.append(f"[0:v:0]{','.join(settings.source_filters)}[vsrc]")
        video_in = "[vsrc]"
    if all_keyframes:
        graph.append(f"{video_in}split=2[vin][vkf]")
        video_in = "[vin]"
        graph.append(f"[vkf]{keyframe_filter(all_keyframes, settings.keyframe_max_side)}[kf]")
    graph.append(f"{video_in}select='{ranges}',{timing},{','.join(settings.video_filters)}[v]")
    with_audio = has_audio and settings.keep_audio
    if with_audio:
        graph += clip_audio_graph(spans, base, fps, t0)
    args = ["-y", *(["-ss", f"{t0:.6f}"] if base else []), "-i", source,
            "-filter_complex", ";".join(graph), "-map", "[v]"]
    boundaries = [str(c) for c in starts[1:]]
    args += [*settings.video_codec_args, *(["-r", f"{settings.out_fps:.6f}"] if ratio is not None else []),
             "-force_key_frames", "expr:" + ("+".join(f"eq(n,{c})" for c in starts) or "eq(n,0)"),
             "-f", "segment", "-reset_timestamps", "1", "-segment_format", "mp4",
             "-segment_format_options", "movflags=+faststart"]
    if boundaries:
        args += ["-segment_frames", ",".join(boundaries)]
    args.append(os.path.join(tmp, "clip_%05d.mp4"))
    if all_keyframes:
        args += ["-map", "[kf]", *keyframe_output(tmp)]
    args += audio_outputs(len(spans), with_audio, has_audio and settings.asr_audio, tmp)
    run_ffmpeg(args, what, timeout=settings.timeout * max(1, len(spans)), memory_mb=settings.memory_mb)

    jpegs = {f: jpeg for f, jpeg in zip(all_keyframes, read_keyframes(tmp, len(all_keyframes))) if jpeg}
    pcms = read_pcm_slices(tmp, spans, base, fps, t0)
    clips = []
    for index, ((s, e), frames) in enumerate(zip(spans, keyframe_frames)):
        audio = pcms[index]
        path = os.path.join(tmp, f"clip_{index:05d}.mp4")
        if with_audio and os.path.exists(path):
            path = mux_audio(path, os.path.join(tmp, f"audio_{index:05d}.m4a"), os.path.join(tmp, f"av_{index:05d}.mp4"))
        clips.append(CutClip(path, [jpegs[f] for f in frames if f in jpegs], audio))
    return clips


def clip_audio_graph(spans: list[tuple[int, int]], base: int, fps: float, t0: float) -> list[str]:
    """Filter-graph chains [a0], [a1], ...: each span's audio (spans counted from ``base``; the
    first decoded sample is at source time ``t0``), sample-accurate, starting at 0."""
    graph = [f"[0:a:0]asplit={len(spans)}" + "".join(f"[as{i}]" for i in range(len(spans)))]
    graph += [f"[as{i}]atrim=start={(s + base) / fps - t0:.6f}:end={(e + base) / fps - t0:.6f},"
              f"asetpts=PTS-STARTPTS[a{i}]" for i, (s, e) in enumerate(spans)]
    return graph


def audio_outputs(count: int, clip_audio: bool, asr_audio: bool, tmp: str) -> list[str]:
    """ffmpeg outputs: each clip's AAC file from the graph's [a<i>], the whole 16 kHz PCM track."""
    args = []
    if clip_audio:
        for i in range(count):
            args += ["-map", f"[a{i}]", *AAC_ARGS, os.path.join(tmp, f"audio_{i:05d}.m4a")]
    if asr_audio:
        args += ["-map", "0:a:0", "-ac", "1", "-ar", str(ASR_SAMPLE_RATE), "-f", "s16le", os.path.join(tmp, "audio.pcm")]
    return args


def read_pcm_slices(tmp: str, spans: list[tuple[int, int]], base: int, fps: float, t0: float) -> list[bytes | None]:
    """Each span's slice of the 16 kHz PCM track written by ``audio_outputs`` (None without one)."""
    pcm_path = os.path.join(tmp, "audio.pcm")
    if not os.path.exists(pcm_path):
        return [None] * len(spans)
    pcm = np.memmap(pcm_path, dtype=np.int16, mode="r") if os.path.getsize(pcm_path) else np.zeros(0, np.int16)
    out = []
    for s, e in spans:
        a, b = (int(round(((f + base) / fps - t0) * ASR_SAMPLE_RATE)) for f in (s, e))
        out.append(np.asarray(pcm[a:b]).tobytes())
    return out


def cut_audio(source: str, spans: list[tuple[int, int]], fps: float, settings: CutSettings, tmp: str,
              what: str) -> list[tuple[str | None, bytes | None]]:
    """Only the audio of ``spans``, for clips whose video is made elsewhere (smart cutting):
    per clip its AAC file (None when not kept) and its 16 kHz PCM (None when not asked for)."""
    base, t0 = batch_origin(spans, fps, seek=True)  # smart mode cuts constant-rate sources only
    spans = [(s - base, e - base) for s, e in spans]
    args = ["-y", *(["-ss", f"{t0:.6f}"] if base else []), "-i", source, "-vn"]
    if settings.keep_audio:
        args += ["-filter_complex", ";".join(clip_audio_graph(spans, base, fps, t0))]
    args += audio_outputs(len(spans), settings.keep_audio, settings.asr_audio, tmp)
    run_ffmpeg(args, what, timeout=settings.timeout * max(1, len(spans)), memory_mb=settings.memory_mb)
    pcms = read_pcm_slices(tmp, spans, base, fps, t0) if settings.asr_audio else [None] * len(spans)
    return [(os.path.join(tmp, f"audio_{i:05d}.m4a") if settings.keep_audio else None, pcms[i])
            for i in range(len(spans))]


def mux_audio(video_path: str, audio_path: str, out_path: str) -> str:
    """Video and audio files -> one faststart mp4, packets copied (PyAV, in process)."""
    import heapq

    import av

    with av.open(video_path) as video, av.open(audio_path) as audio, \
            av.open(out_path, "w", format="mp4", options={"movflags": "+faststart"}) as out:
        v_in, a_in = video.streams.video[0], audio.streams.audio[0]
        v_out, a_out = out.add_stream_from_template(v_in), out.add_stream_from_template(a_in)

        # The first segment keeps the encoder's B-frame delay as a start offset; start at 0.
        shift = {id(v_out): min((p.pts for p in video.demux(v_in) if p.pts is not None), default=0), id(a_out): 0}
        video.seek(0)

        def packets(container, stream, target):
            for packet in container.demux(stream):
                if packet.dts is None:
                    continue
                packet.pts -= shift[id(target)]
                packet.dts -= shift[id(target)]
                yield float(packet.dts * packet.time_base), id(target), packet, target

        for _, _, packet, target in heapq.merge(packets(video, v_in, v_out), packets(audio, a_in, a_out),
                                                key=lambda item: (item[0], item[1])):
            packet.stream = target
            out.mux(packet)
    return out_path


def video_facts(path: str) -> tuple[int, int, int]:
    """(frames, width, height) of an mp4's video track, read from its index (no decoding)."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = stream.frames or sum(1 for _ in container.demux(stream) if _.size)
        return int(frames), int(stream.codec_context.width), int(stream.codec_context.height)

"""A corpus of hostile and odd inputs, each with the outcome that is true for it.

``make(folder)`` writes the files and a manifest (``manifest.jsonl``, a row per case, plus
rows that are broken themselves) and returns the cases: name -> what the build must do
with it, either ``"samples"`` (it is a valid video: at least one clip) or the
``(stage, reason)`` of its reject. Every file is made here with the ffmpeg that ships with
imageio-ffmpeg, in a few seconds, from lavfi test sources (no downloads).
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field

import imageio_ffmpeg

SAMPLES = "samples"
SECONDS = 4
# A moving test picture: one shot of SECONDS, so a valid input gives one clip.
SOURCE = ["-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=24:duration={SECONDS}"]
H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]


@dataclass
class Case:
    name: str          # the file name (or the uri, for rows that are not files)
    expect: object     # SAMPLES or (stage, reason)
    row: dict = field(default_factory=dict)  # extra manifest fields
    uri: str | None = None  # when it is not a file of the folder


def _ffmpeg(*args: str) -> None:
    done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {done.stderr[-800:]}")


def _video(path: str, *encode: str, source: list[str] = SOURCE, filters: str | None = None) -> None:
    _ffmpeg(*source, *(["-vf", filters] if filters else []), *(encode or H264), path)


def _corrupt_middle(path: str, out: str) -> None:
    """Overwrite a tenth of the bytes in the middle of the file (inside mdat) with garbage."""
    data = bytearray(open(path, "rb").read())
    start, size = len(data) // 2, len(data) // 10
    data[start:start + size] = bytes((i * 131 + 7) % 256 for i in range(size))
    open(out, "wb").write(bytes(data))


def _huge_declared_mjpeg(path: str) -> None:
    """A 64x64 MJPEG AVI whose headers and every JPEG say 16384x16384 (ffmpeg's decoders refuse
    images that large, so nothing can make real ones)."""
    small = path + ".small.avi"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64:rate=4:duration=2", "-c:v", "mjpeg", small)
    data = bytearray(open(small, "rb").read())
    os.remove(small)
    side = (16384).to_bytes(2, "big")
    at = data.find(b"\xff\xc0")
    while at >= 0:  # JPEG SOF0: marker, length, precision, height, width
        data[at + 5:at + 9] = side + side
        at = data.find(b"\xff\xc0", at + 2)
    for tag, offset in ((b"strf", 4), (b"avih", 32)):  # BITMAPINFOHEADER and the AVI main header
        start = data.find(tag) + 8 + offset
        data[start:start + 8] = (16384).to_bytes(4, "little") * 2
    open(path, "wb").write(bytes(data))


def make(folder: str, http_base: str | None = None) -> dict[str, Case]:
    """The corpus in ``folder``; ``http_base``: the URL a server gives ``folder`` at, to add an
    input fetched over HTTP."""
    os.makedirs(folder, exist_ok=True)
    at = lambda name: os.path.join(folder, name)  # noqa: E731
    cases: list[Case] = []

    def case(name: str, expect, **row) -> None:
        cases.append(Case(name, expect, row))

    # ---- not videos, or not whole ------------------------------------------------------
    open(at("zero_bytes.mp4"), "wb").close()
    case("zero_bytes.mp4", ("probe", "empty_file"))
    open(at("text.mp4"), "w").write("this is a text file with a video extension\n" * 20)
    case("text.mp4", ("probe", "unreadable_container"))
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240", "-frames:v", "1", "-f", "image2", "-c:v", "png",
            at("image.mp4"))
    case("image.mp4", ("probe", "unknown_duration"))  # a single picture has no duration
    _video(at("whole.mp4"))
    whole = open(at("whole.mp4"), "rb").read()
    open(at("moov_missing.mp4"), "wb").write(whole[: int(len(whole) * 0.6)])  # moov is written last
    case("moov_missing.mp4", ("probe", "unreadable_container"))
    _video(at("faststart.mp4"), *H264, "-movflags", "+faststart")
    faststart = open(at("faststart.mp4"), "rb").read()
    open(at("cut_mid_mdat.mp4"), "wb").write(faststart[: int(len(faststart) * 0.5)])
    case("cut_mid_mdat.mp4", ("split_shots", "truncated_video"))
    _corrupt_middle(at("faststart.mp4"), at("corrupt_frames.mp4"))
    case("corrupt_frames.mp4", SAMPLES)  # decoders conceal the damage: it plays, with artefacts
    _ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:duration={SECONDS}", "-c:a", "aac", at("audio_only.mp4"))
    case("audio_only.mp4", ("probe", "no_video_stream"))
    _ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:duration={SECONDS}", "-i", at("whole.mp4"), "-map", "1:v",
            "-map", "0:a", "-c:v", "copy", "-c:a", "aac", "-frames:v", "0", at("no_frames.mp4"))
    case("no_frames.mp4", ("probe", "no_video_stream"))  # its video track holds no frame: demuxers drop it

    # ---- sizes, lengths and rates -------------------------------------------------------
    _ffmpeg("-f", "lavfi", "-i", "color=black:size=8192x8192:rate=1:duration=2", *H264, at("huge_8192.mp4"))
    case("huge_8192.mp4", ("probe", "too_many_pixels"))  # 67M pixels a frame: over the 8K default
    _huge_declared_mjpeg(at("declares_16384.avi"))
    case("declares_16384.avi", ("probe", "undecodable_video"))  # ffmpeg refuses frames this large
    _video(at("extreme_aspect.mp4"), filters="scale=1280:16")
    case("extreme_aspect.mp4", ("probe", "extreme_aspect"))
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=1:duration=3", "-vf", "setpts=PTS*9000",
            "-fps_mode", "passthrough", *H264, at("declares_5_hours.mp4"))
    case("declares_5_hours.mp4", ("probe", "too_long"))
    _video(at("odd_size_97x61.mp4"), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p",
           filters="scale=97:61")
    case("odd_size_97x61.mp4", SAMPLES)
    _video(at("variable_rate.mp4"), *H264, "-fps_mode", "vfr", filters="select='lt(n\\,48)+not(mod(n\\,3))'")
    case("variable_rate.mp4", SAMPLES)  # every frame for 2 s, then every third: 24 then 8 frames/s
    _ffmpeg("-display_rotation", "90", "-i", at("whole.mp4"), "-c", "copy", at("rotated.mp4"))
    case("rotated.mp4", SAMPLES)
    _video(at("interlaced.mp4"), "-c:v", "libx264", "-preset", "ultrafast", "-flags", "+ilme+ildct",
           "-x264opts", "tff=1", "-pix_fmt", "yuv420p", filters="tinterlace=interleave_top,fieldorder=tff")
    case("interlaced.mp4", SAMPLES)

    # ---- codecs and containers ------------------------------------------------------------
    _video(at("h264_10bit.mp4"), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le")
    case("h264_10bit.mp4", SAMPLES)
    _video(at("h264_444.mp4"), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p")
    case("h264_444.mp4", SAMPLES)
    _video(at("hevc.mp4"), "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=none",
           "-tag:v", "hvc1")
    case("hevc.mp4", SAMPLES)
    _video(at("hevc_10bit.mkv"), "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=none",
           "-pix_fmt", "yuv420p10le")
    case("hevc_10bit.mkv", SAMPLES)
    _video(at("av1.mkv"), "-c:v", "libsvtav1", "-preset", "12")
    case("av1.mkv", SAMPLES)
    _video(at("vp9.webm"), "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k")
    case("vp9.webm", SAMPLES)
    # AVI whose index holds empty "repeat the previous frame" chunks: 69 coded frames over 29.6 s at
    # a declared 15 fps (450 index entries), which players show as a 29.6 s video
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=2.3:duration=29.6", "-vf",
            "settb=1/15,setpts=round(PTS)", "-c:v", "cinepak", "-fps_mode", "passthrough", "-enc_time_base",
            "1/15", at("avi_repeat_frames.avi"))
    case("avi_repeat_frames.avi", SAMPLES)

    # ---- names a shell or an option parser would misread ---------------------------------
    for name in ("a file with spaces.mp4", "ünïcødé 视频 🎬.mp4", "quotes ' and \" in it.mp4",
                 "-leading-dash.mp4", "$(touch PWNED); `touch PWNED2` | & ; *.mp4"):
        os.link(at("whole.mp4"), at(name))
        case(name, SAMPLES)

    # ---- manifest rows --------------------------------------------------------------------
    cases.append(Case("missing.mp4", ("probe", "file_not_found")))
    os.mkfifo(at("named_pipe.mp4"))  # reading it would block forever: refused before it is opened
    case("named_pipe.mp4", ("probe", "not_a_file"))
    cases.append(Case("unreachable-url", ("probe", "fetch_failed"), uri="http://127.0.0.1:9/video.mp4"))
    os.link(at("whole.mp4"), at("long_description.mp4"))
    case("long_description.mp4", SAMPLES, title="a megabyte of description", description="words " * 180_000)
    os.link(at("whole.mp4"), at("markup_in_metadata.mp4"))
    case("markup_in_metadata.mp4", SAMPLES, title='<script>alert("x")</script>\x00\x07\x1b[31m red',
         description="line one\r\nline two\u202e reversed \x0b\x0c <b>bold</b> {braces} {0} %s")
    if http_base:
        os.link(at("whole.mp4"), at("served.mp4"))
        cases.append(Case("served over http", SAMPLES, uri=f"{http_base}/served.mp4"))
    os.remove(at("whole.mp4"))
    os.remove(at("faststart.mp4"))
    for c in cases:
        c.uri = c.uri or at(c.name)
    by_name = {c.name: c for c in cases}
    # a title for every input: the metadata teacher captions the clips of the valid ones
    rows = [{"uri": c.uri, "title": f"test picture {n}", **c.row} for n, c in enumerate(cases)]
    lines = [json.dumps(row, ensure_ascii=False).encode("utf-8") for row in rows]
    # a row whose title is not UTF-8 (bytes of latin-1), and a video_id that tries to leave OUT
    os.link(at("rotated.mp4"), at("latin1_title.mp4"))
    lines.append(b'{"uri": ' + json.dumps(at("latin1_title.mp4")).encode() + b', "title": "caf\xe9 cr\xe8me"}')
    by_name["latin1_title.mp4"] = Case("latin1_title.mp4", ("input", "manifest_row_invalid"),
                                       uri=at("latin1_title.mp4"))
    os.link(at("rotated.mp4"), at("escaping_id.mp4"))
    lines.append(json.dumps({"uri": at("escaping_id.mp4"), "video_id": "../../etc/x\x00"}).encode())
    by_name["escaping_id.mp4"] = Case("escaping_id.mp4", ("input", "manifest_row_invalid"),
                                      uri=at("escaping_id.mp4"))
    with open(at("manifest.jsonl"), "wb") as handle:
        handle.write(b"\n".join(lines) + b"\n")
    return by_name

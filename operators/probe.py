"""probe: open each source video with PyAV, record its facts, reject what cannot be read."""
from __future__ import annotations

import os
import stat
from typing import ClassVar, Optional

from pydantic import Field

from vidcurate.operators.base import Operator, RecordError, Resources
from vidcurate.operators.fetch import DEFAULT_SCHEMES, FetchPolicy
from vidcurate.operators.media import local_path
from vidcurate.schemas.records import PROBE


class ProbeVideo(Operator):
    """Adds the PROBE fields (duration, fps, size, codecs, audio) and ``local_path``.

    Decodes the first video frame, so a file whose codec cannot be decoded is rejected
    here (``undecodable_video``) rather than deep inside a later stage.
    """

    name: ClassVar[str] = "probe"
    resources: ClassVar[Resources] = Resources(cpus=1, batch_size=8)
    requires: ClassVar[tuple[str, ...]] = ("uri",)
    provides: ClassVar[tuple[str, ...]] = (*(f.name for f in PROBE), "local_path")

    min_duration: float = Field(0.5, ge=0, description="Reject videos shorter than this (seconds).")
    max_duration: float = Field(4 * 3600, gt=0, description="Reject videos longer than this (seconds).")
    max_pixels: int = Field(8192 * 4320, gt=0, description="Reject videos whose frames declare more pixels than "
                            "this (default: 8K), before any decoding.")
    max_aspect_ratio: float = Field(8.0, ge=1, description="Reject videos whose longer side is more than this "
                                    "many times the shorter, before any decoding.")
    max_file_bytes: Optional[int] = Field(None, gt=0, description="Reject files larger than this (bytes); remote "
                                          "inputs are not fetched past it.")
    cache_dir: Optional[str] = Field(None, description="Where remote (fsspec) inputs are copied before decoding.")
    allowed_schemes: list[str] = Field(list(DEFAULT_SCHEMES), description="URL schemes of inputs that are fetched "
                                       "(a local path is always read).")
    fetch_timeout: float = Field(60.0, gt=0, description="Seconds a fetch may wait to connect or between bytes.")
    read_timeout: float = Field(60.0, gt=0, description="Seconds opening the container or one read of it may "
                                "take (a stalled network filesystem): reject read_timeout, transient.")
    fetch_retries: int = Field(3, ge=0, description="Retries of a fetch that failed transiently (network "
                                                    "errors, timeouts, HTTP 408/429/5xx), with backoff.")

    def process_record(self, record: dict) -> dict:
        uri = record["uri"]
        path = local_path(uri, self.cache_dir, FetchPolicy(tuple(self.allowed_schemes), self.max_file_bytes,
                                                           self.fetch_timeout, self.fetch_retries))
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a FIFO, device or folder: reading it could block or never end
            raise RecordError("not_a_file", f"{uri}: not a regular file (a pipe, device or folder)")
        size = info.st_size
        if size == 0:
            raise RecordError("empty_file", f"{uri}: the file is 0 bytes")
        if self.max_file_bytes and size > self.max_file_bytes:
            raise RecordError("file_too_large", f"{uri}: {size} bytes > max_file_bytes {self.max_file_bytes}")
        facts = probe_file(path, uri, self.max_pixels, self.max_aspect_ratio, self.read_timeout)
        if facts["duration"] < self.min_duration:
            raise RecordError("too_short", f"{uri}: {facts['duration']:.2f} s < min_duration {self.min_duration} s")
        if facts["duration"] > self.max_duration:
            raise RecordError("too_long", f"{uri}: {facts['duration']:.0f} s > max_duration {self.max_duration} s")
        return {**record, **facts, "size_bytes": size, "local_path": path}


def probe_file(path: str, uri: str, max_pixels: int | None = None, max_aspect_ratio: float | None = None,
               read_timeout: float | None = None) -> dict:
    """The PROBE facts of one file; the limits are checked on what it declares, before decoding."""
    import av

    try:
        container = av.open(path, timeout=read_timeout)
    except Exception as exc:
        if "Immediate exit requested" in str(exc) or isinstance(exc, TimeoutError):  # PyAV's timeout
            raise RecordError("read_timeout", f"{uri}: opening it took longer than {read_timeout:g} s",
                              transient=True) from exc
        raise RecordError("unreadable_container", f"{uri}: {type(exc).__name__}: {exc}") from exc
    with container:
        if not container.streams.video:
            raise RecordError("no_video_stream", f"{uri}: the container holds no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or float(rate) <= 0:
            raise RecordError("unknown_frame_rate", f"{uri}: the video stream declares no frame rate")
        fps = float(rate)
        # r_frame_rate (base_rate) is the tick every frame lands on; when it differs from the
        # average rate, frames are not evenly spaced: later stages resample to the average
        # rate so that frame n is at n / fps in every pass (detection, cutting, keyframes).
        base = float(stream.base_rate) if stream.base_rate else fps
        variable = abs(base - fps) > 0.01 * fps
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            raise RecordError("unknown_duration", f"{uri}: neither the stream nor the container declares a duration")
        declared_w, declared_h = int(stream.codec_context.width), int(stream.codec_context.height)
        if max_pixels and declared_w * declared_h > max_pixels:
            raise RecordError("too_many_pixels", f"{uri}: {declared_w}x{declared_h} = {declared_w * declared_h} "
                                                 f"pixels per frame > max_pixels {max_pixels}")
        if max_aspect_ratio and min(declared_w, declared_h) > 0 and \
                max(declared_w, declared_h) / min(declared_w, declared_h) > max_aspect_ratio:
            raise RecordError("extreme_aspect", f"{uri}: {declared_w}x{declared_h} is more than {max_aspect_ratio:g} "
                                                f"times as long as it is wide (max_aspect_ratio)")
        try:
            first = next(container.decode(stream))
        except StopIteration:
            raise RecordError("undecodable_video", f"{uri}: the video stream has no decodable frame") from None
        except Exception as exc:
            raise RecordError("undecodable_video", f"{uri}: {type(exc).__name__}: {exc}") from exc
        audio = container.streams.audio[0] if container.streams.audio else None
        rotation = int(getattr(first, "rotation", 0) or 0)
        # ffmpeg applies the display rotation when it decodes, so every later stage sees the
        # picture upright: width and height are the displayed ones.
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        if rotation % 180:
            width, height = height, width
        return {
            "duration": duration,
            "fps": fps,
            "num_frames": int(stream.frames) if stream.frames else int(round(duration * fps)),
            "width": width,
            "height": height,
            "video_codec": stream.codec_context.name,
            "pixel_format": stream.codec_context.format.name if stream.codec_context.format else None,
            "rotation": rotation,
            "variable_frame_rate": variable,
            "has_audio": audio is not None,
            "audio_codec": audio.codec_context.name if audio else None,
            "audio_sample_rate": int(audio.codec_context.sample_rate) if audio else None,
            "audio_channels": int(audio.codec_context.channels) if audio else None,
        }

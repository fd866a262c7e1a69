"""Small media helpers shared by operators: ffmpeg, local copies of remote inputs, frames.

ffmpeg comes from imageio-ffmpeg (a static build inside the wheel), so no system
ffmpeg is needed. There is no ffprobe: probing is done with PyAV.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
from typing import Iterator

import numpy as np

from vidcurate.operators.base import RecordError


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: list[str], what: str, timeout: float | None = None) -> bytes:
    """Run ffmpeg with ``args``; a failure becomes a RecordError naming ``what`` and ffmpeg's message."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *args]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RecordError("ffmpeg_timeout", f"{what}: ffmpeg ran longer than {timeout} s", transient=True) from exc
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RecordError("ffmpeg_failed", f"{what}: {' | '.join(message[-3:]) or f'exit {done.returncode}'}")
    return done.stdout


def local_path(uri: str, cache_dir: str | None) -> str:
    """A local file for ``uri``: the path itself, or a cached copy fetched with fsspec."""
    if "://" not in uri or uri.startswith("file://"):
        path = uri[len("file://"):] if uri.startswith("file://") else uri
        if not os.path.exists(path):
            raise RecordError("file_not_found", f"{uri}: no such file")
        return path
    import fsspec

    cache_dir = cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "vidcurate", "inputs")
    os.makedirs(cache_dir, exist_ok=True)
    suffix = os.path.splitext(uri)[1][:8]
    target = os.path.join(cache_dir, hashlib.sha1(uri.encode()).hexdigest() + suffix)
    if not os.path.exists(target):
        partial = target + ".part"
        try:
            with fsspec.open(uri, "rb") as src, open(partial, "wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
        except FileNotFoundError as exc:
            raise RecordError("file_not_found", f"{uri}: {exc}") from exc
        except OSError as exc:
            raise RecordError("fetch_failed", f"{uri}: {type(exc).__name__}: {exc}", transient=True) from exc
        os.replace(partial, target)
    return target


def lowres_size(width: int, height: int, target_width: int) -> tuple[int, int]:
    """(w, h) for a low-resolution decode: ``target_width`` wide, aspect kept, even sizes."""
    w = max(2, min(width, target_width) // 2 * 2)
    h = max(2, int(round(height * w / width / 2)) * 2)
    return w, h


def iter_frames(path: str, width: int, height: int, chunk: int = 64) -> Iterator[np.ndarray]:
    """Decode every frame once, sequentially, at (width, height); yields RGB uint8 chunks [n, h, w, 3].

    decord first (fast); PyAV when decord cannot open the file (AV1, exotic codecs).
    Memory stays bounded by ``chunk`` frames whatever the video's length.
    """
    try:
        import decord

        reader = decord.VideoReader(path, width=width, height=height, num_threads=1)
    except Exception:
        reader = None
    if reader is not None:
        total = len(reader)
        for first in range(0, total, chunk):
            try:
                batch = reader.get_batch(list(range(first, min(first + chunk, total)))).asnumpy()
            except Exception as exc:
                raise RecordError("decode_error", f"{path}: decoding stopped at frame {first} of {total}: "
                                  f"{type(exc).__name__}: {str(exc)[:200]}") from exc
            yield batch
        return
    yield from _iter_frames_pyav(path, width, height, chunk)


def _iter_frames_pyav(path: str, width: int, height: int, chunk: int) -> Iterator[np.ndarray]:
    import av

    try:
        container = av.open(path)
    except Exception as exc:
        raise RecordError("unreadable_container", f"{path}: {type(exc).__name__}: {exc}") from exc
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(width=width, height=height, format="rgb24"))
                if len(frames) == chunk:
                    yield np.stack(frames)
                    frames = []
        except av.error.FFmpegError as exc:
            raise RecordError("decode_error", f"{path}: {type(exc).__name__}: {exc}") from exc
        if frames:
            yield np.stack(frames)

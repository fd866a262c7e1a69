"""WebDataset tar shards written atomically: a reader never sees a partial shard.

Samples go to ``<dir>/.<name>.tmp``; when the shard reaches ``max_samples`` or
``max_bytes`` (or the build ends) it is renamed to ``<dir>/<prefix>-<NNNNNN>.tar``.
"""
from __future__ import annotations

import io
import json
import os

import webdataset as wds


class ShardWriter:
    def __init__(self, directory: str, prefix: str = "shard", max_samples: int = 1000,
                 max_bytes: int = 1 << 30, start_index: int = 0):
        if max_samples < 1 or max_bytes < 1:
            raise ValueError(f"shard limits must be >= 1 (max_samples={max_samples}, max_bytes={max_bytes})")
        os.makedirs(directory, exist_ok=True)
        self.directory, self.prefix = directory, prefix
        self.max_samples, self.max_bytes = max_samples, max_bytes
        self.index = start_index
        self.written: list[str] = []
        self._file = self._tar = None
        self._samples = self._bytes = 0

    @property
    def current_name(self) -> str:
        return f"{self.prefix}-{self.index:06d}.tar"

    def write(self, key: str, members: dict[str, bytes | str | dict]) -> str:
        """Add one sample; returns the name of the shard that holds it."""
        size = sum(len(_as_bytes(v)) for v in members.values())
        if self._tar is not None and (self._samples >= self.max_samples
                                      or (self._samples and self._bytes + size > self.max_bytes)):
            self._finish()
        if self._tar is None:
            self._open()
        self._tar.write({"__key__": key, **{ext: _as_bytes(v) for ext, v in members.items()}})
        self._samples += 1
        self._bytes += size
        return self.current_name

    def close(self) -> list[str]:
        if self._tar is not None:
            self._finish()
        return self.written

    def _open(self) -> None:
        self._tmp_path = os.path.join(self.directory, f".{self.current_name}.tmp")
        self._file = open(self._tmp_path, "wb")
        self._tar = wds.TarWriter(self._file)
        self._samples = self._bytes = 0

    def _finish(self) -> None:
        self._tar.close()
        self._file.close()
        os.replace(self._tmp_path, os.path.join(self.directory, self.current_name))
        self.written.append(self.current_name)
        self._tar = self._file = None
        self.index += 1


def _as_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    buffer = io.StringIO()
    json.dump(value, buffer, ensure_ascii=False, sort_keys=True)
    return buffer.getvalue().encode("utf-8")

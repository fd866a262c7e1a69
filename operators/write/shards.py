"""WebDataset tar shards written atomically: a reader never sees a partial shard.

A :class:`ShardWriter` fills ``open_shards`` shards at once: each sample goes to the
open shard chosen by a hash of its key, so the clips of one source video spread over
several shards (a shuffle buffer reading a few shards then sees many videos). With
``open_shards=1`` samples go to shards in arrival order. Samples are written to a staged
``.<name>.tmp``; when a shard reaches ``max_samples`` or ``max_bytes`` (or the writer
closes) it is published as ``[subdir/]<prefix>-<NNNNNN>.tar`` and ``on_finalized(name, samples)``
is called, which is when a build may count its samples as done.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Callable

from vidcurate.operators import kill_points
from vidcurate.operators.write.destination import Destination


class _OpenShard:
    """One shard being filled: a plain tar (the WebDataset format is tar members named
    ``<key>.<ext>``, grouped by key), written straight to a seekable file."""

    def __init__(self, name: str, staged: str):
        self.name, self.staged = name, staged
        self.file = open(staged, "wb")
        self.tar = tarfile.open(fileobj=self.file, mode="w", format=tarfile.GNU_FORMAT)
        self.samples = self.bytes = 0

    def add(self, key: str, members: dict[str, bytes]) -> dict[str, tuple[int, int]]:
        """Append a sample; returns each member's (byte offset of its data in the tar, size)."""
        where = {}
        for ext, data in sorted(members.items()):  # members of a sample in name order, as webdataset writes
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mode, info.mtime = len(data), 0o444, _MTIME
            self.tar.addfile(info, io.BytesIO(data))
            padded = -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            where[ext] = (self.tar.offset - padded, len(data))
        return where


class ShardWriter:
    def __init__(self, directory: str | Destination, prefix: str = "shard", max_samples: int = 1000,
                 max_bytes: int = 1 << 30, start_index: int = 0, open_shards: int = 1, subdir: str = "",
                 on_finalized: Callable[[str, int], None] | None = None):
        if max_samples < 1 or max_bytes < 1 or open_shards < 1:
            raise ValueError(f"shard limits must be >= 1 (max_samples={max_samples}, max_bytes={max_bytes}, "
                             f"open_shards={open_shards})")
        self.dest = directory if isinstance(directory, Destination) else Destination(directory)
        self.dest.makedirs(subdir)
        self.prefix, self.subdir = prefix, subdir
        self.max_samples, self.max_bytes = max_samples, max_bytes
        self.index = start_index  # number of the next shard opened
        self.on_finalized = on_finalized
        self.written: list[str] = []
        self.last_members: dict[str, tuple[int, int]] = {}  # of the last sample written: ext -> (offset, size)
        self._slots: list[_OpenShard | None] = [None] * open_shards

    def write(self, key: str, members: dict[str, bytes | str | dict]) -> str:
        """Add one sample; returns the name (relative to the directory) of the shard that holds it."""
        data = {ext: _as_bytes(v) for ext, v in members.items()}
        size = sum(len(v) for v in data.values())
        slot = _slot(key, len(self._slots))
        shard = self._slots[slot]
        if shard is not None and (shard.samples >= self.max_samples
                                  or (shard.samples and shard.bytes + size > self.max_bytes)):
            self._finish(slot)
            shard = None
        if shard is None:
            shard = self._slots[slot] = self._open()
        self.last_members = shard.add(key, data)
        shard.samples += 1
        shard.bytes += size
        kill_points.reached(f"sample:{shard.name}")
        return shard.name

    def close(self) -> list[str]:
        for slot in range(len(self._slots)):
            if self._slots[slot] is not None:
                self._finish(slot)
        return self.written

    def _open(self) -> _OpenShard:
        name = f"{self.prefix}-{self.index:06d}.tar"
        if self.subdir:
            name = f"{self.subdir}/{name}"
        self.index += 1
        return _OpenShard(name, self.dest.staging_path(name))

    def _finish(self, slot: int) -> None:
        shard = self._slots[slot]
        self._slots[slot] = None
        shard.tar.close()
        shard.file.close()
        self.dest.publish(shard.staged, shard.name)
        self.written.append(shard.name)
        if self.on_finalized:
            self.on_finalized(shard.name, shard.samples)


_MTIME = 1_700_000_000  # fixed: the same samples make byte-identical shards


def _slot(key: str, slots: int) -> int:
    if slots == 1:
        return 0
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big") % slots


def shard_keys(data: bytes) -> list[str]:
    """The sample keys of a shard, in order."""
    keys: list[str] = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for name in tar.getnames():
            key = name.split(".", 1)[0]
            if not keys or keys[-1] != key:
                keys.append(key)
    return keys


def drop_samples(data: bytes, keep: set[str]) -> tuple[bytes, dict[str, int]]:
    """The shard ``data`` with only the samples whose key is in ``keep``, and the new byte offset
    of each kept sample's mp4 data."""
    out = io.BytesIO()
    mp4_offsets: dict[str, int] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as src, \
            tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as dst:
        for member in src.getmembers():
            key, ext = member.name.split(".", 1)
            if key in keep:
                dst.addfile(member, src.extractfile(member))
                if ext == "mp4":
                    mp4_offsets[key] = dst.offset - -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    return out.getvalue(), mp4_offsets


def _as_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    # dumps, not dump: json.dump to a file encodes in pure Python, several times slower
    return json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8")

"""`vidcurate bench shards`: shard writing throughput against a plain tar write of the same bytes.

The samples are real: the mp4 of the sample videos (repeated to reach the size asked),
a metadata json and a caption, as a build writes them. In one run, best of repeats:

  plain tar   Python's tarfile writing every member into one file;
  shards      vidcurate's ShardWriter: staged files, size-limited shards filled
              ``open_shards`` at a time, each published whole by a rename.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import time

from vidcurate.operators.write.shards import ShardWriter
from vidcurate.pipelines import sample_media


def _samples(total_mb: float) -> list[tuple[str, dict]]:
    videos = [open(sample_media.sample(n), "rb").read() for n in ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")]
    out, size, i = [], 0, 0
    while size < total_mb * 1e6:
        mp4 = videos[i % len(videos)]
        meta = {"clip_id": f"clip{i:07d}", "caption": "a street with parked bicycles", "candidates": [{"text": "x"}] * 8}
        out.append((f"clip{i:07d}", {"mp4": mp4, "json": meta, "txt": meta["caption"]}))
        size += len(mp4) + 400
        i += 1
    return out


def _plain_tar(items, folder: str) -> float:
    started = time.perf_counter()
    with tarfile.open(os.path.join(folder, "plain.tar"), "w") as tar:
        for key, members in items:
            for ext, value in members.items():
                data = value if isinstance(value, bytes) else (json.dumps(value) if isinstance(value, dict)
                                                                else value).encode()
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return time.perf_counter() - started


def _shards(items, folder: str, max_mb: float, open_shards: int) -> float:
    started = time.perf_counter()
    writer = ShardWriter(folder, max_samples=10_000, max_bytes=int(max_mb * 1e6), open_shards=open_shards)
    for key, members in items:
        writer.write(key, members)
    writer.close()
    return time.perf_counter() - started


def run(total_mb: float = 400, shard_mb: float = 64, open_shards: int = 4, repeats: int = 3,
        workdir: str | None = None) -> dict:
    items = _samples(total_mb)
    nbytes = sum(len(m["mp4"]) for _, m in items)
    plain, sharded = [], []
    for _ in range(repeats):  # interleaved: page-cache and disk drift hit both alike
        for target, fn in ((plain, lambda f: _plain_tar(items, f)),
                           (sharded, lambda f: _shards(items, f, shard_mb, open_shards))):
            folder = tempfile.mkdtemp(prefix="vidcurate-bench-shards-", dir=workdir)
            try:
                target.append(fn(folder))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
    return {"samples": len(items), "mb": nbytes / 1e6, "shard_mb": shard_mb, "open_shards": open_shards,
            "plain_seconds": min(plain), "shard_seconds": min(sharded),
            "plain_mb_s": nbytes / 1e6 / min(plain), "shard_mb_s": nbytes / 1e6 / min(sharded),
            "ratio": min(plain) / min(sharded)}


def report(r: dict) -> str:
    return "\n".join([
        f"shard write benchmark: {r['samples']} real samples, {r['mb']:.0f} MB of mp4, shards of {r['shard_mb']:.0f} MB "
        f"filled {r['open_shards']} at a time, best of repeats",
        f"  plain tarfile, one file          {r['plain_seconds']:6.2f} s  {r['plain_mb_s']:7.0f} MB/s",
        f"  vidcurate ShardWriter            {r['shard_seconds']:6.2f} s  {r['shard_mb_s']:7.0f} MB/s",
        f"  shard writer / plain tar throughput   {100 * r['ratio']:5.1f} %",
    ])

"""`vidcurate bench loader`: the training loader's clips/s against decord alone on the same shards.

A build of the demo's real sample videos (``copies`` times over, clips only) gives the shards.
Both sides decode 8 uniformly spaced frames per clip at 224x224 on one thread, in this process:
  loader        ``webdataset_pipeline(out, num_frames=8, size=(224, 224))``: tars read in order,
                samples parsed, frames decoded (decord), captions and metadata attached
  decord alone  each clip's mp4 read from its shard by the index's byte range, then
                ``decord.VideoReader(...).get_batch(...)`` on the same frame indices
The ratio, loader clips/s over decord's, is what the loader's own work costs on top of decoding.
"""
from __future__ import annotations

import io
import os
import tempfile
import time

NUM_FRAMES, SIZE = 8, (224, 224)


def _dataset(folder: str, copies: int) -> str:
    from vidcurate.pipelines.bench.runners import _inputs
    from vidcurate.pipelines.build import build
    from vidcurate.pipelines.build.config import BuildConfig

    out = os.path.join(folder, "out")
    if not os.path.exists(os.path.join(out, "index.parquet")):
        manifest = _inputs(os.path.join(folder, "inputs"), copies)
        config = BuildConfig(pipeline=[{"op": "probe"}, {"op": "split_shots"},
                                       {"op": "extract_clips", "asr_audio": False, "keyframes": "none"}],
                             output={"require_caption": False}, run={"max_failure_ratio": 0.9})
        build(manifest, out, config, progress=False, report=False)
    return out


def _through_loader(out: str) -> int:
    from vidcurate.pipelines.train.loaders import webdataset_pipeline

    return sum(1 for sample in webdataset_pipeline(out, num_frames=NUM_FRAMES, size=SIZE)
               if sample["frames"].shape == (NUM_FRAMES, *SIZE, 3))


def _through_decord(out: str, rows: list[dict]) -> int:
    import decord

    from vidcurate.operators.frames import frame_indices
    from vidcurate.operators.write.layout import read_clip_mp4

    done = 0
    for row in rows:
        reader = decord.VideoReader(io.BytesIO(read_clip_mp4(out, row)), ctx=decord.cpu(0), width=SIZE[1],
                                    height=SIZE[0], num_threads=1)
        frames = reader.get_batch(frame_indices(len(reader), NUM_FRAMES).tolist()).asnumpy()
        done += frames.shape == (NUM_FRAMES, *SIZE, 3)
    return done


def run(copies: int = 4, repeats: int = 2, workdir: str | None = None) -> dict:
    import pyarrow.parquet as pq

    folder = workdir or tempfile.mkdtemp(prefix="vidcurate-bench-loader-")
    os.makedirs(folder, exist_ok=True)
    out = _dataset(folder, copies)
    rows = pq.read_table(os.path.join(out, "index.parquet")).to_pylist()
    _through_loader(out), _through_decord(out, rows[:2])  # warm-up: imports, decoder init, page cache
    loader, alone = [], []
    for _ in range(repeats):  # interleaved: drift hits both alike
        started = time.perf_counter()
        got = _through_loader(out)
        loader.append(time.perf_counter() - started)
        started = time.perf_counter()
        direct = _through_decord(out, rows)
        alone.append(time.perf_counter() - started)
    if got != len(rows) or direct != len(rows):
        raise RuntimeError(f"the loader gave {got} clips and decord {direct}, of {len(rows)} in the index")
    return {"clips": len(rows), "num_frames": NUM_FRAMES, "size": list(SIZE), "loader_seconds": min(loader),
            "decord_seconds": min(alone), "loader_clips_per_s": len(rows) / min(loader),
            "decord_clips_per_s": len(rows) / min(alone), "ratio": min(alone) / min(loader)}


def report(r: dict) -> str:
    return "\n".join([
        f"training loader on {r['clips']} real clips, {r['num_frames']} frames at {r['size'][0]}x{r['size'][1]}, "
        "one thread, best of repeats",
        f"  webdataset_pipeline (tar, parse, decode)   {r['loader_seconds']:6.2f} s  {r['loader_clips_per_s']:7.1f} clips/s",
        f"  decord alone (ranged read + get_batch)     {r['decord_seconds']:6.2f} s  {r['decord_clips_per_s']:7.1f} clips/s",
        f"  loader / decord alone                      {r['ratio']:6.1%}",
    ])

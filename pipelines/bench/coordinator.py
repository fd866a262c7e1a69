"""`vidcurate bench coordinator`: the coordinator's memory on a build of many clips.

A build's writing, done the way a distributed runner does it, at a scale no sample video
reaches here: ``workers`` processes write real shards of ``clips`` small samples (the
SampleWriter in per-call mode, a call per batch of videos, as a Ray task) and send back only
each call's metadata; the coordinator receives it into a DatasetSink as it arrives, commits,
and closes (repair, the sorted index and rejects, the journal's snapshot). A tenth of the
clips is rejected, so the rejects table grows with the clips too.

Reported: the coordinator's RSS before any metadata arrived, after a tenth of the videos
and at the end of receiving, and its peak RSS (close included); and the baseline measured in
the same run: a process holding the finished index as row dicts, which is what a
coordinator keeping every row does (vidcurate before 0.4 did).
"""
from __future__ import annotations

import json
import os
import pickle
import queue
import subprocess
import sys
import tempfile
import threading

from vidcurate.pipelines.bench.memory import peak_rss_mb, rss_mb

VIDEOS_PER_CALL = 100
MODULE = "vidcurate.pipelines.bench.coordinator"  # run as a module by its own processes
OPTIONS = {"shard_max_samples": 5000, "splits": {"train": 0.9, "validation": 0.1}}


def video_records(video: int, clips: int) -> list[dict]:
    """The records of synthetic video number ``video``: ``clips`` clips, every tenth rejected."""
    from vidcurate.schemas.records import clip_id_for

    uri = f"/corpus/{video // 1000:04d}/video-{video:07d}.mp4"
    video_id = f"v{video:07d}"
    records = []
    for clip in range(clips):
        start = 2.0 * clip
        clip_id = clip_id_for(video_id, start, start + 2)
        if clip % 10 == 9:
            records.append({"uri": uri, "video_id": video_id, "clip_id": clip_id, "status": "rejected",
                            "error_stage": "filter", "error_reason": "too_dark",
                            "error_detail": f"{uri}: clip at {start:.1f} s is too dark", "error_transient": False})
            continue
        records.append({"uri": uri, "video_id": video_id, "title": f"video {video}", "clip_id": clip_id,
                        "start": start, "end": start + 2, "mp4": b"\0" * 32,
                        "caption": f"a person walks a dog past shop {clip} in video {video}",
                        "caption_teacher": "video_teacher", "score": 0.5, "status": "ok"})
    return records


def _worker(out: str, first: int, last: int, clips: int) -> None:
    """Write videos first..last-1; a pickled (metadata, finished uris) per call on stdout."""
    from vidcurate.operators.write.sample_writer import SampleWriter, SinkOptions

    writer = SampleWriter(out, {}, SinkOptions(**OPTIONS), flush_each_call=True)
    pipe = sys.stdout.buffer
    for start in range(first, last, VIDEOS_PER_CALL):
        batch = [r for v in range(start, min(last, start + VIDEOS_PER_CALL)) for r in video_records(v, clips)]
        metas = [meta for part in writer.stream([batch]) for meta in part]
        pickle.dump((metas, sorted({r["uri"] for r in batch})), pipe, protocol=pickle.HIGHEST_PROTOCOL)
    pipe.flush()
    writer.close()


def _coordinate(out: str, videos: int, clips: int, workers: int) -> dict:
    from vidcurate.operators.write.sink import DatasetSink, SinkOptions, read_table

    sink = DatasetSink(out, {}, SinkOptions(**OPTIONS))  # first, as in a build: its repair runs before any write
    before = rss_mb()
    arrived: queue.Queue = queue.Queue(maxsize=8)
    per = -(-videos // workers)
    procs = [subprocess.Popen([sys.executable, "-m", MODULE, "--worker", out, str(w * per),
                               str(min(videos, (w + 1) * per)), str(clips)], stdout=subprocess.PIPE)
             for w in range(workers)]

    def read(proc: subprocess.Popen) -> None:
        while True:
            try:
                arrived.put(pickle.load(proc.stdout))
            except EOFError:
                arrived.put(None)
                return

    for proc in procs:
        threading.Thread(target=read, args=(proc,), daemon=True).start()
    finished_workers, received, at_tenth = 0, 0, None
    while finished_workers < workers:
        item = arrived.get()
        if item is None:
            finished_workers += 1
            continue
        sink.receive(*item)
        received += len(item[1])
        if at_tenth is None and received >= videos // 10:
            at_tenth = rss_mb()
        del item
    if any(proc.wait() for proc in procs):
        raise RuntimeError(f"a writer process failed: exit codes {[proc.returncode for proc in procs]}")
    at_end = rss_mb()
    shards = sink.close()
    return {"rss_before_mb": round(before, 1), "rss_at_tenth_mb": round(at_tenth or at_end, 1),
            "rss_end_of_receive_mb": round(at_end, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
            "index_rows": read_table(sink.dest, "index.parquet", ["uri"]).num_rows,
            "reject_rows": read_table(sink.dest, "rejects.parquet", ["uri"]).num_rows,
            "shards": len(shards), "videos": len(sink.journal.state.videos)}


def _held_rows(out: str) -> dict:
    """The baseline: the finished index held as row dicts, as a coordinator keeping every row does."""
    import pyarrow.parquet as pq

    before = rss_mb()
    rows = pq.read_table(os.path.join(out, "index.parquet"), use_threads=False).to_pylist()
    rejects = pq.read_table(os.path.join(out, "rejects.parquet"), use_threads=False).to_pylist()
    return {"rss_before_mb": round(before, 1), "rss_holding_mb": round(rss_mb(), 1), "rows": len(rows) + len(rejects)}


def _in_process(*args: str) -> dict:
    # the memory pool the vidcurate command chooses (pipelines/cli/__init__.py)
    env = {"ARROW_DEFAULT_MEMORY_POOL": "jemalloc", **os.environ}
    done = subprocess.run([sys.executable, "-m", MODULE, *args], capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"bench coordinator {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(clips: int = 1_000_000, clips_per_video: int = 20, workers: int = 2, workdir: str | None = None) -> dict:
    videos = -(-clips // clips_per_video)
    with tempfile.TemporaryDirectory(prefix="vidcurate-bench-coordinator-", dir=workdir) as tmp:
        out = os.path.join(tmp, "out")
        coordinator = _in_process("--coordinate", out, str(videos), str(clips_per_video), str(workers))
        baseline = _in_process("--hold", out)
    grown = coordinator["peak_rss_mb"] - coordinator["rss_before_mb"]
    held = baseline["rss_holding_mb"] - baseline["rss_before_mb"]
    return {"clips": videos * clips_per_video, "videos": videos, "workers": workers, "coordinator": coordinator,
            "holding_every_row": baseline, "coordinator_growth_mb": round(grown, 1),
            "holding_growth_mb": round(held, 1), "ratio": round(grown / held, 3) if held > 0 else None,
            "receive_growth_after_tenth_mb": round(coordinator["rss_end_of_receive_mb"]
                                                   - coordinator["rss_at_tenth_mb"], 1)}


def report(result: dict) -> str:
    c = result["coordinator"]
    return "\n".join([
        f"coordinator memory: {result['clips']} clips of {result['videos']} videos, {result['workers']} writer "
        f"processes, {c['shards']} shards ({c['index_rows']} index rows, {c['reject_rows']} rejects)",
        f"  RSS before any metadata     {c['rss_before_mb']:8.1f} MB",
        f"  RSS after a tenth of videos {c['rss_at_tenth_mb']:8.1f} MB",
        f"  RSS at the end of receiving {c['rss_end_of_receive_mb']:8.1f} MB "
        f"(+{result['receive_growth_after_tenth_mb']} MB for the other nine tenths: per-video summaries)",
        f"  peak RSS (close included)   {c['peak_rss_mb']:8.1f} MB: +{result['coordinator_growth_mb']} MB",
        f"  baseline, every row held    +{result['holding_growth_mb']} MB "
        f"({result['holding_every_row']['rows']} rows as dicts)",
        f"  coordinator growth / baseline: {result['ratio']}",
    ])


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "--worker":
        _worker(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif command == "--coordinate":
        print(json.dumps(_coordinate(args[0], int(args[1]), int(args[2]), int(args[3]))))
    elif command == "--hold":
        print(json.dumps(_held_rows(args[0])))

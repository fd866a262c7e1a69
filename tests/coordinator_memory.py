"""A journal of many clip rows, and a close replaying it, for tests/test_coordinator_memory.py.

    python tests/coordinator_memory.py journal OUT VIDEOS CLIPS
        commits VIDEOS x CLIPS rows (pipelines/bench/coordinator.py's synthetic videos) to
        OUT's journal as a build's sink commits them, a commit per call of videos, without
        writing shards (writing a million real samples takes minutes here: the bench does it)
    python tests/coordinator_memory.py replay OUT
        what a close does with that journal in a fresh coordinator: replay it, then write the
        sorted index and rejects and compact the journal into a snapshot; prints a json line
        with the RSS before, after the replay, and the peak
"""
from __future__ import annotations

import json
import sys

from vidcurate.pipelines.bench.coordinator import VIDEOS_PER_CALL, video_records
from vidcurate.pipelines.bench.memory import peak_rss_mb, rss_mb


def journal(out: str, videos: int, clips: int) -> None:
    from vidcurate.operators.write.destination import Destination
    from vidcurate.operators.write.journal import Journal
    from vidcurate.operators.write.samples import index_row, reject_row

    log = Journal(Destination(out))
    log.append({"kind": "begin", "config_hash": "memory-test"})
    members = {"mp4": (512, 32), "json": (1024, 900), "txt": (2048, 60)}
    for first in range(0, videos, VIDEOS_PER_CALL):
        entry = {"kind": "commit", "config_hash": "memory-test", "shards": {}, "videos": []}
        for video in range(first, min(videos, first + VIDEOS_PER_CALL)):
            records = video_records(video, clips)
            shard = f"train/shard-{video // 250:06d}.tar"
            entry["shards"][shard] = 250 * clips
            entry["videos"].append({
                "uri": records[0]["uri"], "source": {"uri": records[0]["uri"], "video_id": records[0]["video_id"]},
                "samples": [index_row(r, shard, "train", members) for r in records if r["status"] == "ok"],
                "rejects": [reject_row(r) for r in records if r["status"] != "ok"]})
        log.append(entry)


def replay(out: str) -> dict:
    from vidcurate.operators.write.destination import Destination
    from vidcurate.operators.write.journal import Journal
    from vidcurate.operators.write.sorted_rows import TableFile
    from vidcurate.schemas.records import INDEX, REJECT

    dest = Destination(out)
    before = rss_mb()
    log = Journal(dest)
    replayed = rss_mb()
    tables = {"index": TableFile(dest, "index.parquet", INDEX), "rejects": TableFile(dest, "rejects.parquet", REJECT)}
    log.compact({name: table.write for name, table in tables.items()})
    for table in tables.values():
        table.close()
    return {"rss_before_mb": round(before, 1), "rss_replayed_mb": round(replayed, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1), "index_rows": tables["index"].rows,
            "reject_rows": tables["rejects"].rows, "videos": len(log.state.videos)}


if __name__ == "__main__":
    if sys.argv[1] == "journal":
        journal(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        print(json.dumps(replay(sys.argv[2])))

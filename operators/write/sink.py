"""DatasetSink: the output folder of a build (shards, index, rejects).

    OUT/shards/shard-000000.tar ...   WebDataset samples (mp4, json, txt)
    OUT/index.parquet                 one row per clip (schemas.INDEX)
    OUT/rejects.parquet               one row per rejected input or clip (schemas.REJECT)
"""
from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq

from vidcurate.operators.base import is_ok
from vidcurate.operators.write.samples import index_row, reject_row, sample_members
from vidcurate.operators.write.shards import ShardWriter
from vidcurate.schemas.records import INDEX, REJECT

INDEX_FILE = "index.parquet"
REJECTS_FILE = "rejects.parquet"


class DatasetSink:
    # What a record must carry to become a sample (checked against the pipeline at config load).
    # A selected caption is needed too unless the run is split-only (output.require_caption).
    requires = ("clip_id", "start", "end", "mp4")

    def __init__(self, output: str, provenance: dict, shard_prefix: str = "shard",
                 shard_max_samples: int = 1000, shard_max_bytes: int = 1 << 30):
        self.output = output
        self.provenance = provenance
        self.shards = ShardWriter(os.path.join(output, "shards"), shard_prefix, shard_max_samples, shard_max_bytes)
        self.index_rows: list[dict] = []
        self.reject_rows: list[dict] = []

    def write(self, records: list[dict]) -> None:
        for record in records:
            if is_ok(record):
                shard = self.shards.write(record["clip_id"], sample_members(record, self.provenance))
                self.index_rows.append(index_row(record, shard))
            else:
                self.reject_rows.append(reject_row(record))

    def close(self) -> list[str]:
        shards = self.shards.close()
        _write_table(self.index_rows, INDEX, os.path.join(self.output, INDEX_FILE))
        _write_table(self.reject_rows, REJECT, os.path.join(self.output, REJECTS_FILE))
        return shards


def _write_table(rows: list[dict], schema: pa.Schema, path: str) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    tmp = path + ".tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, path)

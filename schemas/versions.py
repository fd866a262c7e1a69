"""Caption versions: a build's captions re-selected or refined, as an overlay keyed by clip id.

A version never touches shards, index or earlier versions: it is one parquet file of rows
(CAPTION_VERSION) plus a small JSON provenance record, both in ``OUT/versions/``. Each row
holds the clip's chosen caption, its teacher and score, the selector that chose it, and
every candidate with its score (the build's candidates, plus any a later step added, such
as a student captioner's). A clip the selector rejected keeps a row with ``caption`` null
and the reason, so every clip of the index is accounted for in every version.
"""
from __future__ import annotations

import pyarrow as pa

from vidcurate.schemas.records import CANDIDATE

VERSIONS_SCHEMA_VERSION = "1.0"

CAPTION_VERSION = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("caption", pa.string()),
        pa.field("caption_teacher", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("selector", pa.string()),
        pa.field("candidates", pa.list_(CANDIDATE)),
        pa.field("error_reason", pa.string()),  # why the clip has no caption in this version
    ],
    metadata={"vidcurate.schema": "caption_version", "vidcurate.version": VERSIONS_SCHEMA_VERSION},
)

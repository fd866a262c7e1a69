"""What every selector shares: the reject for a clip nobody captioned, and teacher win counts."""
from __future__ import annotations


def reject_without_candidates(op, record: dict) -> dict:
    """Reject a clip no teacher captioned; transient if a teacher failed transiently (retry may help)."""
    failed = record.get("rejected_candidates") or []
    if failed:
        why = "; ".join(f"{f['teacher']}: {f['reason']}" for f in failed)
        return op.fail(record, "no_caption_candidates", f"clip {record.get('clip_id')}: every teacher "
                       f"output was rejected ({why})", transient=any(f.get("transient") for f in failed))
    return op.fail(record, "no_caption_candidates",
                   f"clip {record.get('clip_id')}: no teacher produced a caption (the offline teachers need "
                   "speech or title/description metadata; add a vision teacher to caption silent videos "
                   "without metadata)")


def count_win(op, teacher: str) -> None:
    """``<selector>.wins.<teacher>`` in the build's stats: how often each teacher's caption was chosen."""
    op.stats.incr(f"{op.name}.wins.{teacher}")

"""How a teacher adds a caption candidate to a clip record (the CANDIDATE schema)."""
from __future__ import annotations

import json
import re

_URL = re.compile(r"https?://\S+|www\.\S+")
_SPACE = re.compile(r"\s+")


def clean_text(text: str | None, max_words: int = 80) -> str:
    """Collapse whitespace, drop URLs, cap length. Returns "" for nothing usable."""
    if not text:
        return ""
    text = _SPACE.sub(" ", _URL.sub(" ", text)).strip()
    words = text.split(" ")
    if len(words) > max_words:
        text = " ".join(words[:max_words])
    return text if re.search(r"\w", text) else ""


def add_candidate(record: dict, *, teacher: str, modality: str, text: str, model_id: str | None = None,
                  model_revision: str | None = None, params: dict | None = None) -> bool:
    """Append a candidate to ``record["candidates"]`` if ``text`` is non-empty; say whether it was added."""
    if not text:
        return False
    record.setdefault("candidates", []).append({
        "teacher": teacher,
        "modality": modality,
        "text": text,
        "model_id": model_id,
        "model_revision": model_revision,
        "params": json.dumps(params or {}, sort_keys=True),
        "score": None,
    })
    return True

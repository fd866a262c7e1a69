"""Records that cross stage boundaries, and the input manifests that create them."""
from vidcurate.schemas.records import (
    SCHEMA_VERSION,
    CANDIDATE,
    CLIP,
    INDEX,
    PROBE,
    REJECT,
    SELECTION,
    SOURCE,
    clip_id_for,
    video_id_for,
)

__all__ = [
    "SCHEMA_VERSION",
    "CANDIDATE",
    "CLIP",
    "INDEX",
    "PROBE",
    "REJECT",
    "SELECTION",
    "SOURCE",
    "clip_id_for",
    "video_id_for",
]

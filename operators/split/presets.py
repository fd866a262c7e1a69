"""Named splitting presets: published parameter sets for ``split_shots``.

  panda70m       the values used for the released Panda-70M dataset (arXiv 2402.19479, 3.1):
                 ContentDetector 25 / 15 frames; 5 s artificial cuts while > 7 s remain;
                 transition check; stitching; clips >= 2.5 s; still filter; first 60 s
                 only; redundancy filter; 10% trimmed from each end.
  panda70m-code  Panda-70M's later code defaults: clips >= 2.0 s, up to 1200 s,
                 no redundancy filter, no trimming.

Distance thresholds are not part of a preset: Panda-70M's 1.0 / 0.6 / 0.15 / 0.3 are
ImageBind distances, so each frame embedder carries its own calibrated equivalents
(``operators/split/embedders.py``). Fields set explicitly always win over a preset.
"""
from __future__ import annotations

PANDA70M = {
    "detector": "content", "threshold": 25.0, "min_scene_len": 15,
    "piece_seconds": 5.0, "cut_while_longer_than": 7.0,
    "transition_check": True, "stitch": True,
    "min_clip_seconds": 2.5, "still_filter": True, "max_clip_seconds": 60.0,
    "redundancy_filter": True, "trim_fraction": 0.1,
}

PRESETS: dict[str, dict] = {
    "panda70m": PANDA70M,
    # what the later code changed, and only that
    "panda70m-code": {**PANDA70M, "min_clip_seconds": 2.0, "max_clip_seconds": 1200.0,
                      "redundancy_filter": False, "trim_fraction": 0.0},
}

"""Augmentation shared by the training loops (student, retriever) and the encoder probe."""
from __future__ import annotations

import torch


def shift_batch(frames: torch.Tensor, pixels: int, rng) -> torch.Tensor:
    """``frames`` [B, T, H, W, 3] rolled by up to ``pixels`` each way, drawn from ``rng`` (0: unchanged). The
    whole batch moves together, so motion and layout survive (a flip would reverse left and right). Without
    it a scratch frame encoder on a few hundred synthetic clips learns where things are in each clip rather
    than where they go: ``bench encoder`` measured direction 70.8% without a shift, 93.3% with 8 px."""
    if not pixels:
        return frames
    return torch.roll(frames, (rng.randint(-pixels, pixels), rng.randint(-pixels, pixels)), (2, 3))

"""The retriever's losses: weighted video-text contrastive, and matching with mined hard negatives.

Contrastive (video to text): for clip b with chosen caption p_b, over every text j in the batch,

    loss_b = -log( exp(s_bp) / sum_j w_bj exp(s_bj) ),   s = cosine x learned scale

with w = 1 for the positive, ``hard_negative_weight`` for the clip's other candidates and
``other_weight`` for other clips' texts (Panda-70M: 1 and 0.01; texts identical to the
positive get 0: the same words cannot be a negative; so do candidates the annotator marked
acceptable, with ``acceptable_not_negative``: a right caption is no negative). ``other_candidates=False`` keeps only
other clips' chosen captions, the plain in-batch loss (with hard_negative_weight 0 and
other_weight 1 it is CLIP's). Text to video is CLIP's over the batch's positive captions.
The two directions are averaged.

Matching: binary cross-entropy on the pair (clip, chosen caption) and on mined negatives,
each drawn with probability softmax(similarity) as Unmasked Teacher does: one of the clip's
other candidates, one other clip's caption, and for each chosen caption one other clip.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LossConfig:
    hard_negative_weight: float = 1.0
    other_weight: float = 0.01
    other_candidates: bool = True
    matching_weight: float = 1.0
    acceptable_not_negative: bool = True

    @classmethod
    def preset(cls, name: str) -> "LossConfig":
        if name == "panda":
            return cls()
        if name == "plain":
            return cls(hard_negative_weight=0.0, other_weight=1.0, other_candidates=False)
        raise ValueError(f"unknown loss {name!r}; known: panda, plain")


def text_weights(owner: torch.Tensor, positive: torch.Tensor, duplicate: torch.Tensor, config: LossConfig):
    """w [B, M] of the formula above; ``owner[j]`` the clip of text j, ``duplicate[b, j]`` text j == p_b's text."""
    batch = positive.shape[0]
    own = owner.unsqueeze(0) == torch.arange(batch, device=owner.device).unsqueeze(1)
    weights = torch.where(own, torch.full_like(own, config.hard_negative_weight, dtype=torch.float32),
                          torch.full_like(own, config.other_weight, dtype=torch.float32))
    if not config.other_candidates:
        is_positive = torch.zeros(owner.shape[0], dtype=torch.bool, device=owner.device)
        is_positive[positive] = True
        weights = torch.where(~own & ~is_positive.unsqueeze(0), torch.zeros_like(weights), weights)
    weights = torch.where(duplicate, torch.zeros_like(weights), weights)
    weights[torch.arange(batch), positive] = 1.0
    return weights


def contrastive_loss(sim: torch.Tensor, owner: torch.Tensor, positive: torch.Tensor, duplicate: torch.Tensor,
                     config: LossConfig, same_clip: torch.Tensor | None = None) -> torch.Tensor:
    """``sim`` [B, M] scaled similarities of B examples to M texts; ``positive`` [B] text index per
    example; ``same_clip`` [B, B] true where two examples judge one clip (never each other's negative)."""
    weights = text_weights(owner, positive, duplicate, config)
    batch = torch.arange(sim.shape[0], device=sim.device)
    logits = sim + torch.log(weights.clamp(min=1e-30)) + torch.where(weights > 0, 0.0, -1e4)
    video_to_text = torch.logsumexp(logits, dim=1) - sim[batch, positive]
    by_text = sim[:, positive].T
    if same_clip is not None:
        by_text = by_text.masked_fill(same_clip & ~torch.eye(len(batch), dtype=torch.bool, device=sim.device), -1e4)
    text_to_video = nn.functional.cross_entropy(by_text, batch, reduction="none")
    return (video_to_text.mean() + text_to_video.mean()) / 2


def mine_negatives(sim: torch.Tensor, owner: torch.Tensor, positive: torch.Tensor, duplicate: torch.Tensor,
                   same_clip: torch.Tensor | None = None, generator: torch.Generator | None = None) -> tuple[list[tuple[int, int]], list[int]]:
    """(clip, text) pairs for the matching loss and their labels: positives, then mined negatives."""
    batch = sim.shape[0]
    pairs = [(b, int(positive[b])) for b in range(batch)]
    labels = [1] * batch
    probs = torch.softmax(sim.detach().float(), dim=1)
    own = owner.unsqueeze(0) == torch.arange(batch, device=owner.device).unsqueeze(1)
    for b in range(batch):
        for allowed in (own[b] & ~duplicate[b], ~own[b] & ~duplicate[b]):
            allowed = allowed.clone()
            allowed[positive[b]] = False
            if allowed.any():
                p = torch.where(allowed, probs[b], torch.zeros_like(probs[b])) + allowed.float() * 1e-8
                pairs.append((b, int(torch.multinomial(p, 1, generator=generator))))
                labels.append(0)
    if batch > 1:  # for each chosen caption, another clip
        others = ~(same_clip if same_clip is not None else torch.eye(batch, dtype=torch.bool, device=sim.device))
        by_text = torch.softmax(sim.detach().float()[:, positive].T, dim=1)
        for b in range(batch):
            if others[b].any():
                p = torch.where(others[b], by_text[b], torch.zeros_like(by_text[b])) + others[b].float() * 1e-8
                pairs.append((int(torch.multinomial(p, 1, generator=generator)), int(positive[b])))
                labels.append(0)
    return pairs, labels


def matching_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logits, labels.float())

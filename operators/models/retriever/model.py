"""The video-text retriever: a dual encoder with a matching head on the fused pair.

Contrastive side: the pooled clip vector and the pooled caption vector, each projected to
``dim`` and unit-normalised; their dot product over a learned temperature is the
similarity. Matching side: the caption's tokens attend to the clip's frame tokens (one
cross-attention layer), their mean, with the product of the two unit vectors, goes
through a small MLP to one logit: the probability that the caption matches the clip.
``score_candidates`` is Unmasked Teacher's multiple-choice scorer (config.py).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from vidcurate.operators.models.retriever.config import RetrieverConfig
from vidcurate.operators.models.retriever.towers import TemporalPooling, TextTower, VideoTower, _heads


class MatchingHead(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.attend = nn.MultiheadAttention(dim, _heads(dim), batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, 1))

    def forward(self, video_tokens, video_emb, text_tokens, text_mask, text_emb) -> torch.Tensor:
        attended, _ = self.attend(text_tokens, video_tokens, video_tokens)
        fused = self.norm(text_tokens + attended)
        weights = text_mask.unsqueeze(-1).float()
        fused = (fused * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.mlp(torch.cat([fused, video_emb * text_emb], dim=-1)).squeeze(-1)


class Retriever(nn.Module):
    def __init__(self, config: RetrieverConfig, video_source: str | None = None, text_source: str | None = None,
                 weights: bool = True):
        super().__init__()
        self.config = config
        dim = config.dim
        self.video = VideoTower(config.video, dim, video_source, weights)
        self.pool = TemporalPooling(config.video.pooling, self.video.width, config.num_frames)
        self.text = TextTower(config.text, text_source, weights, video_model=self.video.image_model)
        self.video_proj = nn.Linear(self.video.width, dim)
        self.video_token_proj = nn.Linear(self.video.width, dim)
        self.text_proj = nn.Linear(self.text.width, dim)
        self.text_token_proj = nn.Linear(self.text.token_width, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.temperature)))
        self.match = MatchingHead(dim)

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def encode_video(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 [B, T, H, W, 3] -> (unit clip vectors [B, dim], frame tokens [B, T', dim])."""
        pooled, tokens = self.pool(self.video(frames.to(self.device)))
        return nn.functional.normalize(self.video_proj(pooled), dim=-1), self.video_token_proj(tokens)

    def encode_text(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """texts -> (unit caption vectors [M, dim], token features [M, L, dim], mask [M, L])."""
        tokens, mask, pooled = self.text(texts)
        return nn.functional.normalize(self.text_proj(pooled), dim=-1), self.text_token_proj(tokens), mask

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(100.0)).exp()

    def match_logits(self, video: tuple, text: tuple, video_index: torch.Tensor, text_index: torch.Tensor):
        """Matching logits of the pairs (video_index[i], text_index[i])."""
        (v_emb, v_tok), (t_emb, t_tok, t_mask) = video, text
        return self.match(v_tok[video_index], v_emb[video_index], t_tok[text_index], t_mask[text_index],
                          t_emb[text_index])

    @torch.no_grad()
    def score_candidates(self, frames: torch.Tensor, candidates: list[list[str]]) -> list[dict]:
        """Per clip: ``scores`` (the UMT mix, what decides), ``match`` (matching probabilities)
        and ``similarity`` (cosine), one per candidate; one forward pass for every clip and text."""
        return [groups[0] for groups in self.score_groups(frames, [[clip] for clip in candidates])]

    @torch.no_grad()
    def score_groups(self, frames: torch.Tensor, groups: list[list[list[str]]]) -> list[list[dict]]:
        """``score_candidates`` with several candidate sets per clip, each mixed on its own (the probe's
        pairs): per clip, per set, the same dict; each clip is encoded once."""
        texts = [t for clip in groups for group in clip for t in group]
        if not texts:
            return [[{"scores": [], "match": [], "similarity": []} for _ in clip] for clip in groups]
        video, text = self.encode_video(frames), self.encode_text(texts)
        owner = torch.tensor([b for b, clip in enumerate(groups) for group in clip for _ in group], device=self.device)
        sims = (video[0][owner] * text[0]).sum(-1)
        match = torch.sigmoid(self.match_logits(video, text, owner, torch.arange(len(texts), device=self.device)))
        out, offset = [], 0
        for clip in groups:
            scored = []
            for group in clip:
                sim, prob = sims[offset:offset + len(group)], match[offset:offset + len(group)]
                scored.append({"scores": self.mix(sim, prob).tolist(), "match": prob.tolist(),
                               "similarity": sim.tolist()})
                offset += len(group)
            out.append(scored)
        return out

    def mix(self, similarity: torch.Tensor, match: torch.Tensor) -> torch.Tensor:
        """One clip's selection scores (Unmasked Teacher's multiple-choice mix): ``match_weight`` x the
        matching probability + the rest x the softmax over the clip's candidates of scaled similarity."""
        if not len(similarity):
            return match
        w = self.config.match_weight
        return w * match + (1 - w) * torch.softmax(similarity * self.scale(), dim=0)

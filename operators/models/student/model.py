"""The student captioner (torch): frames (+ optional metadata text) -> a caption, by a causal LM.

See config.py for the architecture. The decoder reads ``inputs_embeds``: the visual prefix
(T + 1 tokens: the pooled clip and each mixed frame, projected into the decoder's width), the
text inputs' token embeddings, then ``<bos>`` and the caption. Prefixes are left-padded, so
every caption starts right after its own prefix and batched generation needs no per-row
offsets; positions count real tokens only.
"""
from __future__ import annotations

import math
import random
from typing import NamedTuple, Optional

import torch
from torch import nn

from vidcurate.operators.models.retriever.towers import TemporalPooling, VideoTower
from vidcurate.operators.models.student.config import DecodingConfig, StudentConfig
from vidcurate.operators.models.student.tokenizer import special_ids


class StudentOutput(NamedTuple):
    logits: torch.Tensor  # [B, L, V], predicting each target token
    targets: torch.Tensor  # [B, L]
    mask: torch.Tensor  # [B, L], real target tokens
    # With config.contrastive > 0: [B, B] cosine of clip b's pooled token and caption j's text-only reading,
    # times the learned scale (the contrastive loss's logits).
    similarity: Optional[torch.Tensor] = None


class StudentCaptioner(nn.Module):
    def __init__(self, config: StudentConfig, tokenizer, decoder: nn.Module, video_source: str | None = None,
                 weights: bool = True):
        super().__init__()
        self.config, self.tokenizer, self.decoder = config, tokenizer, decoder
        self.pad_id, self.bos_id, self.eos_id = special_ids(tokenizer)
        hidden = int(decoder.get_input_embeddings().weight.shape[1])
        self.video = VideoTower(config.video, hidden, source=video_source, weights=weights)
        self.temporal = TemporalPooling(config.video.pooling, self.video.width, config.num_frames)
        self.project = nn.Sequential(nn.LayerNorm(self.video.width), nn.Linear(self.video.width, hidden))
        if config.contrastive > 0:
            self.contrast_video = nn.Linear(self.video.width, config.contrastive_dim)
            self.contrast_text = nn.Linear(hidden, config.contrastive_dim)
            self.contrast_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature
        if not config.video_trainable:
            self.video.requires_grad_(False)
        if not config.decoder.trainable:
            self.decoder.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return self.project[1].weight.device

    # -- the prefix ----------------------------------------------------------------------
    def _text_ids(self, texts: list[dict] | None, training: bool) -> list[list[int]]:
        """Token ids of each clip's text inputs (fields in config order, each dropped with
        ``text_dropout`` when training), at most ``max_text_tokens``."""
        fields, count = self.config.text_inputs, len(texts or [])
        if not fields or not texts:
            return [[] for _ in range(count)]
        out = []
        for inputs in texts:
            parts = [str(inputs.get(name) or "").strip() for name in fields]
            if training:
                parts = [p for p in parts if p and random.random() >= self.config.text_dropout]
            joined = " | ".join(p for p in parts if p)
            ids = self.tokenizer(joined, add_special_tokens=False)["input_ids"] if joined else []
            out.append(ids[:self.config.max_text_tokens])
        return out

    def prefix(self, frames: torch.Tensor, texts: list[dict] | None = None, training: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded prefix embeddings [B, P, H] and their mask [B, P], ending in ``<bos>``, and the pooled
        clip vector [B, W]."""
        pooled, mixed = self.temporal(self.video(frames.to(self.device)))
        visual = self.project(torch.cat([pooled[:, None], mixed], dim=1))
        embed = self.decoder.get_input_embeddings()
        text_ids = self._text_ids(texts, training) if texts is not None else [[] for _ in range(len(visual))]
        rows = []
        for n, ids in enumerate(text_ids):
            tail = torch.tensor(ids + [self.bos_id], dtype=torch.long, device=self.device)
            rows.append(torch.cat([visual[n], embed(tail)], dim=0))
        length = max(r.shape[0] for r in rows)
        embeds = visual.new_zeros(len(rows), length, visual.shape[-1])
        mask = torch.zeros(len(rows), length, dtype=torch.long, device=self.device)
        for n, row in enumerate(rows):
            embeds[n, length - row.shape[0]:] = row
            mask[n, length - row.shape[0]:] = 1
        return embeds, mask, pooled

    # -- training ------------------------------------------------------------------------
    def caption_ids(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets [B, L] (caption tokens then ``<eos>``, right-padded) and their mask."""
        limit = self.config.decoder.max_caption_tokens
        encoded = [self.tokenizer(c, add_special_tokens=False)["input_ids"][:limit - 1] + [self.eos_id]
                   for c in captions]
        length = max(len(e) for e in encoded)
        targets = torch.full((len(encoded), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(encoded), length, dtype=torch.bool)
        for n, ids in enumerate(encoded):
            targets[n, :len(ids)] = torch.tensor(ids)
            mask[n, :len(ids)] = True
        return targets.to(self.device), mask.to(self.device)

    def forward(self, frames: torch.Tensor, captions: list[str], texts: list[dict] | None = None) -> StudentOutput:
        prefix, prefix_mask, pooled = self.prefix(frames, texts, training=self.training)
        targets, target_mask = self.caption_ids(captions)
        # The decoder reads prefix (ending in <bos>) + every target but the last; it predicts every target.
        inputs = torch.cat([prefix, self.decoder.get_input_embeddings()(targets[:, :-1])], dim=1)
        mask = torch.cat([prefix_mask, target_mask[:, :-1].long()], dim=1)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        logits = self.decoder(inputs_embeds=inputs, attention_mask=mask, position_ids=positions).logits
        start = prefix.shape[1] - 1  # the <bos> position predicts the first target
        logits = logits[:, start:start + targets.shape[1]]
        if self.config.contrastive <= 0:
            return StudentOutput(logits, targets, target_mask)
        video = nn.functional.normalize(self.contrast_video(pooled), dim=-1)
        scale = self.contrast_scale.clamp(max=math.log(100.0)).exp()
        similarity = scale * video @ self._text_embedding(targets, target_mask).T
        return StudentOutput(logits, targets, target_mask, similarity)

    def _text_embedding(self, targets: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """The decoder's reading of ``<bos>`` + caption + ``<eos>`` alone (no visual prefix): its last layer's
        state at ``<eos>``, projected and unit-normalised [B, D]."""
        bos = torch.full((targets.shape[0], 1), self.bos_id, dtype=torch.long, device=targets.device)
        ids = torch.cat([bos, targets], dim=1)
        mask = torch.cat([torch.ones_like(bos), target_mask.long()], dim=1)
        states = self.decoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        last = states[torch.arange(len(ids), device=ids.device), mask.sum(dim=1) - 1]
        return nn.functional.normalize(self.contrast_text(last), dim=-1)

    # -- captioning ----------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, frames: torch.Tensor, texts: list[dict] | None = None,
                 decoding: DecodingConfig | None = None) -> list[str]:
        decoding = decoding or self.config.decoding
        prefix, mask, _ = self.prefix(frames, texts, training=False)
        out = self.decoder.generate(inputs_embeds=prefix, attention_mask=mask, num_beams=decoding.num_beams,
                                    do_sample=decoding.do_sample, top_p=decoding.top_p if decoding.do_sample else None,
                                    temperature=decoding.temperature if decoding.do_sample else None,
                                    max_new_tokens=decoding.max_new_tokens, eos_token_id=self.eos_id,
                                    pad_token_id=self.pad_id, bos_token_id=self.bos_id)
        return [text.strip() for text in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

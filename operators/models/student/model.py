"""The student captioner (torch): frames (+ optional metadata text) -> a caption, by a causal LM.

See config.py for the architecture. The decoder reads ``inputs_embeds``: the visual prefix
(T + 1 tokens: the pooled clip and each mixed frame, projected into the decoder's width), the
text inputs' token embeddings, then ``<bos>`` and the caption. Prefixes are left-padded, so
every caption starts right after its own prefix and batched generation needs no per-row
offsets; positions count real tokens only.
"""
from __future__ import annotations

import random

import torch
from torch import nn

from vidcurate.operators.models.retriever.towers import TemporalPooling, VideoTower
from vidcurate.operators.models.student.config import DecodingConfig, StudentConfig
from vidcurate.operators.models.student.tokenizer import special_ids


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
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded prefix embeddings [B, P, H] and their mask [B, P], ending in ``<bos>``."""
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
        return embeds, mask

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

    def forward(self, frames: torch.Tensor, captions: list[str], texts: list[dict] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits [B, L, V] predicting each target token, targets [B, L], target mask [B, L])."""
        prefix, prefix_mask = self.prefix(frames, texts, training=self.training)
        targets, target_mask = self.caption_ids(captions)
        # The decoder reads prefix (ending in <bos>) + every target but the last; it predicts every target.
        inputs = torch.cat([prefix, self.decoder.get_input_embeddings()(targets[:, :-1])], dim=1)
        mask = torch.cat([prefix_mask, target_mask[:, :-1].long()], dim=1)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        logits = self.decoder(inputs_embeds=inputs, attention_mask=mask, position_ids=positions).logits
        start = prefix.shape[1] - 1  # the <bos> position predicts the first target
        return logits[:, start:start + targets.shape[1]], targets, target_mask

    # -- captioning ----------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, frames: torch.Tensor, texts: list[dict] | None = None,
                 decoding: DecodingConfig | None = None) -> list[str]:
        decoding = decoding or self.config.decoding
        prefix, mask = self.prefix(frames, texts, training=False)
        out = self.decoder.generate(inputs_embeds=prefix, attention_mask=mask, num_beams=decoding.num_beams,
                                    do_sample=decoding.do_sample, top_p=decoding.top_p if decoding.do_sample else None,
                                    temperature=decoding.temperature if decoding.do_sample else None,
                                    max_new_tokens=decoding.max_new_tokens, eos_token_id=self.eos_id,
                                    pad_token_id=self.pad_id, bos_token_id=self.bos_id)
        return [text.strip() for text in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

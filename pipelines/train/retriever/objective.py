"""One training step's loss as a module, so DistributedDataParallel sees one forward per step.

``RetrievalObjective(retriever)(frames, examples)`` encodes the batch's clips and every
candidate text once, computes the weighted contrastive loss and the matching loss on
mined negatives (losses.py) and returns their sum with its parts.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vidcurate.pipelines.train.retriever.losses import LossConfig, contrastive_loss, matching_loss, mine_negatives


def batch_layout(examples, acceptable_not_negative: bool = True) -> dict:
    """Texts flattened over the batch, each text's example, each example's positive text index,
    the texts that are no negative of an example (its positive's words again, or, with
    ``acceptable_not_negative``, a candidate its annotator marked acceptable), and examples of one clip."""
    texts, owner, positive = [], [], []
    for number, example in enumerate(examples):
        positive.append(len(texts) + example.positive)
        texts += example.texts
        owner += [number] * len(example.texts)
    chosen = [texts[p] for p in positive]
    duplicate = torch.tensor([[t == c for t in texts] for c in chosen], dtype=torch.bool)
    if acceptable_not_negative:
        starts = [p - e.positive for p, e in zip(positive, examples)]
        for number, (example, start) in enumerate(zip(examples, starts)):
            for i in example.acceptable or ():
                duplicate[number, start + i] = True
    duplicate[torch.arange(len(examples)), torch.tensor(positive)] = False
    clips = [e.clip_id for e in examples]
    same_clip = torch.tensor([[a == b for b in clips] for a in clips], dtype=torch.bool)
    return {"texts": texts, "owner": torch.tensor(owner), "positive": torch.tensor(positive),
            "duplicate": duplicate, "same_clip": same_clip}


class RetrievalObjective(nn.Module):
    def __init__(self, retriever: nn.Module, loss: LossConfig, seed: int = 0):
        super().__init__()
        self.retriever, self.loss = retriever, loss
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, frames: torch.Tensor, examples) -> tuple[torch.Tensor, dict]:
        model, layout = self.retriever, batch_layout(examples, self.loss.acceptable_not_negative)
        device = model.device
        owner, positive = layout["owner"].to(device), layout["positive"].to(device)
        duplicate, same_clip = layout["duplicate"].to(device), layout["same_clip"].to(device)
        video, text = model.encode_video(frames), model.encode_text(layout["texts"])
        sim = video[0] @ text[0].T * model.scale()
        contrastive = contrastive_loss(sim, owner, positive, duplicate, self.loss, same_clip)
        pairs, labels = mine_negatives(sim.cpu(), owner.cpu(), positive.cpu(), duplicate.cpu(), same_clip.cpu(),
                                       self.generator)
        index = torch.tensor(np.array(pairs), device=device)
        logits = model.match_logits(video, text, index[:, 0], index[:, 1])
        matching = matching_loss(logits, torch.tensor(labels, device=device))
        total = contrastive + self.loss.matching_weight * matching
        return total, {"contrastive": float(contrastive.detach()), "matching": float(matching.detach())}

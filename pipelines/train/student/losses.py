"""The student's noise-controlled losses: likelihood, TaiLr, AdaTaiLr, and per-sample gating.

TaiLr (Ji et al., ICLR 2023), as its official code computes it (thu-coai/TaiLr,
fairseq/criterions/tailr.py): per target token, with p the model's probability of it,

    w = clamp(p / (gamma + (1 - gamma) p), w_min, 1)         (no gradient through w)
    loss = (1 - eps) * sum_t w_t * NLL_t + (eps / V) * sum_t sum_v -log p_v   (smoothing not reweighted)

gamma = 0 is plain likelihood (w = 1); gamma = 1 gives w = p. Tokens the model finds unlikely,
the likely noise, count less. The sums run over real target tokens and are divided by their
number (fairseq's sample size is the token count).

AdaTaiLr: Video DataFlywheel's adaptive TaiLr; its rule is not public, so vidcurate defines its
own. It adapts gamma once per epoch to an estimate of the share of noisy captions, needing no
noise rate from the user:

    1. During an epoch, keep every training caption's mean token NLL (the loss itself, no extra pass).
    2. At the epoch's end, fit a two-component Gaussian mixture to those losses (EM, 1-D), the
       model of Arazo et al. 2019 ("Unsupervised label noise modeling and loss correction"):
       clean captions form the low-loss component, noisy ones the high-loss component.
    3. The noise estimate rho is the high-loss component's weight when two components explain
       the losses better than one by the Bayesian information criterion and their means are at
       least ``min_separation`` pooled standard deviations apart; else 0: one blob of losses is no
       evidence of noise.
    4. Next epoch's gamma = clamp(rho, 0, gamma_max), w_min fixed. The first epoch is plain
       likelihood (gamma 0): before the model has learned anything, its losses say nothing.

Why gamma = rho: TaiLr interpolates between likelihood (right for clean data: it covers every
mode, keeping diversity) and total variation (robust to a share of outliers). Setting gamma to
the estimated outlier share gives clean data likelihood and spends robustness only as far as
there is noise to resist. Bounds: gamma_max 0.9 (never pure w = p, which stalls on tokens the
model has not learned yet), w_min 0.2 (TaiLr's summarisation setting).

Contrastive (CoCa-style, with ``StudentConfig.contrastive`` > 0): the model's in-batch similarity of each
clip's pooled token to each caption's text-only reading, scored by the retriever's contrastive loss in
its plain (CLIP) form; identical captions in a batch are never each other's negatives. It is added to
the captioning loss at the config's weight and is not noise-controlled.

Gating (separate and combinable): a caption whose selection score is below ``gate_threshold``
is left out (``hard``) or every caption's loss is scaled by its score (``soft``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch


@dataclass
class NoiseControl:
    loss: Literal["mle", "tailr", "adatailr"] = "mle"
    gamma: float = 0.8  # fixed TaiLr (summarisation setting)
    min_weight: float = 0.2
    epsilon: float = 0.1
    gamma_max: float = 0.9  # AdaTaiLr's bound
    min_separation: float = 1.0  # AdaTaiLr: component means this many pooled std apart to count as noise
    gate: Literal["none", "hard", "soft"] = "none"
    gate_threshold: float = 0.43  # Panda-70M's strong-match score

    def check(self) -> None:
        if not 0 <= self.gamma <= 1 or not 0 <= self.min_weight <= 1 or not 0 <= self.epsilon < 1:
            raise ValueError(f"TaiLr needs 0 <= gamma <= 1, 0 <= min_weight <= 1, 0 <= epsilon < 1 "
                             f"(got {self.gamma}, {self.min_weight}, {self.epsilon})")
        if not 0 <= self.gamma_max <= 1:
            raise ValueError(f"gamma_max must be in [0, 1], got {self.gamma_max}")


def tailr_weights(log_probs: torch.Tensor, gamma: float, min_weight: float) -> torch.Tensor:
    """w = clamp(p / (gamma + (1 - gamma) p), min_weight, 1) for target log-probabilities, detached."""
    with torch.no_grad():
        p = log_probs.exp()
        return torch.clamp(p / (gamma + (1.0 - gamma) * p), min=min_weight, max=1.0)


def token_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, gamma: float, min_weight: float,
               epsilon: float, sample_weights: Optional[torch.Tensor] = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss averaged over real tokens, each sample's mean NLL [B] detached, the mean token weight).

    gamma = 0 and epsilon = 0 is exactly the mean token cross-entropy."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    target_lp = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    nll = -target_lp
    smooth = -log_probs.sum(dim=-1)
    weights = tailr_weights(target_lp, gamma, min_weight) if gamma > 0 else torch.ones_like(nll)
    mask = mask.float()
    if sample_weights is not None:
        mask = mask * sample_weights.float().unsqueeze(1)
    tokens = mask.sum().clamp(min=1.0)
    vocab = logits.shape[-1]
    loss = ((1.0 - epsilon) * (weights * nll * mask).sum() + (epsilon / vocab) * (smooth * mask).sum()) / tokens
    real = mask.gt(0).float()
    per_sample = ((nll.detach() * real).sum(1) / real.sum(1).clamp(min=1.0))
    mean_weight = (weights * real).sum() / real.sum().clamp(min=1.0)
    return loss, per_sample, mean_weight


def caption_contrastive_loss(similarity: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """CLIP's symmetric in-batch loss over ``similarity`` [B, B] (clip b, caption j), identical captions
    excluded as negatives both ways."""
    from vidcurate.pipelines.train.retriever.losses import LossConfig, contrastive_loss

    batch = torch.arange(len(captions), device=similarity.device)
    codes = {text: n for n, text in enumerate(dict.fromkeys(captions))}
    code = torch.tensor([codes[c] for c in captions], device=similarity.device)
    duplicate = code.unsqueeze(0) == code.unsqueeze(1)
    return contrastive_loss(similarity, batch, batch, duplicate, LossConfig.preset("plain"), same_clip=duplicate)


def gate_weights(scores: list[Optional[float]], control: NoiseControl) -> Optional[torch.Tensor]:
    """Per-sample loss weights from selection scores (None: no gating); unscored captions count fully."""
    if control.gate == "none":
        return None
    values = [1.0 if s is None else float(s) for s in scores]
    if control.gate == "hard":
        return torch.tensor([1.0 if v >= control.gate_threshold else 0.0 for v in values])
    return torch.tensor([min(max(v, 0.0), 1.0) for v in values])


def two_component_noise(losses: list[float], min_separation: float = 1.0, iterations: int = 100
                        ) -> tuple[float, dict]:
    """The high-loss component's weight of a 1-D two-Gaussian mixture fitted by EM (0 when the two
    components are not ``min_separation`` pooled standard deviations apart), and the fit."""
    n = len(losses)
    if n < 8:
        return 0.0, {"reason": "fewer than 8 losses"}
    x = torch.tensor(losses, dtype=torch.float64)
    lo, hi = torch.quantile(x, 0.25).item(), torch.quantile(x, 0.75).item()
    if hi - lo < 1e-9:
        return 0.0, {"reason": "all losses equal"}
    mean = torch.tensor([lo, hi], dtype=torch.float64)
    var = torch.full((2,), max(x.var().item(), 1e-6), dtype=torch.float64)
    weight = torch.tensor([0.5, 0.5], dtype=torch.float64)
    for _ in range(iterations):
        log_density = -0.5 * ((x[:, None] - mean) ** 2 / var + torch.log(2 * math.pi * var)) + torch.log(weight)
        resp = torch.softmax(log_density, dim=1)
        total = resp.sum(0).clamp(min=1e-9)
        weight = total / n
        mean = (resp * x[:, None]).sum(0) / total
        var = ((resp * (x[:, None] - mean) ** 2).sum(0) / total).clamp(min=1e-6)
    high = int(torch.argmax(mean))
    pooled = math.sqrt(float((weight * var).sum()))
    separation = abs(float(mean[1] - mean[0])) / max(pooled, 1e-9)
    mixture = torch.logsumexp(-0.5 * ((x[:, None] - mean) ** 2 / var + torch.log(2 * math.pi * var))
                              + torch.log(weight), dim=1).sum().item()
    single_var = max(x.var(unbiased=False).item(), 1e-12)
    single = float(-0.5 * n * (math.log(2 * math.pi * single_var) + 1))
    bic_gain = (2 * math.log(n) - 2 * single) - (5 * math.log(n) - 2 * mixture)  # BIC(one) - BIC(two), > 0: two
    fit = {"means": [float(m) for m in mean], "stds": [float(v) ** 0.5 for v in var],
           "weights": [float(w) for w in weight], "separation": separation, "bic_gain": bic_gain}
    if bic_gain <= 0:
        return 0.0, {**fit, "reason": "one Gaussian explains the losses as well (BIC)"}
    if separation < min_separation:
        return 0.0, {**fit, "reason": f"components {separation:.2f} std apart (< {min_separation})"}
    return float(weight[high]), fit

class GammaSchedule:
    """The gamma of each epoch: 0 (mle), fixed (tailr), or AdaTaiLr's estimate from the last epoch's losses."""

    def __init__(self, control: NoiseControl):
        self.control = control
        self.gamma = {"mle": 0.0, "tailr": control.gamma, "adatailr": 0.0}[control.loss]
        self.history: list[dict] = []

    def end_epoch(self, sample_losses: list[float]) -> None:
        if self.control.loss != "adatailr":
            self.history.append({"gamma": self.gamma})
            return
        rho, fit = two_component_noise(sample_losses, self.control.min_separation)
        self.history.append({"gamma": self.gamma, "noise_estimate": rho, "fit": fit})
        self.gamma = min(max(rho, 0.0), self.control.gamma_max)

    def state(self) -> dict:
        return {"gamma": self.gamma, "history": self.history}

    def restore(self, state: dict) -> None:
        self.gamma, self.history = state["gamma"], list(state["history"])

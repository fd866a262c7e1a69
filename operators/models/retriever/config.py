"""What a retriever checkpoint's ``config.json`` says: its towers, sizes and scoring.

A checkpoint names its towers; weights live beside it in ``model.safetensors``. Tower kinds:

    video  scratch     vidcurate's small per-frame CNN, trained from scratch (no model files)
           pretrained  a CLIP/SigLIP-class transformers model's image tower (``model``: folder or
                       hub id), frames resized and normalised as its image processor says
           none        no frames at all: one learned vector (the text-only baseline)
    text   scratch     token embeddings + a small transformer, with a tokenizer (``model``:
                       the bundled MiniLM's by default)
           pretrained  a BERT-like sentence encoder (the bundled MiniLM, a folder or hub id),
                       mean-pooled; or with ``model: same`` the video tower's own text tower

Per-frame features go through temporal pooling (``mean``, or ``attention``: a learned
position per frame, one transformer layer over the frames, then attention pooling; or
``motion``: the same over each frame's token plus its change from the frame before).
``mean`` cannot tell left from right, by construction; ``attention`` can in principle, but
its small learned positions left it order-blind in practice (towers.TemporalPooling);
``motion`` sees the sign of every change.

Scoring follows Unmasked Teacher's multiple-choice scorer: ``match_weight`` x matching-head
probability + (1 - match_weight) x softmax over the clip's candidates of the contrastive
similarity at the learned temperature. UMT's own weights are 0.7/0.3 (retrieval_mc.py), the
default here: the matching head sees frames and words together and is the sharper judge
of one pair, the softmax keeps the ranking relative to the clip's other candidates.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from vidcurate.operators.models.checkpoint_folder import CONFIG_FILE, WEIGHTS_FILE  # noqa: F401

BUNDLED_MINILM = "bundled:all-MiniLM-L6-v2"
FORMAT = "vidcurate.retriever"


class VideoTowerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["scratch", "pretrained", "none"] = "scratch"
    model: Optional[str] = Field(None, description="For kind pretrained: folder or hub id of a CLIP/SigLIP model.")
    revision: Optional[str] = None
    channels: list[int] = Field(default_factory=lambda: [16, 32, 64, 128], description="Scratch CNN widths.")
    spatial: Literal["grid", "grid_max"] = Field("grid", description="Scratch CNN: the coarse 3x4 grid alone "
                                                 "(where things are), or with a global max pool beside it (what "
                                                 "is there, wherever it is: the student's default).")
    pooling: Literal["mean", "attention", "motion"] = Field(
        "motion", description="Temporal pooling: motion (attention over each frame and its change from the frame "
        "before), attention (over the frames alone: order-blind in practice), or mean (order-blind).")


class TextTowerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["scratch", "pretrained"] = "scratch"
    model: str = Field(BUNDLED_MINILM, description="Tokenizer (scratch) or encoder (pretrained); 'same' = "
                                                   "the video tower's text tower.")
    revision: Optional[str] = None
    width: int = Field(128, ge=8, description="Scratch token width.")
    layers: int = Field(2, ge=1, description="Scratch transformer layers.")
    max_tokens: int = Field(40, ge=4)
    trainable: bool = Field(True, description="Pretrained text towers: fine-tune (true) or keep frozen.")


class RetrieverConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["vidcurate.retriever"] = FORMAT
    video: VideoTowerConfig = Field(default_factory=VideoTowerConfig)
    text: TextTowerConfig = Field(default_factory=TextTowerConfig)
    num_frames: int = Field(12, ge=1, description="Frames per clip (Panda-70M: 12).")
    frame_size: tuple[int, int] = Field((96, 128), description="(height, width) frames are decoded at.")
    dim: int = Field(128, ge=8, description="Shared embedding size.")
    match_weight: float = Field(0.7, ge=0, le=1, description="UMT scorer: weight of the matching probability.")
    temperature: float = Field(0.07, gt=0, description="Initial contrastive temperature (learned).")
    trained_on: Optional[dict] = Field(None, description="Provenance of the fine-tune: labels, clips, epochs.")

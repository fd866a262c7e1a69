"""What a student captioner checkpoint's ``config.json`` says: its frame encoder, decoder and decoding.

The student (Panda-70M 3.4; Video DataFlywheel's refinement model) is a video captioner:

    frames [B, T, H, W, 3] -> frame encoder -> temporal mixing (+ learned frame positions)
        -> projection into the decoder's width = T + 1 visual prefix tokens
    [visual prefix ; optional text inputs (title, description, subtitles)] -> causal LM -> caption

Frame encoder (``video``): the retriever's video tower, so the same kinds apply: ``scratch``
(vidcurate's small CNN, for the offline world) or ``pretrained`` (any CLIP/SigLIP-class
transformers model by folder or hub id; ``trainable: false`` keeps it frozen).
Decoder (``decoder``): ``scratch``, a small GPT-2 (transformers' GPT2LMHeadModel) with a
byte-level BPE tokenizer trained on the training captions, or ``pretrained``, any causal LM
by folder or hub id with its own tokenizer.

``video_init`` starts the frame encoder from a fine-tuned retriever's video tower (vidcurate's
own CLIP-class model, trained on people's choices): Panda's student, too, started from a
pretrained vision branch. The scratch CNN pools its last feature map twice (``spatial:
grid_max``): a coarse 3x4 grid (where) and a global max (what, wherever it is). On a 600-clip
world, 20 epochs, the max pool raised the greedy captions' attribute accuracy from 59.3% to
67.8% (colour 40% -> 54%, count 59% -> 77%), on the clips it learned (on unseen clips, cross-fitted
at 60 epochs, 66.9%: pipelines/refine/loop.py); starting from the retriever's tower raised it to
72.2% (at 12 frames, 1.7x the time per epoch). The retriever keeps the grid alone: on an 800-clip
selection world (5 epochs) the max pool lowered its faithful pick (Panda weighting 84.1% ->
82.1%, plain 85.8% -> 81.4%).

Contrastive (``contrastive`` > 0; CoCa, Yu et al. 2022): beside the captioning loss, the pooled clip
token and the decoder's text-only reading of the caption (its last hidden state at ``<eos>``, no
visual prefix) are projected to ``contrastive_dim`` and matched by an in-batch contrastive loss
(pipelines/train/student/loop.py), so that the frame encoder keeps what tells one caption from
another (a direction, a colour) rather than only what makes the next token likely.

Text inputs: the clip's metadata fields named in ``text_inputs`` are tokenised after the
visual prefix; in training each field is dropped with ``text_dropout`` (Panda: 0.5), so the
student also captions clips that have none. Decoding presets: ``greedy``, and ``panda``
(Panda's student: 3 beams with sampling, top-p 0.9, temperature 1.5).
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from vidcurate.operators.models.checkpoint_folder import CONFIG_FILE, WEIGHTS_FILE  # noqa: F401
from vidcurate.operators.models.retriever.config import VideoTowerConfig

FORMAT = "vidcurate.student"


class DecoderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["scratch", "pretrained"] = "scratch"
    model: Optional[str] = Field(None, description="For kind pretrained: folder or hub id of a causal LM.")
    revision: Optional[str] = None
    width: int = Field(128, ge=16, description="Scratch GPT-2 width.")
    layers: int = Field(2, ge=1, description="Scratch GPT-2 layers.")
    heads: int = Field(4, ge=1)
    vocab_size: int = Field(2000, ge=64, description="Scratch tokenizer: most BPE tokens learned from captions.")
    max_caption_tokens: int = Field(40, ge=4)
    trainable: bool = True


class DecodingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_beams: int = Field(1, ge=1)
    do_sample: bool = False
    top_p: float = Field(1.0, gt=0, le=1)
    temperature: float = Field(1.0, gt=0)
    max_new_tokens: int = Field(40, ge=1)


DECODING_PRESETS = {
    "greedy": DecodingConfig(),
    "panda": DecodingConfig(num_beams=3, do_sample=True, top_p=0.9, temperature=1.5),
}


STUDENT_VIDEO = {"pooling": "attention", "spatial": "grid_max"}  # where the student's frame encoder differs from the retriever's


class StudentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["vidcurate.student"] = FORMAT
    video: VideoTowerConfig = Field(default_factory=lambda: VideoTowerConfig(**STUDENT_VIDEO))
    video_trainable: bool = True
    video_init: Optional[str] = Field(None, description="A retriever checkpoint (vidcurate retriever finetune) whose "
                                      "video tower and temporal pooling start the student's frame encoder; its "
                                      "frames, frame size and width must match the student's.")
    decoder: DecoderConfig = Field(default_factory=DecoderConfig)
    num_frames: int = Field(8, ge=1, description="Frames per clip (Panda's student: 8).")
    frame_size: tuple[int, int] = Field((96, 128), description="(height, width) frames are decoded at.")
    text_inputs: list[Literal["title", "description", "subtitles"]] = Field(default_factory=list)
    text_dropout: float = Field(0.5, ge=0, le=1)
    max_text_tokens: int = Field(32, ge=1)
    decoding: DecodingConfig = Field(default_factory=DecodingConfig)
    contrastive: float = Field(0.0, ge=0, description="Weight of the CoCa-style contrastive loss beside the "
                               "captioning loss (0: none). CoCa weighs captioning 2 to contrastive 1: 0.5.")
    contrastive_dim: int = Field(128, ge=8, description="Width of the contrastive embeddings.")

    @field_validator("video", mode="before")
    @classmethod
    def _student_video_defaults(cls, video, info: ValidationInfo):
        """A partial ``video`` (say, only ``channels``) keeps the student's own defaults for the rest, not
        the retriever's. A checkpoint's config.json is read as written: one saved before ``spatial``
        existed has the grid alone (read_checkpoint_config passes ``{"checkpoint": True}``)."""
        if isinstance(video, dict) and not (info.context or {}).get("checkpoint"):
            return {**STUDENT_VIDEO, **video}
        return video

    def with_video_init(self, retriever: str) -> "StudentConfig":
        """This config with its frame encoder started from retriever checkpoint ``retriever`` (a folder or
        hub id), taking the retriever's frames, frame size and video tower so that they fit."""
        from vidcurate.operators.models.retriever.checkpoint import checkpoint_folder, read_config

        theirs = read_config(checkpoint_folder(retriever), retriever)
        return self.model_copy(update={"video_init": retriever, "num_frames": theirs.num_frames,
                                       "frame_size": tuple(theirs.frame_size), "video": theirs.video})

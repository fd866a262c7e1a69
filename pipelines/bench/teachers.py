"""`vidcurate bench teachers`: what the teacher operator costs over calling its model directly.

On the same real clips (keyframes of the sample videos, cut by the normal split and
extract stages) and the same batches, in one run:

  direct    the backend's ``generate`` called on each batch of prebuilt requests: the
            model alone, the best the operator could do;
  pipeline  the teacher operator run by the local runner (``run_operator``): request
            building (frame picking, prompt rendering), generation, output cleaning,
            candidate provenance, stats.

It prints clips/s for both, their ratio (target >= 90%) and generated tokens/s. Without
``--model`` it builds a tiny randomly initialised vision-language model locally, so the
figure measures the operator's overhead on CPU; give ``--model PATH --device cuda`` to
measure a real model on a GPU with the same command.
"""
from __future__ import annotations

import tempfile
import time

from vidcurate.operators.models.generation import GenerationParams
from vidcurate.pipelines import sample_media
from vidcurate.pipelines.runners.base import run_operator

TEACHERS = ("video_teacher", "frame_teacher", "text_teacher")


def clip_records(count: int, num_keyframes: int = 8) -> list[dict]:
    """``count`` clip records with JPEG keyframes, cut from the real sample videos."""
    from vidcurate.operators.extract import ExtractClips
    from vidcurate.operators.probe import ProbeVideo
    from vidcurate.operators.split.shots import ShotSplit

    sources = [{"uri": sample_media.sample(name), "video_id": name.split(".")[0], "title": f"sample video {name}"}
               for name in ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")]
    records = ProbeVideo()(sources)
    records = ShotSplit(min_clip_seconds=0.5)(records)
    records = ExtractClips(keyframes="uniform", num_keyframes=num_keyframes, audio=False, asr_audio=False)(records)
    clips = [r for r in records if r.get("status", "ok") == "ok"]
    if not clips:
        raise RuntimeError("the sample videos gave no clips")
    return [{**clips[i % len(clips)], "clip_id": f"{clips[i % len(clips)]['clip_id']}-{i}"} for i in range(count)]


def run(model: str | None = None, teacher: str = "video_teacher", clips: int = 48, batch_size: int = 8,
        max_new_tokens: int = 24, repeats: int = 3, device: str = "auto", workdir: str | None = None) -> dict:
    from vidcurate.pipelines.build.registry import operator_class

    with tempfile.TemporaryDirectory(prefix="vidcurate-bench-teachers-", dir=workdir) as tmp:
        if model is None:
            from huggingface_hub.utils import disable_progress_bars

            from vidcurate.pipelines.bench.tiny_models import build_tiny_vlm

            disable_progress_bars()
            model, label = build_tiny_vlm(f"{tmp}/tiny-vlm"), "tiny random VLM (built locally; output is noise)"
        else:
            label = model
        op = operator_class(teacher)(model=model, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                     device=device, min_words=1, **({"num_frames": 4} if teacher != "frame_teacher"
                                                                     else {}))
        records = clip_records(clips)
        op.ensure_setup()
        backend, params = op._backend, op.generation_params()
        batches = [records[i:i + batch_size] for i in range(0, len(records), batch_size)]
        requests = [[op.request(r) for r in batch] for batch in batches]
        backend.generate(requests[0], params)  # warm-up: lazy kernels, allocator
        direct, pipeline, tokens = [], [], 0
        for _ in range(repeats):  # interleaved, so drift on a shared machine hits both alike
            started = time.perf_counter()
            tokens = sum(g.tokens for reqs in requests for g in backend.generate(reqs, params))
            direct.append(time.perf_counter() - started)
            started = time.perf_counter()
            out = run_operator(op, records)
            pipeline.append(time.perf_counter() - started)
        op.close()
    produced = sum(1 for r in out if r.get("candidates") or r.get("rejected_candidates"))
    best_direct, best_pipeline = min(direct), min(pipeline)
    return {"model": label, "teacher": teacher, "clips": len(records), "batch_size": batch_size,
            "max_new_tokens": max_new_tokens, "params": GenerationParams(max_new_tokens=max_new_tokens).as_dict(),
            "direct_seconds": best_direct, "pipeline_seconds": best_pipeline,
            "direct_clips_per_s": len(records) / best_direct, "pipeline_clips_per_s": len(records) / best_pipeline,
            "ratio": best_direct / best_pipeline, "tokens": tokens, "tokens_per_s": tokens / best_direct,
            "answered": produced}


def report(r: dict) -> str:
    ok = "met" if r["ratio"] >= 0.9 else "MISSED"
    return "\n".join([
        f"teacher benchmark: {r['teacher']} on {r['clips']} real clips, batch {r['batch_size']}, "
        f"{r['max_new_tokens']} new tokens max; model: {r['model']}",
        f"  direct (backend.generate on the same batches)  {r['direct_seconds']:7.2f} s  "
        f"{r['direct_clips_per_s']:7.1f} clips/s",
        f"  inside the pipeline (operator + runner)        {r['pipeline_seconds']:7.2f} s  "
        f"{r['pipeline_clips_per_s']:7.1f} clips/s",
        f"  pipeline / direct throughput                   {100 * r['ratio']:6.1f} %   target >= 90%: {ok}",
        f"  generated tokens/s                             {r['tokens_per_s']:7.1f}   ({r['tokens']} tokens)",
        f"  clips with a candidate or a listed rejection   {r['answered']} / {r['clips']}",
    ])

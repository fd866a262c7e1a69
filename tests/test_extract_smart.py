"""extract_clips mode smart on real footage: the same frames as the source, most of them copied.

Sources are bikes.mp4 (real street footage, hard cuts) re-encoded with the GOP structures users'
videos have: x264's defaults (keyframes on scene cuts, keyint 250), short fixed GOPs with
B-frames (b-pyramid), no B-frames, an open GOP (recovery-point I-frames instead of IDRs: not
smart-cuttable, so re-encoded whole and counted), and Big Buck Bunny with its AAC track. Clips
start mid-GOP (1.7 s pieces), so heads, copied runs and tails all occur.
"""
from __future__ import annotations

import io

import av
import decord
import numpy as np
import pytest
from PIL import Image

from vidcurate.operators.extract import ExtractClips
from vidcurate.operators.media import run_ffmpeg
from vidcurate.operators.probe import ProbeVideo
from vidcurate.operators.smart_plan import NotSmart, index_source, plan_clip
from vidcurate.operators.split.shots import ShotSplit
import samples
from test_annotate_browser import browser  # noqa: F401  (the headless Chromium fixture)

X264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p"]
SOURCES = {  # name -> x264 arguments of the source
    "x264_default": [],
    "short_gop_bframes": ["-g", "12", "-bf", "3", "-x264-params", "scenecut=0:b-pyramid=normal"],
    "no_bframes": ["-g", "30", "-bf", "0", "-x264-params", "scenecut=0"],
    "open_gop": ["-g", "50", "-x264-params", "scenecut=0:open-gop=1"],
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("smart")
    out = {}
    for name, args in SOURCES.items():
        path = str(folder / f"{name}.mp4")
        run_ffmpeg(["-y", "-stream_loop", "1", "-i", samples.sample("bikes.mp4"), "-t", "12", *X264, *args, path],
                   f"building {path}")
        out[name] = path
    bunny = str(folder / "bunny_audio.mp4")
    run_ffmpeg(["-y", "-i", samples.sample("bigbuckbunny.mp4"), *X264, "-g", "25", "-c:a", "copy", bunny],
               f"building {bunny}")
    out["bunny_audio"] = bunny
    return out


def _clips(path: str) -> list[dict]:
    probe = ProbeVideo()([{"uri": path, "video_id": "v"}])
    return [r for r in ShotSplit(piece_seconds=1.7, cut_while_longer_than=1.7, min_clip_seconds=0)(probe)
            if r.get("status", "ok") == "ok"]


def _frames(data_or_path) -> list[np.ndarray]:
    source = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path
    with av.open(source) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def _plan(index, record):
    try:
        return plan_clip(index, record["start_frame"], record["end_frame"])
    except NotSmart:
        return None


def smart_cut(path: str):
    op = ExtractClips(mode="smart", keyframes="uniform", num_keyframes=3)
    records = _clips(path)
    return records, op(records), op.stats.counters


@pytest.mark.parametrize("name", ["x264_default", "short_gop_bframes", "no_bframes", "bunny_audio"])
def test_smart_clips_hold_the_source_frames_and_copy_most_of_them(sources, name):
    path = sources[name]
    records, out, counters = smart_cut(path)
    assert len(out) == len(records) >= 3
    fallbacks = {k.rsplit(".", 1)[1]: v for k, v in counters.items() if "smart_fallback" in k}
    assert counters["extract_clips.smart_clips"] + sum(fallbacks.values()) == len(records)
    index = index_source(path)
    smart = [r for r in records if _plan(index, r)]
    assert len(smart) == counters["extract_clips.smart_clips"] >= 3
    # a clip is re-encoded whole only when no IDR frame lies inside it (x264's defaults put
    # IDRs on scene cuts alone, so a piece inside a shot has none)
    assert set(fallbacks) <= {"no_idr_inside"}
    for record in records:
        if not _plan(index, record):
            assert not [f for f in index.idr_frames if record["start_frame"] <= f < record["end_frame"]]
    if name == "short_gop_bframes":
        assert not fallbacks
    copied = counters["extract_clips.smart_frames_copied"]
    total = sum(r["end_frame"] - r["start_frame"] for r in smart)
    assert copied + counters.get("extract_clips.smart_frames_encoded", 0) == total
    assert copied >= 0.4 * total, (copied, total)
    source = _frames(path)
    for record in sorted(out, key=lambda r: r["start_frame"]):
        start, end = record["start_frame"], record["end_frame"]
        plan = _plan(index, record)  # None: a fallback clip, re-encoded whole
        frames = _frames(record["mp4"])
        assert len(frames) == end - start == record["clip_num_frames"]
        assert len(decord.VideoReader(io.BytesIO(record["mp4"]))) == end - start
        quality = [_psnr(a, b) for a, b in zip(source[start:end], frames)]
        # the copied run decodes to the very pixels of the source: its packets are the source's
        if _plan(index, record):
            run = quality[plan.copy_from - start:plan.copy_to - start]
            assert run and all(q == float("inf") for q in run), name
        # the re-encoded head and tail are the right frames at x264 crf 23 quality
        assert min(quality) > 30, (name, start, min(quality))
        with av.open(io.BytesIO(record["mp4"])) as container:
            video = container.streams.video[0]
            assert len(container.streams.video) == 1 and video.codec_context.name == "h264"
            assert float(video.average_rate) == pytest.approx(record["fps"], rel=1e-3)
            packets = [p for p in container.demux(video) if p.size]
            assert packets[0].is_keyframe
            dts = [p.dts for p in packets]
            assert dts == sorted(set(dts))  # decode times strictly increase across the joins
        assert record["mp4"].find(b"moov") < record["mp4"].find(b"mdat")  # faststart
        assert len(record["keyframes"]) == 3 and len(record["keyframe_frames"]) == 3
        for jpeg, frame in zip(record["keyframes"], record["keyframe_frames"]):
            image = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB").resize(source[frame].shape[1::-1]))
            assert _psnr(image, source[frame]) > 25
        if name == "bunny_audio":
            with av.open(io.BytesIO(record["mp4"])) as container:
                audio = container.streams.audio[0]
                assert audio.codec_context.name == "aac"
                assert abs(float(audio.duration * audio.time_base) - (end - start) / 25) < 0.025
            assert len(record["audio_pcm"]) == 2 * round((end - start) / 25 * 16000)


def test_an_open_gop_source_is_re_encoded_but_for_its_first_clip_and_counted(sources):
    records, out, counters = smart_cut(sources["open_gop"])
    assert index_source(sources["open_gop"]).idr_frames == [0]  # later keyframes are recovery points
    assert counters["extract_clips.smart_clips"] == 1  # the clip from frame 0 alone has an IDR inside
    assert counters["extract_clips.smart_fallback.no_idr_inside"] == len(records) - 1
    source = _frames(sources["open_gop"])
    for record in out:
        frames = _frames(record["mp4"])
        assert len(frames) == record["end_frame"] - record["start_frame"]
        assert _psnr(frames[0], source[record["start_frame"]]) > 30


def test_smart_quality_is_at_least_a_full_re_encode(sources):
    """Every frame against the source: smart (copied runs are lossless) versus one_pass."""
    path = sources["short_gop_bframes"]
    source = _frames(path)
    records = _clips(path)
    mean = {}
    for mode in ("smart", "one_pass"):
        scores = []
        for record in ExtractClips(mode=mode, keyframes="none")(records):
            scores += [min(_psnr(a, b), 99.0) for a, b in zip(source[record["start_frame"]:], _frames(record["mp4"]))]
        mean[mode] = float(np.mean(scores))
    assert mean["smart"] > mean["one_pass"] + 3, mean


def test_sources_smart_mode_cannot_cut_are_cut_one_pass_with_the_reason_counted(tmp_path):
    rotated = str(tmp_path / "rotated.mp4")
    samples.make_rotated(rotated)
    big = str(tmp_path / "big.mp4")
    run_ffmpeg(["-y", "-i", samples.sample("bigbuckbunny.mp4"), *X264, "-an", big], "building big.mp4")
    for path, reason, settings in ((rotated, "rotation", {}), (big, "resize", {"max_height": 360}),
                                   (big, "resample", {"max_fps": 12})):
        op = ExtractClips(mode="smart", **settings)
        records = _clips(path)
        out = op(records)
        assert op.stats.counters[f"extract_clips.smart_fallback.{reason}"] == len(records), reason
        assert [r["clip_num_frames"] for r in out] == [op._clip_frames(r) for r in records]


GRAB = """
const [b64, times, done] = arguments;
(async () => {
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const video = document.createElement('video');
  video.muted = true;
  video.src = URL.createObjectURL(new Blob([bytes], {type: 'video/mp4'}));
  document.body.appendChild(video);
  await new Promise((ok, bad) => { video.onloadeddata = ok; video.onerror = () => bad(new Error(
      'video error ' + (video.error && video.error.code) + ' ' + (video.error && video.error.message))); });
  const canvas = document.createElement('canvas');
  canvas.width = 64; canvas.height = 32;
  const context = canvas.getContext('2d', {willReadFrequently: true});
  const frames = [];
  for (const t of times) {
    video.currentTime = t;
    await new Promise(ok => { video.onseeked = ok; });
    await new Promise(ok => setTimeout(ok, 30));
    context.drawImage(video, 0, 0, 64, 32);
    frames.push(Array.from(context.getImageData(0, 0, 64, 32).data));
  }
  video.currentTime = 0;
  await new Promise(ok => { video.onseeked = ok; });
  video.playbackRate = 4;
  await video.play();
  await new Promise((ok, bad) => { video.onended = ok; video.onerror = () => bad(new Error('error while playing')); });
  const quality = video.getVideoPlaybackQuality();
  done({frames, duration: video.duration, error: video.error && video.error.code,
        decoded: quality.totalVideoFrames, corrupted: quality.corruptedVideoFrames});
})().catch(error => done({failed: String(error)}));
"""


@pytest.mark.slow
def test_smart_clips_play_in_chromium_and_show_the_right_frames_across_the_joins(sources, browser):
    """Headless Chromium decodes each clip (blob URL, same origin, so the canvas can be read), at
    the last head frame, the first copied one, the last copied one, the first tail frame and the
    end; each must match what PyAV decodes of the same clip, and playing runs to its end."""
    import base64

    path = sources["short_gop_bframes"]
    index = index_source(path)
    records, out, _ = smart_cut(path)
    browser.get("about:blank")
    browser.set_script_timeout(60)
    checked = 0
    for record in out[:4]:
        plan = _plan(index, record)
        start, frames = record["start_frame"], record["clip_num_frames"]
        picks = sorted({max(0, plan.copy_from - start - 1), plan.copy_from - start, plan.copy_to - start - 1,
                        min(frames - 1, plan.copy_to - start), frames - 1})
        got = browser.execute_async_script(GRAB, base64.b64encode(record["mp4"]).decode(),
                                           [(n + 0.5) / record["fps"] for n in picks])
        assert "failed" not in got, got
        assert got["error"] is None and got["corrupted"] == 0
        assert got["duration"] == pytest.approx(frames / record["fps"], abs=0.05)
        decoded = _frames(record["mp4"])
        for n, rgba in zip(picks, got["frames"]):
            shown = np.asarray(rgba, dtype=float).reshape(32, 64, 4)[..., :3]
            expected = np.asarray(Image.fromarray(decoded[n]).resize((64, 32), Image.BILINEAR), dtype=float)
            error = np.abs(shown - expected).mean()
            assert error < 6, (record["start_frame"], n, error)
            checked += 1
    assert checked >= 12

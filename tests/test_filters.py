"""Clip filters on real footage: sizes probed from the sample videos, motion from their
decoded frames, text burned into their frames with ffmpeg and found by RapidOCR."""
from __future__ import annotations

import glob
import os
import pickle

import numpy as np
import pytest
from pydantic import ValidationError

from vidcurate.operators.filters import (FILTERS, AspectRatioFilter, DurationFilter, MotionFilter,
                                         ResolutionFilter, TextAreaFilter)
from vidcurate.operators.media import run_ffmpeg
from vidcurate.operators.probe import ProbeVideo
import samples
from vidcurate.schemas.records import clip_id_for, rejected, video_id_for

FPS = 25.0  # bikes.mp4 and bigbuckbunny.mp4


def clip(uri: str, start: float, end: float, **fields) -> dict:
    video_id = video_id_for(uri)
    return {"uri": uri, "video_id": video_id, "clip_id": clip_id_for(video_id, start, end),
            "start": start, "end": end, **fields}


def outcome(records: list[dict]) -> list[str]:
    return [r.get("error_reason", "kept") for r in records]


# ---- real media helpers ------------------------------------------------------------------
def lowres_frames(path: str, first: int = 0, last: int | None = None, width: int = 128) -> np.ndarray:
    """RGB frames [first, last) decoded ``width`` wide, as the splitter decodes them."""
    import decord

    full = decord.VideoReader(path)
    height, src_width = full[0].shape[:2]
    reader = decord.VideoReader(path, width=width, height=round(height * width / src_width / 2) * 2)
    last = len(reader) if last is None else last
    return reader.get_batch(list(range(first, last))).asnumpy()


def motion(frames: np.ndarray) -> float:
    """The splitter's motion: mean absolute difference of consecutive frames, 0-255."""
    return float(np.abs(np.diff(frames.astype(np.int16), axis=0)).mean())


def font_file() -> str | None:
    found = sorted(glob.glob("/usr/share/fonts/**/DejaVuSans*.ttf", recursive=True))
    found += glob.glob(os.path.join(os.path.dirname(np.__file__), "..", "matplotlib", "mpl-data", "fonts", "ttf",
                                    "DejaVuSans.ttf"))
    found += glob.glob("/usr/share/fonts/**/*.ttf", recursive=True)
    return found[0] if found else None


def keyframes(path: str, times: list[float], text: str | None = None, size: float = 8) -> list[bytes]:
    """JPEG keyframes at ``times`` (s); with ``text`` burned in at font height = frame height / ``size``."""
    import cv2

    font = font_file()
    out = []
    for t in times:
        args = ["-ss", f"{t}", "-i", path, "-frames:v", "1"]
        if text and font:
            args += ["-vf", f"drawtext=fontfile={font}:text='{text}':fontsize=h/{size}:fontcolor=white:"
                            "borderw=2:x=(w-tw)/2:y=h-th-h/12"]
        # BMP, not PNG: once decord is imported before cv2, cv2 cannot decode PNG ("bad parameters to zlib").
        bmp = run_ffmpeg([*args, "-f", "image2pipe", "-c:v", "bmp", "-"], f"frame at {t} s of {path}")
        bgr = cv2.imdecode(np.frombuffer(bmp, np.uint8), cv2.IMREAD_COLOR)
        if text and not font:  # no TTF on this machine: OpenCV's own stroke font
            h, w = bgr.shape[:2]
            cv2.putText(bgr, text, (w // 20, h - h // 8), cv2.FONT_HERSHEY_DUPLEX, h / size / 24, (255, 255, 255),
                        max(2, h // 120))
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        out.append(jpeg.tobytes())
    return out


@pytest.fixture(scope="module")
def probed() -> dict:
    """PROBE records of the three sample videos, from the real probe operator."""
    names = ["bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"]
    records = ProbeVideo()([{"uri": samples.sample(n), "video_id": video_id_for(samples.sample(n))} for n in names])
    assert all(r["status"] == "ok" for r in records if "status" in r), records
    return {os.path.basename(r["uri"]): r for r in records}


@pytest.fixture(scope="module")
def ocr() -> TextAreaFilter:
    op = TextAreaFilter()
    op.ensure_setup()
    yield op
    op.close()


# ---- duration ----------------------------------------------------------------------------
def test_duration_filter_on_the_shots_of_bikes():
    """bikes.mp4's six shots (cuts at frames 30/76/137/187/242): 1.2 s, 1.84 s, 2.44 s, 2.0 s, 2.2 s, 0.32 s."""
    bounds = [0, *samples.BIKES_CUT_FRAMES, samples.BIKES_FRAMES]
    uri = samples.sample("bikes.mp4")
    shots = [clip(uri, a / FPS, b / FPS) for a, b in zip(bounds, bounds[1:])]
    op = DurationFilter()
    out = op(shots)
    assert outcome(out) == ["clip_too_short", "clip_too_short", "kept", "kept", "kept", "clip_too_short"]
    assert out[0]["error_detail"] == "clip 0.00-1.20 s is 1.20 s < min_seconds 2.0"
    assert out[0]["error_stage"] == "filter_duration" and out[0]["clip_id"] == shots[0]["clip_id"]
    assert [round(r["filter_scores"]["filter_duration"], 2) for r in out] == [1.2, 1.84, 2.44, 2.0, 2.2, 0.32]
    assert op.stats.counters["filter_duration.rejected.clip_too_short"] == 3
    assert op.stats.counters["filter_duration.records_out"] == 3

    long = DurationFilter(min_seconds=0.5, max_seconds=2.1)(shots)
    assert outcome(long) == ["kept", "kept", "clip_too_long", "kept", "clip_too_long", "clip_too_short"]
    assert long[2]["error_detail"] == "clip 3.04-5.48 s is 2.44 s > max_seconds 2.1"


# ---- size and shape ----------------------------------------------------------------------
def test_resolution_filter_on_probed_sample_sizes(probed):
    records = [clip(r["uri"], 0.0, 3.0, width=r["width"], height=r["height"]) for r in probed.values()]
    op = ResolutionFilter()
    out = {os.path.basename(r["uri"]): r for r in op(records)}
    assert (probed["carphone_pristine.mp4"]["width"], probed["carphone_pristine.mp4"]["height"]) == (176, 144)
    assert outcome(out.values()) == ["kept", "kept", "resolution_too_low"]
    assert out["carphone_pristine.mp4"]["error_detail"] == (
        "clip 0.00-3.00 s is 176x144 < min_width x min_height 256x256 (either orientation)")
    assert out["bikes.mp4"]["filter_scores"]["filter_resolution"] == 272  # the short side
    assert op.stats.counters["filter_resolution.rejected.resolution_too_low"] == 1

    # 1280x720 required: Big Buck Bunny passes in landscape and rotated to portrait; bikes does not.
    hd = ResolutionFilter(min_width=1280, min_height=720)
    bbb = probed["bigbuckbunny.mp4"]
    portrait = clip(bbb["uri"], 0.0, 3.0, width=bbb["height"], height=bbb["width"])
    bikes = clip(probed["bikes.mp4"]["uri"], 0.0, 3.0, width=640, height=272)
    assert outcome(hd([clip(bbb["uri"], 0.0, 3.0, width=1280, height=720), portrait, bikes])) == [
        "kept", "kept", "resolution_too_low"]
    # The extracted clip's size wins over the source's: a 1280x720 source cut down to 320x180.
    small = clip(bbb["uri"], 0.0, 3.0, width=1280, height=720, clip_width=320, clip_height=180)
    assert outcome(ResolutionFilter()([small])) == ["resolution_too_low"]


def test_aspect_filter(probed):
    bikes = probed["bikes.mp4"]
    rows = [clip(bikes["uri"], 0.0, 3.0, width=bikes["width"], height=bikes["height"]),  # 2.35, scope cinema
            clip(bikes["uri"], 0.0, 3.0, width=720, height=1280),                           # 0.56, phone video
            clip(bikes["uri"], 0.0, 3.0, width=1280, height=320),                           # 4:1 banner
            clip(bikes["uri"], 0.0, 3.0, width=200, height=800)]                            # 1:4 strip
    op = AspectRatioFilter()
    out = op(rows)
    assert outcome(out) == ["kept", "kept", "aspect_too_wide", "aspect_too_tall"]
    assert out[0]["filter_scores"]["filter_aspect"] == pytest.approx(640 / 272)
    assert out[2]["error_detail"] == "clip 0.00-3.00 s is 1280x320, width/height 4.00 > max_ratio 3.5"
    assert op.stats.counters["filter_aspect.rejected.aspect_too_tall"] == 1
    bad = op([clip(bikes["uri"], 0.0, 3.0, width=640, height=0)])
    assert outcome(bad) == ["invalid_size"]


# ---- motion ------------------------------------------------------------------------------
def test_motion_filter_on_real_frames(tmp_path):
    bikes = samples.sample("bikes.mp4")
    frames = lowres_frames(bikes)
    moving = motion(frames[30:76])  # the second shot: a camera panning over traffic
    bbb = motion(lowres_frames(samples.sample("bigbuckbunny.mp4")))  # a slow scene: the rabbit wakes up
    # A real still: one frame of bikes held for 2 s and encoded with H.264, then decoded again.
    png = tmp_path / "frame.png"
    run_ffmpeg(["-y", "-ss", "1.6", "-i", bikes, "-frames:v", "1", str(png)], "one frame")
    still_mp4 = tmp_path / "still.mp4"
    run_ffmpeg(["-y", "-loop", "1", "-i", str(png), "-t", "2", "-r", "25", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                str(still_mp4)], "a still clip")
    still = motion(lowres_frames(str(still_mp4)))
    repeated = motion(np.repeat(frames[40:41], 50, axis=0))
    # Flashing: a frame of bikes alternating with black (a strobe).
    flashing = motion(np.stack([frames[40] if i % 2 else np.zeros_like(frames[40]) for i in range(50)]))
    assert 5 < moving < 15 and 0.5 < bbb < 3 and still < 0.05 and repeated == 0.0 and flashing > 60

    rows = [clip(bikes, 1.2, 3.04, motion=moving), clip(bikes, 0.0, 5.28, motion=bbb),
            clip(bikes, 0.0, 2.0, motion=still), clip(bikes, 0.0, 2.0, motion=repeated),
            clip(bikes, 0.0, 2.0, motion=flashing)]
    op = MotionFilter()
    out = op(rows)
    assert outcome(out) == ["kept", "kept", "too_static", "too_static", "too_much_motion"]
    assert out[0]["filter_scores"]["filter_motion"] == pytest.approx(moving)
    assert out[3]["error_detail"] == "clip 0.00-2.00 s has motion 0.000 < min_motion 0.5"
    assert op.stats.counters["filter_motion.rejected.too_static"] == 2
    assert op.stats.counters["filter_motion.rejected.too_much_motion"] == 1

    missing = op([clip(bikes, 0.0, 2.0)])
    assert outcome(missing) == ["no_motion"]
    assert "split_shots" in missing[0]["error_detail"]


# ---- text area ---------------------------------------------------------------------------
def test_text_area_filter_rejects_burned_in_text_and_keeps_the_same_frames_without(ocr):
    bikes = samples.sample("bikes.mp4")
    times = [1.6, 2.2, 2.8]  # the traffic shot: blurred car lights, no readable text
    plain = clip(bikes, 1.2, 3.04, keyframes=keyframes(bikes, times))
    texted = clip(bikes, 1.2, 3.04, keyframes=keyframes(bikes, times, text="BREAKING NEWS", size=4))
    out = ocr([plain, texted])
    assert outcome(out) == ["kept", "too_much_text"]
    assert out[0]["filter_scores"]["filter_text_area"] < 0.02
    area = out[1]["filter_scores"]["filter_text_area"]
    assert 0.1 < area < 0.5
    assert out[1]["error_detail"].startswith("clip 1.20-3.04 s has text on ")
    assert "(median of 3 keyframes) > max_text_area 6.0%" in out[1]["error_detail"]
    assert "keyframes" not in out[1]  # rejects drop heavy payloads
    assert ocr.stats.counters["filter_text_area.rejected.too_much_text"] == 1

    # Why boxes are confirmed by the recognizer: the detector alone takes the blurred
    # car lights of the plain frames for text.
    detector_only = TextAreaFilter(recognize=False)
    raw = detector_only([plain])
    detector_only.close()
    assert outcome(raw) == ["too_much_text"] and raw[0]["filter_scores"]["filter_text_area"] > 0.1


def test_one_subtitle_line_is_kept(ocr):
    bbb = samples.sample("bigbuckbunny.mp4")
    subtitled = clip(bbb, 0.0, 5.28, keyframes=keyframes(bbb, [1.0, 3.0], text="I do not think we should go there",
                                                       size=18))
    out = ocr([subtitled])
    assert outcome(out) == ["kept"]
    assert 0.01 < out[0]["filter_scores"]["filter_text_area"] < 0.06


def test_text_area_needs_keyframes(ocr):
    bikes = samples.sample("bikes.mp4")
    out = ocr([clip(bikes, 0.0, 2.0), clip(bikes, 0.0, 2.0, keyframes=[]),
               clip(bikes, 0.0, 2.0, keyframes=[b"not a jpeg"])])
    assert outcome(out) == ["no_keyframes", "no_keyframes", "bad_keyframe"]
    assert "extract_clips" in out[0]["error_detail"]


# ---- the contract ------------------------------------------------------------------------
def test_min_above_max_is_refused_naming_both_fields():
    for cls, low, high in [(DurationFilter, "min_seconds", "max_seconds"),
                           (AspectRatioFilter, "min_ratio", "max_ratio"),
                           (MotionFilter, "min_motion", "max_motion")]:
        with pytest.raises(ValidationError, match=rf"{low} \(5.0\) must be <= {high} \(2.0\)"):
            cls(**{low: 5, high: 2})
    for bad in [dict(min_seconds=-1), dict(max_seconds=0), dict(min_secs=2)]:
        with pytest.raises(ValidationError, match=next(iter(bad))):
            DurationFilter(**bad)
    with pytest.raises(ValidationError, match="max_text_area"):
        TextAreaFilter(max_text_area=1.5)
    with pytest.raises(ValidationError, match="min_width"):
        ResolutionFilter(min_width=0)


def test_scores_accumulate_without_touching_the_input_and_rejects_pass_through():
    uri = samples.sample("bikes.mp4")
    scores = {"earlier": 1.0}
    record = clip(uri, 1.2, 3.4, width=640, height=272, motion=9.8, filter_scores=scores)
    out = AspectRatioFilter()(DurationFilter()([record]))
    assert out[0]["filter_scores"] == {"earlier": 1.0, "filter_duration": pytest.approx(2.2),
                                       "filter_aspect": pytest.approx(640 / 272)}
    assert scores == {"earlier": 1.0} and "status" not in record

    already = rejected(clip(uri, 0.0, 0.5, motion=0.0), "split_shots", "decode_error", "frame 3")
    op = MotionFilter()
    passed = op([already])
    assert passed[0] is already and passed[0]["error_stage"] == "split_shots"
    assert op.stats.counters["filter_motion.records_in"] == 0
    assert not any(key.startswith("filter_motion.rejected") for key in op.stats.counters)


def test_registry_entries_and_configured_filters_pickle():
    import importlib

    for name, target in FILTERS.items():
        module, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        assert cls.name == name and "filter_scores" in cls.provides and cls.requires
        op = cls()
        assert pickle.loads(pickle.dumps(op)) == op  # runners ship configured operators to workers
    assert TextAreaFilter(threads=2).declared_resources().cpus == 2

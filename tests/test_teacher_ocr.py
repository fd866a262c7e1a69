"""ocr_teacher on real footage: titles burned into a shot of bikes.mp4 with ffmpeg drawtext,
read back by RapidOCR from the keyframes extract_clips makes; the same shot without text
(blurred car lights the detector alone takes for text) gives no candidate."""
from __future__ import annotations

import json
import os
import pickle

import pytest

from conftest import run_cli, shard_samples
from test_filters import font_file
from vidcurate.operators.extract import ExtractClips
from vidcurate.operators.media import run_ffmpeg
from vidcurate.operators.models.ocr import MODEL_ID
from vidcurate.operators.probe import ProbeVideo
from vidcurate.operators.teachers.ocr import OcrTeacher, line_key
import samples
from vidcurate.schemas.records import clip_id_for, video_id_for

SHOT = (3.04, 2.44)  # bikes.mp4's third shot (start, seconds): one clip, no cut inside
BOTTOM = "CITY TRAFFIC REPORT"   # the whole clip
TOP = "MONDAY MORNING"           # from 1.3 s on: only the last two of four uniform keyframes
CONFIG = """\
pipeline:
  - op: probe
  - op: split_shots
  - op: extract_clips
    asr_audio: false
    keyframes: uniform
    num_keyframes: 4
  - op: ocr_teacher
output:
  require_caption: false
"""


def _drawtext(text: str, y: str, colour: str, enable: str | None = None) -> str:
    font = font_file()
    assert font, "no TTF font on this machine for ffmpeg drawtext"
    spec = f"drawtext=fontfile={font}:text='{text}':fontsize=h/8:fontcolor={colour}:borderw=2:x=(w-tw)/2:y={y}"
    return spec + (f":enable='{enable}'" if enable else "")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ocr_inputs")
    start, seconds = SHOT
    titles = ",".join([_drawtext(BOTTOM, "h-th-h/12", "white"), _drawtext(TOP, "h/12", "yellow", "gte(t,1.3)")])
    for name, vf in [("titled.mp4", ["-vf", titles]), ("plain.mp4", [])]:
        run_ffmpeg(["-y", "-ss", f"{start}", "-i", samples.sample("bikes.mp4"), "-t", f"{seconds}", *vf,
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(folder / name)], name)
    return folder


@pytest.fixture(scope="module")
def built(inputs, tmp_path_factory):
    work = tmp_path_factory.mktemp("ocr_build")
    (work / "ocr.yaml").write_text(CONFIG)
    done = run_cli("build", "-i", str(inputs), "-o", str(work / "out"), "-c", str(work / "ocr.yaml"))
    assert done.returncode == 0, done.stderr
    metas = {}
    for sample in shard_samples(work / "out").values():
        meta = json.loads(sample["json"])
        metas[os.path.basename(meta["source"]["uri"])] = meta
    stats = json.loads((work / "out" / "stats.json").read_text())
    return {"samples": metas, "counters": stats["counters"]}


@pytest.mark.slow
def test_build_reads_burned_in_titles_and_leaves_the_plain_clip_alone(built):
    titled, plain = built["samples"]["titled.mp4"], built["samples"]["plain.mp4"]
    [candidate] = titled["candidates"]
    assert (candidate["teacher"], candidate["modality"], candidate["model_id"]) == ("ocr_teacher", "T", MODEL_ID)
    text = candidate["text"].lower()
    for word in ["city", "traffic", "report", "monday", "morning"]:
        assert word in text, candidate["text"]
    assert text.count("traffic") == 1  # read on all four keyframes, kept once
    assert "traffic report" in text  # keyframes are enlarged first, so words keep their spaces
    assert candidate["params"] == OcrTeacher().model_dump(mode="json")  # an object in the sample json
    # The same shot without titles: car lights and shop signs are not read as text.
    assert plain["candidates"] == []
    assert built["counters"]["ocr_teacher.no_text"] == 1
    assert built["counters"]["ocr_teacher.candidates"] == 1


@pytest.fixture(scope="module")
def titled_clip(inputs) -> dict:
    uri = str(inputs / "titled.mp4")
    [probed] = ProbeVideo()([{"uri": uri, "video_id": video_id_for(uri)}])
    frames = round(SHOT[1] * 25)
    clip = {**probed, "clip_id": clip_id_for(probed["video_id"], 0.0, SHOT[1]), "start": 0.0, "end": SHOT[1],
            "start_frame": 0, "end_frame": frames}
    [extracted] = ExtractClips(keyframes="uniform", num_keyframes=4, asr_audio=False)([clip])
    assert len(extracted["keyframes"]) == 4, extracted.get("error_detail")
    return extracted


@pytest.mark.slow
def test_lines_are_deduplicated_in_first_seen_order(titled_clip):
    op = OcrTeacher()
    [out] = op([titled_clip])
    lines = out["ocr_text"]
    # The bottom title is on every keyframe and comes first, although the top title is read
    # first (top to bottom) on the keyframes that show both.
    assert line_key(lines[0]) == line_key(BOTTOM)
    assert "monday" in " ".join(lines[1:]).lower() and "morning" in " ".join(lines[1:]).lower()
    assert len({line_key(line) for line in lines}) == len(lines)
    assert out["candidates"][0]["text"] == "; ".join(lines)
    op.close()


@pytest.mark.slow
def test_confidence_and_length_thresholds_and_bad_keyframes(titled_clip):
    # No real reading reaches confidence 1, and no line here has 30 letters: no text, no candidate.
    for params in [dict(min_confidence=1.0), dict(min_chars=30)]:
        op = OcrTeacher(**params)
        [out] = op([{**titled_clip, "candidates": [{"teacher": "earlier"}]}])
        assert out.get("status", "ok") == "ok"
        assert out["ocr_text"] == [] and out["candidates"] == [{"teacher": "earlier"}]
        assert op.stats.counters["ocr_teacher.no_text"] == 1
        op.close()
    # An undecodable keyframe is skipped, not a reject; a clip without keyframes has no text.
    op = OcrTeacher()
    broken, empty = op([{**titled_clip, "keyframes": [b"not a jpeg", titled_clip["keyframes"][0]]},
                        {**titled_clip, "keyframes": []}])
    assert [line_key(t) for t in broken["ocr_text"]] == [line_key(BOTTOM)]
    assert empty["ocr_text"] == [] and empty["candidates"] == []
    assert op.stats.counters["ocr_teacher.bad_keyframe"] == 1
    assert op.stats.counters["ocr_teacher.no_text"] == 1
    op.close()


def test_line_key_ignores_case_and_whitespace_and_the_operator_ships_to_workers():
    assert line_key("CITY TRAFFIC REPORT") == line_key(" City  trafficReport\n") == "citytrafficreport"
    assert line_key("CITY TRAFFIC") != line_key("CITY TRAFFIC REPORT")
    op = OcrTeacher(min_chars=2, threads=2)
    assert pickle.loads(pickle.dumps(op)) == op and op.declared_resources().cpus == 2

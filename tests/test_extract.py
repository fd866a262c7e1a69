"""Clip extraction: frame-accurate, playable, audio in sync, keyframes from the same run."""
from __future__ import annotations

import io

import av
import decord
import numpy as np
import pytest
from PIL import Image

from vidcurate.operators.extract import ExtractClips
from vidcurate.operators.probe import ProbeVideo
from vidcurate.operators.split.shots import ShotSplit
import samples


@pytest.fixture(scope="module")
def bunny_pieces() -> list[dict]:
    """Big Buck Bunny (real AAC audio) cut into 1.52 s pieces: 4 clips of one video."""
    probe = ProbeVideo()([{"uri": samples.sample("bigbuckbunny.mp4"), "video_id": "bbb"}])
    return ShotSplit(piece_seconds=1.5, cut_while_longer_than=1.5, min_clip_seconds=0)(probe)


def _nearest_source_frame(image: np.ndarray, source, around: int) -> int:
    errors = {i: np.abs(image.astype(float) - source[i].asnumpy()).mean()
              for i in range(max(0, around - 1), min(len(source), around + 2))}
    return min(errors, key=errors.get)


@pytest.mark.parametrize("mode", ["one_pass", "per_clip"])
def test_clips_are_frame_accurate_playable_and_keep_audio_in_sync(bunny_pieces, mode):
    op = ExtractClips(mode=mode, keyframes="uniform", num_keyframes=3)
    out = op(bunny_pieces)
    assert [r["start_frame"] for r in out] == [0, 38, 76, 114]
    if mode == "one_pass":
        assert op.stats.counters["extract_clips.one_pass_clips"] == 4
    source = decord.VideoReader(samples.sample("bigbuckbunny.mp4"), width=160, height=90)
    source_448 = decord.VideoReader(samples.sample("bigbuckbunny.mp4"), width=448, height=252)
    for record in out:
        frames = record["end_frame"] - record["start_frame"]
        with av.open(io.BytesIO(record["mp4"])) as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            assert video.codec_context.name == "h264" and video.codec_context.pix_fmt == "yuv420p"
            assert video.frames == frames == record["clip_num_frames"]
            assert audio.codec_context.name == "aac"
            # audio lasts as long as the video (one AAC frame of slack)
            assert abs(float(audio.duration * audio.time_base) - frames / 25) < 0.025
            # starts at 0 up to x264's B-frame delay, which the mp4 edit list absorbs
            assert float((video.start_time or 0) * video.time_base) <= 2 / 25
        assert record["mp4"][4:8] == b"ftyp" and record["mp4"].find(b"moov") < record["mp4"].find(b"mdat")
        clip = decord.VideoReader(io.BytesIO(record["mp4"]), width=160, height=90)
        assert _nearest_source_frame(clip[0].asnumpy(), source, record["start_frame"]) == record["start_frame"]
        # 16 kHz mono audio for speech teachers, exactly the clip's span
        assert len(record["audio_pcm"]) == 2 * round(frames / 25 * 16000)
        # keyframes are the named source frames
        assert len(record["keyframes"]) == 3 and len(record["keyframe_frames"]) == 3
        for jpeg, frame in zip(record["keyframes"], record["keyframe_frames"]):
            image = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
            assert image.shape == (252, 448, 3)  # keyframe_max_side
            assert _nearest_source_frame(image, source_448, frame) == frame


def test_one_pass_batch_seeks_to_its_first_clip_and_cuts_the_same_frames_and_audio(bunny_pieces):
    """A long video is cut a batch of clips at a time; a batch not starting at frame 0 seeks
    there instead of decoding from the start, and must give what a cut from the start gives."""
    whole = ExtractClips(mode="one_pass", keyframes="uniform", num_keyframes=3)(bunny_pieces)
    op = ExtractClips(mode="one_pass", keyframes="uniform", num_keyframes=3)
    later = op(bunny_pieces[2:])  # starts at frame 76: this run seeks
    assert op.stats.counters["extract_clips.one_pass_clips"] == 2
    source = decord.VideoReader(samples.sample("bigbuckbunny.mp4"), width=160, height=90)
    for seeking, reference in zip(later, whole[2:]):
        frames = seeking["end_frame"] - seeking["start_frame"]
        assert seeking["clip_num_frames"] == reference["clip_num_frames"] == frames
        clip = decord.VideoReader(io.BytesIO(seeking["mp4"]), width=160, height=90)
        assert _nearest_source_frame(clip[0].asnumpy(), source, seeking["start_frame"]) == seeking["start_frame"]
        assert _nearest_source_frame(clip[len(clip) - 1].asnumpy(), source, seeking["end_frame"] - 1) == \
            seeking["end_frame"] - 1
        assert seeking["keyframe_frames"] == reference["keyframe_frames"]
        for a, b in zip(seeking["keyframes"], reference["keyframes"]):
            image_a = np.asarray(Image.open(io.BytesIO(a)).convert("RGB")).astype(float)
            image_b = np.asarray(Image.open(io.BytesIO(b)).convert("RGB")).astype(float)
            assert np.abs(image_a - image_b).mean() < 2
        # the 16 kHz audio is the same span of the soundtrack, sample for sample
        pcm_a = np.frombuffer(seeking["audio_pcm"], np.int16).astype(float)
        pcm_b = np.frombuffer(reference["audio_pcm"], np.int16).astype(float)
        assert len(pcm_a) == len(pcm_b) == round(frames / 25 * 16000)
        assert np.corrcoef(pcm_a[800:], pcm_b[800:])[0, 1] > 0.98
        with av.open(io.BytesIO(seeking["mp4"])) as container:
            audio = container.streams.audio[0]
            assert abs(float(audio.duration * audio.time_base) - frames / 25) < 0.025


def test_one_pass_and_per_clip_cut_the_same_frames(corpus):
    records = ShotSplit(min_clip_seconds=0)(ProbeVideo()([{"uri": str(corpus["compilation"]), "video_id": "c"}]))
    one = ExtractClips(mode="one_pass", asr_audio=False)(records)
    per = ExtractClips(mode="per_clip", asr_audio=False)(records)
    assert [r["clip_num_frames"] for r in one] == [r["clip_num_frames"] for r in per] == [
        r["end_frame"] - r["start_frame"] for r in records]
    for a, b in zip(one, per):
        first_a = decord.VideoReader(io.BytesIO(a["mp4"]), width=64, height=36)[0].asnumpy().astype(float)
        first_b = decord.VideoReader(io.BytesIO(b["mp4"]), width=64, height=36)[0].asnumpy().astype(float)
        assert np.abs(first_a - first_b).mean() < 3


def test_panda_random_keyframe_is_in_the_middle_40_percent_and_repeatable(bunny_pieces):
    op = ExtractClips(keyframes="panda_random")
    for record in bunny_pieces:
        frames = record["end_frame"] - record["start_frame"]
        [index] = op.keyframe_indices(record["clip_id"], frames)
        assert 0.3 * frames - 1 <= index <= 0.7 * frames
        assert op.keyframe_indices(record["clip_id"], frames) == [index]


def _packets(data_or_path, start: int | None = None, end: int | None = None, fps: float = 25.0) -> list[bytes]:
    """Video packet payloads (decode order), optionally only those whose frame is in [start, end)."""
    source = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path
    with av.open(source) as container:
        stream = container.streams.video[0]
        out = []
        for packet in container.demux(stream):
            if not packet.size:
                continue
            frame = round(float(packet.pts * stream.time_base) * fps)
            if start is None or start <= frame < end:
                out.append(bytes(packet))
        return out


def test_stream_copy_keeps_the_source_packets_when_a_clip_is_whole_gops():
    bikes = samples.sample("bikes.mp4")  # its encoder put a keyframe on every shot cut
    clips = [r for r in ShotSplit(preset="panda70m-code")(ProbeVideo()([{"uri": bikes, "video_id": "b"}]))
             if r.get("status", "ok") == "ok"]
    assert [(r["start_frame"], r["end_frame"]) for r in clips] == [(76, 137), (137, 187), (187, 242)]
    for mode in ("one_pass", "per_clip"):
        op = ExtractClips(stream_copy=True, mode=mode, keyframes="uniform")
        out = op(clips)
        assert op.stats.counters["extract_clips.stream_copied"] == 3, mode
        for record in out:
            # the very bytes of the source's frames: nothing was decoded or re-encoded
            assert _packets(record["mp4"]) == _packets(bikes, record["start_frame"], record["end_frame"])
            assert record["clip_num_frames"] == record["end_frame"] - record["start_frame"]
            with av.open(io.BytesIO(record["mp4"])) as container:
                first = next(p for p in container.demux(container.streams.video[0]) if p.size)
                assert first.is_keyframe and container.streams.video[0].codec_context.pix_fmt == "yuv420p"
            assert len(record["keyframes"]) == 4 and record["keyframe_frames"][0] >= record["start_frame"]


def test_stream_copy_re_encodes_clips_that_do_not_start_on_a_keyframe():
    bikes = samples.sample("bikes.mp4")
    trimmed = [r for r in ShotSplit(preset="panda70m", min_clip_seconds=1.0)(
        ProbeVideo()([{"uri": bikes, "video_id": "b"}])) if r.get("status", "ok") == "ok"]
    assert trimmed  # Panda's 10% end trimming moves every start off the keyframes
    op = ExtractClips(stream_copy=True)
    out = op(trimmed)
    assert "extract_clips.stream_copied" not in op.stats.counters
    assert all(r["clip_num_frames"] == r["end_frame"] - r["start_frame"] for r in out)
    assert _packets(out[0]["mp4"]) != _packets(bikes, out[0]["start_frame"], out[0]["end_frame"])


@pytest.mark.parametrize("mode,first", [("one_pass", 0), ("one_pass", 1), ("per_clip", 0)])
def test_max_fps_resamples_clips_keeping_their_first_frame_and_audio_length(bunny_pieces, mode, first):
    """25 fps Big Buck Bunny capped at 10 fps: output frame j shows source frame
    start + ceil(2.5 j), the first source frame at or after its time."""
    records = bunny_pieces[first:]
    op = ExtractClips(mode=mode, max_fps=10, keyframes="middle")
    out = op(records)
    source = decord.VideoReader(samples.sample("bigbuckbunny.mp4"), width=160, height=90)
    for record in out:
        span = record["end_frame"] - record["start_frame"]  # 38 source frames
        expected = int((span - 1) * 0.4) + 1  # 15
        assert record["clip_num_frames"] == expected and record["clip_fps"] == 10
        with av.open(io.BytesIO(record["mp4"])) as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            assert video.frames == expected and float(video.average_rate) == pytest.approx(10, abs=0.01)
            # the audio covers the span, give or take one output frame (15 frames at 10 fps = 1.50 s, not 1.52)
            assert abs(float(audio.duration * audio.time_base) - span / 25) < 1 / 10
        clip = decord.VideoReader(io.BytesIO(record["mp4"]), width=160, height=90)
        for j in (0, 1, 2, expected - 1):
            want = record["start_frame"] + -(-5 * j // 2)
            assert _nearest_source_frame(clip[j].asnumpy(), source, want) == want
        # the keyframe is still the named source frame, at full rate
        assert record["keyframe_frames"] == [record["start_frame"] + span // 2]
        image = np.asarray(Image.open(io.BytesIO(record["keyframes"][0])).convert("RGB").resize((160, 90)))
        assert _nearest_source_frame(image, source, span // 2 + record["start_frame"]) == \
            record["start_frame"] + span // 2
    if mode == "one_pass":
        assert op.stats.counters["extract_clips.one_pass_clips"] == len(records)
    # A cap above the source's rate changes nothing.
    kept = ExtractClips(mode=mode, max_fps=30, keyframes="none", asr_audio=False)(records[:1])[0]
    assert kept["clip_num_frames"] == 38 and kept["clip_fps"] == 25

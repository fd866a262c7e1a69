"""Candidate text: cleaning (markup, URLs), the first sentence, and the checks every teacher's text passes."""
from __future__ import annotations

import pytest

from vidcurate.operators.teachers.candidates import clean_text, first_sentence
from vidcurate.operators.teachers.metadata import MetadataTeacher


def _metadata(**fields) -> dict:
    [record] = MetadataTeacher()([{"uri": "/v.mp4", "clip_id": "v_0_1", **fields}])
    return record


@pytest.mark.parametrize("raw,clean", [
    ("<p>He rides in the <a href='http://x'>passenger seat</a>.</p>", "He rides in the passenger seat."),
    ("Tom &amp; Jerry &#39;live&#39;", "Tom & Jerry 'live'"),
    ("<b>City</b> <i>bikes</i>", "City bikes"),
    ("<script>alert('<b>x</b>')</script><style>p {color: red}</style>Nice ride", "Nice ride"),
    ("<p>A dog runs</p><p>It is sunny.</p>", "A dog runs. It is sunny."),  # a block ends a sentence
    ("<div>Line one<br>line two</div>", "Line one line two"),
    ("He rides <a href='http://example.com/a-very-long", "He rides"),  # cut off mid-tag: no half tag
    ("<!-- generated -->A bike<br/>", "A bike"),
    # plain text keeps what only looks a little like markup
    ("a < b and b > c", "a < b and b > c"),
    ("AT&T and I <3 you", "AT&T and I <3 you"),
    ("see https://x.org/page for more", "see for more"),
])
def test_clean_text_strips_markup_with_a_parser_before_urls(raw, clean):
    assert clean_text(raw) == clean


def test_metadata_teacher_never_emits_half_tags_or_a_title_made_of_tags():
    record = _metadata(title="<h1><b>Passenger seat</b></h1>",
                       description="<p>He rides in the <a href='http://x'>passenger seat</a>.</p><p>Then he stops.</p>")
    texts = {c["params"]: c["text"] for c in record["candidates"]}
    assert texts == {'{"field": "title"}': "Passenger seat",
                     '{"field": "description"}': "He rides in the passenger seat."}


@pytest.mark.parametrize("text,first", [
    ("He rides. then he stops.", "He rides."),  # a sentence end before a lowercase word
    ("He rides. Then he stops.", "He rides."),
    ("Wow! then it rains? yes", "Wow!"),
    ("A dog, e.g. a poodle, runs. Then it sits.", "A dog, e.g. a poodle, runs."),
    ("Mr. Smith rides a bike. He stops.", "Mr. Smith rides a bike."),
    ("It lasts 3.5 s and ends. Then", "It lasts 3.5 s and ends."),
    ("U.S. troops march on. then rest", "U.S. troops march on."),
    ("J. Smith walks. Then", "J. Smith walks."),
    ("He waited... then left. Then", "He waited... then left."),
    ("one sentence without an end", "one sentence without an end"),
])
def test_first_sentence(text, first):
    assert first_sentence(text) == first


@pytest.mark.parametrize("field,text,reason", [
    ("description", "Buy now buy now buy now buy now buy now buy now.", "repetitive_output"),
    ("title", "2021-05-03 12:30:00", "not_text_output"),
    ("title", "Intro", "too_short_output"),
    ("description", "<p><a href='http://x'>http://x</a></p>", "empty_output"),
])
def test_metadata_text_passes_the_checks_model_output_passes(field, text, reason):
    record = _metadata(**{field: text})
    assert record["candidates"] == []
    [rejected] = record["rejected_candidates"]
    assert (rejected["teacher"], rejected["reason"]) == ("metadata_teacher", reason)
    assert rejected["text"] == text  # the source's text as it was, to see why


def test_a_rejected_metadata_field_leaves_the_good_ones_and_the_input_record_alone():
    earlier = [{"teacher": "video_teacher", "reason": "http_timeout", "detail": "", "text": "", "transient": True}]
    source = {"uri": "/v.mp4", "clip_id": "v_0_1", "title": "ok ok ok ok ok ok ok ok ok",
              "description": "A man rides a bike through the city. Then he stops.", "rejected_candidates": earlier}
    [record] = MetadataTeacher()([source])
    assert [c["text"] for c in record["candidates"]] == ["A man rides a bike through the city."]
    assert [r["reason"] for r in record["rejected_candidates"]] == ["http_timeout", "repetitive_output"]
    assert source["rejected_candidates"] == earlier and len(earlier) == 1  # not appended to in place

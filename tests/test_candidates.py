"""Candidate text: cleaning (markup, URLs), the first sentence, and the checks every teacher's text passes."""
from __future__ import annotations

import pytest

from vidcurate.operators.teachers.candidates import clean_text
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

"""How a teacher adds a caption candidate to a clip record (the CANDIDATE schema)."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser

_URL = re.compile(r"https?://\S+|www\.\S+")
_SPACE = re.compile(r"\s+")
# Text that is markup: a whole tag (<p>, </a>, <br/>), a tag with an attribute (even cut off
# at the end), a comment, or an entity (&amp; &#39;). "a < b" and "AT&T" are plain text.
_MARKUP = re.compile(r"<[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>|</[A-Za-z][A-Za-z0-9]*\s*>"
                     r"|<[A-Za-z][A-Za-z0-9]*\s+[A-Za-z_:][-\w:.]*\s*=|<!--"
                     r"|&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);")
_CUT_TAG = re.compile(r"<[A-Za-z/!][^<>]*$")  # a tag cut off at the end of the text


def clean_text(text: str | None, max_words: int = 80) -> str:
    """Strip markup (when the text is HTML), drop URLs, collapse whitespace, cap length.
    Returns "" for nothing usable. Markup goes first: a URL pattern run over HTML eats
    the attribute, the tag's end and the words after it."""
    if not text:
        return ""
    if _MARKUP.search(text):
        text = strip_markup(text)
    text = _SPACE.sub(" ", _URL.sub(" ", text)).strip()
    words = text.split(" ")
    if len(words) > max_words:
        text = " ".join(words[:max_words])
    return text if re.search(r"\w", text) else ""


class _TextOf(HTMLParser):
    """The readable text of an HTML fragment: entities decoded, tags and comments dropped,
    script/style contents dropped, block boundaries kept as sentence breaks."""

    SKIP = frozenset({"script", "style", "template", "noscript"})
    BLOCKS = frozenset({"p", "div", "li", "ul", "ol", "dd", "dt", "h1", "h2", "h3", "h4", "h5", "h6", "tr",
                        "table", "blockquote", "section", "article", "header", "footer", "pre", "hr"})

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.last = ""  # last non-space character written
        self.skipping = 0
        self.pending = ""  # the break owed before the next text: "", "space" or "sentence"

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        self._boundary(tag)

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        self._boundary(tag)

    def handle_data(self, data):
        if self.skipping:
            return
        if self.pending and data.strip():
            # "<p>A dog</p><p>A cat</p>" is two sentences; nothing is added after the last text.
            self.parts.append(". " if self.pending == "sentence" and self.last.isalnum() else " ")
            self.pending = ""
        self.parts.append(data)
        self.last = data.rstrip()[-1:] or self.last

    def _boundary(self, tag: str) -> None:
        """A block (p, div, li, ...) ends a sentence; <br> is a space; inline tags are nothing."""
        if tag in self.BLOCKS:
            self.pending = "sentence"
        elif tag == "br" and not self.pending:
            self.pending = "space"


def strip_markup(text: str) -> str:
    """The text of an HTML fragment (see :class:`_TextOf`); a tag cut off at the end (a
    truncated description) is dropped rather than kept as half a tag."""
    parser = _TextOf()
    parser.feed(_CUT_TAG.sub(" ", text))
    parser.close()
    return "".join(parser.parts)


def add_candidate(record: dict, *, teacher: str, modality: str, text: str, model_id: str | None = None,
                  model_revision: str | None = None, params: dict | None = None) -> bool:
    """Append a candidate to ``record["candidates"]`` if ``text`` is non-empty; say whether it was added."""
    if not text:
        return False
    record.setdefault("candidates", []).append({
        "teacher": teacher,
        "modality": modality,
        "text": text,
        "model_id": model_id,
        "model_revision": model_revision,
        "params": json.dumps(params or {}, sort_keys=True),
        "score": None,
    })
    return True


# Openers models put before the content ("The video shows a dog" -> "A dog").
_BOILERPLATE = re.compile(
    r"^\s*(?:in\s+)?(?:this|the)\s+(?:video|clip|image|picture|photo|frame|footage|scene)\s+"
    r"(?:shows|depicts|features|captures|displays|presents|is showing|we see|you can see)\s*:?\s*",
    re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")


def first_sentence(text: str) -> str:
    return _SENTENCE_END.split(text.strip(), maxsplit=1)[0] if text else ""


def clean_caption(text: str | None, *, first_sentence_only: bool = True, strip_boilerplate: bool = True,
                  max_words: int = 80) -> str:
    """A model's raw output as a caption: whitespace collapsed, boilerplate opener dropped, first sentence."""
    text = clean_text(text, max_words=10_000)
    if strip_boilerplate and text:
        stripped = _BOILERPLATE.sub("", text, count=1)
        if stripped != text and stripped:
            text = stripped[0].upper() + stripped[1:]
    if first_sentence_only:
        text = first_sentence(text)
    return clean_text(text, max_words=max_words)


def degenerate_reason(text: str, min_words: int) -> str | None:
    """Why ``text`` is not a usable caption (a stable reason code), or None if it is."""
    if not text:
        return "empty_output"
    words = re.findall(r"\w+", text.lower())
    if len(words) < min_words:
        return "too_short_output"
    if len(words) >= 8 and len(set(words)) / len(words) < 0.35:
        return "repetitive_output"
    letters = sum(ch.isalpha() for ch in text)
    if letters < 0.5 * len(text.replace(" ", "")):
        return "not_text_output"
    return None


def add_candidate_reject(record: dict, *, teacher: str, reason: str, detail: str = "", text: str = "",
                         transient: bool = False) -> None:
    """Record that ``teacher`` produced no usable candidate for this clip, and why."""
    record.setdefault("rejected_candidates", []).append(
        {"teacher": teacher, "reason": reason, "detail": detail[:500], "text": (text or "")[:500],
         "transient": transient})

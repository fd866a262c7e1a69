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


def add_candidate(record: dict, *, teacher: str, modality: str, text: str, min_words: int = 1,
                  raw: str | None = None, model_id: str | None = None, model_revision: str | None = None,
                  params: dict | None = None) -> bool:
    """Append ``text`` to ``record["candidates"]``; say whether it was added.

    Every teacher's text passes the same checks here (:func:`degenerate_reason`: empty,
    fewer than ``min_words`` words, repetitive, not text), whether a model wrote it or it
    is the source's own metadata, a transcript or on-screen text: one that fails is listed
    under ``rejected_candidates`` with its reason instead (``raw``: the text before
    cleaning, shown there), so no teacher can pass a degenerate text on as a caption."""
    reason = degenerate_reason(text, min_words)
    if reason:
        shown = text if raw is None else raw
        add_candidate_reject(record, teacher=teacher, reason=reason, detail=f"output {shown[:200]!r}", text=shown)
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
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\w\"'])")
# Words a period follows without ending the sentence ("Mr. Smith", "approx. two metres").
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs etc cf al approx ca fig vol inc ltd co corp dept gen col lt sgt capt rev".split())


def first_sentence(text: str) -> str:
    """The text up to its first sentence end: ``.``, ``!`` or ``?`` then a space and a word
    ("He rides. then he stops." -> "He rides."). A period after an abbreviation ("e.g. a
    dog", "Mr. Smith"), an initial ("J. Smith") or an initialism ("U.S. troops") ends no
    sentence, nor does an ellipsis before a lowercase word; "3.5 s" has no space to split at."""
    text = text.strip() if text else ""
    for end in _SENTENCE_END.finditer(text):
        before = text[:end.start()]
        if before.endswith(".") and not _ends_sentence(before.rsplit(None, 1)[-1], text[end.end()]):
            continue
        return before
    return text


def _ends_sentence(word: str, following: str) -> bool:
    """Whether the period ending ``word`` ends a sentence, given the character after the space."""
    if word.endswith("..") and following.islower():  # "He waited... then left."
        return False
    token = word.rstrip(".").lstrip("\"'([")
    if token.lower() in _ABBREVIATIONS or "." in token:  # "e.g.", "U.S.", "a.m."
        return False
    return not (len(token) == 1 and token.isalpha())


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
    """Record that ``teacher`` produced no usable candidate for this clip, and why. The list
    is copied, not appended to: a teacher's output record shares it with its input."""
    record["rejected_candidates"] = [*(record.get("rejected_candidates") or []), {
        "teacher": teacher, "reason": reason, "detail": detail[:500], "text": (text or "")[:500],
        "transient": transient}]

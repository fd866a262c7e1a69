"""The caption grammar of the synthetic world, its paraphrases, and the reader that scores any caption.

``realize(attributes, rng)`` writes one caption of a shot: a template (five word orders)
filled with a paraphrase of every slot (``"sliding left"``, ``"drifting leftward"``,
``"heading left"``...), so a correct caption is not one fixed string. Every teacher,
right or wrong, and every annotator's correction draws from the same templates and the
same paraphrase tables with the same probabilities: wording and length depend only on
the attribute values written, never on who wrote them or whether they are true.

``read_attributes(text)`` is the other direction, for scoring any caption (a teacher's, a
refined one, a human's): it looks for the words of each attribute in free text, so it
does not need the grammar's word order. An attribute mentioned with two values ("red
and blue") or not at all reads as None and is scored wrong.
"""
from __future__ import annotations

import random
import re

from vidcurate.pipelines.synth.world import COUNTS

COUNT_WORDS = {1: ("one", "a single", "a lone"), 2: ("two", "a pair of"), 3: ("three",), 4: ("four",)}
SIZE_WORDS = {"small": ("small", "tiny", "little"), "large": ("large", "big")}
SHAPE_WORDS = {"circle": (("circle", "circles"), ("disc", "discs")), "square": (("square", "squares"),
               ("block", "blocks")), "triangle": (("triangle", "triangles"),), "star": (("star", "stars"),)}
MOVEMENT_WORDS = {
    "still": ("standing still", "staying in place", "not moving", "motionless", "at rest", "holding still"),
    "left": ("moving to the left", "sliding left", "drifting leftward", "travelling to the left", "heading left"),
    "right": ("moving to the right", "sliding right", "drifting rightward", "travelling to the right",
              "heading right"),
    "up": ("moving up", "rising", "drifting upward", "floating up", "moving upward"),
    "down": ("moving down", "sinking", "falling", "dropping downward", "drifting down"),
}
BACKGROUND_WORDS = {
    **{plain: (f"on a plain {plain} background", f"against a flat {plain} backdrop", f"over a {plain} background")
       for plain in ("grey", "black", "white")},
    "street": ("over footage of a street with bicycles", "on top of street footage",
               "against a street scene with parked bikes"),
    "car": ("over footage of a man in a car", "against a video of a car interior",
            "on top of footage filmed in a car"),
}
# The vague teacher's stand-ins for count + colour + shape: about as many words.
VAGUE_WORDS = (("some", "a few", "several"), ("colourful", "bright", "coloured"), ("shapes", "objects", "things"))
TEMPLATES = (
    "{count} {size} {colour} {shape} {movement} {background}",
    "{background}, {count} {size} {colour} {shape} {be} {movement}",
    "there {be} {count} {size} {colour} {shape} {movement} {background}",
    "{count} {colour} {shape}, {size} in size, {movement} {background}",
    "a shot of {count} {size} {colour} {shape} {movement} {background}",
)


def realize(attributes: dict, rng: random.Random, vague: bool = False) -> str:
    """One caption of ``attributes`` (a Shot's: shape, colour, count, size, movement, background).
    ``vague``: count, colour and shape are replaced by generic words (a caption by omission)."""
    template = rng.choice(TEMPLATES)
    count = attributes["count"]
    if vague:
        count_text, colour, shape = (rng.choice(words) for words in VAGUE_WORDS)
        plural = True
    else:
        count_text, colour = rng.choice(COUNT_WORDS[count]), attributes["colour"]
        shape = rng.choice(SHAPE_WORDS[attributes["shape"]])[0 if count == 1 else 1]
        plural = count != 1
    text = template.format(count=count_text, size=rng.choice(SIZE_WORDS[attributes["size"]]), colour=colour,
                           shape=shape, be="are" if plural else "is",
                           movement=rng.choice(MOVEMENT_WORDS[attributes["movement"]]),
                           background=rng.choice(BACKGROUND_WORDS[attributes["background"]]))
    return text[0].upper() + text[1:] + "."


# ---- reading any caption back -----------------------------------------------------------------
_NUMBERS = {"one": 1, "single": 1, "lone": 1, "two": 2, "pair": 2, "couple": 2, "three": 3, "four": 4}
_SIZES = {"small": "small", "tiny": "small", "little": "small", "large": "large", "big": "large", "huge": "large"}
_SHAPES = {word: shape for shape, forms in SHAPE_WORDS.items() for pair in forms for word in pair}
_SINGULAR = {pair[0] for forms in SHAPE_WORDS.values() for pair in forms}
_COLOURS = {"red", "orange", "yellow", "green", "blue", "purple"}
_BACKGROUNDS = {"grey": "grey", "gray": "grey", "black": "black", "white": "white", "street": "street",
                "bicycles": "street", "bikes": "street", "car": "car"}
_STILL = re.compile(r"\b(?:still|in place|not moving|motionless|at rest|stationary|static)\b")
_DIRECTIONS = {"left": "left", "leftward": "left", "leftwards": "left", "right": "right", "rightward": "right",
               "rightwards": "right", "up": "up", "upward": "up", "upwards": "up", "rising": "up", "rises": "up",
               "down": "down", "downward": "down", "downwards": "down", "sinking": "down", "sinks": "down",
               "falling": "down", "falls": "down", "dropping": "down"}
_MOVING = {"moving", "moves", "sliding", "slides", "drifting", "drifts", "travelling", "traveling", "heading",
           "floating", "gliding"}


def _one(values: set):
    return next(iter(values)) if len(values) == 1 else None


def read_attributes(text: str) -> dict:
    """The attribute values ``text`` states (ATTRIBUTES), each None when absent or ambiguous."""
    lowered = (text or "").lower()
    words = re.findall(r"[a-z]+", lowered)
    shapes = {_SHAPES[w] for w in words if w in _SHAPES}
    numbers = {_NUMBERS[w] for w in words if w in _NUMBERS}
    if not numbers and words and all(w in _SINGULAR for w in words if w in _SHAPES) and \
            any(w in _SHAPES for w in words):
        numbers = {1}  # "a red circle"
    still = bool(_STILL.search(lowered))
    unnegated = re.findall(r"[a-z]+", lowered.replace("not moving", ""))
    directions = {_DIRECTIONS[w] for w in unnegated if w in _DIRECTIONS}
    moving = bool(directions) or any(w in _MOVING for w in unnegated)
    if still and not moving:
        motion, direction = "still", "none"
    elif moving and not still:
        motion, direction = "moving", _one(directions)
    else:
        motion = direction = None
    sizes = {_SIZES[w] for w in words if w in _SIZES}
    return {"shape": _one(shapes), "colour": _one({w for w in words if w in _COLOURS}),
            "count": _one(numbers & set(COUNTS)), "size": _one(sizes), "motion": motion, "direction": direction,
            "background": _one({_BACKGROUNDS[w] for w in words if w in _BACKGROUNDS})}


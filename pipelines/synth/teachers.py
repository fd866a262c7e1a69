"""Simulated caption teachers, each wrong on about a share R of the clips, each in its own way.

Like real teachers (Panda-70M, section 3.2), each has an error profile:

    colour_blind       confuses colours: red<->orange, yellow<->green, blue<->purple
    miscounter         says another count (uniform over the other three)
    direction_flipper  gets the movement wrong: mostly the opposite direction, sometimes still/moving
    hallucinator       names an object that is not there (another shape)
    vague              generic words instead of count, colour and shape (wrong by omission)
                       on R/2 of the clips; its other captions get the size wrong on R of them
    metadata           the source video's title: describes its poster shot, so it is wrong on
                       the source's other shots (modality M; the others are V)

Why no text gives the answer away: an error replaces one attribute value through a doubly
stochastic channel over uniformly drawn values (a permutation for colours, uniform for
counts and shapes, and for the five movements: still -> each direction 1/4; a direction ->
its opposite 1/2, each perpendicular 1/8, still 1/4). Then p(stated value) is the same for
right and wrong candidates, p(wrong | text, teacher) = R for every text, and the text is
realized by the same grammar whoever wrote it (captions.py).

The vague teacher is the exception, by design: an omission is visible in the words (as a
real vague caption's is), so its captions that are not vague must still be wrong on R of
the clips, by a hidden error (size), or "vague teacher + specific words" would be a sure
pick (a first version of this world gave a text-only picker 1 - R^2 instead of 1 - R).
The price is its overall error rate, R/2 + (1 - R/2) R (0.28 at R = 0.2, 0.52 at 0.4):
the name predicts errors a little, but not once the text is seen. What is left for a
text-only picker is avoiding visibly vague captions: (1 - R) (R/2) / 6, 1.3 points at
R = 0.2 and 2 at 0.4. Agreement between candidates is a signal, on purpose: it is the
consensus baseline.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from vidcurate.pipelines.synth.captions import realize
from vidcurate.pipelines.synth.world import COUNTS, SHAPES, Shot, Source

COLOUR_CONFUSION = {"red": "orange", "orange": "red", "yellow": "green", "green": "yellow", "blue": "purple",
                    "purple": "blue"}
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def _movement_error(movement: str, rng: random.Random) -> str:
    if movement == "still":
        return rng.choice(tuple(OPPOSITE))
    point = rng.random()
    if point < 0.5:
        return OPPOSITE[movement]
    if point < 0.75:
        return "still"
    return rng.choice([d for d in OPPOSITE if d not in (movement, OPPOSITE[movement])])


def _stated(shot: Shot) -> dict:
    return {"shape": shot.shape, "colour": shot.colour, "count": shot.count, "size": shot.size,
            "movement": shot.movement, "background": shot.background}


def _substitute(teacher: str, stated: dict, rng: random.Random) -> dict:
    if teacher == "colour_blind":
        return {**stated, "colour": COLOUR_CONFUSION[stated["colour"]]}
    if teacher == "miscounter":
        return {**stated, "count": rng.choice([c for c in COUNTS if c != stated["count"]])}
    if teacher == "direction_flipper":
        return {**stated, "movement": _movement_error(stated["movement"], rng)}
    if teacher == "hallucinator":
        return {**stated, "shape": rng.choice([s for s in SHAPES if s != stated["shape"]])}
    if teacher == "vague":
        return {**stated, "size": "small" if stated["size"] == "large" else "large"}
    raise ValueError(teacher)


@dataclass(frozen=True)
class Teacher:
    name: str
    modality: str
    profile: str  # what it gets wrong, for the card and the docs


TEACHERS = (
    Teacher("colour_blind", "V", "confuses colours"),
    Teacher("miscounter", "V", "miscounts the objects"),
    Teacher("direction_flipper", "V", "gets the direction of movement wrong"),
    Teacher("hallucinator", "V", "names an object that is not there"),
    Teacher("vague", "V", "generic words instead of count, colour and shape; else wrong sizes"),
    Teacher("metadata", "M", "the source's title: describes one shot of the source video"),
)


def title_of(source: Source, seed: int) -> str:
    """The source's title: a caption of its poster shot (what a metadata teacher passes on)."""
    return realize(_stated(source.shots[source.poster]), random.Random(f"vidcurate-synth-title:{seed}:{source.uri}"))


def errors_of(truth: Shot, stated: dict, vague: bool = False, other_shot: bool = False) -> list[str]:
    """The error types of a candidate stating ``stated`` about ``truth``: ``wrong_<attribute>``
    for every attribute stated wrongly, ``missing_<attribute>`` for every one left out; [] = faithful."""
    told = Shot(**stated, frames=truth.frames, start_frame=truth.start_frame).attributes
    errors = [f"missing_{a}" for a in ("shape", "colour", "count")] if vague else []
    errors += [f"wrong_{a}" for a, value in truth.attributes.items()
               if told[a] != value and not (vague and a in ("shape", "colour", "count"))]
    return sorted(errors + (["other_shot"] if other_shot and errors else []))


def candidates_for(source: Source, index: int, seed: int, noise: float) -> list[dict]:
    """Every teacher's candidate for shot ``index`` of ``source``: {teacher, modality, text, errors}.

    Each teacher draws from its own ``random.Random`` seeded by (seed, clip, teacher): the
    same clip gets the same candidates whatever else is generated."""
    shot = source.shots[index]
    clip_id = source.clip_id(index)
    out = []
    for teacher in TEACHERS:
        rng = random.Random(f"vidcurate-synth-teacher:{seed}:{clip_id}:{teacher.name}")
        if teacher.name == "metadata":
            poster = source.shots[source.poster]
            out.append({"teacher": teacher.name, "modality": teacher.modality, "text": title_of(source, seed),
                        "errors": errors_of(shot, _stated(poster), other_shot=index != source.poster)})
            continue
        stated = _stated(shot)
        # The vague teacher omits on R/2 of the clips; its other captions are wrong on R, like anyone's.
        vague = teacher.name == "vague" and rng.random() < noise / 2
        if not vague and rng.random() < noise:
            stated = _substitute(teacher.name, stated, rng)
        out.append({"teacher": teacher.name, "modality": teacher.modality, "text": realize(stated, rng, vague),
                    "errors": errors_of(shot, stated, vague)})
    return out

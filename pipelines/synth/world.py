"""The synthetic world: source videos made of shots whose true content is known exactly.

A shot shows ``count`` identical objects (``shape``, ``colour``, ``size``) that either
stand still or all move one way, over a ``background`` (a plain colour or real footage).
Every attribute is drawn uniformly and independently. That is what keeps the world
honest: a teacher's error is a substitution of one attribute value by another through a
doubly stochastic channel (see teachers.py), so a wrong caption has the same marginal
distribution of words as a right one and no single caption text says whether it is wrong.

A source video holds 1, 2 or 3 shots. The metadata-like teacher describes a source by
one of its shots (its "poster" shot, as a title does), so it is wrong on the others: the
share of multi-shot sources is set from the noise R so that this teacher, too, is wrong on
about R of the clips (p(2 shots) = p(3 shots) = R / (3 (1 - R)), giving E[k-1]/E[k] = R),
which caps R at 0.6. At R = 0 every source is a single shot.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from vidcurate.schemas.records import clip_id_for, video_id_for

SHAPES = ("circle", "square", "triangle", "star")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple")
COUNTS = (1, 2, 3, 4)
SIZES = ("small", "large")
# One joint attribute: "still" is as likely as each direction, so the direction teacher's
# channel over these five values can be doubly stochastic (teachers.py).
MOVEMENTS = ("still", "left", "right", "up", "down")
BACKGROUNDS = ("grey", "black", "white", "street", "car")  # plain colours, then real footage
# The attributes a caption is scored on; motion and direction are read off the movement.
ATTRIBUTES = ("shape", "colour", "count", "size", "motion", "direction", "background")

MAX_NOISE = 0.6
FPS = 10
WIDTH, HEIGHT = 160, 120
MIN_FRAMES, MAX_FRAMES = 30, 40  # 3-4 s a shot


@dataclass(frozen=True)
class Shot:
    """One shot of a source video: its true attributes and where it lies in the source."""
    shape: str
    colour: str
    count: int
    size: str
    movement: str
    background: str
    frames: int
    start_frame: int  # in the source video

    @property
    def attributes(self) -> dict:
        """What a caption is judged on (ATTRIBUTES), plus ``movement`` as drawn."""
        moving = self.movement != "still"
        return {"shape": self.shape, "colour": self.colour, "count": self.count, "size": self.size,
                "motion": "moving" if moving else "still", "direction": self.movement if moving else "none",
                "background": self.background}


@dataclass
class Source:
    """A source video: its uri and id (as a manifest would give them), its shots, and the
    shot its metadata (title) describes."""
    number: int
    uri: str
    video_id: str
    shots: list[Shot] = field(default_factory=list)
    poster: int = 0

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.shots)

    def clip_id(self, index: int) -> str:
        shot = self.shots[index]
        return clip_id_for(self.video_id, shot.start_frame / FPS, (shot.start_frame + shot.frames) / FPS)


def multi_shot_share(noise: float) -> float:
    """p(2 shots) = p(3 shots): the metadata teacher is then wrong on a share ``noise`` of the clips."""
    if not 0 <= noise <= MAX_NOISE:
        raise ValueError(f"noise must be between 0 and {MAX_NOISE}, got {noise}")
    return noise / (3 * (1 - noise))


def draw_shot(rng: random.Random, start_frame: int, previous: str | None) -> Shot:
    """A shot with uniform attributes. A shot's background differs from the one before it, so
    every cut in a source is a visible change (the splitter's ground truth)."""
    background = rng.choice(BACKGROUNDS)
    while background == previous:
        background = rng.choice(BACKGROUNDS)
    return Shot(shape=rng.choice(SHAPES), colour=rng.choice(COLOURS), count=rng.choice(COUNTS),
                size=rng.choice(SIZES), movement=rng.choice(MOVEMENTS), background=background,
                frames=rng.randint(MIN_FRAMES, MAX_FRAMES), start_frame=start_frame)


def draw_world(clips: int, seed: int, noise: float) -> list[Source]:
    """Source videos holding ``clips`` shots in all (the last source may be cut short).

    The same (clips, seed, noise) always gives the same world: one ``random.Random``
    seeded by a string, drawn from in a fixed order."""
    if clips < 1:
        raise ValueError(f"clips must be >= 1, got {clips}")
    share = multi_shot_share(noise)
    rng = random.Random(f"vidcurate-synth-world:{seed}:{noise}")
    sources: list[Source] = []
    made = 0
    while made < clips:
        point = rng.random()
        shots = 3 if point < share else 2 if point < 2 * share else 1
        shots = min(shots, clips - made)
        uri = f"synth://seed-{seed}/source-{len(sources):06d}.mp4"
        source = Source(number=len(sources), uri=uri, video_id=video_id_for(uri))
        start, previous = 0, None
        for _ in range(shots):
            shot = draw_shot(rng, start, previous)
            source.shots.append(shot)
            start, previous = start + shot.frames, shot.background
        source.poster = rng.randrange(shots)
        sources.append(source)
        made += shots
    return sources

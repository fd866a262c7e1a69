"""Counters and timers, one interface for every operator and runner, merged at the end."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable


@dataclass
class Stats:
    """Counters (integers) and timers (seconds), keyed by ``"<scope>.<name>"`` strings."""

    counters: Counter = field(default_factory=Counter)
    seconds: dict = field(default_factory=dict)

    def incr(self, key: str, n: int = 1) -> None:
        self.counters[key] += n

    def add_time(self, key: str, seconds: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds

    @classmethod
    def total(cls, parts: Iterable["Stats"]) -> "Stats":
        """The sum of several stats (a runner's stages, a fused stage's operators, ...)."""
        out = cls()
        for part in parts:
            out.merge(part)
        return out

    def merge(self, other: "Stats") -> "Stats":
        self.counters.update(other.counters)
        for key, value in other.seconds.items():
            self.add_time(key, value)
        return self

    def since(self, before: "Stats") -> "Stats":
        """What was counted and timed after ``before`` (an earlier copy of these stats)."""
        out = Stats()
        out.counters.update({k: v - before.counters.get(k, 0) for k, v in self.counters.items()
                             if v != before.counters.get(k, 0)})
        out.seconds.update({k: v - before.seconds.get(k, 0.0) for k, v in self.seconds.items()
                            if v != before.seconds.get(k, 0.0)})
        return out

    def copy(self) -> "Stats":
        return Stats(Counter(self.counters), dict(self.seconds))

    def to_dict(self) -> dict:
        return {
            "counters": dict(sorted(self.counters.items())),
            "seconds": {k: round(v, 4) for k, v in sorted(self.seconds.items())},
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Stats":
        return cls(Counter(data.get("counters", {})), dict(data.get("seconds", {})))

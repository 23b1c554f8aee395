"""A clock the tests move by hand: the limiter's and dispatcher's waits become instant and exact."""

from __future__ import annotations

from dataclasses import dataclass, field

T0 = 1_800_000_000.0


@dataclass
class FakeClock:
    now: float = T0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds

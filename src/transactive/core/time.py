"""Market intervals: explicit UTC start + duration, single or as a regular sequence."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from transactive.errors import InvalidInputError


def as_utc(t: datetime | str | pd.Timestamp) -> pd.Timestamp:
    """A timezone-aware UTC timestamp. Naive input is rejected: a market needs to know when."""
    ts = pd.Timestamp(t)
    if ts.tzinfo is None:
        raise InvalidInputError(f"time {t!s} has no time zone; give it in UTC (e.g. '…Z')")
    return ts.tz_convert(UTC)


@dataclass(frozen=True, slots=True)
class Interval:
    """One market interval: ``[start, start + duration)``, start in UTC."""

    start: pd.Timestamp
    duration: timedelta

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", as_utc(self.start))
        if self.duration <= timedelta(0):
            raise InvalidInputError(f"interval duration must be positive, not {self.duration}")

    @property
    def end(self) -> pd.Timestamp:
        """End of the interval (exclusive), UTC."""
        return self.start + self.duration

    @property
    def hours(self) -> float:
        """Duration in hours (to turn kW into kWh and $/h into $)."""
        return self.duration / timedelta(hours=1)

    def __str__(self) -> str:
        return f"{self.start.isoformat()}/{self.duration}"


@dataclass(frozen=True, slots=True)
class Intervals:
    """A regular sequence of ``n`` market intervals of equal ``duration`` from ``start``."""

    start: pd.Timestamp
    duration: timedelta
    n: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", as_utc(self.start))
        if self.duration <= timedelta(0):
            raise InvalidInputError(f"interval duration must be positive, not {self.duration}")
        if self.n < 0:
            raise InvalidInputError(f"number of intervals must be ≥ 0, not {self.n}")

    @classmethod
    def between(cls, start: datetime | str, end: datetime | str, duration: timedelta) -> Intervals:
        """The intervals covering ``[start, end)``; the duration must divide the period."""
        s, e = as_utc(start), as_utc(end)
        if e <= s:
            raise InvalidInputError(f"period end {e} is not after start {s}")
        n, rest = divmod(e - s, duration)
        if rest:
            raise InvalidInputError(f"interval {duration} does not divide the period {s} – {e}")
        return cls(s, duration, int(n))

    @property
    def hours(self) -> float:
        """Duration of each interval in hours."""
        return self.duration / timedelta(hours=1)

    @property
    def starts(self) -> pd.DatetimeIndex:
        """Start of every interval, UTC."""
        return pd.date_range(self.start, periods=self.n, freq=self.duration)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Interval:
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return Interval(self.start + (i % self.n) * self.duration, self.duration)

    def index_of(self, times: pd.DatetimeIndex | np.ndarray) -> np.ndarray:
        """Index of the interval containing each UTC time; −1 outside the sequence."""
        t = pd.DatetimeIndex(times)
        if t.tz is None:
            raise InvalidInputError("times have no time zone; give them in UTC")
        k = np.asarray((t.tz_convert(UTC) - self.start) // self.duration, dtype=np.int64)
        return np.where((k >= 0) & (k < self.n), k, -1)

"""Market time: the wall clock, or an accelerated clock for the live demo and tests.

Every module asks the service's :class:`Clock` for "now" (tz-aware UTC); none calls
``datetime.now`` itself, so a demo can run one 15-minute interval per wall-clock second.

An accelerated clock maps wall time to market time linearly: market time is ``start`` at
the wall instant ``epoch`` (UNIX seconds) and runs ``speed`` market seconds per wall
second. Without an ``epoch`` the clock starts when it is created (each start of the
service begins at ``start`` again); with a fixed ``epoch`` every process that builds the
same clock reads the same market time, so a service restarted after ``kill -9`` goes on
where the market was (and gates that passed while it was down are closed at start-up).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass
class Clock:
    """Market time = ``start`` + (wall seconds since ``epoch``) × ``speed``.

    ``start=None``: the wall clock (speed 1, no epoch). ``epoch=None``: the wall instant
    the clock is created (measured on the monotonic clock); otherwise UNIX seconds.
    """

    start: datetime | None = None
    speed: float = 1.0
    epoch: float | None = None
    _t0: float = field(default_factory=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"clock speed must be a positive number, not {self.speed!r}")
        if self.start is None and self.speed != 1.0:
            raise ValueError("an accelerated clock needs a start time")
        if self.start is None and self.epoch is not None:
            raise ValueError("a clock epoch needs a start time")
        if self.epoch is not None and not math.isfinite(self.epoch):
            raise ValueError(f"clock epoch must be finite UNIX seconds, not {self.epoch!r}")
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError("clock start must be tz-aware")

    def now(self) -> datetime:
        """Current market time, UTC."""
        if self.start is None:
            return datetime.now(UTC)
        if self.epoch is None:
            wall = time.monotonic() - self._t0
        else:
            wall = time.time() - self.epoch
        return (self.start + timedelta(seconds=wall * self.speed)).astimezone(UTC)

    def wall_seconds(self, market_seconds: float) -> float:
        """Wall-clock seconds that ``market_seconds`` of market time take."""
        return market_seconds / self.speed

    def wall_time(self, market: datetime) -> float:
        """UNIX seconds at which the market time is (or was) ``market`` (tz-aware); for a
        clock without an epoch, counted from its creation."""
        if self.start is None:
            return market.timestamp()
        epoch = time.time() - (time.monotonic() - self._t0) if self.epoch is None else self.epoch
        return epoch + (market - self.start).total_seconds() / self.speed

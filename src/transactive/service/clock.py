"""Market time: the wall clock, or an accelerated clock for the live demo and tests.

Every module asks the service's :class:`Clock` for "now" (tz-aware UTC); none calls
``datetime.now`` itself, so a demo can run one 15-minute interval per wall-clock second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass
class Clock:
    """Market time = ``start`` + (wall seconds since creation) × ``speed``.

    With ``start=None`` it is the wall clock (speed must be 1).
    """

    start: datetime | None = None
    speed: float = 1.0
    _t0: float = field(default_factory=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        if self.start is None and self.speed != 1.0:
            raise ValueError("an accelerated clock needs a start time")
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError("clock start must be tz-aware")

    def now(self) -> datetime:
        """Current market time, UTC."""
        if self.start is None:
            return datetime.now(UTC)
        elapsed = (time.monotonic() - self._t0) * self.speed
        return (self.start + timedelta(seconds=elapsed)).astimezone(UTC)

    def wall_seconds(self, market_seconds: float) -> float:
        """Wall-clock seconds that ``market_seconds`` of market time take."""
        return market_seconds / self.speed

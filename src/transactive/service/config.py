"""The service configuration: one validated schema, built once at the edge (CLI or tests)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

DEFAULT_DB = "sqlite:///transactive.db"


class Limits(BaseModel):
    """Per-client request limits (429 with Retry-After beyond them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests_per_s: float = Field(default=200.0, gt=0, description="Sustained requests per second.")
    burst: int = Field(default=400, ge=1, description="Requests allowed in a burst above the rate.")
    max_body_bytes: int = Field(
        default=8_000_000, ge=1024, description="Largest request body, bytes."
    )
    max_batch_bids: int = Field(
        default=100_000, ge=1, description="Most bids in one batch request."
    )


class ServiceConfig(BaseModel):
    """Everything the service needs; passed down as a typed value, never re-defaulted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    db_url: str = Field(
        default=DEFAULT_DB, description="SQLAlchemy URL (sqlite:///FILE or postgresql://…)."
    )
    scenario: Path | None = Field(
        default=None,
        description="Scenario TOML whose area(s) the market serves (default: built-in).",
    )
    token_ttl_s: int = Field(
        default=3600, ge=60, le=86_400, description="Access-token lifetime, s."
    )
    issuer: str = Field(default="transactive", description="JWT 'iss' claim.")
    limits: Limits = Field(default_factory=Limits)
    clock_start: AwareDatetime | None = Field(
        default=None,
        description="Market time at start-up for an accelerated clock (None: wall clock).",
    )
    clock_speed: float = Field(
        default=1.0,
        gt=0,
        allow_inf_nan=False,
        description="Market seconds per wall-clock second (needs clock_start unless 1).",
    )
    clock_epoch: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="Wall time (UNIX s) at which market time is clock_start; None: the "
        "service's start-up. Fixed, a restarted service continues the same market time.",
    )
    scheduler: bool = Field(
        default=True, description="Run the gate-closure scheduler in the process."
    )
    sessions_ahead: int = Field(
        default=8, ge=1, le=10_000, description="Market intervals opened ahead of the clock."
    )
    gate_closure_s: int = Field(
        default=300,
        ge=0,
        description="Gate closure, s before the interval starts (real-time stage).",
    )

    stages: tuple[Literal["day-ahead", "real-time", "flexibility"], ...] = Field(
        default=("real-time",),
        description="Market stages the scheduler opens sessions for (day-ahead: auction, "
        "gate closure 12:00 local the day before; real-time, flexibility: network clearing).",
    )
    substation_price: float = Field(
        default=0.30,
        allow_inf_nan=False,
        description="Price of energy at the substation, currency/kWh: the slack price of "
        "network clearing and the substation's bid in the auction.",
    )
    substation_kw: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="Auction: kW the substation sells (and buys) at substation_price; None = "
        "the substation transformers' rating, 0 = no substation bid (local auction only).",
    )

    @model_validator(mode="after")
    def _clock_needs_start(self) -> ServiceConfig:
        if self.clock_start is None and self.clock_speed != 1.0:
            raise ValueError("clock_speed other than 1 needs clock_start")
        if self.clock_start is None and self.clock_epoch is not None:
            raise ValueError("clock_epoch needs clock_start")
        return self

    def at(self, when: datetime) -> ServiceConfig:
        """A copy whose accelerated clock starts at ``when``."""
        return self.model_copy(update={"clock_start": when})

"""Bid request and response schemas, and the vectorised checks a bid file gets.

A bid is a *block* (``side`` + ``quantity_kw`` kW ≥ 0 at ``price`` $/kWh, ``null`` price =
price-taking: a buy at the cap, a sell at the floor) or a *curve* (``points`` of
``[price $/kWh, kW]``, + buy / − sell, prices non-decreasing and kW non-increasing as in
:mod:`transactive.core.curves`). :func:`check_bids` applies the rules of
:func:`transactive.market.bidfile.read_bids` to a whole batch at once (numpy over the
columns) and returns every problem as a :class:`~transactive.service.problems.FieldError`
located ``[*prefix, index, field]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from transactive.service.problems import FieldError

BidId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
PartyId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Name = Annotated[str, Field(min_length=1, max_length=100)]
MAX_POINTS = 1000


class CurveIn(BaseModel):
    """A bid curve: ``[price $/kWh, kW]`` breakpoints (+ buy, − sell)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    points: Annotated[list[tuple[float, float]], Field(min_length=1, max_length=MAX_POINTS)]


class BidIn(BaseModel):
    """One bid: exactly one of (``side`` + ``quantity_kw``) or ``curve``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    bid_id: BidId = Field(description="Your id, unique per party within the session.")
    party_id: PartyId | None = Field(
        default=None, description="Whose bid (default: the caller; aggregators: a member)."
    )
    resource_id: Name | None = Field(default=None, description="The party's resource.")
    bus: Name | None = Field(default=None, description="Feeder bus (default: the resource's).")
    side: Literal["buy", "sell"] | None = None
    price: float | None = Field(default=None, description="$/kWh; null = price-taking.")
    quantity_kw: float | None = Field(default=None, description="kW ≥ 0.")
    curve: CurveIn | None = None


class BidBatch(BaseModel):
    """Many bids of one session, accepted all together or not at all."""

    model_config = ConfigDict(extra="forbid")
    bids: Annotated[list[BidIn], Field(min_length=1)]


class BidOut(BaseModel):
    """An accepted bid; ``id`` is ``{session_id}:{party_id}:{bid_id}``."""

    id: str
    session_id: str
    party_id: str
    bid_id: str
    seq: int
    side: str | None
    price: float | None
    quantity_kw: float | None
    curve: dict[str, Any] | None
    bus: str | None
    resource_id: str | None
    created_at: datetime
    journal_index: int | None


class BatchOut(BaseModel):
    """The result of a batch: how many, their public ids and their journal leaf range."""

    accepted: int
    ids: list[str]
    journal_first: int
    journal_last: int


def public_id(session_id: str, party_id: str, bid_id: str) -> str:
    """The bid's public id ``{session_id}:{party_id}:{bid_id}``."""
    return f"{session_id}:{party_id}:{bid_id}"


def _col(values: Sequence[float | None]) -> NDArray[np.float64]:
    """Floats with None as NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


Problem = tuple[int, str, str, str]
"""One rule violation: (bid index, field, message, error type)."""


def check_bids(
    bids: Sequence[BidIn],
    parties: Sequence[str],
    floor: float,
    cap: float,
    buses: frozenset[str],
    *,
    prefix: Sequence[str | int] = ("body", "bids"),
    indexed: bool = True,
    max_id_len: int | None = None,
    session_id: str = "",
) -> list[FieldError]:
    """Every rule violation of ``bids`` (of ``parties``, resolved), sorted by index; empty
    when all are valid. ``indexed=False`` leaves the index out of the location (one bid)."""
    found = bid_problems(
        bids, parties, floor, cap, buses, max_id_len=max_id_len, session_id=session_id
    )
    return [
        FieldError(loc=[*prefix, *([i] if indexed else []), field], msg=msg, type=kind)
        for i, field, msg, kind in found
    ]


def bid_problems(
    bids: Sequence[BidIn],
    parties: Sequence[str],
    floor: float,
    cap: float,
    buses: frozenset[str],
    *,
    max_id_len: int | None = None,
    session_id: str = "",
    repeats: bool = True,
) -> list[Problem]:
    """The rule violations of :func:`check_bids` as ``(index, field, msg, type)``, sorted by
    index (then rule). ``repeats=False`` skips the repeated-``bid_id`` rule (the intake
    writer checks independent requests together and answers repeats itself)."""
    n = len(bids)
    errors: list[tuple[int, int, str, str, str]] = []  # (index, order, field, msg, type)

    def fail(mask: NDArray[np.bool_], field: str, msg: str, kind: str = "value_error") -> None:
        if mask.any():
            for i in np.flatnonzero(mask).tolist():
                errors.append((i, len(errors), field, msg, kind))

    side = np.array([b.side or "" for b in bids], dtype=object)
    qty = _col([b.quantity_kw for b in bids])
    price = _col([b.price for b in bids])
    has_curve = np.array([b.curve is not None for b in bids], dtype=bool)
    has_side, has_qty = side != "", ~np.isnan(qty)
    block = has_side | has_qty
    fail(block & has_curve, "curve", "give either side + quantity_kw or a curve, not both")
    fail(~block & ~has_curve, "side", "give side + quantity_kw, or a curve", "missing")
    fail(has_qty & ~has_side & ~has_curve, "side", "a block bid needs 'buy' or 'sell'", "missing")
    fail(has_side & ~has_qty & ~has_curve, "quantity_kw", "a block bid needs kW ≥ 0", "missing")
    fail(has_curve & ~np.isnan(price), "price", "a curve bid has its prices in its points")
    fail(has_qty & (qty < 0), "quantity_kw", "negative kW (quantities are ≥ 0; use side=sell)")
    outside = ~np.isnan(price) & ((price < floor) | (price > cap))
    fail(outside, "price", f"outside [{floor}, {cap}] $/kWh")

    if has_curve.any():  # all points flat (CSR): one pass over every breakpoint
        pts = [np.asarray(b.curve.points, dtype=np.float64) for b in bids if b.curve is not None]
        owner = np.flatnonzero(has_curve)
        counts = np.array([len(p) for p in pts], dtype=np.int64)
        flat = np.concatenate(pts).reshape(-1, 2)
        of = np.repeat(owner, counts)
        bad_price = np.zeros(n, dtype=bool)
        np.logical_or.at(bad_price, of, (flat[:, 0] < floor) | (flat[:, 0] > cap))
        fail(bad_price, "curve", f"a point's price is outside [{floor}, {cap}] $/kWh")
        same = of[1:] == of[:-1]  # consecutive points of one curve
        down = np.zeros(n, dtype=bool)
        np.logical_or.at(down, of[1:], same & (np.diff(flat[:, 0]) < 0))
        fail(down, "curve", "point prices must be non-decreasing")
        up = np.zeros(n, dtype=bool)
        np.logical_or.at(up, of[1:], same & (np.diff(flat[:, 1]) > 0))
        fail(up, "curve", "point kW must be non-increasing in price (+ buy, − sell)")

    # set membership in Python: np.isin sorts the area's buses on every call
    unknown = np.array([b.bus is not None and b.bus not in buses for b in bids], dtype=bool)
    fail(unknown, "bus", "unknown bus in the session's area")

    if repeats:
        keys = np.array([f"{p}\x00{b.bid_id}" for p, b in zip(parties, bids, strict=True)])
        order = np.argsort(keys, kind="stable")
        again = keys[order][1:] == keys[order][:-1]
        dup = np.zeros(n, dtype=bool)
        dup[order[1:][again]] = True  # every repeat after the first
        fail(dup, "bid_id", "duplicate bid_id of this party in the request")
    if max_id_len is not None:
        extra = len(session_id) + 2  # the public id is "{session}:{party}:{bid_id}"
        pairs = zip(parties, bids, strict=True)
        lens = np.array([extra + len(p) + len(b.bid_id) for p, b in pairs], dtype=np.int64)
        fail(lens > max_id_len, "bid_id", f"the public id would exceed {max_id_len} characters")

    errors.sort()
    return [(i, field, msg, kind) for i, _, field, msg, kind in errors]

"""Core language of the platform: market intervals, units and bid curves."""

from transactive.core.curves import (
    Curves,
    aggregate,
    block_curves,
    clip,
    concat,
    curves_from_arrays,
    dispatch,
    integrate,
    price_at,
    price_interval,
    quantity_at,
    ramp_curves,
    split_sides,
)
from transactive.core.time import Interval, Intervals, as_utc

__all__ = [
    "Curves",
    "Interval",
    "Intervals",
    "aggregate",
    "as_utc",
    "block_curves",
    "clip",
    "concat",
    "curves_from_arrays",
    "dispatch",
    "integrate",
    "price_at",
    "price_interval",
    "quantity_at",
    "ramp_curves",
    "split_sides",
]

"""Core language of the platform: market intervals, units and bid curves.

The names below are loaded on first use, so importing a light submodule (e.g.
``transactive.core.units``) does not import numpy's and pandas' heavier users.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_SOURCES = {
    **dict.fromkeys(
        (
            "Curves", "aggregate", "block_curves", "clip", "concat", "curves_from_arrays",
            "dispatch", "integrate", "price_at", "price_interval", "quantity_at", "ramp_curves",
            "split_sides",
        ),
        "transactive.core.curves",
    ),
    **dict.fromkeys(("Interval", "Intervals", "as_utc"), "transactive.core.time"),
}  # fmt: skip

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


def __getattr__(name: str) -> Any:
    if name in _SOURCES:
        return getattr(import_module(_SOURCES[name]), name)
    raise AttributeError(f"module 'transactive.core' has no attribute {name!r}")

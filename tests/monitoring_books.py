"""Small FLEX_ASKS / FLEX_OFFERS books for the monitoring and strategy tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from transactive.core.records import FLEX_ASKS, FLEX_OFFERS

T0 = pd.Timestamp("2024-06-03T17:00Z")
DT = 0.25  # h


def at(k: int) -> pd.Timestamp:
    """Start of the k-th quarter hour from T0."""
    return T0 + pd.Timedelta(minutes=15 * k)


def asks(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """FLEX_ASKS from rows with ``ask_id``, ``t`` (quarter hour), ``kw``, and optionally
    ``buses``, ``direction``, ``price_ceiling``."""
    n = len(rows)
    return FLEX_ASKS.frame(
        {
            "design": "flex",
            "market_id": "dso:north",
            "stage": "day-ahead",
            "interval_start": [at(r["t"]) for r in rows],
            "duration_h": DT,
            "participant_id": "dso:north",
            "resource_id": [f"branch:{r['ask_id']}" for r in rows],
            "node_id": "dso:north",
            "ask_id": [r["ask_id"] for r in rows],
            "area": "north",
            "buses": [r.get("buses", "b1;b2") for r in rows],
            "direction": [r.get("direction", "up") for r in rows],
            "kw": [float(r["kw"]) for r in rows] if n else [],
            "price_ceiling": [float(r.get("price_ceiling", 0.5)) for r in rows] if n else [],
            "reason": "overload 112.0 %",
        }
    )


def offers(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """FLEX_OFFERS from rows with ``offer_id``, ``who``, ``t``, ``kw``, ``price``, and
    optionally ``ask_id`` (default 'a1'), ``bus``, ``resource``, ``direction``, ``rebound``,
    ``availability_price``, ``all_or_none``."""
    return FLEX_OFFERS.frame(
        {
            "design": "flex",
            "market_id": "dso:north",
            "stage": "day-ahead",
            "interval_start": [at(r["t"]) for r in rows],
            "duration_h": DT,
            "participant_id": [r["who"] for r in rows],
            "resource_id": [r.get("resource", f"{r['who']}/{r['offer_id']}") for r in rows],
            "node_id": [r["who"] for r in rows],
            "offer_id": [r["offer_id"] for r in rows],
            "ask_id": [r.get("ask_id", "a1") for r in rows],
            "bus": [r.get("bus", "b1") for r in rows],
            "area": "north",
            "direction": [r.get("direction", "up") for r in rows],
            "kw": [float(r["kw"]) for r in rows],
            "rebound": [bool(r.get("rebound", False)) for r in rows],
            "availability_price": [float(r.get("availability_price", 0.0)) for r in rows],
            "price": [float(r["price"]) for r in rows],
            "all_or_none": [bool(r.get("all_or_none", False)) for r in rows],
        }
    )

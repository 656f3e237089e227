"""Record schemas: tables are built with their dtypes, bad tables are rejected, and the
reference page is the schema's own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from transactive.core.records import AWARDS, IDENTITY, SCHEMAS, schema_docs
from transactive.errors import InvalidInputError

DOCS = Path(__file__).parents[2] / "docs" / "records.md"


def test_every_schema_starts_with_the_identity_columns() -> None:
    for s in SCHEMAS:
        assert s.columns[: len(IDENTITY)] == IDENTITY
        assert len(set(s.names)) == len(s.names)
        s.check(s.empty())


def awards(**over: object) -> dict[str, object]:
    data: dict[str, object] = {
        "design": "d",
        "market_id": "tso",
        "stage": "real-time",
        "interval_start": np.array(["2026-07-01T12:00"], dtype="datetime64[ns]"),
        "duration_h": 0.25,
        "participant_id": "dso:a",
        "resource_id": "dso:a",
        "node_id": "dso:a",
        "quantity_kw": np.array([3.0]),
        "price": 0.1,
        "status": "cleared",
    }
    data.update(over)
    return data


def test_frame_casts_and_broadcasts() -> None:
    df = AWARDS.frame(awards())
    AWARDS.check(df)
    assert df["interval_start"].iloc[0] == pd.Timestamp("2026-07-01T12:00Z")
    assert df["price"].iloc[0] == 0.1


def test_missing_or_unknown_columns_are_rejected() -> None:
    data = awards()
    del data["status"]
    with pytest.raises(InvalidInputError, match="missing columns \\['status'\\]"):
        AWARDS.frame(data)
    with pytest.raises(InvalidInputError, match="unknown columns \\['colour'\\]"):
        AWARDS.frame(awards(colour="red"))
    with pytest.raises(InvalidInputError, match="column 'price'"):
        AWARDS.check(AWARDS.frame(awards()).astype({"price": "object"}))


def test_reference_page_is_generated_from_the_schemas() -> None:
    assert DOCS.read_text(encoding="utf-8") == schema_docs(), (
        "docs/records.md is stale: .venv/bin/python -m transactive.core.records > docs/records.md"
    )

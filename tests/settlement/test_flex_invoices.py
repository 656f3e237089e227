"""Flexibility settlement known answers and invoices that add up to the lines."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from settlement_helpers import DT, T0, meter_frame, small_tree, two_designs

from transactive.core.records import COMMITMENTS, SETTLEMENT
from transactive.errors import InvalidInputError
from transactive.settlement import Levy, check_balance, flex_lines, invoice, settle, write_invoices


def commitment(direction: str, kw: float, price: float = 0.40, avail: float = 0.02) -> pd.DataFrame:
    """home:a/0 commits ``kw`` in the helpers' interval, bought by dso:a."""
    return COMMITMENTS.frame(
        {
            "design": "bau",
            "market_id": "flex:a",
            "stage": "tariff",
            "interval_start": T0,
            "duration_h": DT,
            "participant_id": "home:a/0",
            "resource_id": "meter:home:a/0",
            "node_id": "home:a/0",
            "direction": direction,
            "committed_kw": kw,
            "price": price,
            "availability_price": avail,
            "buyer": "dso:a",
        }
    )


def flex(metered_kwh: float, baseline_kwh: float, direction: str = "up") -> dict[str, int]:
    meter = meter_frame("bau", "tariff", [0.0, metered_kwh, 0.0, 0.0])
    lines = flex_lines(commitment(direction, 4.0), meter, np.array([baseline_kwh]), 10.0, 2.0)
    SETTLEMENT.check(lines)
    signed = np.where(lines["participant_id"] == "dso:a", 1, -1) * lines["amount"]
    return dict(zip(lines["charge"].astype(str), signed.astype(int), strict=True))


def test_exact_delivery_is_paid_in_full_without_penalty() -> None:
    # 4 kW × 0.25 h = 1 kWh committed up: baseline 3 kWh, metered 2.
    assert flex(2.0, 3.0) == {"flex_availability": 8, "flex_utilisation": 40}  # 4 × 2 ct; 40 ct


def test_over_delivery_beyond_the_commitment_is_not_paid() -> None:
    assert flex(0.5, 3.0) == {"flex_availability": 8, "flex_utilisation": 40}


def test_a_shortfall_inside_the_tolerance_band_is_paid_pro_rata_without_penalty() -> None:
    assert flex(2.05, 3.0) == {"flex_availability": 8, "flex_utilisation": 38}  # 0.95 kWh


def test_a_shortfall_beyond_the_band_pays_a_penalty_to_the_buyer() -> None:
    # Delivered 0.5 of 1 kWh; band 0.9 kWh: 0.4 kWh × 2 × 0.40 € = 32 ct, provider → buyer.
    got = flex(2.5, 3.0)
    assert got == {"flex_availability": 8, "flex_utilisation": 20, "flex_penalty": -32}
    # Moving the wrong way: nothing paid for energy, the whole band penalised.
    assert flex(3.5, 3.0) == {"flex_availability": 8, "flex_utilisation": 0, "flex_penalty": -72}


def test_down_flexibility_increases_the_import() -> None:
    assert flex(4.0, 3.0, "down") == {"flex_availability": 8, "flex_utilisation": 40}


def test_flex_lines_balance_and_leave_the_dso_requirement_alone() -> None:
    meter, awards = two_designs()
    tree = small_tree()
    lines = settle(meter, awards, tree, "EUR", baseline="bau")
    m = meter[(meter["design"] == "bau").to_numpy()]
    f = flex_lines(commitment("up", 4.0), m, np.array([2.8]), 10.0, 2.0)
    from transactive.settlement import revenue_requirement

    req = revenue_requirement(lines[lines["charge"] != "network"], tree, "bau")
    check_balance(SETTLEMENT.concat([lines, f]), tree, req)


def test_bad_commitments_are_named() -> None:
    meter = meter_frame("bau", "tariff", [0.0, 1.0, 0.0, 0.0])
    with pytest.raises(InvalidInputError, match="committed_kw is not ≥ 0"):
        flex_lines(commitment("up", -1.0), meter, np.array([1.0]), 10.0, 2.0)
    with pytest.raises(InvalidInputError, match="direction is not up"):
        flex_lines(commitment("sideways", 1.0), meter, np.array([1.0]), 10.0, 2.0)
    with pytest.raises(InvalidInputError, match="one per commitment"):
        flex_lines(commitment("up", 1.0), meter, np.array([1.0, 2.0]), 10.0, 2.0)
    later = meter_frame("bau", "tariff", [0.0, 1.0, 0.0, 0.0], T0 + pd.Timedelta("1h"))
    with pytest.raises(InvalidInputError, match=r"meter:home:a/0 .* has no meter reading"):
        flex_lines(commitment("up", 1.0), later, np.array([1.0]), 10.0, 2.0)
    with pytest.raises(InvalidInputError, match="tolerance"):
        flex_lines(commitment("up", 1.0), meter, np.array([1.0]), 120.0, 2.0)


def settled_with_taxes() -> pd.DataFrame:
    meter, awards = two_designs()
    meter["quality"] = meter["quality"].astype(str)
    meter.loc[meter.index[1], "quality"] = "estimated"  # home 0's bau reading
    return settle(meter, awards, small_tree(), "EUR", baseline="bau",
                  levies=[Levy("eeg", 0.0679)], vat_percent=19.0)  # fmt: skip


def test_an_invoice_adds_up_to_the_lines() -> None:
    lines = settled_with_taxes()
    inv = invoice(lines, "home:a/0", "all", design="bau")
    mine = lines[(lines["design"] == "bau") & (lines["participant_id"] == "home:a/0")]
    assert inv.total == int(mine["amount"].sum()) == 60 + 14 + 14  # energy, levy, VAT
    assert inv.vat == 14 and inv.subtotal == 74
    assert int(inv.items["amount"].sum()) == inv.total
    assert set(inv.items["quality"]) == {"estimated"}  # its only reading was estimated
    e = inv.items.set_index("charge")
    assert e.loc["energy", "unit_price"] == pytest.approx(0.30)
    # The DSO's invoice shows its receipts as credits, its substation purchase as a debit.
    dso = invoice(lines, "dso:a", "all", design="bau")
    assert dso.total == 15 - (60 - 30 + 12)  # network 0 in the baseline
    with pytest.raises(InvalidInputError, match="pick one design"):
        invoice(lines, "home:a/0", "all")
    with pytest.raises(InvalidInputError, match="no settlement line"):
        invoice(lines, "nobody", "all", design="bau")


def test_written_invoices_carry_the_same_totals_in_csv_and_html(tmp_path: Path) -> None:
    lines = settled_with_taxes()
    files = write_invoices(lines, tmp_path, period="day")
    index = pd.read_csv(tmp_path / "index.csv", dtype=str)
    assert (tmp_path / "index.html").exists() and len(files) == 2 * len(index) + 2
    cents = {}
    for r in index.itertuples(index=False):
        rows = list(csv.DictReader(io.StringIO((tmp_path / str(r.csv)).read_text())))
        items = [x for x in rows if x["charge"] not in ("subtotal", "vat_total", "total")]
        total = next(x for x in rows if x["charge"] == "total")["amount"]
        as_cents = [round(float(x["amount"]) * 100) for x in items]
        assert sum(as_cents) == round(float(total) * 100) == round(float(r.total) * 100)
        page = (tmp_path / str(r.html)).read_text()
        assert re.search(rf'id="total">{re.escape(total)}<', page)
        assert "http" not in page and "<link" not in page and "<script" not in page
        cents[(r.design, r.participant_id)] = round(float(total) * 100)
    # Per design, what participants pay net sums to zero over all invoices (the state too).
    by_design = pd.Series(cents).groupby(level=0).sum()
    assert (by_design == 0).all()
    want = invoice(lines, "home:a/0", "2026-07-01", design="mkt")
    assert cents[("mkt", "home:a/0")] == want.total
    assert want.items["lines"].sum() == len(
        lines[(lines["design"] == "mkt") & (lines["participant_id"] == "home:a/0")]
    )

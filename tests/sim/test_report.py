"""Tests of the offline HTML report (transactive.sim.report)."""

from __future__ import annotations

import base64
import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from transactive.core.records import AWARDS, BIDS, DISPATCH, METER, SETTLEMENT
from transactive.sim.report import format_kpi, kpi_unit, write_report
from transactive.sim.results import SimResults

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMG_RE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
DESIGNS = ("baseline", "layered", "grand-central")
KPIS = ("peak_import_kw", "energy_import_kwh", "voltage_violations", "total_cost_usd")
GROUPS = ("none", "pv", "pv", "pv+battery", "pv+battery+ev", "none")


def _results(violations: bool = True, scenario: str = "summer-peak") -> SimResults:
    """A small realistic run: 3 paradigms, 24 hourly steps, 6 homes, a few violations."""
    rng = np.random.default_rng(7)
    times = pd.date_range("2024-06-01", periods=24, freq="h", tz="UTC")
    hour = np.arange(24)
    wholesale = 0.05 + 0.04 * np.exp(-(((hour - 18) / 3.0) ** 2))
    solar = np.clip(np.sin((hour - 6) / 12 * np.pi), 0.0, None)
    market, grid, bills = [], [], []
    for i, p in enumerate(DESIGNS):
        load = 60 + 30 * np.exp(-(((hour - 19) / 2.5) ** 2)) - (40 + 10 * i) * solar
        market.append(
            pd.DataFrame(
                {
                    "design": p,
                    "time": times,
                    "price": wholesale + 0.08 + 0.01 * i,
                    "wholesale_price": wholesale,
                    "area_kw": load,
                }
            )
        )
        grid.append(
            pd.DataFrame(
                {
                    "design": p,
                    "time": times,
                    "substation_kw": load + 1.5,
                    "losses_kw": 1.5 + 0.01 * np.abs(load),
                    "v_min_pu": 0.97 - 0.0004 * np.clip(load, 0, None),
                    "v_max_pu": 1.0 + 0.0012 * np.clip(-load, 0, None) + 0.01,
                    "max_line_loading_pct": 40 + 0.5 * np.abs(load),
                    "trafo_loading_pct": 30 + 0.4 * np.abs(load),
                }
            )
        )
        bills.append(
            pd.DataFrame(
                {
                    "design": p,
                    "home": [f"home-{h}" for h in range(len(GROUPS))],
                    "group": GROUPS,
                    "import_kwh": rng.uniform(5, 30, len(GROUPS)),
                    "export_kwh": rng.uniform(0, 10, len(GROUPS)),
                    "bill": rng.uniform(-1, 6, len(GROUPS)),
                }
            )
        )
    viol = pd.DataFrame(
        {
            "design": ["baseline", "baseline", "grand-central", "grand-central"],
            "time": times[[19, 20, 12, 13]],
            "element": ["bus 12", "bus 12", "bus 7", "line 3"],
            "kind": ["undervoltage", "undervoltage", "overvoltage", "reverse_flow"],
            "magnitude": [0.012, 0.008, 0.004, 12.5],
        }
    )
    if not violations:
        viol = viol.iloc[0:0]
    kpis = pd.DataFrame(
        [[95.2, 88.1, 97.4], [1234.5, 1190.0, 1250.2], [2.0, 0.0, 2.0], [310.25, 295.5, 301.0]],
        index=pd.Index(KPIS),
        columns=list(DESIGNS),
    )
    return SimResults(
        scenario=scenario,
        areas=("area=simbench:1-LV-rural2--0-sw",),
        designs=DESIGNS,
        bids=BIDS.empty(),
        awards=AWARDS.empty(),
        dispatch=DISPATCH.empty(),
        meter=METER.empty(),
        settlement=SETTLEMENT.empty(),
        participants=pd.DataFrame({"participant_id": [], "role": [], "area": []}),
        dlmp=pd.DataFrame(),
        market=pd.concat(market, ignore_index=True),
        grid=pd.concat(grid, ignore_index=True),
        bills=pd.concat(bills, ignore_index=True),
        violations=viol,
        kpis=kpis,
    )


def _images(html: str) -> list[bytes]:
    """Decoded embedded PNG images."""
    return [base64.b64decode(b64, validate=True) for b64 in IMG_RE.findall(html)]


def _leftovers(parent: Path) -> list[str]:
    """Temporary report directories left next to the target."""
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def _without_plots(results: SimResults) -> SimResults:
    """Same run with the plotted tables emptied (fast: only header and tables render)."""
    return dataclasses.replace(
        results,
        market=results.market.iloc[0:0],
        grid=results.grid.iloc[0:0],
        bills=results.bills.iloc[0:0],
    )


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int]:
    """Write the full report once: (path, html, pyplot figures opened while writing)."""
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    run = tmp_path_factory.mktemp("full") / "run"
    run.mkdir()
    path = write_report(_results(), run)
    return path, path.read_text(encoding="utf-8"), len(plt.get_fignums()) - before


def test_report_is_complete_and_offline(full_report: tuple[Path, str, int]) -> None:
    path, html, _ = full_report
    assert path.name == "index.html" and path.parent.name == "run"
    assert path.is_file()
    for name in (*DESIGNS, *KPIS, "summer-peak", "simbench:1-LV-rural2--0-sw"):
        assert name in html
    assert "2024-06-01 00:00 – 2024-06-01 23:00 UTC (24 steps)" in html
    images = _images(html)
    assert len(images) == 4  # load, prices, voltage, bills
    assert html.count("data:image/png;base64,") == 4
    assert all(img.startswith(PNG_SIGNATURE) for img in images)
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link" not in html
    assert "undervoltage" in html and "reverse_flow" in html
    assert "No violations." not in html
    assert _leftovers(path.parent.parent) == []


def test_kpi_and_group_tables_are_formatted(full_report: tuple[Path, str, int]) -> None:
    _, html, _ = full_report
    assert "1,234.5" in html  # kWh, 1 decimal, thousands separator
    assert "310.25" in html  # $, 2 decimals
    assert "<td>kW</td>" in html and "<td>$</td>" in html
    assert "pv+battery+ev" in html and "all homes" in html


def test_no_pyplot_figures_left_open(full_report: tuple[Path, str, int]) -> None:
    assert full_report[2] == 0


def test_text_from_data_is_escaped(tmp_path: Path) -> None:
    results = dataclasses.replace(
        _without_plots(_results()),
        scenario="<script>alert('x')</script>",
        areas=("feeder & <b>",),
    )
    html = write_report(results, tmp_path).read_text(encoding="utf-8")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "feeder &amp; &lt;b&gt;" in html


def test_empty_violations(tmp_path: Path) -> None:
    results = _without_plots(_results(violations=False))
    html = write_report(results, tmp_path).read_text(encoding="utf-8")
    assert "No violations." in html
    assert "undervoltage" not in html


def test_design_without_rows(tmp_path: Path) -> None:
    results = dataclasses.replace(_results(), designs=(*DESIGNS, "tou"))
    html = write_report(results, tmp_path).read_text(encoding="utf-8")
    assert "No grid rows for: tou." in html
    assert "<th>tou</th>" in html  # still a column in the KPI and mean-bill tables
    assert "No market rows for: tou." in html
    images = _images(html)
    assert len(images) == 4 and all(img.startswith(PNG_SIGNATURE) for img in images)


def test_all_tables_empty(tmp_path: Path) -> None:
    full = _results()
    empty = {name: getattr(full, name).iloc[0:0] for name in ("market", "grid", "bills")}
    results = dataclasses.replace(
        full, violations=full.violations.iloc[0:0], kpis=pd.DataFrame(), **empty
    )
    html = write_report(results, tmp_path).read_text(encoding="utf-8")
    assert _images(html) == []
    for text in ("No KPIs.", "No grid data.", "No market data.", "No bill data.", "Period"):
        assert text in html
    assert "No violations." in html


@pytest.mark.parametrize(
    ("name", "unit", "digits"),
    [
        ("peak_import_kw", "kW", 1),
        ("energy_import_kwh", "kWh", 1),
        ("total_cost_usd", "$", 2),
        ("mean_price_usd_per_kwh", "$/kWh", 4),
        ("min_voltage_pu", "p.u.", 4),
        ("max_trafo_loading_pct", "%", 1),
        ("voltage_violations", "", -1),
    ],
)
def test_kpi_unit(name: str, unit: str, digits: int) -> None:
    assert kpi_unit(name) == (unit, digits)


def test_format_kpi() -> None:
    assert format_kpi(1234.567, 2) == "1,234.57"
    assert format_kpi(3.0, -1) == "3"
    assert format_kpi(0.123456, -1) == "0.1235"
    assert format_kpi(float("nan"), 1) == "–"
    assert format_kpi(None, 2) == "–"


def test_money_is_labelled_in_the_runs_currency(tmp_path: Path) -> None:
    results = dataclasses.replace(_results(), currency="EUR")
    html = write_report(results, tmp_path).read_text(encoding="utf-8")
    assert "Mean bill by ownership group (€)" in html

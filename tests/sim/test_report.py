"""Tests of the offline HTML report (transactive.sim.report)."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import transactive.sim.runner as runner
from transactive.core.records import AWARDS, BIDS, DISPATCH, METER, SETTLEMENT
from transactive.sim.report import format_kpi, kpi_unit, one_seed, render_html, write_report
from transactive.sim.results import Comparison, SimResults
from transactive.sim.scenario import parse_scenario
from transactive.sim.stats import summarise

DESIGNS = ("bau-flat", "tou-responsive", "grand-central")
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
            "design": ["bau-flat", "bau-flat", "grand-central", "grand-central"],
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


FEEDER = "pandapower:kerber_landnetz_kabel_1"  # 8 load points, 100 kVA
START = pd.Timestamp("2016-07-12T20:00:00Z")  # 22:00 on the Berlin clock (CEST, UTC+2)
WARMUP_END = START + pd.Timedelta(hours=1)
REAL_DESIGNS = ["bau-flat", "total-dso"]
PROVENANCE = pd.DataFrame(
    {
        "what": ["weather", "day-ahead prices"],
        "source": ["DWD test reference year 2010, region 4 (Potsdam)", "SMARD, DE-LU day-ahead"],
        "licence": ["GeoNutzV", "CC BY 4.0"],
        "year": [2010, 2016],
    }
)
PARAMETERS: dict[str, object] = {
    "warmup_days": 1,
    "der.penetration.ev": 100,
    "designs": ("bau-flat", "total-dso"),
    "market.cap": 2.0,
}


def _scenario(tmp: Path, seed: int) -> dict[str, Any]:
    """Two areas on the small feeder, 4 evening hours, network clearing (DLMPs)."""
    prices = tmp / "prices.csv"
    prices.write_text("start,price\n2016-07-01T00:00:00Z,40\n")
    return {
        "name": "two-areas",
        "areas": [{"name": "north", "feeder": FEEDER}, {"name": "south", "feeder": FEEDER}],
        "start": START.isoformat(),
        "end": (START + pd.Timedelta(hours=4)).isoformat(),
        "market_interval_min": 15,
        "powerflow_interval_min": 30,
        "designs": REAL_DESIGNS,
        "warmup_days": 0,
        "seed": seed,
        "homes_per_load": 1,
        "der": {"penetration": {"ev": 100, "hvac": 50, "battery": 25}},
        "market": {"floor": 0.0, "cap": 2.0},
        "wholesale": {"source": "prices", "prices": str(prices)},
    }


def _regional(results: SimResults) -> SimResults:
    """The run as the German bundle will fill it: Berlin clock, one warm-up hour,
    provenance, parameters and a value table."""
    value = pd.DataFrame(
        {
            "design": ["bau-flat", "bau-flat", "total-dso", "total-dso"],
            "stakeholder": ["homes: none", "dso", "homes: none", "dso"],
            "members": [16, 1, 16, 1],
            "energy_kwh": [123.4, 0.0, 120.1, 0.0],
            "net_cost": [30.12, -4.5, 28.75, -4.5],
            "change_vs_bau": [0.0, 0.0, -1.37, 0.0],
            "all_in_price": [0.2441, np.nan, 0.2394, np.nan],
        }
    )
    return dataclasses.replace(
        results,
        timezone="Europe/Berlin",
        kpi_start=WARMUP_END,
        currency="EUR",
        provenance=PROVENANCE,
        parameters=PARAMETERS,
        value=value,
    )


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> list[SimResults]:
    """Two seeds of the real two-area run."""
    tmp = tmp_path_factory.mktemp("seeds")
    runs = [runner.run(parse_scenario(_scenario(tmp, s))) for s in (1, 2)]
    return [dataclasses.replace(_regional(r), seed=s) for r, s in zip(runs, (1, 2), strict=True)]


@pytest.fixture(scope="module")
def report(seeds: list[SimResults], tmp_path_factory: pytest.TempPathFactory) -> str:
    """The report of the two-seed comparison."""
    long = pd.concat([one_seed(r, "bau-flat").kpis for r in seeds], ignore_index=True)
    comparison = Comparison(seeds[0], long, summarise(long, "bau-flat"), "bau-flat")
    run = tmp_path_factory.mktemp("report") / "run"
    run.mkdir()
    path = write_report(comparison, run)
    assert path == run / "index.html"
    return path.read_text(encoding="utf-8")


def _plots(html: str) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
    """Plot id → (traces, layout), the JSON passed to ``Plotly.newPlot``."""
    decoder = json.JSONDecoder()
    out = {}
    for m in re.finditer(r'Plotly\.newPlot\(\s*"([^"]+)",\s*', html):
        data, end = decoder.raw_decode(html, m.end())
        layout, _ = decoder.raw_decode(html, html.index("{", end))
        out[m.group(1)] = (data, layout)
    return out


def _figures(html: str) -> dict[str, list[dict[str, Any]]]:
    """Plot id → its traces."""
    return {k: data for k, (data, _) in _plots(html).items()}


def _section(html: str, title: str) -> str:
    """The HTML of one report section."""
    start = html.index(f"<h2>{title}</h2>")
    return html[start : html.index("</section>", start)]


# --- the page -------------------------------------------------------------------------------


def test_page_has_no_external_resource_and_plotly_once(report: str) -> None:
    head = report[: report.index("</head>")]
    assert report.count("* plotly.js v") == 1 and "* plotly.js v" in head
    assert re.search(r"<(script|img|iframe|embed|source)[^>]*\ssrc\s*=", report) is None
    assert re.search(r"<link\b", report) is None
    assert "@import" not in report and "url(" not in report.split("<script")[0]
    figures = _figures(report)
    assert sorted(figures) == [
        "plot-bills",
        "plot-dlmp-0",
        "plot-load",
        "plot-prices",
        "plot-voltage",
    ]
    assert len(report) < 6_000_000  # one plotly.js copy (≈ 4.8 MB) and a small run


def test_plots_are_on_the_local_clock_with_the_warmup_shaded(report: str) -> None:
    load = _figures(report)["plot-load"]
    assert [t["name"] for t in load] == REAL_DESIGNS
    assert load[0]["x"][0] == "2016-07-12 22:00"  # 20:00 UTC in Berlin (CEST)
    assert load[0]["x"][-1] == "2016-07-13 01:30"
    layout = _plots(report)["plot-load"][1]
    assert layout["xaxis"]["title"]["text"] == "local time (Europe/Berlin)"
    # the warm-up hour is shaded and labelled on the local clock
    (shade,) = [s for s in layout["shapes"] if s["type"] == "rect"]
    assert (shade["x0"], shade["x1"]) == ("2016-07-12 22:00", "2016-07-12 23:00")
    assert [a["text"] for a in layout["annotations"]] == ["warm-up (excluded from KPIs)"]
    assert "from 2016-07-12 23:00 Europe/Berlin" in report  # evaluated period in the header


def test_dlmp_heat_map_labels_buses_with_their_area(seeds: list[SimResults], report: str) -> None:
    dlmp = _figures(report)["plot-dlmp-0"]
    buses = set(seeds[0].dlmp["bus"].astype(str))
    expected = {f"{a}/{b}" for a in ("north", "south") for b in buses}
    for heatmap in dlmp:
        assert set(heatmap["y"]) == expected
        assert heatmap["x"][0] == "2016-07-12 22:00"


def test_tables_of_parameters_provenance_and_value(report: str) -> None:
    provenance = _section(report, "Data provenance")
    assert "<th>what</th><th>source</th><th>licence</th><th>year</th>" in provenance
    assert "<td>weather</td><td>DWD test reference year 2010, region 4 (Potsdam)</td>" in provenance
    assert "<td>CC BY 4.0</td><td>2016</td>" in provenance
    parameters = _section(report, "Scenario parameters")
    assert "<td>der.penetration.ev</td><td>100</td>" in parameters
    assert "<td>designs</td><td>bau-flat, total-dso</td>" in parameters
    assert "<td>market.cap</td><td>2</td>" in parameters
    value = _section(report, "Value per stakeholder")
    for text in ("<th>net cost (€)</th>", "<th>all-in price (€/kWh)</th>", "homes: none"):
        assert text in value
    assert '<td class="num">-1.37</td>' in value and '<td class="num">0.2394</td>' in value
    assert "amount" not in value  # columns the settlement did not fill are not invented


def test_two_seed_summary_gives_intervals(report: str) -> None:
    summary = _section(report, "Summary")
    assert "Means over 2 seeds" in summary
    assert re.search(r"2 seeds\)\.</li>", summary)
    assert "One seed" not in report


# --- the summary: significance only when the interval excludes 0 ------------------------


def _constructed(baseline_peak: list[float], results: SimResults | None = None) -> Comparison:
    """Five seeds: total-dso lowers the peak by 50–58 kW (significant) and the losses by
    0.1 kWh on average with a spread that includes 0 (not significant)."""
    peak = np.asarray(baseline_peak)
    rows = {
        ("bau-flat", "peak_import_kw"): peak,
        ("total-dso", "peak_import_kw"): peak - np.array([50.0, 52.0, 54.0, 56.0, 58.0]),
        ("grand-central", "peak_import_kw"): peak + 1.0,
        ("bau-flat", "losses_kwh"): np.full(5, 10.0),
        ("total-dso", "losses_kwh"): np.array([9.5, 11.0, 8.0, 12.0, 9.0]),
        ("grand-central", "losses_kwh"): np.full(5, 10.0),
        ("bau-flat", "reverse_flow_h"): np.zeros(5),
        ("total-dso", "reverse_flow_h"): np.ones(5),
        ("grand-central", "reverse_flow_h"): np.ones(5),
    }
    long = pd.DataFrame(
        [
            (seed, design, kpi, values[seed])
            for (design, kpi), values in rows.items()
            for seed in range(5)
        ],
        columns=["seed", "design", "kpi", "value"],
    )
    base = _without_plots(_results()) if results is None else results
    base = dataclasses.replace(base, designs=("bau-flat", "total-dso", "grand-central"))
    return Comparison(base, long, summarise(long, "bau-flat"), "bau-flat")


def test_summary_says_significant_only_when_the_interval_excludes_zero() -> None:
    summary = _section(render_html(_constructed([100.0, 102.0, 98.0, 101.0, 99.0])), "Summary")
    # diffs −50…−58 kW: mean −54, t(4) half-width 2.776 · √10 / √5 = 3.93
    assert (
        "<li>total-dso lowers the peak import by 54.0 kW [50.1, 57.9] against bau-flat "
        "(significant at 95 %, 5 seeds).</li>" in summary
    )
    # diffs −0.5, 1, −2, 2, −1 kWh: mean −0.1, interval [−2.08, 1.88] includes 0
    assert (
        "<li>total-dso lowers the losses by 0.1 kWh [-1.9, 2.1] against bau-flat "
        "(not significant at 95 %, 5 seeds).</li>" in summary
    )
    assert summary.count("(significant") == 1
    assert "Reported for information (neither direction is better): reverse flow." in summary


def test_comparison_table_marks_the_significant_difference() -> None:
    html = render_html(_constructed([100.0, 102.0, 98.0, 101.0, 99.0]))
    table = _section(html, "Comparison of designs")
    assert "<th>bau-flat</th><th>total-dso</th><th>grand-central</th>" in table
    assert '<span class="diff sig">Δ -54.0 [-57.9, -50.1] *</span>' in table
    assert '<span class="diff">Δ -0.1 [-2.1, 1.9]</span>' in table
    assert '<span class="diff">baseline</span>' in table
    assert "highest import at the TSO" in table  # the KPI's meaning from KPI_DOCS


def test_baseline_best_is_said_so() -> None:
    comparison = _constructed([100.0, 102.0, 98.0, 101.0, 99.0])
    long = comparison.kpis[comparison.kpis["design"] != "total-dso"]
    c = dataclasses.replace(comparison, kpis=long, summary=summarise(long, "bau-flat"))
    summary = _section(render_html(c), "Summary")
    assert (
        "<li>No design has a lower peak import than bau-flat (100.0 kW); the closest, "
        "grand-central, raises the peak import by 1.0 kW [1.0, 1.0] (significant at 95 %, "
        "5 seeds).</li>" in summary
    )
    assert "<li>All designs give the same losses: 10.0 kWh.</li>" in summary


def test_ties_at_the_shown_precision_are_named() -> None:
    comparison = _constructed([100.0, 102.0, 98.0, 101.0, 99.0])
    kpis = comparison.kpis.copy()
    gc_peak = (kpis["design"] == "grand-central") & (kpis["kpi"] == "peak_import_kw")
    bau_peak = (kpis["design"] == "bau-flat") & (kpis["kpi"] == "peak_import_kw")
    dso_peak = (kpis["design"] == "total-dso") & (kpis["kpi"] == "peak_import_kw")
    kpis.loc[gc_peak, "value"] = kpis.loc[bau_peak, "value"].to_numpy() + 1e-9
    kpis.loc[dso_peak, "value"] = kpis.loc[bau_peak, "value"].to_numpy() + 5.0
    c = dataclasses.replace(comparison, kpis=kpis, summary=summarise(kpis, "bau-flat"))
    summary = _section(render_html(c), "Summary")
    # a nano-kW difference is no improvement: the two designs share the lowest peak
    assert (
        "<li>No design has a lower peak import than bau-flat (100.0 kW); grand-central matches "
        "it.</li>" in summary
    )


def test_one_seed_says_no_interval_can_be_given(seeds: list[SimResults], tmp_path: Path) -> None:
    html = write_report(one_seed(seeds[0], "bau-flat"), tmp_path).read_text(encoding="utf-8")
    summary = _section(html, "Summary")
    assert "One seed: no confidence interval can be given" in summary
    assert "significant at 95 %" not in summary
    assert "(one seed: no interval can be given)." in summary
    table = _section(html, "Comparison of designs")
    assert "One seed: no interval can be given." in table
    assert " [" not in table  # no interval in any cell


# --- robustness ---------------------------------------------------------------------------


def test_text_from_data_is_escaped(tmp_path: Path) -> None:
    results = dataclasses.replace(
        _without_plots(_results()),
        scenario="<script>alert('x')</script>",
        areas=("feeder & <b>",),
        parameters={"name": "<b>x</b>"},
    )
    html = write_report(one_seed(results, "bau-flat"), tmp_path).read_text(encoding="utf-8")
    assert "<script>alert" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "feeder &amp; &lt;b&gt;" in html


def test_kpi_and_group_tables_are_formatted() -> None:
    html = render_html(one_seed(_results(), "bau-flat"))
    table = _section(html, "Comparison of designs")
    assert "1,234.5" in table  # kWh, 1 decimal, thousands separator
    assert "310.25" in table  # $, 2 decimals
    assert "<td>kW</td>" in table and "<td>$</td>" in table
    assert "Δ -7.1" in table  # layered − baseline peak: 88.1 − 95.2
    assert "pv+battery+ev" in html and "all homes" in html
    assert "undervoltage" in html and "reverse_flow" in html


def test_empty_violations_value_and_provenance(tmp_path: Path) -> None:
    results = _without_plots(_results(violations=False))
    html = write_report(one_seed(results, "bau-flat"), tmp_path).read_text(encoding="utf-8")
    for text in ("No violations.", "No value table.", "No provenance recorded.", "No parameters"):
        assert text in html
    assert "undervoltage" not in html


def test_warmup_violations_are_not_counted() -> None:
    full = _results()
    late = dataclasses.replace(full, kpi_start=pd.Timestamp("2024-06-01T15:00Z"))
    table = _section(render_html(one_seed(late, "bau-flat")), "Violations")
    # baseline's undervoltages at 19:00 and 20:00 count, grand-central's at 12:00/13:00 do not
    assert '<tr><td>bau-flat</td><td class="num">2</td>' in table
    assert "overvoltage" not in table and "reverse_flow" not in table


def test_design_without_rows(tmp_path: Path) -> None:
    results = dataclasses.replace(_results(), designs=(*DESIGNS, "tou"))
    html = write_report(one_seed(results, "bau-flat"), tmp_path).read_text(encoding="utf-8")
    assert "No grid rows for: tou." in html
    assert "No market rows for: tou." in html
    assert "<th>tou</th>" in html  # still a column in the comparison and mean-bill tables
    assert sorted(_figures(html)) == ["plot-bills", "plot-load", "plot-prices", "plot-voltage"]


def test_all_tables_empty(tmp_path: Path) -> None:
    full = _results()
    empty = {name: getattr(full, name).iloc[0:0] for name in ("market", "grid", "bills")}
    results = dataclasses.replace(
        full, violations=full.violations.iloc[0:0], kpis=pd.DataFrame(), **empty
    )
    html = write_report(one_seed(results, "bau-flat"), tmp_path).read_text(encoding="utf-8")
    assert _figures(html) == {}
    for text in ("No KPIs.", "No grid data.", "No market data.", "No bill data.", "Period"):
        assert text in html
    assert "No violations." in html


def _without_plots(results: SimResults) -> SimResults:
    """Same run with the plotted tables emptied (only header and tables render)."""
    return dataclasses.replace(
        results,
        market=results.market.iloc[0:0],
        grid=results.grid.iloc[0:0],
        bills=results.bills.iloc[0:0],
    )


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
    html = write_report(one_seed(results, "bau-flat"), tmp_path).read_text(encoding="utf-8")
    assert "Mean bill by ownership group (€)" in html
    assert _plots(html)["plot-prices"][1]["yaxis"]["title"]["text"] == "price (€/kWh)"


def test_long_runs_average_the_heat_map_over_blocks_of_intervals() -> None:
    times = pd.date_range("2024-06-01", periods=900, freq="15min", tz="UTC")
    premium = np.tile([0.0, 0.01], times.size)  # bus b pays 1 ct/kWh more
    energy = np.repeat(np.arange(times.size) * 1e-4, 2)
    dlmp = pd.DataFrame(
        {
            "design": "total-dso",
            "time": np.repeat(times, 2),
            "area": "dso:area",
            "bus": np.tile(["a", "b"], times.size),
            "dlmp": energy + premium,
            "energy": energy,
            "loss": premium,
            "congestion": 0.0,
            "voltage": 0.0,
        }
    )
    html = render_html(one_seed(dataclasses.replace(_results(), dlmp=dlmp), "bau-flat"))
    total, local = _figures(html)["plot-dlmp-0"]
    assert total["y"] == ["a", "b"]  # one area: no prefix; cheapest bus at the bottom
    assert len(total["x"]) == 300 and total["x"][:2] == ["2024-06-01 00:00", "2024-06-01 00:45"]
    assert "Columns are means over 3 consecutive intervals." in html
    z = np.frombuffer(base64.b64decode(local["z"]["bdata"]), dtype=np.float32).reshape(2, 300)
    np.testing.assert_allclose(z, [[0.0] * 300, [0.01] * 300], atol=1e-7)
    z = np.frombuffer(base64.b64decode(total["z"]["bdata"]), dtype=np.float32).reshape(2, 300)
    np.testing.assert_allclose(z[0, 0], 1e-4, rtol=1e-5)  # mean of 0, 1e-4, 2e-4 €/kWh

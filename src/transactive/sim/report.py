"""Offline HTML report comparing market designs, for a regulator: a summary of which design
is better on which KPI and whether the difference is significant, the comparison table with
95 % intervals over seeds, the value per stakeholder, the scenario's parameters, the data
provenance and interactive plots on the region's local clock.

The report is a single ``index.html``: inline CSS, plotly.js embedded once in the page head
and each figure drawn by a small inline script, so it opens from a file share or an e-mail
attachment without network access (no external script, stylesheet, font or image). Figures
are in :mod:`transactive.sim.report_plots`, the summary in :mod:`transactive.sim.report_summary`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from transactive.sim import report_plots as plots
from transactive.sim.report_html import (
    CSS,
    esc,
    format_kpi,
    kpi_unit,
    money_symbol,
    note,
    section,
    table,
)
from transactive.sim.report_summary import (
    comparison_table,
    design_order,
    seeds_of,
    summary_html,
)
from transactive.sim.results import Comparison, SimResults
from transactive.sim.stats import summarise

__all__ = ["REPORT_FILE", "format_kpi", "kpi_unit", "one_seed", "render_html", "write_report"]

REPORT_FILE = "index.html"

#: Canonical order of violation kinds in the summary table (others follow alphabetically).
_VIOLATION_KINDS = (
    "undervoltage",
    "overvoltage",
    "line_overload",
    "trafo_overload",
    "reverse_flow",
)

#: Value-table columns in display order: (column, header with ``{m}`` for the currency,
#: decimals; None: text).
_VALUE_COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("stakeholder", "stakeholder", None),
    ("group", "group", None),
    ("members", "members", 0),
    ("energy_kwh", "energy (kWh)", 1),
    ("amount", "amount ({m})", 2),
    ("end_state", "end state ({m})", 2),
    ("net_cost", "net cost ({m})", 2),
    ("change_vs_bau", "change vs business as usual ({m})", 2),
    ("all_in_price", "all-in price ({m}/kWh)", 4),
)


# --------------------------------------------------------------------------- public API


def write_report(
    comparison: Comparison, directory: str | Path, links: Sequence[tuple[str, str]] = ()
) -> Path:
    """Write ``<directory>/index.html`` (the directory must exist) and return its path.

    The page is self-contained (see the module docstring). Callers write it into a fresh
    output directory (:mod:`transactive.sim.outputs`), so a failure never leaves a
    half-written report in place.
    """
    path = Path(directory) / REPORT_FILE
    path.write_text(render_html(comparison, links), encoding="utf-8")
    return path


def one_seed(results: SimResults, baseline: str) -> Comparison:
    """A :class:`Comparison` of a single run (its KPIs as seed ``results.seed``): means
    without intervals, nothing significant."""
    k = results.kpis
    values = k.to_numpy(dtype=float)
    long = pd.DataFrame(
        {
            "seed": np.full(values.size, results.seed, dtype=np.int64),
            "design": np.tile(np.asarray(k.columns, dtype=object).astype(str), len(k.index)),
            "kpi": np.repeat(np.asarray(k.index, dtype=object).astype(str), len(k.columns)),
            "value": values.ravel(),
        }
    )
    return Comparison(results, long, summarise(long, baseline), baseline)


def render_html(comparison: Comparison, links: Sequence[tuple[str, str]] = ()) -> str:
    """Render the full report as an HTML document string; ``links``: (text, relative
    address) of companion pages (the settlement report), listed under the header."""
    results = _areas_combined(comparison.results)
    designs = design_order(comparison)
    colors = plots.colors_for(designs)
    sections = [
        _header(comparison, results, designs),
        *(f'<p><a href="{esc(href)}">{esc(text)}</a></p>' for text, href in links),
        section("Summary", summary_html(comparison, results.currency), "summary"),
        section("Comparison of designs", comparison_table(comparison, results.currency)),
        section("Value per stakeholder", _value_table(results, designs, comparison.baseline)),
        section("Scenario parameters", _parameters_table(results.parameters)),
        section("Data provenance", _provenance_table(results.provenance)),
        section("Substation load", plots.plot_load(results, designs, colors)),
        section("Prices", plots.plot_prices(results, designs, colors)),
        section("Voltage envelope", plots.plot_voltage(results, designs, colors)),
        section("Bills", _bills_section(results, designs, colors)),
        section("Violations", _violations_table(results, designs)),
    ]
    if not results.dlmp.empty:
        sections.append(section("Locational prices (network clearing)", _dlmp_section(results)))
    title = f"transactive report: {results.scenario}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n"
        f'<script type="text/javascript">{plots.plotly_js()}</script>\n'
        "</head>\n<body>\n" + "\n".join(sections) + "\n</body>\n</html>\n"
    )


# ------------------------------------------------------------------------------ helpers


def _areas_combined(results: SimResults) -> SimResults:
    """Grid and market summaries over all areas per (design, time): substation import and
    losses summed, voltage envelope over every bus, prices averaged."""
    g, m = results.grid, results.market
    if "area" in g.columns and len(g):
        g = g.groupby(["design", "time"], as_index=False, sort=False).agg(
            substation_kw=("substation_kw", "sum"),
            losses_kw=("losses_kw", "sum"),
            v_min_pu=("v_min_pu", "min"),
            v_max_pu=("v_max_pu", "max"),
        )
    if "area" in m.columns and len(m):
        m = m.groupby(["design", "time"], as_index=False, sort=False).agg(
            price=("price", "mean"), wholesale_price=("wholesale_price", "mean")
        )
    return replace(results, grid=g, market=m)


def _period(results: SimResults) -> str:
    """Simulated period on the local clock, with UTC and the number of steps."""
    frames = [df["time"] for df in (results.market, results.grid) if "time" in df.columns]
    times = pd.concat(frames, ignore_index=True).dropna() if frames else pd.Series([])
    if times.empty:
        return "n/a"
    t = pd.to_datetime(times, utc=True)
    start, end = t.min(), t.max()
    local = plots.local_times(pd.Index([start, end]), results.timezone)
    utc = [s.strftime("%Y-%m-%d %H:%M") for s in (start, end)]
    zone = f" {results.timezone}" if results.timezone != "UTC" else " UTC"
    also = f" ({utc[0]} – {utc[1]} UTC)" if results.timezone != "UTC" else ""
    return f"{local[0]} – {local[1]}{zone}{also}, {t.nunique()} steps"


def _evaluated(results: SimResults) -> str:
    """The evaluated period's start, or that there is no warm-up."""
    if results.kpi_start is None:
        return "the whole run (no warm-up)"
    start = plots.local_times(pd.Index([results.kpi_start]), results.timezone)[0]
    return f"from {start} {results.timezone}; the warm-up before it is excluded from every KPI"


def _header(comparison: Comparison, results: SimResults, designs: Sequence[str]) -> str:
    """Title and run metadata."""
    seeds = seeds_of(comparison)
    meta = [
        ("Areas", ", ".join(results.areas)),
        ("Period", _period(results)),
        ("Evaluated", _evaluated(results)),
        ("Designs", ", ".join(designs) if designs else "none"),
        ("Baseline", f"{comparison.baseline} (business as usual)"),
        ("Seeds", f"{seeds} (plots and tables below the comparison: seed {results.seed})"),
        ("Voltage band", f"{results.v_min_pu:g} – {results.v_max_pu:g} p.u."),
        ("Currency", results.currency),
    ]
    items = "\n".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in meta)
    return (
        f"<header>\n<h1>Scenario: {esc(results.scenario)}</h1>\n"
        f'<dl class="meta">\n{items}\n</dl>\n</header>'
    )


def _text(value: object) -> str:
    """A parameter value as text: sequences joined, floats without trailing zeros."""
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "–"
    return str(value)


def _parameters_table(parameters: dict[str, object]) -> str:
    """The scenario's parameters (flat dotted keys) as key | value."""
    if not parameters:
        return note("No parameters recorded.")
    rows = [[str(k), _text(v)] for k, v in parameters.items()]
    return table(["parameter", "value"], rows, numeric_from=2)


def _provenance_table(provenance: pd.DataFrame) -> str:
    """One row per input: what, source, licence, year (and any further columns)."""
    if provenance.empty:
        return note("No provenance recorded.")
    known = [c for c in ("what", "source", "licence", "year") if c in provenance.columns]
    cols = known + [str(c) for c in provenance.columns if c not in known]
    rows = [[_text(v) for v in row] for row in provenance[cols].itertuples(index=False)]
    return table(cols, rows, numeric_from=len(cols))


def _value_table(results: SimResults, designs: Sequence[str], baseline: str) -> str:
    """Value per stakeholder and design (whatever columns the settlement filled)."""
    value = results.value
    if value.empty or "design" not in value.columns:
        return note("No value table.")
    m = money_symbol(results.currency)
    cols = [spec for spec in _VALUE_COLUMNS if spec[0] in value.columns]
    known = {"design", *(c for c, _, _ in cols)}
    extra: list[tuple[str, str, int | None]] = [
        (str(c), str(c), -1) for c in value.columns if c not in known
    ]
    cols = [s for s in cols if s[2] is None] + [s for s in cols if s[2] is not None] + extra
    rank = {p: i for i, p in enumerate(designs)}
    order = value["design"].astype(str).map(lambda p: rank.get(p, len(rank)))
    ordered = value.assign(_rank=order.to_numpy()).sort_values("_rank", kind="stable")
    rows = []
    for _, row in ordered.iterrows():
        cells = [str(row["design"])]
        for c, _, digits in cols:
            cells.append(_text(row[c]) if digits is None else format_kpi(row[c], digits))
        rows.append(cells)
    header = ["design", *(h.format(m=m) for _, h, _ in cols)]
    n_text = 1 + sum(1 for s in cols if s[2] is None)
    explain = (
        f"Over the evaluated period, per stakeholder, as settled; change against "
        f"{baseline} (business as usual); all-in price: energy-weighted, {m}/kWh."
    )
    return table(header, rows, numeric_from=n_text) + note(explain)


# -------------------------------------------------------------------------------- bills


def _group_key(group: str) -> tuple[bool, int, str]:
    """Sort ownership groups: "none" first, then by number of device types, then by name."""
    return (group != "none", group.count("+"), group)


def _bills_by_group(bills: pd.DataFrame, designs: Sequence[str]) -> str:
    """Table of mean bill by ownership group × design, with home counts."""
    means = bills.pivot_table(
        index="group", columns="design", values="bill", aggfunc="mean", observed=True
    )
    means.columns = [str(c) for c in means.columns]
    means = means.reindex(columns=list(designs))
    homes = bills.groupby("group", observed=True)["home"].nunique()
    rows = []
    for key in sorted(means.index, key=lambda g: _group_key(str(g))):
        values = [format_kpi(v, 2) for v in means.loc[key].to_numpy(float)]
        rows.append([str(key), f"{int(homes.get(key, 0))}", *values])
    overall = bills.groupby(bills["design"].astype(str))["bill"].mean()
    all_values = [format_kpi(overall.get(p, None), 2) for p in designs]
    rows.append(["all homes", f"{bills['home'].nunique()}", *all_values])
    return table(["ownership group", "homes", *designs], rows, numeric_from=1)


def _bills_section(results: SimResults, designs: Sequence[str], colors: dict[str, str]) -> str:
    """Bill box plot and mean bill by ownership group × design."""
    bills = results.bills
    needed = {"design", "home", "group", "bill"}
    if bills.empty or not needed <= set(bills.columns) or not designs:
        return note("No bill data.")
    present = set(bills["design"].astype(str))
    missing = [p for p in designs if p not in present]
    return (
        plots.plot_bills(results, [p for p in designs if p in present], colors)
        + (note(f"No bill rows for: {', '.join(missing)}.") if missing else "")
        + f"\n<h3>Mean bill by ownership group ({esc(money_symbol(results.currency))})</h3>\n"
        + _bills_by_group(bills, designs)
    )


# --------------------------------------------------------------------------- violations


def _violations_table(results: SimResults, designs: Sequence[str]) -> str:
    """Count of violation records by design × kind over the evaluated period."""
    violations = results.evaluated(results.violations, "time")
    if violations.empty or not {"design", "kind"} <= set(violations.columns):
        return note("No violations.")
    counts = pd.crosstab(violations["design"].astype(str), violations["kind"].astype(str))
    present = set(counts.columns)
    kinds = [k for k in _VIOLATION_KINDS if k in present]
    kinds += sorted(present - set(_VIOLATION_KINDS))
    table_counts = counts.reindex(index=list(designs), columns=kinds, fill_value=0)
    rows = []
    for p, values in zip(designs, table_counts.to_numpy(dtype=np.int64), strict=True):
        rows.append([p, *(f"{v:,}" for v in values), f"{values.sum():,}"])
    return table(["design", *kinds, "total"], rows, numeric_from=1) + note(
        "Number of violation records (element × power-flow step) of each kind in the "
        "evaluated period."
    )


# ------------------------------------------------------------------------- network clearing


def _dlmp_section(results: SimResults) -> str:
    """Per network-clearing design: the DLMP heat maps and the mean and maximum of each DLMP
    component over the evaluated period."""
    parts = []
    unit = f"{money_symbol(results.currency)}/kWh"
    for i, p in enumerate(sorted(results.dlmp["design"].astype(str).unique())):
        parts.append(f"<h3>{esc(p)}</h3>")
        parts.append(plots.plot_dlmp(results, p, i))
        d = results.evaluated(results.dlmp[results.dlmp["design"].astype(str) == p], "time")
        rows: list[Sequence[str]] = []
        for name in ("energy", "loss", "congestion", "voltage", "dlmp"):
            col = d[name].to_numpy(dtype=float)
            mean, top = (np.nanmean(col), np.nanmax(col)) if col.size else (np.nan, np.nan)
            rows.append([name, format_kpi(mean, 4), format_kpi(top, 4)])
        parts.append(table(["component", f"mean {unit}", f"max {unit}"], rows, numeric_from=1))
    return "\n".join(parts) + note(
        "Heat maps show the whole run (warm-up shaded); the component table the evaluated period."
    )

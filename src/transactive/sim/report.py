"""Offline HTML report of a scenario run: KPIs, plots and tables, designs side by side.

The report is a single ``index.html`` with every plot embedded as a base64 PNG and a small
inline CSS block: no JavaScript, no external stylesheets, fonts or images, so it opens from
a file share or an e-mail attachment without network access.

Plots are drawn with matplotlib's Agg canvas on plain :class:`~matplotlib.figure.Figure`
objects (never through ``pyplot``), so no global figure registry grows over many runs and
the caller's matplotlib backend is left alone.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from transactive.sim.results import SimResults

REPORT_FILE = "index.html"

#: Unit suffix of a KPI name → (display unit, decimals shown).
_UNITS: dict[str, tuple[str, int]] = {
    "kw": ("kW", 1),
    "kwh": ("kWh", 1),
    "mw": ("MW", 3),
    "mwh": ("MWh", 3),
    "kvar": ("kvar", 1),
    "usd": ("$", 2),
    "eur": ("€", 2),
    "pu": ("p.u.", 4),
    "pct": ("%", 1),
    "h": ("h", 1),
    "s": ("s", 1),
}

#: Canonical order of violation kinds in the summary table (others follow alphabetically).
_VIOLATION_KINDS = (
    "undervoltage",
    "overvoltage",
    "line_overload",
    "trafo_overload",
    "reverse_flow",
)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: #1f2328; margin: 2rem auto; max-width: 1100px; padding: 0 1rem;
       line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de;
     padding-bottom: 0.2rem; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.1rem 1rem;
          color: #57606a; }
dl.meta dt { font-weight: 600; }
dl.meta dd { margin: 0; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.6rem; }
th { background: #f6f8fa; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 0.5rem 0; }
figure img { max-width: 100%; height: auto; }
figcaption, p.note { color: #57606a; font-size: 0.85rem; }
"""


# --------------------------------------------------------------------------- public API


def write_report(results: SimResults, directory: str | Path) -> Path:
    """Write ``<directory>/index.html`` (the directory must exist) and return its path.

    The page is self-contained (plots as base64 PNG, inline CSS, no external references).
    Callers write it into a fresh output directory (:mod:`transactive.sim.outputs`), so a
    failure never leaves a half-written report.
    """
    path = Path(directory) / REPORT_FILE
    path.write_text(render_html(results), encoding="utf-8")
    return path


def render_html(results: SimResults) -> str:
    """Render the full report as an HTML document string."""
    results = _areas_combined(results)
    designs = _design_order(results)
    colors = {p: f"C{i % 10}" for i, p in enumerate(designs)}
    sections = [
        _header(results, designs),
        _section("Key performance indicators", _kpi_table(results.kpis, designs)),
        _section("Substation load", _plot_load(results, designs, colors)),
        _section("Prices", _plot_prices(results, designs, colors)),
        _section("Voltage envelope", _plot_voltage(results, designs, colors)),
        _section("Bills", _bills_section(results, designs, colors)),
        _section("Violations", _violations_table(results.violations, designs)),
    ]
    if not results.dlmp.empty:
        sections.append(_section("Locational prices (network clearing)", _dlmp_section(results)))
    title = f"transactive report: {results.scenario}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
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


def _money(results: SimResults) -> str:
    """The run's currency as shown in labels: its symbol where known ($, €), else its code."""
    return _UNITS.get(results.currency.lower(), (results.currency, 2))[0]


def _esc(text: object) -> str:
    """HTML-escape any value rendered as text (quotes included)."""
    return html.escape(str(text), quote=True)


def _section(title: str, body: str) -> str:
    """One ``<section>`` with a heading."""
    return f"<section>\n<h2>{_esc(title)}</h2>\n{body}\n</section>"


def _note(text: str) -> str:
    """A muted paragraph (text is escaped)."""
    return f'<p class="note">{_esc(text)}</p>'


def _design_order(results: SimResults) -> list[str]:
    """Declared designs first, then any extra design found in the tables (sorted)."""
    order = list(dict.fromkeys(str(p) for p in results.designs))
    extra: set[str] = set()
    for df in (results.market, results.grid, results.bills, results.violations):
        if "design" in df.columns:
            extra.update(str(p) for p in df["design"].dropna().unique())
    extra.update(str(c) for c in results.kpis.columns)
    return order + sorted(extra - set(order))


def _rows_of(df: pd.DataFrame, design: str) -> pd.DataFrame:
    """Rows of a tidy table for one design, sorted by time when there is a time column."""
    if df.empty or "design" not in df.columns:
        return df.iloc[0:0]
    rows = df[df["design"].astype(str) == design]
    return rows.sort_values("time") if "time" in rows.columns else rows


def _missing(df: pd.DataFrame, designs: Sequence[str]) -> list[str]:
    """Designs with no rows in ``df``."""
    present = set(df["design"].astype(str)) if "design" in df.columns else set()
    return [p for p in designs if p not in present]


def _missing_note(df: pd.DataFrame, designs: Sequence[str], what: str) -> str:
    """Note listing designs without rows, or an empty string."""
    missing = _missing(df, designs)
    return _note(f"No {what} rows for: {', '.join(missing)}.") if missing else ""


def _times(values: pd.Series) -> np.ndarray:
    """Times as tz-naive UTC ``datetime64`` for plotting (non-datetime values unchanged)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return np.asarray(values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy())
    return np.asarray(values.to_numpy())


def _period(results: SimResults) -> str:
    """Simulated period, e.g. ``2024-06-01 00:00 – 2024-06-01 23:00 UTC (24 steps)``."""
    frames = [df["time"] for df in (results.market, results.grid) if "time" in df.columns]
    times = pd.concat(frames, ignore_index=True).dropna() if frames else pd.Series([])
    if times.empty:
        return "n/a"
    start, end = times.min(), times.max()
    steps = times.nunique()
    if isinstance(start, pd.Timestamp) and isinstance(end, pd.Timestamp):
        fmt = "%Y-%m-%d %H:%M"
        return f"{start.strftime(fmt)} – {end.strftime(fmt)} UTC ({steps} steps)"
    return f"{start} – {end} ({steps} steps)"


def _header(results: SimResults, designs: Sequence[str]) -> str:
    """Title and run metadata."""
    meta = [
        ("Areas", ", ".join(results.areas)),
        ("Period", _period(results)),
        ("Designs", ", ".join(designs) if designs else "none"),
        ("Voltage band", f"{results.v_min_pu:g} – {results.v_max_pu:g} p.u."),
    ]
    items = "\n".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in meta)
    return (
        f"<header>\n<h1>Scenario: {_esc(results.scenario)}</h1>\n"
        f'<dl class="meta">\n{items}\n</dl>\n</header>'
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int) -> str:
    """HTML table; cells are pre-formatted strings (escaped here), numeric from a column."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{_esc(c)}</td>' if i >= numeric_from else f"<td>{_esc(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + ("\n</tbody>\n</table>")
    )


# --------------------------------------------------------------------------------- KPIs


def kpi_unit(name: str) -> tuple[str, int]:
    """Display unit and decimals from a KPI name's suffix (``peak_import_kw`` → kW, 1).

    ``..._usd_per_kwh`` style suffixes give a compound unit ($/kWh). Names without a known
    unit (e.g. ``voltage_violations``) are counts: no unit, 0 decimals for whole numbers.
    """
    tokens = name.lower().split("_")
    if len(tokens) >= 3 and tokens[-2] == "per" and tokens[-3] in _UNITS and tokens[-1] in _UNITS:
        num, digits = _UNITS[tokens[-3]]
        return f"{num}/{_UNITS[tokens[-1]][0]}", max(digits, 4)
    if tokens[-1] in _UNITS:
        return _UNITS[tokens[-1]]
    return "", -1


def format_kpi(value: object, digits: int) -> str:
    """Format one KPI value: thousands separators, ``digits`` decimals (−1: count/general)."""
    if value is None:
        return "–"
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return "–"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if digits >= 0:
        return f"{x:,.{digits}f}"
    if x.is_integer():
        return f"{x:,.0f}"
    return f"{x:,.4g}" if abs(x) < 1000 else f"{x:,.1f}"


def _kpi_table(kpis: pd.DataFrame, designs: Sequence[str]) -> str:
    """KPI table: one row per KPI, unit column, designs as columns ("–" when missing)."""
    if kpis.empty:
        return _note("No KPIs.")
    by_name = {str(c): c for c in kpis.columns}
    rows = []
    for name, row in kpis.iterrows():
        unit, digits = kpi_unit(str(name))
        values = [format_kpi(row[by_name[p]] if p in by_name else None, digits) for p in designs]
        rows.append([str(name), unit, *values])
    return _table(["KPI", "unit", *designs], rows, numeric_from=2)


# -------------------------------------------------------------------------------- plots


@contextmanager
def _figure(
    n_rows: int = 1, height: float = 3.6, sharey: bool = False
) -> Iterator[tuple[Figure, list[Axes]]]:
    """A fresh Agg figure, ``n_rows`` stacked axes (shared x), ``height`` inches per row.

    The figure is cleared on exit; it is never registered with pyplot.
    """
    fig = Figure(figsize=(10.0, height * n_rows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    try:
        axes = fig.subplots(n_rows, 1, sharex=True, sharey=sharey, squeeze=False)
        yield fig, [ax for row in axes for ax in row]
    finally:
        fig.clear()


def _png_base64(fig: Figure) -> str:
    """Render a figure to PNG and return the base64 text."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64: str, alt: str, caption: str) -> str:
    """An embedded PNG with alt text and caption."""
    return (
        f'<figure><img src="data:image/png;base64,{b64}" alt="{_esc(alt)}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _time_axis(ax: Axes) -> None:
    """Concise date ticks on the x axis (harmless for non-date x values)."""
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")
    ax.grid(True, alpha=0.3)


def _plot_load(results: SimResults, designs: Sequence[str], colors: dict[str, str]) -> str:
    """Substation import (kW, + import / − export) over time, one line per design."""
    grid = results.grid
    if grid.empty or "substation_kw" not in grid.columns:
        return _note("No grid data.")
    with _figure() as (fig, (ax,)):
        for p in designs:
            rows = _rows_of(grid, p)
            if not rows.empty:
                ax.plot(_times(rows["time"]), rows["substation_kw"], label=p, color=colors[p])
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_ylabel("substation import (kW)")
        ax.legend(loc="best", fontsize="small")
        _time_axis(ax)
        b64 = _png_base64(fig)
    caption = "Power at the substation per design (import +, export −), kW."
    return _img(b64, "Substation load by design", caption) + _missing_note(grid, designs, "grid")


def _plot_prices(results: SimResults, designs: Sequence[str], colors: dict[str, str]) -> str:
    """Retail price per design and the wholesale price (dashed), $/kWh, over time."""
    market = results.market
    if market.empty or "price" not in market.columns:
        return _note("No market data.")
    with _figure() as (fig, (ax,)):
        for p in designs:
            rows = _rows_of(market, p)
            if not rows.empty:
                ax.plot(
                    _times(rows["time"]),
                    rows["price"],
                    label=p,
                    color=colors[p],
                    drawstyle="steps-post",
                )
        if "wholesale_price" in market.columns:
            wholesale = market.groupby("time", sort=True)["wholesale_price"].mean()
            ax.plot(
                _times(wholesale.index.to_series()),
                wholesale.to_numpy(),
                label="wholesale",
                color="black",
                linestyle="--",
                drawstyle="steps-post",
            )
        ax.set_ylabel(f"price ({_money(results)}/kWh)")
        ax.legend(loc="best", fontsize="small")
        _time_axis(ax)
        b64 = _png_base64(fig)
    caption = (
        f"Price seen by homes per design and the wholesale price (dashed), {_money(results)}/kWh."
    )
    return _img(b64, "Price over time by design", caption) + _missing_note(
        market, designs, "market"
    )


def _plot_voltage(results: SimResults, designs: Sequence[str], colors: dict[str, str]) -> str:
    """Feeder voltage envelope (min–max over buses, p.u.) per design with the limit band."""
    grid = results.grid
    if grid.empty or not {"v_min_pu", "v_max_pu"} <= set(grid.columns) or not designs:
        return _note("No voltage data.")
    with _figure(n_rows=len(designs), height=2.2, sharey=True) as (fig, axes):
        for ax, p in zip(axes, designs, strict=True):
            rows = _rows_of(grid, p)
            if rows.empty:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            else:
                t = _times(rows["time"])
                lo, hi = rows["v_min_pu"].to_numpy(float), rows["v_max_pu"].to_numpy(float)
                ax.fill_between(t, lo, hi, color=colors[p], alpha=0.25, linewidth=0)
                ax.plot(t, lo, color=colors[p], linewidth=1.2)
                ax.plot(t, hi, color=colors[p], linewidth=1.2)
            for limit in (results.v_min_pu, results.v_max_pu):
                ax.axhline(limit, color="red", linestyle="--", linewidth=0.9)
            ax.set_ylabel("V (p.u.)")
            ax.set_title(p, loc="left", fontsize="medium")
            _time_axis(ax)
        for ax in axes[:-1]:
            ax.set_xlabel("")
        b64 = _png_base64(fig)
    caption = (
        f"Lowest and highest bus voltage per step (shaded band), p.u.; dashed red lines: "
        f"limits {results.v_min_pu:g} and {results.v_max_pu:g} p.u."
    )
    return _img(b64, "Voltage envelope by design", caption)


def _plot_bills(results: SimResults, designs: Sequence[str], colors: dict[str, str]) -> str:
    """Box plot of home bills ($) per design."""
    bills = results.bills
    data = [_rows_of(bills, p)["bill"].dropna().to_numpy(float) for p in designs]
    with _figure() as (fig, (ax,)):
        positions = list(range(1, len(designs) + 1))
        boxes = ax.boxplot(
            data,
            positions=positions,
            patch_artist=True,
            widths=0.6,
            medianprops={"color": "black"},
        )
        for patch, p in zip(boxes["boxes"], designs, strict=True):
            patch.set_facecolor(colors[p])
            patch.set_alpha(0.5)
        labels = [f"{p}\n(n={len(d)})" for p, d in zip(designs, data, strict=True)]
        ax.set_xticks(positions, labels)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_ylabel(f"bill ({_money(results)})")
        ax.grid(True, axis="y", alpha=0.3)
        b64 = _png_base64(fig)
    caption = (
        f"Distribution of home bills per design over the period, {_money(results)} "
        "(negative: credit)."
    )
    return _img(b64, "Bill distribution by design", caption)


def _group_key(group: str) -> tuple[bool, int, str]:
    """Sort ownership groups: "none" first, then by number of device types, then by name."""
    return (group != "none", group.count("+"), group)


def _bills_by_group(bills: pd.DataFrame, designs: Sequence[str]) -> str:
    """Table of mean bill ($) by ownership group × design, with home counts."""
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
    return _table(["ownership group", "homes", *designs], rows, numeric_from=1)


def _bills_section(results: SimResults, designs: Sequence[str], colors: dict[str, str]) -> str:
    """Bill box plot and mean bill by ownership group × design."""
    bills = results.bills
    needed = {"design", "home", "group", "bill"}
    if bills.empty or not needed <= set(bills.columns) or not designs:
        return _note("No bill data.")
    return (
        _plot_bills(results, designs, colors)
        + _missing_note(bills, designs, "bill")
        + f"\n<h3>Mean bill by ownership group ({_esc(_money(results))})</h3>\n"
        + _bills_by_group(bills, designs)
    )


# --------------------------------------------------------------------------- violations


def _violations_table(violations: pd.DataFrame, designs: Sequence[str]) -> str:
    """Count of violations by design × kind (all designs listed, zeros included)."""
    if violations.empty or not {"design", "kind"} <= set(violations.columns):
        return _note("No violations.")
    counts = pd.crosstab(violations["design"].astype(str), violations["kind"].astype(str))
    present = set(counts.columns)
    kinds = [k for k in _VIOLATION_KINDS if k in present]
    kinds += sorted(present - set(_VIOLATION_KINDS))
    table_counts = counts.reindex(index=list(designs), columns=kinds, fill_value=0)
    rows = []
    for p, values in zip(designs, table_counts.to_numpy(dtype=np.int64), strict=True):
        rows.append([p, *(f"{v:,}" for v in values), f"{values.sum():,}"])
    table = _table(["design", *kinds, "total"], rows, numeric_from=1)
    return table + _note("Number of violation records (element × time step) of each kind.")


# ------------------------------------------------------------------------- network clearing


def _dlmp_section(results: SimResults) -> str:
    """DLMP heat map (bus × time) per network-clearing design, the mean of each DLMP
    component, and the violations removed compared with uniform clearing."""
    parts = []
    for p in sorted(results.dlmp["design"].astype(str).unique()):
        d = _rows_of(results.dlmp, p)
        total = d.pivot_table(index="bus", columns="time", values="dlmp", aggfunc="mean")
        local = d.assign(premium=d["dlmp"] - d["energy"]).pivot_table(
            index="bus", columns="time", values="premium", aggfunc="mean"
        )
        order = local.mean(axis=1).sort_values().index  # cheapest buses at the bottom
        times = _times(pd.Series(total.columns))
        height = max(2.6, min(5.0, 0.05 * len(order) + 1.5))
        with _figure(n_rows=2, height=height) as (fig, axes):
            panels = (
                (total, f"DLMP ({_money(results)}/kWh)"),
                (local, f"DLMP − energy component ({_money(results)}/kWh)"),
            )
            for ax, (table, label) in zip(axes, panels, strict=True):
                values = table.loc[order].to_numpy(dtype=float)
                mesh = ax.pcolormesh(
                    times, np.arange(len(order)), values, shading="nearest", cmap="viridis"
                )
                fig.colorbar(mesh, ax=ax, label=label)
                ax.set_ylabel("bus (by mean premium)")
                ax.set_yticks([])
                _time_axis(ax)
            b64 = _png_base64(fig)
        parts.append(
            _img(
                b64,
                f"DLMP heat map, {p}",
                f"{p}: distribution locational marginal price per bus and interval (top) and "
                "its locational part — losses, congestion, voltage — above the substation's "
                f"energy price (bottom), {_money(results)}/kWh.",
            )
        )
        rows = []
        for name in ("energy", "loss", "congestion", "voltage", "dlmp"):
            col = d[name].to_numpy(dtype=float)
            rows.append([name, f"{np.nanmean(col):.4f}", f"{np.nanmax(col):.4f}"])
        unit = f"{_money(results)}/kWh"
        parts.append(_table(["component", f"mean {unit}", f"max {unit}"], rows, numeric_from=1))
    return "\n".join(parts)

"""Interactive figures of the report (plotly): substation load, prices, voltage envelope,
bills and DLMP heat maps, on the region's local clock with the warm-up shaded.

Each figure is an HTML fragment (a ``<div>`` and the inline script that draws it) without
plotly.js itself: :func:`plotly_js` returns the library, embedded once in the page head, so
the report works offline. Times are shown as local wall-clock strings (``YYYY-MM-DD HH:MM``)
in :attr:`SimResults.timezone`; the axis title names the zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from transactive.sim.report_html import esc, money_symbol, note
from transactive.sim.results import SimResults

#: Plotly's interaction settings: no logo, no link to an online editor.
_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}
#: Most time columns a heat map shows; longer runs are averaged over blocks of intervals.
MAX_HEATMAP_COLUMNS = 400
_TIME_FORMAT = "%Y-%m-%d %H:%M"


def plotly_js() -> str:
    """The plotly.js library (minified, ≈ 4.8 MB) as shipped in the plotly package."""
    return get_plotlyjs()


def colors_for(designs: Sequence[str]) -> dict[str, str]:
    """A stable colour per design (plotly's qualitative palette)."""
    palette = qualitative.Plotly
    return {p: palette[i % len(palette)] for i, p in enumerate(designs)}


def local_times(values: pd.Series | pd.Index, timezone: str) -> list[str]:
    """UTC times as wall-clock strings of ``timezone`` (naive times are taken as UTC).

    Plotly has no time zones, so the wall clock is what it plots; on the night the clocks go
    back the repeated hour is drawn twice over the same stretch of the axis.
    """
    t = pd.DatetimeIndex(pd.to_datetime(values, utc=True)).tz_convert(timezone)
    return [str(s) for s in t.strftime(_TIME_FORMAT)]


def _fragment(fig: go.Figure, ident: str, caption: str, alt: str) -> str:
    """The figure as a ``<figure>`` with its drawing script and caption."""
    div = fig.to_html(
        full_html=False, include_plotlyjs=False, config=_CONFIG, div_id=ident, validate=False
    )
    return f'<figure aria-label="{esc(alt)}">{div}<figcaption>{esc(caption)}</figcaption></figure>'


def _layout(fig: go.Figure, results: SimResults, y_title: str, height: int = 380) -> None:
    """Common layout: local-time x axis named after the zone, legend, hover on x."""
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        hovermode="x unified",
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        yaxis_title=y_title,
    )
    fig.update_xaxes(title_text=f"local time ({results.timezone})", type="date")


def _warmup(
    fig: go.Figure,
    results: SimResults,
    first: pd.Timestamp | None,
    over: bool = False,
    shift: pd.Timedelta | None = None,
    **where: Any,
) -> None:
    """Shade and label the warm-up (from the first time to :attr:`kpi_start`): grey below
    lines, or (``over``, for heat maps) a white veil above the data; ``shift`` moves both
    edges (a heat map's cells are centred on their interval's start)."""
    if results.kpi_start is None or first is None:
        return
    start = pd.Timestamp(first)
    start = start.tz_localize("UTC") if start.tzinfo is None else start
    if results.kpi_start <= start:
        return
    edges = pd.DatetimeIndex([start, results.kpi_start]) + (shift or pd.Timedelta(0))
    x0, x1 = local_times(edges, results.timezone)
    fig.add_vrect(
        x0=x0,
        x1=x1,
        fillcolor="white" if over else "#8c959f",
        opacity=0.55 if over else 0.15,
        line_width=0,
        layer="above" if over else "below",
        annotation_text="warm-up (excluded from KPIs)",
        annotation_position="top left",
        annotation_font={"size": 11, "color": "black"},
        **where,
    )


def _first_time(df: pd.DataFrame) -> pd.Timestamp | None:
    if df.empty or "time" not in df.columns:
        return None
    return pd.Timestamp(pd.to_datetime(df["time"], utc=True).min())


def _rows_of(df: pd.DataFrame, design: str) -> pd.DataFrame:
    """Rows of one design, sorted by time when there is a time column."""
    if df.empty or "design" not in df.columns:
        return df.iloc[0:0]
    rows = df[df["design"].astype(str) == design]
    return rows.sort_values("time") if "time" in rows.columns else rows


def _missing_note(df: pd.DataFrame, designs: Sequence[str], what: str) -> str:
    """Note listing designs without rows, or an empty string."""
    present = set(df["design"].astype(str)) if "design" in df.columns else set()
    missing = [p for p in designs if p not in present]
    return note(f"No {what} rows for: {', '.join(missing)}.") if missing else ""


def _f32(values: pd.Series | np.ndarray) -> np.ndarray:
    """Plotted numbers as float32 (7 significant digits, half the bytes of float64)."""
    return np.asarray(values, dtype=np.float32)


# -------------------------------------------------------------------------------- figures


def plot_load(results: SimResults, designs: Sequence[str], colors: dict[str, str]) -> str:
    """Substation import (kW, + import / − export) over local time, one line per design."""
    grid = results.grid
    if grid.empty or "substation_kw" not in grid.columns:
        return note("No grid data.")
    fig = go.Figure()
    for p in designs:
        rows = _rows_of(grid, p)
        if not rows.empty:
            fig.add_scatter(
                x=local_times(rows["time"], results.timezone),
                y=_f32(rows["substation_kw"]),
                name=p,
                line={"color": colors[p], "width": 1.5},
                hovertemplate="%{y:.1f} kW",
            )
    fig.add_hline(y=0.0, line_color="black", line_width=0.8)
    _layout(fig, results, "substation import (kW)")
    _warmup(fig, results, _first_time(grid))
    caption = (
        "Power at the substations per design (import +, export −), kW, summed over the areas; "
        "shaded: warm-up, excluded from the KPIs. Drag to zoom, double-click to reset."
    )
    return _fragment(fig, "plot-load", caption, "Substation load by design") + _missing_note(
        grid, designs, "grid"
    )


def plot_prices(results: SimResults, designs: Sequence[str], colors: dict[str, str]) -> str:
    """Price seen by homes per design and the wholesale price (dashed), currency/kWh."""
    market = results.market
    if market.empty or "price" not in market.columns:
        return note("No market data.")
    unit = f"{money_symbol(results.currency)}/kWh"
    fig = go.Figure()
    for p in designs:
        rows = _rows_of(market, p)
        if not rows.empty:
            fig.add_scatter(
                x=local_times(rows["time"], results.timezone),
                y=_f32(rows["price"]),
                name=p,
                line={"color": colors[p], "width": 1.5, "shape": "hv"},
                hovertemplate=f"%{{y:.4f}} {unit}",
            )
    if "wholesale_price" in market.columns:
        wholesale = market.groupby("time", sort=True)["wholesale_price"].mean()
        fig.add_scatter(
            x=local_times(wholesale.index, results.timezone),
            y=_f32(wholesale.to_numpy()),
            name="wholesale",
            line={"color": "black", "width": 1.2, "dash": "dash", "shape": "hv"},
            hovertemplate=f"%{{y:.4f}} {unit}",
        )
    _layout(fig, results, f"price ({unit})")
    _warmup(fig, results, _first_time(market))
    caption = (
        f"Price seen by homes per design (mean over areas) and the wholesale price (dashed), "
        f"{unit}; shaded: warm-up."
    )
    return _fragment(fig, "plot-prices", caption, "Price over time by design") + _missing_note(
        market, designs, "market"
    )


def plot_voltage(results: SimResults, designs: Sequence[str], colors: dict[str, str]) -> str:
    """Voltage envelope (lowest and highest bus, p.u.) per design with the limit band."""
    grid = results.grid
    if grid.empty or not {"v_min_pu", "v_max_pu"} <= set(grid.columns) or not designs:
        return note("No voltage data.")
    fig = go.Figure()
    for p in designs:
        rows = _rows_of(grid, p)
        if rows.empty:
            continue
        x = local_times(rows["time"], results.timezone)
        common = {"x": x, "legendgroup": p, "line": {"color": colors[p], "width": 1.2}}
        fig.add_scatter(
            y=_f32(rows["v_min_pu"]), name=p, hovertemplate="min %{y:.4f} p.u.", **common
        )
        fig.add_scatter(
            y=_f32(rows["v_max_pu"]),
            name=p,
            showlegend=False,
            fill="tonexty",
            opacity=0.6,
            hovertemplate="max %{y:.4f} p.u.",
            **common,
        )
    for limit in (results.v_min_pu, results.v_max_pu):
        fig.add_hline(y=limit, line_color="red", line_dash="dash", line_width=1)
    _layout(fig, results, "voltage (p.u.)")
    _warmup(fig, results, _first_time(grid))
    caption = (
        f"Lowest and highest bus voltage per power-flow step and design (band), p.u.; dashed "
        f"red: limits {results.v_min_pu:g} and {results.v_max_pu:g} p.u. Click a legend entry "
        "to hide a design."
    )
    return _fragment(fig, "plot-voltage", caption, "Voltage envelope by design")


def plot_bills(results: SimResults, designs: Sequence[str], colors: dict[str, str]) -> str:
    """Box plot of home bills (currency) per design."""
    bills = results.bills
    money = money_symbol(results.currency)
    fig = go.Figure()
    for p in designs:
        rows = _rows_of(bills, p)
        values = rows["bill"].to_numpy(dtype=float)
        fig.add_box(
            y=_f32(values),
            name=f"{p} (n={np.isfinite(values).sum()})",
            marker_color=colors[p],
            boxpoints="outliers",
            text=rows["home"].astype(str).tolist(),
            hovertemplate=f"%{{text}}: %{{y:.2f}} {money}<extra></extra>",
        )
    fig.add_hline(y=0.0, line_color="black", line_width=0.8)
    fig.update_layout(
        template="plotly_white",
        height=380,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        showlegend=False,
        yaxis_title=f"bill ({money})",
    )
    caption = f"Distribution of home bills per design over the run, {money} (negative: credit)."
    return _fragment(fig, "plot-bills", caption, "Bill distribution by design")


# ------------------------------------------------------------------------------ DLMP maps


def bus_labels(dlmp: pd.DataFrame) -> pd.Series:
    """Bus name per DLMP row, prefixed ``<area>/`` when the run has several areas."""
    bus = dlmp["bus"].astype(str)
    if "area" in dlmp.columns and dlmp["area"].nunique() > 1:
        # the network clearing names the area by its DSO node (``dso:<area>``)
        area = dlmp["area"].astype(str).str.replace(r"^dso:", "", regex=True)
        return area + "/" + bus
    return bus


def _blocks(table_: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Columns (times) averaged over blocks so at most :data:`MAX_HEATMAP_COLUMNS` remain;
    returns the table and the block length (1: unchanged)."""
    n = table_.shape[1]
    k = max(1, int(np.ceil(n / MAX_HEATMAP_COLUMNS)))
    if k == 1:
        return table_, 1
    block = np.arange(n) // k
    starts = table_.columns[::k]
    out = table_.T.groupby(block).mean().T
    out.columns = starts
    return out, k


def plot_dlmp(results: SimResults, design: str, index: int) -> str:
    """Heat maps (bus × local time) of one design's DLMP and its locational part."""
    d = _rows_of(results.dlmp, design)
    d = d.assign(label=bus_labels(d).to_numpy(), premium=d["dlmp"] - d["energy"])
    total = d.pivot_table(index="label", columns="time", values="dlmp", aggfunc="mean")
    local = d.pivot_table(index="label", columns="time", values="premium", aggfunc="mean")
    order = local.mean(axis=1).sort_values().index  # cheapest buses at the bottom
    total, k = _blocks(total.loc[order])
    local, _ = _blocks(local.loc[order])
    x = local_times(total.columns, results.timezone)
    buses = [str(b) for b in order]
    unit = f"{money_symbol(results.currency)}/kWh"
    height = int(min(1800, max(520, 2 * (14 * len(buses) + 40) + 120)))
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=(f"DLMP ({unit})", f"DLMP − energy component ({unit})"),
    )
    for row, (values, y_pos) in enumerate(((total, 0.78), (local, 0.22)), start=1):
        fig.add_heatmap(
            z=_f32(values.to_numpy(dtype=float)),
            x=x,
            y=buses,
            colorscale="Viridis",
            colorbar={"title": {"text": unit}, "len": 0.42, "y": y_pos},
            hovertemplate=f"%{{y}}<br>%{{x}}<br>%{{z:.4f}} {unit}<extra></extra>",
            row=row,
            col=1,
        )
    fig.update_layout(
        template="plotly_white", height=height, margin={"l": 140, "r": 20, "t": 40, "b": 50}
    )
    fig.update_yaxes(type="category", title_text="bus", automargin=True)
    fig.update_xaxes(type="date")
    fig.update_xaxes(title_text=f"local time ({results.timezone})", row=2, col=1)
    steps = pd.DatetimeIndex(pd.to_datetime(total.columns, utc=True))
    half = (steps[1] - steps[0]) / 2 if len(steps) > 1 else pd.Timedelta(0)
    _warmup(fig, results, _first_time(d), over=True, shift=-half, row="all", col=1)
    averaged = f" Columns are means over {k} consecutive intervals." if k > 1 else ""
    caption = (
        f"{design}: distribution locational marginal price per bus and interval (top) and its "
        "locational part — losses, congestion, voltage — above the substation's energy price "
        f"(bottom), {unit}; buses ordered by their mean locational part (highest on top); "
        f"hover for the bus name and value.{averaged}"
    )
    return _fragment(fig, f"plot-dlmp-{index}", caption, f"DLMP heat map, {design}")

"""The report's opening: which design is best on which KPI, whether its difference from the
baseline is significant at 95 %, in plain sentences, and the comparison table (each KPI's
mean [95 % interval] per design and its difference from the baseline).

The statistics come from :func:`transactive.sim.stats.summarise`; a difference is called
significant only when its interval excludes zero (with one seed there is no interval, so
nothing is).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, cast

import numpy as np
import pandas as pd

from transactive.sim import kpis as kpi_module
from transactive.sim.report_html import (
    Html,
    esc,
    format_kpi,
    kpi_label,
    kpi_unit,
    money_symbol,
    note,
    table,
)
from transactive.sim.results import Comparison

Better = Literal["lower", "higher"] | None


def _lookup(table_: dict[str, object], name: str, currency: str) -> object:
    """Value of a KPI-name-keyed table whose keys may hold ``{cur}``; None when absent."""
    cur = currency.lower()
    for key, value in table_.items():
        if key.format(cur=cur) == name:
            return value
    return None


def kpi_better(name: str, currency: str) -> Better:
    """Which direction of a KPI is better ("lower", "higher") or None (information only)."""
    better = cast(dict[str, object], kpi_module.KPI_BETTER)
    value = _lookup(better, name, currency)
    return cast(Better, value) if value in ("lower", "higher") else None


def kpi_meaning(name: str, currency: str) -> str:
    """The KPI's one-line meaning from ``KPI_DOCS`` ("" when undocumented)."""
    return str(_lookup(cast(dict[str, object], kpi_module.KPI_DOCS), name, currency) or "")


def kpi_group(name: str) -> str:
    """The KPI's category (:func:`transactive.sim.kpis.kpi_category`; "" if not a KPI)."""
    try:
        return kpi_module.kpi_category(name)
    except KeyError:
        return ""


# ------------------------------------------------------------------------------ numbers


def seeds_of(comparison: Comparison) -> int:
    """Number of seeds behind the comparison."""
    if "seed" in comparison.kpis.columns and len(comparison.kpis):
        return int(comparison.kpis["seed"].nunique())
    summary = comparison.summary
    return int(summary["n"].max()) if "n" in summary.columns and len(summary) else 1


def design_order(comparison: Comparison) -> list[str]:
    """Baseline first, then the designs in the order the summary lists them."""
    found = [str(d) for d in dict.fromkeys(comparison.summary.get("design", pd.Series([])))]
    declared = [str(d) for d in comparison.results.designs]
    ordered = list(dict.fromkeys([*declared, *found]))
    if comparison.baseline in ordered:
        ordered.remove(comparison.baseline)
    return [comparison.baseline, *ordered]


def _shown(x: float, digits: int) -> float:
    """``x`` at the precision the report shows it (ties are judged on what is shown)."""
    try:
        return float(format_kpi(x, digits).replace(",", ""))
    except ValueError:
        return x


def is_significant(lo: float, hi: float, digits: int | None = None) -> bool:
    """A difference is significant when its interval exists and excludes zero — at the
    precision shown (``digits``, see :func:`kpi_unit`) when given, so the report never marks
    an interval that reads [0.0000, 0.0000]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return False
    if digits is not None:
        lo, hi = _shown(lo, digits), _shown(hi, digits)
    return bool(lo > 0 or hi < 0)


def _num(x: float, digits: int, signed: bool = False) -> str:
    """A formatted number, with "+" for positive values shown as non-zero when ``signed``."""
    text = format_kpi(x, digits)
    shown_zero = text.replace("0", "").strip(".,") == ""
    return f"+{text}" if signed and math.isfinite(x) and x > 0 and not shown_zero else text


def _interval(lo: float, hi: float, digits: int, signed: bool = False) -> str:
    """``[lo, hi]`` or "" when the interval is undefined."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f" [{_num(lo, digits, signed)}, {_num(hi, digits, signed)}]"


def _status(lo: float, hi: float, seeds: int, digits: int) -> str:
    if seeds < 2 or not (math.isfinite(lo) and math.isfinite(hi)):
        return "one seed: no interval can be given" if seeds < 2 else "no interval"
    word = "significant" if is_significant(lo, hi, digits) else "not significant"
    return f"{word} at 95 %, {seeds} seeds"


# ----------------------------------------------------------------------------- sentences


_STATS = ("mean", "lo", "hi", "diff", "diff_lo", "diff_hi")

Row = dict[str, float]


def _rows(summary: pd.DataFrame, kpi: str) -> dict[str, Row]:
    """The summary rows of one KPI: design → its statistics (NaN where a column is absent)."""
    rows = summary[summary["kpi"].astype(str) == kpi]
    stats = {c: rows[c].to_numpy(dtype=float) if c in rows.columns else None for c in _STATS}
    out: dict[str, Row] = {}
    for i, design in enumerate(rows["design"].astype(str)):
        out[design] = {c: float(v[i]) if v is not None else np.nan for c, v in stats.items()}
    return out


def _change(design: str, label: str, row: Row, unit: str, digits: int) -> str:
    """``<design> lowers the <label> by X unit [lo, hi]`` for one summary row."""
    d, lo, hi = row["diff"], row["diff_lo"], row["diff_hi"]
    if not math.isfinite(d):
        return f"{design} gives {format_kpi(row['mean'], digits)} {unit}".rstrip()
    if _shown(abs(d), digits) == 0.0:
        amount = f"{_num(d, digits, signed=True)} {unit}".rstrip()
        return f"{design} changes the {label} by {amount}{_interval(lo, hi, digits, True)}"
    verb = "lowers" if d < 0 else "raises"
    size, a, b = (-d, -hi, -lo) if d < 0 else (d, lo, hi)
    amount = f"{format_kpi(size, digits)} {unit}".rstrip()
    return f"{design} {verb} the {label} by {amount}{_interval(a, b, digits)}"


def _names(designs: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return designs[0] if len(designs) == 1 else f"{', '.join(designs[:-1])} and {designs[-1]}"


def summary_sentence(
    kpi: str, better: Literal["lower", "higher"], comparison: Comparison, currency: str
) -> str:
    """One plain sentence: which design is best on ``kpi``, by how much against the
    baseline, and whether that difference is significant."""
    rows = _rows(comparison.summary, kpi)
    means = {p: r["mean"] for p, r in rows.items() if math.isfinite(r["mean"])}
    unit, digits = kpi_unit(kpi)
    if unit == money_symbol(currency):
        unit = currency.upper()  # "231.79 EUR" reads better than "231.79 €" in a sentence
    label = kpi_label(kpi)
    base = comparison.baseline
    seeds = seeds_of(comparison)
    if not means:
        return f"No design has a value for the {label}."
    shown = {p: _shown(m, digits) for p, m in means.items()}
    if len(set(shown.values())) == 1:
        value = f"{format_kpi(next(iter(means.values())), digits)} {unit}".rstrip()
        return f"All designs give the same {label}: {value}".rstrip(".") + "."
    pick = min if better == "lower" else max
    leaders = [p for p in means if shown[p] == pick(shown.values())]
    if base in leaders:
        value = f"{format_kpi(means[base], digits)} {unit}".rstrip()
        text = f"No design has a {better} {label} than {base} ({value})"
        tied = [p for p in leaders if p != base]
        if tied:
            return f"{text}; {_names(tied)} {'matches' if len(tied) == 1 else 'match'} it."
        runner_up = pick((p for p in means if p != base), key=lambda p: means[p])
        row = rows[runner_up]
        change = _change(f"the closest, {runner_up},", label, row, unit, digits)
        return f"{text}; {change} ({_status(row['diff_lo'], row['diff_hi'], seeds, digits)})."
    best = pick(leaders, key=lambda p: means[p])
    row = rows[best]
    text = _change(best, label, row, unit, digits)
    tied = [p for p in leaders if p != best]
    same = f"; {_names(tied)} {'does' if len(tied) == 1 else 'do'} as well" if tied else ""
    if not math.isfinite(row["diff"]):
        return f"{text}, the {better} {label}; {base} has no value to compare{same}."
    return (
        f"{text} against {base} ({_status(row['diff_lo'], row['diff_hi'], seeds, digits)}){same}."
    )


def summary_html(comparison: Comparison, currency: str) -> str:
    """The opening list of sentences plus the KPIs reported for information."""
    summary = comparison.summary
    if summary.empty or not {"kpi", "design", "mean"} <= set(summary.columns):
        return note("No KPI summary.")
    items, info = [], []
    for kpi in dict.fromkeys(summary["kpi"].astype(str)):
        better = kpi_better(kpi, currency)
        if better is None:
            info.append(kpi_label(kpi))
        else:
            items.append(f"<li>{esc(summary_sentence(kpi, better, comparison, currency))}</li>")
    seeds = seeds_of(comparison)
    basis = (
        f"Means over {seeds} seeds (random draws of devices and forecast errors); intervals "
        "are 95 % paired t-intervals of the difference from the baseline, "
        f"{comparison.baseline} (business as usual)."
        if seeds > 1
        else "One seed: no confidence interval can be given; every difference is that of a "
        "single run and none is called significant."
    )
    parts = [note(basis)]
    if items:
        parts.append('<ul class="summary">\n' + "\n".join(items) + "\n</ul>")
    if info:
        parts.append(
            note("Reported for information (neither direction is better): " + ", ".join(info) + ".")
        )
    return "\n".join(parts)


# --------------------------------------------------------------------------------- table


def _cell(row: Row | None, digits: int, baseline: bool, seeds: int) -> Html:
    """``mean [lo, hi]`` and, below it, ``Δ diff [lo, hi]`` (green when significant)."""
    if row is None or not math.isfinite(row["mean"]):
        return Html("–")
    lo, hi = row["lo"], row["hi"]
    mean = format_kpi(row["mean"], digits) + (_interval(lo, hi, digits) if seeds > 1 else "")
    text = f'<span class="v">{esc(mean)}</span>'
    if baseline:
        return Html(f'{text}<span class="diff">baseline</span>')
    d, dlo, dhi = row["diff"], row["diff_lo"], row["diff_hi"]
    if not math.isfinite(d):
        return Html(text)
    diff = f"Δ {_num(d, digits, signed=True)}{_interval(dlo, dhi, digits)}"
    sig = is_significant(dlo, dhi, digits)
    cls = "diff sig" if sig else "diff"
    mark = " *" if sig else ""
    return Html(f'{text}<span class="{cls}">{esc(diff + mark)}</span>')


def comparison_table(comparison: Comparison, currency: str) -> str:
    """Each KPI's mean [lo, hi] per design and its difference from the baseline."""
    summary = comparison.summary
    if summary.empty or not {"kpi", "design", "mean"} <= set(summary.columns):
        return note("No KPIs.")
    designs = design_order(comparison)
    seeds = seeds_of(comparison)
    arrows = {"lower": "lower", "higher": "higher", None: "–"}
    kpis = list(dict.fromkeys(summary["kpi"].astype(str)))
    groups = {k: kpi_group(k) for k in kpis}
    with_group = any(groups.values())
    if with_group:
        order = list(dict.fromkeys(groups.values()))
        kpis.sort(key=lambda k: order.index(groups[k]))
    rows: list[Sequence[str]] = []
    for kpi in kpis:
        unit, digits = kpi_unit(kpi)
        by_design = _rows(summary, kpi)
        meaning = kpi_meaning(kpi, currency)
        name = Html(esc(kpi) + (f'<span class="meaning">{esc(meaning)}</span>' if meaning else ""))
        cells = [
            _cell(
                by_design.get(p),
                digits,
                p == comparison.baseline,
                seeds,
            )
            for p in designs
        ]
        lead = [groups[kpi]] if with_group else []
        rows.append([*lead, name, unit, arrows[kpi_better(kpi, currency)], *cells])
    header = [*(["category"] if with_group else []), "KPI", "unit", "better", *designs]
    explain = (
        "Each cell: mean [95 % interval] over the seeds; below it Δ, the paired difference "
        f"from {comparison.baseline} [95 % interval], marked * and green when the interval "
        "excludes 0."
        if seeds > 1
        else f"One seed: no interval can be given. Δ: the difference from {comparison.baseline} "
        "in this single run."
    )
    return table(header, rows, numeric_from=len(header) - len(designs)) + note(explain)

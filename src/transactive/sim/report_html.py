"""HTML building blocks and number formatting of the report (:mod:`transactive.sim.report`).

Every text from data goes through :func:`esc`; cells that are already HTML are wrapped in
:class:`Html` so :func:`table` inserts them as they are.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

#: Unit suffix of a KPI name → (display unit, decimals shown).
UNITS: dict[str, tuple[str, int]] = {
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
    "kh": ("K·h", 2),
    "s": ("s", 1),
}

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: #1f2328; margin: 2rem auto; max-width: 1280px; padding: 0 1rem;
       line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de;
     padding-bottom: 0.2rem; }
h3 { font-size: 1.0rem; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.1rem 1rem;
          color: #57606a; }
dl.meta dt { font-weight: 600; }
dl.meta dd { margin: 0; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.85rem; }
th, td { border: 1px solid #d0d7de; padding: 0.2rem 0.45rem; vertical-align: top; }
th { background: #f6f8fa; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
div.wide { overflow-x: auto; }
td .v { white-space: nowrap; }
td .diff { display: block; color: #57606a; font-size: 0.8rem; white-space: nowrap; }
td .meaning { display: block; color: #57606a; font-size: 0.8rem; min-width: 14rem; }
td .sig { color: #1a7f37; font-weight: 600; }
ul.summary li { margin: 0.25rem 0; }
figure { margin: 0.5rem 0; }
figcaption, p.note { color: #57606a; font-size: 0.85rem; }
"""


class Html(str):
    """A string that is already HTML (inserted into tables without escaping)."""

    __slots__ = ()


def esc(text: object) -> str:
    """HTML-escape any value rendered as text (quotes included)."""
    return html.escape(str(text), quote=True)


def section(title: str, body: str, anchor: str = "") -> str:
    """One ``<section>`` with a heading (``anchor``: optional id)."""
    ident = f' id="{esc(anchor)}"' if anchor else ""
    return f"<section{ident}>\n<h2>{esc(title)}</h2>\n{body}\n</section>"


def note(text: str) -> str:
    """A muted paragraph (text is escaped)."""
    return f'<p class="note">{esc(text)}</p>'


def table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int) -> str:
    """HTML table; cells are formatted strings (escaped unless :class:`Html`), right-aligned
    from column ``numeric_from`` on."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            text = c if isinstance(c, Html) else esc(c)
            cls = ' class="num"' if i >= numeric_from else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="wide"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(body)
        + "\n</tbody>\n</table></div>"
    )


def kpi_unit(name: str) -> tuple[str, int]:
    """Display unit and decimals from a KPI name's suffix (``peak_import_kw`` → kW, 1).

    ``..._usd_per_kwh`` style suffixes give a compound unit ($/kWh). Names without a known
    unit (e.g. ``voltage_violations``) are counts: no unit, 0 decimals for whole numbers.
    """
    tokens = name.lower().split("_")
    if len(tokens) >= 3 and tokens[-2] == "per" and tokens[-3] in UNITS and tokens[-1] in UNITS:
        num, digits = UNITS[tokens[-3]]
        return f"{num}/{UNITS[tokens[-1]][0]}", max(digits, 4)
    if tokens[-1] in UNITS:
        return UNITS[tokens[-1]]
    return "", -1


def kpi_label(name: str) -> str:
    """Plain words of a KPI name without its unit suffix (``peak_import_kw`` → peak import)."""
    tokens = name.split("_")
    if len(tokens) >= 3 and tokens[-2] == "per" and tokens[-3].lower() in UNITS:
        tokens = tokens[:-3]
    elif len(tokens) >= 2 and tokens[-1].lower() in UNITS:
        tokens = tokens[:-1]
    return " ".join(tokens)


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
        text = f"{x:,.{digits}f}"
        return text.lstrip("-") if float(text.replace(",", "")) == 0.0 else text  # no "-0.0"
    if x.is_integer():
        return f"{x:,.0f}"
    return f"{x:,.4g}" if abs(x) < 1000 else f"{x:,.1f}"


def money_symbol(currency: str) -> str:
    """The currency as shown in labels: its symbol where known ($, €), else its code."""
    return UNITS.get(currency.lower(), (currency, 2))[0]

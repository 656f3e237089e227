"""Invoices per participant, design and settlement period, from settlement lines.

An invoice shows a participant's lines aggregated by charge, counterparty and quality
(measured and estimated quantities on separate items): the number of lines, the quantity
(kWh), the average unit price (currency/kWh: amount / quantity; empty where the quantity is
0) and the amount (minor units). Lines the participant pays count +, lines it receives
(it is their counterparty) count − with their quantity negated, so a DSO's invoice shows
its receipts as credits. ``subtotal`` is every item but VAT, ``vat`` the VAT items,
``total`` their sum; the items add up to the lines exactly (checked,
:class:`~transactive.errors.BalanceError`).

:func:`write_invoices` writes one CSV and one self-contained HTML page (no external
assets) per participant, design and period, and an index (``index.csv``, ``index.html``).
"""

from __future__ import annotations

import csv
import html
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from transactive.errors import BalanceError, InvalidInputError
from transactive.settlement.totals import MINOR, format_minor, period_of

ITEM_COLUMNS = ["charge", "counterparty_id", "quality", "lines", "quantity_kwh",
                "unit_price", "amount"]  # fmt: skip
_KEYS = ["design", "period", "who", "charge", "other", "quality"]


@dataclass(frozen=True)
class Invoice:
    """One participant's invoice for one design and period; money in minor units."""

    participant_id: str
    design: str
    period: str
    currency: str
    #: :data:`ITEM_COLUMNS`: amount int64 minor units, quantity kWh, unit price currency/kWh.
    items: pd.DataFrame
    subtotal: int
    vat: int
    total: int

    def summary(self) -> list[tuple[str, int]]:
        """The closing rows: ``subtotal``, ``vat_total``, ``total`` (minor units)."""
        return [("subtotal", self.subtotal), ("vat_total", self.vat), ("total", self.total)]

    def to_csv(self) -> str:
        """The items, then the :meth:`summary` rows (in the ``charge`` column); amounts as
        exact decimals of the currency."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["design", "participant_id", "period", *ITEM_COLUMNS, "currency"])
        ident = [self.design, self.participant_id, self.period]
        for r in self.items.to_dict("records"):
            row = [r["charge"], r["counterparty_id"], r["quality"], r["lines"]]
            nums = [_num(r["quantity_kwh"]), _num(r["unit_price"]), format_minor(r["amount"])]
            w.writerow([*ident, *row, *nums, self.currency])
        for label, value in self.summary():
            w.writerow([*ident, label, "", "", "", "", "", format_minor(value), self.currency])
        return out.getvalue()

    def to_html(self) -> str:
        """A self-contained HTML page (inline style, no external assets)."""
        e = html.escape
        body = []
        for r in self.items.to_dict("records"):
            cls = ' class="estimated"' if r["quality"] == "estimated" else ""
            body.append(
                f"<tr{cls}><td>{e(str(r['charge']))}</td><td>{e(str(r['counterparty_id']))}</td>"
                f"<td>{e(str(r['quality']))}</td><td class=n>{r['lines']}</td>"
                f"<td class=n>{_num(r['quantity_kwh'])}</td>"
                f"<td class=n>{_num(r['unit_price'])}</td>"
                f"<td class=n>{format_minor(r['amount'])}</td></tr>"
            )
        foot = "".join(
            f"<tr class=sum><td colspan=6>{label}</td>"
            f'<td class=n id="{label}">{format_minor(v)}</td></tr>'
            for label, v in self.summary()
        )
        title = f"Invoice {self.participant_id} · {self.design} · {self.period}"
        return (
            "<!doctype html><html><head><meta charset=utf-8>"
            f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{e(title)}</h1><p>Amounts in {e(self.currency)}; + paid, − received. "
            "Estimated quantities are marked.</p><table><thead><tr><th>charge</th>"
            "<th>counterparty</th><th>quality</th><th>lines</th><th>quantity kWh</th>"
            f"<th>unit price {e(self.currency)}/kWh</th><th>amount {e(self.currency)}</th>"
            f"</tr></thead><tbody>{''.join(body)}</tbody><tfoot>{foot}</tfoot></table>"
            "</body></html>\n"
        )


def invoice(
    lines: pd.DataFrame, participant_id: str, period: str = "all", design: str | None = None
) -> Invoice:
    """The invoice of ``participant_id`` for one settlement ``period`` label (``"all"``, a
    month ``"YYYY-MM"`` or a day ``"YYYY-MM-DD"``, UTC) and ``design`` (may be left out
    when ``lines`` hold one design)."""
    designs = [str(d) for d in pd.unique(lines["design"].astype(str))] if len(lines) else []
    if design is None:
        if len(designs) != 1:
            raise InvalidInputError(f"invoice: pick one design of {designs}")
        design = designs[0]
    kind = _kind_of(period)
    pays = lines["participant_id"] == participant_id
    mine = (pays | (lines["counterparty_id"] == participant_id)) & (lines["design"] == design)
    sel = lines[mine.to_numpy(dtype=bool)]
    sel = sel[np.asarray(period_of(sel["interval_start"], kind)) == period]
    if sel.empty:
        raise InvalidInputError(
            f"invoice: {participant_id!r} has no settlement line in design {design!r}, "
            f"period {period!r}"
        )
    view = _view(sel, kind)
    view = view[view["who"] == participant_id]
    items = _items(view)
    inv = _invoice(items, participant_id, design, period, str(sel["currency"].iloc[0]))
    signed = np.where(
        (sel["participant_id"] == participant_id).to_numpy(dtype=bool),
        sel["amount"].to_numpy(dtype=np.int64),
        0,
    ) - np.where(
        (sel["counterparty_id"] == participant_id).to_numpy(dtype=bool),
        sel["amount"].to_numpy(dtype=np.int64),
        0,
    )
    if int(signed.sum()) != inv.total:
        raise BalanceError(
            f"invoice of {participant_id}: items total {inv.total} ≠ lines {int(signed.sum())}"
        )
    return inv


def write_invoices(lines: pd.DataFrame, directory: Path, period: str = "whole") -> list[Path]:
    """One ``<design>/<participant>_<period>.csv`` and ``.html`` per participant, design and
    ``period`` (``whole``, ``month``, ``day``) into ``directory`` (made if missing), and the
    index ``index.csv`` / ``index.html``; returns the files written. The items of every
    invoice come from one aggregation of all lines; the invoices' totals are checked to add
    up to the lines."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rows = []
    if len(lines):
        view = _view(lines, period)
        items = view.groupby(_KEYS, observed=True, sort=True).agg(
            lines=("n", "sum"), quantity_kwh=("qty", "sum"), amount=("amount", "sum")
        )
        items = items.reset_index()
        for (design, label, who), it in items.groupby(
            ["design", "period", "who"], sort=True, observed=True
        ):
            inv = _invoice(
                _finish(it.rename(columns={"other": "counterparty_id"})),
                str(who), str(design), str(label), str(lines["currency"].iloc[0]),
            )  # fmt: skip
            folder = directory / _safe(str(design))
            folder.mkdir(exist_ok=True)
            stem = f"{_safe(str(who))}_{label}"
            table, page = folder / f"{stem}.csv", folder / f"{stem}.html"
            if table in written:
                raise InvalidInputError(f"invoices: two participants write {table.name}")
            table.write_text(inv.to_csv())
            page.write_text(inv.to_html())
            written += [table, page]
            rows.append([design, who, label, inv.subtotal, inv.vat, inv.total,
                         table.relative_to(directory), page.relative_to(directory)])  # fmt: skip
        _check_totals(lines, view, rows)
    index = pd.DataFrame(
        rows, columns=["design", "participant_id", "period", "subtotal", "vat", "total",
                       "csv", "html"],
    )  # fmt: skip
    shown = index.assign(**{c: index[c].map(format_minor) for c in ("subtotal", "vat", "total")})
    shown.to_csv(directory / "index.csv", index=False)
    links = "".join(
        f"<tr><td>{html.escape(str(r.design))}</td><td>{html.escape(str(r.participant_id))}"
        f"</td><td>{html.escape(str(r.period))}</td><td class=n>{r.total}</td>"
        f'<td><a href="{html.escape(str(r.html))}">html</a> '
        f'<a href="{html.escape(str(r.csv))}">csv</a></td></tr>'
        for r in shown.itertuples(index=False)
    )
    (directory / "index.html").write_text(
        "<!doctype html><html><head><meta charset=utf-8><title>Invoices</title>"
        f"<style>{_STYLE}</style></head><body><h1>Invoices</h1><table><thead><tr>"
        "<th>design</th><th>participant</th><th>period</th><th>total</th><th>files</th></tr>"
        f"</thead><tbody>{links}</tbody></table></body></html>\n"
    )
    return [*written, directory / "index.csv", directory / "index.html"]


def _view(lines: pd.DataFrame, period: str) -> pd.DataFrame:
    """Every line twice: as its payer's (+) and as its payee's (−, quantity negated)."""
    per = period_of(lines["interval_start"], period)
    amount = lines["amount"].to_numpy(dtype=np.int64)
    qty = lines["quantity_kwh"].to_numpy(dtype=float)
    sides = []
    for who, other, sign in (("participant_id", "counterparty_id", 1),
                             ("counterparty_id", "participant_id", -1)):  # fmt: skip
        sides.append(
            pd.DataFrame(
                {
                    "design": lines["design"].to_numpy(),
                    "period": per,
                    "who": lines[who].astype(str).to_numpy(),
                    "charge": lines["charge"].to_numpy(),
                    "other": lines[other].astype(str).to_numpy(),
                    "quality": lines["quality"].to_numpy(),
                    "n": 1,
                    "qty": sign * qty,
                    "amount": sign * amount,
                }
            )
        )
    return pd.concat(sides, ignore_index=True)


def _items(view: pd.DataFrame) -> pd.DataFrame:
    """One participant's items from its view (one groupby)."""
    g = view.groupby(["charge", "other", "quality"], observed=True, sort=True)
    items = g.agg(lines=("n", "sum"), quantity_kwh=("qty", "sum"), amount=("amount", "sum"))
    return _finish(items.reset_index().rename(columns={"other": "counterparty_id"}))


def _finish(items: pd.DataFrame) -> pd.DataFrame:
    """The item table: labels as text, amount int64, the average unit price."""
    out = pd.DataFrame(
        {
            "charge": items["charge"].astype(str).to_numpy(),
            "counterparty_id": items["counterparty_id"].astype(str).to_numpy(),
            "quality": items["quality"].astype(str).to_numpy(),
            "lines": items["lines"].to_numpy(dtype=np.int64),
            "quantity_kwh": items["quantity_kwh"].to_numpy(dtype=float),
            "amount": items["amount"].to_numpy(dtype=np.int64),
        }
    )
    q = out["quantity_kwh"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = np.where(np.abs(q) > 1e-12, out["amount"].to_numpy() / MINOR / q, np.nan)
    out.insert(5, "unit_price", unit)
    return out[ITEM_COLUMNS]


def _invoice(items: pd.DataFrame, who: str, design: str, period: str, cur: str) -> Invoice:
    is_vat = (items["charge"] == "vat").to_numpy(dtype=bool)
    amount = items["amount"].to_numpy(dtype=np.int64)
    subtotal, vat = int(amount[~is_vat].sum()), int(amount[is_vat].sum())
    return Invoice(who, design, period, cur, items, subtotal, vat, subtotal + vat)


def _check_totals(lines: pd.DataFrame, view: pd.DataFrame, rows: list[list[object]]) -> None:
    """The invoices' totals add up to what each participant pays net, from the lines."""
    paid = lines.groupby(lines["participant_id"].astype(str), observed=True)["amount"].sum()
    got = lines.groupby(lines["counterparty_id"].astype(str), observed=True)["amount"].sum()
    want = paid.sub(got, fill_value=0).astype(np.int64)
    have = pd.DataFrame(rows).groupby(1)[5].sum()
    bad = [w for w in want.index if int(have.get(w, 0)) != int(want[w])]
    if bad or len(view) != 2 * len(lines):
        raise BalanceError(f"invoices: the totals of {bad[:1]} do not add up to the lines")


def _kind_of(label: str) -> str:
    if label == "all":
        return "whole"
    if re.fullmatch(r"\d{4}-\d{2}", label):
        return "month"
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", label):
        return "day"
    raise InvalidInputError(f"invoice: period {label!r} is not 'all', 'YYYY-MM' or 'YYYY-MM-DD'")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _num(x: object) -> str:
    v = float(x)  # type: ignore[arg-type]
    return "" if not np.isfinite(v) else f"{v:.6g}"


_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.2em .6em}td.n{text-align:right}"
    "tr.estimated{background:#fff3cd}tr.sum td{font-weight:bold}"
)

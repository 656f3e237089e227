"""`transactive capacity NEED.toml OFFERS.csv [--json]`: a capacity / non-wires-alternative
auction — the performance test, the cleared offers and their availability payments, the
upgrade comparison and the decision (defer or build). Formats: ``docs/capacity.md``.

Like :mod:`transactive.cli`, only the standard library and typer load at import; the auction
(numpy, pandas, highspy) loads inside the command after the arguments are checked. Bad input
(a missing file, a bad key, a bad cell) exits with code 2 naming the file and the key or the
line and column; ``--json`` prints one JSON document and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from transactive.market.capacity import Auction
    from transactive.market.capacity_files import NeedFile


def capacity_cmd(
    need: Annotated[
        Path, typer.Argument(help="Need file (TOML: element, need, [season], [upgrade]).")
    ],
    offers: Annotated[
        Path,
        typer.Argument(
            help="Offers (CSV: offer_id,provider,firm_kw,price,reliability[,resource][,node]"
            "[,energy_kwh][,max_activations][,divisible])."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Clear a capacity (non-wires-alternative) auction and compare it with the upgrade:
    defer the upgrade or build it, with the NPV and the under-delivery risk."""
    from transactive.cli import _check_input_file, _errors, _print_json

    with _errors():
        _check_input_file(need, "need file")
        _check_input_file(offers, "offers file")
        from transactive.market.capacity import run_auction
        from transactive.market.capacity_files import read_need, read_offers

        nf = read_need(need)
        book, _ = read_offers(offers)
        up = nf.upgrade
        auction = run_auction(
            book,
            nf.need(),
            up.upgrade(),
            up.deferral_years,
            pricing=nf.pricing,
            risk_threshold=nf.risk_threshold,
            method=up.method,
            risk_unit=nf.risk_unit,
        )
    payload = capacity_json(nf, auction)
    if as_json:
        _print_json(payload)
        return
    _print_capacity(payload)


def capacity_json(nf: NeedFile, auction: Auction) -> dict[str, Any]:
    """The command's JSON document (see ``docs/capacity.md``)."""
    need = nf.need()
    windows = need.season.windows()
    c, d = auction.clearing, auction.decision
    rows = auction.table().to_dict(orient="records")
    return {
        "currency": nf.currency,
        "need": {
            "element": need.element,
            "need_kw": need.need_kw,
            "event_duration_h": need.duration_h,
            "events": need.events,
            "windows": len(windows),
            "first_window_utc": windows["start"].min().isoformat() if len(windows) else None,
            "last_window_utc": windows["end"].max().isoformat() if len(windows) else None,
        },
        "offers": rows,
        "clearing": {
            "status": c.status,
            "pricing": c.pricing,
            "target_kw": c.target_kw,
            "uniform_price_per_firm_kw": c.price,
            "payments": c.cost,
        },
        "upgrade": {
            "capex": nf.upgrade.capex,
            "life_years": nf.upgrade.life_years,
            "discount_rate": nf.upgrade.discount_rate,
            "capacity_kw": nf.upgrade.capacity_kw,
            "annualised_cost": d.annualised_upgrade_cost,
            "cost_per_kw_year": d.upgrade_cost_per_kw_year,
        },
        "decision": {
            "action": d.action,
            "defer": d.defer,
            "reason": d.reason,
            "npv": d.npv,
            "annual_value": d.annual_value,
            "deferral_years": d.deferral_years,
            "method": d.method,
            "capacity_cost_per_year": d.capacity_cost_per_year,
            "nwa_cost_per_kw_year": d.cost_per_kw_year,
            "procured_kw": d.procured_kw,
            "procured_firm_kw": d.procured_firm_kw,
            "need_kw": d.need_kw,
            "under_delivery_risk": d.under_delivery_risk,
            "expected_shortfall_kw": d.expected_shortfall_kw,
            "risk_threshold": d.risk_threshold,
        },
    }


def decision_line(d: dict[str, Any], cur: str) -> str:
    """``defer: NPV EUR 4,249 …`` / ``build: …`` / ``none: …``."""
    npv = "n/a" if d["npv"] is None or d["npv"] != d["npv"] else f"{cur} {d['npv']:,.0f}"
    return (
        f"{d['action']}: NPV {npv} over {d['deferral_years']:g} years, under-delivery risk "
        f"{d['under_delivery_risk']:.1%} (threshold {d['risk_threshold']:.1%}), expected "
        f"shortfall {d['expected_shortfall_kw']:.2f} kW — {d['reason']}"
    )


def _print_capacity(p: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    cur, n, c, u, d = p["currency"], p["need"], p["clearing"], p["upgrade"], p["decision"]
    console = Console(width=max(Console().width, 120))
    console.print(
        f"need: {n['need_kw']:.1f} firm kW at {n['element']} in {n['windows']} windows "
        f"({n['event_duration_h']:g} h events, {n['events']} per season)"
    )
    table = Table(title=f"Offers ({c['pricing']}; price {cur}/kW per season)")
    for col in ("offer", "provider", "kW", "price", "rel.", "firm kW", "share", "awarded kW",
                f"payment {cur}", "qualification"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("offer", "provider",
                         "qualification") else "right")  # fmt: skip
    for r in p["offers"]:
        table.add_row(
            str(r["offer_id"]),
            str(r["provider"]),
            f"{r['firm_kw']:g}",
            f"{r['price']:g}",
            f"{r['reliability']:.2f}",
            f"{r['firm_awarded_kw']:.2f}",
            f"{r['share']:.2f}",
            f"{r['awarded_kw']:.2f}",
            f"{r['payment']:,.2f}",
            "qualified" if r["qualified"] else f"disqualified: {r['reason']}",
        )
    console.print(table)
    console.print(
        f"clearing: {c['status']}, de-rated target {c['target_kw']:.1f} kW, payments "
        f"{cur} {c['payments']:,.2f} per season"
    )
    console.print(
        f"upgrade: {cur} {u['capex']:,.0f}, {u['life_years']:g} years at "
        f"{u['discount_rate']:.1%} → {cur} {u['annualised_cost']:,.0f}/yr, "
        f"{cur} {u['cost_per_kw_year']:.2f}/kW-yr of {u['capacity_kw']:g} kW; NWA "
        f"{cur} {d['capacity_cost_per_year']:,.0f}/yr = {cur} {d['nwa_cost_per_kw_year']:.2f}"
        f"/kW-yr of need"
    )
    console.print(decision_line(d, cur))

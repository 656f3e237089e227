"""`transactive p2p ORDERS.csv`: match peer-to-peer orders, price the trades, and with
``--feeder`` let the DSO check them on an AC power flow (docs/p2p.md).

Like :mod:`transactive.cli` this module imports only the standard library and typer at
start-up; numpy, the grid and the solver load inside the command after the cheap checks.
Exit codes: 0 done, 2 bad input (the message names file, line and column), 1 a failed
computation. ``--json`` prints one JSON document.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from transactive.market.p2p import P2PResult

MAX_TRADE_ROWS = 200


def p2p_cmd(
    orders: Annotated[
        Path,
        typer.Argument(
            help="Order file (CSV: order_id,participant,side,kwh,price[,bus][,section]"
            "[,interval][,local_only][,green_only][,green][,counterparty])."
        ),
    ],
    feeder: Annotated[
        str | None,
        typer.Option(help="Feeder for the DSO's AC check, e.g. pandapower:cigre_lv."),
    ] = None,
    network_charge: Annotated[
        str,
        typer.Option(
            "--network-charge",
            help="flat:RATE (currency/kWh per trade) or distance:RATE (per branch between "
            "the buses; needs --feeder).",
        ),
    ] = "flat:0.0",
    duration_h: Annotated[
        float, typer.Option("--duration-h", help="Interval length, h (kW = kWh / it).")
    ] = 1.0,
    base_load: Annotated[
        float,
        typer.Option(
            "--base-load",
            help="Base (non-traded) net load as a factor of the feeder's nameplate loads "
            "and generators (0 = the trades alone).",
        ),
    ] = 0.0,
    v_min: Annotated[float, typer.Option("--v-min", help="Lower voltage limit (pu).")] = 0.95,
    v_max: Annotated[float, typer.Option("--v-max", help="Upper voltage limit (pu).")] = 1.05,
    currency: Annotated[str, typer.Option(help="Currency of the prices (ISO 4217).")] = "EUR",
    dso: Annotated[str, typer.Option(help="Participant that receives network charges.")] = "dso",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Match P2P orders per interval (welfare-maximising call market with preferences),
    price each trade from the LP duals, charge the network, and with --feeder check and
    curtail the trades on the feeder's AC power flow."""
    from transactive.cli import _check_input_file, _errors, _print_json

    with _errors():
        _check_input_file(orders, "order file")
        result, lines = _run(
            orders, feeder, network_charge, duration_h, base_load, v_min, v_max, currency, dso
        )
    payload = _payload(result, lines, feeder, currency)
    if as_json:
        _print_json(payload)
        return
    _print_tables(payload, currency)


def _run(
    orders: Path,
    feeder_name: str | None,
    network_charge: str,
    duration_h: float,
    base_load: float,
    v_min: float,
    v_max: float,
    currency: str,
    dso: str,
) -> tuple[P2PResult, Any]:
    import math

    from transactive.errors import InvalidInputError
    from transactive.market.p2p import parse_network_charge

    charge = parse_network_charge(network_charge)
    if not (math.isfinite(duration_h) and duration_h > 0):
        raise InvalidInputError(f"--duration-h {duration_h} is not > 0")
    if not (math.isfinite(base_load) and base_load >= 0):
        raise InvalidInputError(f"--base-load {base_load} is not ≥ 0")
    if charge.kind == "distance" and feeder_name is None:
        raise InvalidInputError("--network-charge distance:… needs --feeder")
    feeder = None
    if feeder_name is not None:
        from transactive.grid.registry import check_name

        check_name(feeder_name)
    from transactive.grid.limits import Limits
    from transactive.market.p2p import clear_p2p, read_orders
    from transactive.settlement.p2p import p2p_balance, p2p_lines

    limits = Limits(v_min_pu=v_min, v_max_pu=v_max)
    if feeder_name is not None:
        from transactive.grid.registry import load_feeder

        feeder = load_feeder(feeder_name)
    o = read_orders(orders, feeder, duration_h)
    base_p = base_q = None
    if feeder is not None:
        import numpy as np

        from transactive.grid.model import base_injections

        n_t = int(o.interval.max(initial=0)) + 1
        base = base_injections(feeder, base_load, base_load)
        base_p = np.repeat(base.p_kw, n_t, axis=0)
        base_q = np.repeat(base.q_kvar, n_t, axis=0)
    result = clear_p2p(o, charge, feeder, limits, base_p, base_q)
    lines = p2p_lines(result.trades, dso=dso, currency=currency, duration_h=duration_h)
    p2p_balance(lines)
    return result, lines


def _payload(result: P2PResult, lines: Any, feeder: str | None, currency: str) -> dict[str, Any]:
    from transactive.settlement.totals import to_currency

    tr = result.trades
    records: list[dict[Any, Any]] = tr.to_dict("records")
    trades = []
    for r in records:
        start = r["interval_start"]
        trades.append(
            {
                "interval": int(r["interval"]),
                "interval_start": None if str(start) == "NaT" else start.isoformat(),
                **{k: str(r[k]) for k in ("buyer_order", "seller_order", "buyer", "seller")},
                "kwh": float(r["kwh"]),
                "price": _finite(r["price"]),
                "network_charge": float(r["network_charge"]),
                "buyer_price": _finite(r["buyer_price"]),
                "matched_kwh": float(r["matched_kwh"]),
                "status": str(r["status"]),
                "reason": str(r["reason"]),
            }
        )
    amount = lines.groupby("charge", observed=True)["amount"].sum()
    out: dict[str, Any] = {
        "currency": currency,
        "trades": trades,
        "traded_kwh": float(tr["kwh"].sum()),
        "welfare": result.welfare,
        "welfare_unconstrained": result.welfare_unconstrained,
        "energy_paid": float(to_currency(int(amount.get("p2p_energy", 0)))),
        "network_paid": float(to_currency(int(amount.get("p2p_network", 0)))),
        "dso": None,
    }
    if result.dso is not None:
        d = result.dso
        out["dso"] = {
            "feeder": feeder,
            "feasible": d.feasible,
            "rounds": d.rounds,
            "violations": len(d.violations),
            "base_violations": d.base_violations,
            "curtailed": int((tr["status"] == "curtailed").sum()),
            "rejected": int((tr["status"] == "rejected").sum()),
            "curtailed_kwh": float((tr["matched_kwh"] - tr["kwh"]).clip(lower=0).sum()),
        }
    return out


def _finite(x: Any) -> float | None:
    v = float(x)
    return v if v == v else None


def _print_tables(p: dict[str, Any], currency: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="P2P trades (kWh; prices in " + currency + "/kWh)")
    for col in ("interval", "buyer", "seller", "kWh", "price", "network", "buyer pays", "status"):
        table.add_column(col, justify="right" if col in ("kWh", "price", "network",
                                                          "buyer pays") else "left")  # fmt: skip
    for r in p["trades"][:MAX_TRADE_ROWS]:
        when = (
            r["interval_start"][:16].replace("T", " ") + "Z"
            if r["interval_start"]
            else str(r["interval"])
        )
        price = "—" if r["price"] is None else f"{r['price']:.4f}"
        buyer_pays = "—" if r["buyer_price"] is None else f"{r['buyer_price']:.4f}"
        table.add_row(when, r["buyer"], r["seller"], f"{r['kwh']:.3f}", price,
                      f"{r['network_charge']:.4f}", buyer_pays, r["status"])  # fmt: skip
    console.print(table)
    for r in p["trades"][:MAX_TRADE_ROWS]:
        if r["reason"]:
            console.print(f"{r['status']} {r['buyer']} ← {r['seller']}: {r['reason']}")
    if len(p["trades"]) > MAX_TRADE_ROWS:
        console.print(f"{len(p['trades'])} trades, {MAX_TRADE_ROWS} shown; use --json.")
    console.print(
        f"traded {p['traded_kwh']:.3f} kWh; welfare {p['welfare']:.4f} {currency}; "
        f"buyers paid sellers {p['energy_paid']:.2f} {currency} and the network "
        f"{p['network_paid']:.2f} {currency}"
    )
    d = p["dso"]
    if d is not None:
        verdict = "feasible" if d["feasible"] else "NOT feasible"
        console.print(
            f"DSO check on {d['feeder']}: {verdict} after {d['rounds']} round(s) of "
            f"curtailment; {d['curtailed']} trade(s) curtailed, {d['rejected']} rejected "
            f"({d['curtailed_kwh']:.3f} kWh); welfare before the check "
            f"{p['welfare_unconstrained']:.4f} {currency}; {d['violations']} violation row(s) "
            f"remain ({d['base_violations']} in the base load alone)"
        )

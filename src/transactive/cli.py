"""Command-line interface (`transactive --help`): thin commands that parse, call, print."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, NoReturn

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from transactive.errors import InvalidInputError

app = typer.Typer(
    help="transactive: layered transactive energy markets on real distribution grids.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """transactive: layered transactive energy markets on real distribution grids."""


def fail(message: str) -> NoReturn:
    """Print an input error on stderr and exit with code 2."""
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=2)


def _num(x: float) -> float | None:
    """JSON has no NaN: a missing number is null."""
    return None if math.isnan(x) else float(x)


# --- market ---

MAX_AWARD_ROWS = 200


@app.command("clear")
def clear_cmd(
    bids: Annotated[
        Path, typer.Argument(help="Bid file (CSV: bid_id,side,price,quantity[,interval]).")
    ],
    floor: Annotated[float, typer.Option(help="Price floor, $/kWh.")] = -1.0,
    cap: Annotated[float, typer.Option(help="Price cap, $/kWh.")] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Clear a bid file as a uniform-price double auction (one auction per interval)."""
    from transactive.market.auction import clear
    from transactive.market.bidfile import read_bids

    try:
        parsed = read_bids(bids, floor, cap)
        result = clear(parsed.book, floor, cap)
    except InvalidInputError as exc:
        fail(str(exc))
    book = parsed.book
    starts = parsed.interval_starts
    ids = book.ids.astype(str)
    out: list[dict[str, Any]] = []
    for t in range(book.n_intervals):
        sel = np.flatnonzero(book.interval == t)
        out.append(
            {
                "interval": starts[t].isoformat() if starts is not None else None,
                "price": _num(result.price[t]),
                "quantity": float(result.quantity[t]),
                "status": str(result.status[t]),
                "buyer_surplus": float(result.buyer_surplus[t]),
                "seller_surplus": float(result.seller_surplus[t]),
                "awards": {ids[i]: float(result.awards[i]) for i in sel},
            }
        )
    if as_json:
        typer.echo(json.dumps({"intervals": out}, indent=2))
        return
    _print_clearing(out, len(ids))


def _short_time(iso: str | None) -> str:
    """'2026-07-01T17:00:00+00:00' → '2026-07-01 17:00Z' for tables."""
    return "—" if iso is None else iso[:16].replace("T", " ") + "Z"


def _print_clearing(intervals: list[dict[str, Any]], n_bids: int) -> None:
    console = Console()
    summary = Table(title="Clearing (uniform price, pay-as-clear)")
    for col in (
        "interval (UTC)",
        "price $/kWh",
        "quantity kW",
        "status",
        "buyers $/h",
        "sellers $/h",
    ):
        summary.add_column(col, justify="left" if col in ("interval", "status") else "right")
    for r in intervals:
        price = "—" if r["price"] is None else f"{r['price']:.4f}"
        summary.add_row(
            _short_time(r["interval"]),
            price,
            f"{r['quantity']:.3f}",
            r["status"],
            f"{r['buyer_surplus']:.3f}",
            f"{r['seller_surplus']:.3f}",
        )
    console.print(summary)
    if n_bids > MAX_AWARD_ROWS:
        console.print(f"{n_bids} awards not shown; use --json to get every award.")
        return
    awards = Table(title="Awards (kW, + bought, − sold)")
    awards.add_column("interval")
    awards.add_column("bid_id")
    awards.add_column("award kW", justify="right")
    for r in intervals:
        for bid, kw in r["awards"].items():
            awards.add_row(_short_time(r["interval"]), bid, f"{kw:.3f}")
    console.print(awards)


# --- grid ---

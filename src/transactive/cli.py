"""Command-line interface (`transactive --help`): thin commands that parse, call, print."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, NoReturn

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from transactive.errors import InvalidInputError, TransactiveError

app = typer.Typer(
    help="transactive: layered transactive energy markets on real distribution grids.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """transactive: layered transactive energy markets on real distribution grids."""


def fail(error: str | Exception) -> NoReturn:
    """Print an error on stderr and exit: code 2 for bad input, 1 when a computation fails
    (a power flow that does not converge, a broken balance)."""
    code = (
        1 if isinstance(error, TransactiveError) and not isinstance(error, InvalidInputError) else 2
    )
    text = escape(str(error))  # messages quote user input: never read it as rich markup
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {text}", highlight=False)
    raise typer.Exit(code=code)


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
    except TransactiveError as exc:
        fail(exc)
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


@app.command("clear-network")
def clear_network_cmd(
    feeder: Annotated[
        str, typer.Argument(help="Feeder name, e.g. pandapower:case33bw or simbench:<code>.")
    ],
    bids: Annotated[
        Path,
        typer.Argument(help="Bid file (CSV: bid_id,side,price,quantity,bus[,interval])."),
    ],
    wholesale_price: Annotated[
        float, typer.Option("--wholesale-price", help="Wholesale price at the substation, $/kWh.")
    ] = 0.05,
    floor: Annotated[float, typer.Option(help="Price floor for bid prices, $/kWh.")] = -1.0,
    cap: Annotated[float, typer.Option(help="Price cap for bid prices, $/kWh.")] = 5.0,
    voll: Annotated[
        float, typer.Option(help="Value of lost load: price of shedding price-taking load.")
    ] = 10.0,
    losses: Annotated[
        str, typer.Option(help="'iterative' (linearised, AC fixed point) or 'none'.")
    ] = "iterative",
    v_min: Annotated[float, typer.Option("--v-min", help="Lower voltage limit (pu).")] = 0.95,
    v_max: Annotated[float, typer.Option("--v-max", help="Upper voltage limit (pu).")] = 1.05,
    no_reverse_flow: Annotated[
        bool, typer.Option("--no-reverse-flow", help="Forbid export at the substation.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Clear a bid file on a feeder with network constraints: DLMPs per bus (energy, loss,
    congestion, voltage), awards and LinDistFlow voltages, checked by an AC power flow.
    Rows with an empty price are price-taking and are shed only at the value of lost load."""
    from transactive.grid import Limits, load_feeder
    from transactive.market.bidfile import read_bids
    from transactive.market.network import clear_network

    try:
        if losses not in ("iterative", "none"):
            raise InvalidInputError(f"--losses must be 'iterative' or 'none', not {losses!r}")
        net = load_feeder(feeder)
        parsed = read_bids(bids, floor, cap)
        bus = parsed.bus_positions(net.bus_names)
        limits = Limits(
            v_min_pu=v_min, v_max_pu=v_max, max_reverse_flow_kw=0.0 if no_reverse_flow else None
        )
        result = clear_network(
            net,
            parsed.book,
            bus,
            wholesale_price,
            limits=limits,
            price_taking=parsed.price_taking,
            voll=voll,
            losses=losses,  # type: ignore[arg-type]
            loss_iterations=5,
        )
    except TransactiveError as exc:
        fail(exc)
    out = _network_json(result, parsed.book, parsed.interval_starts)
    if as_json:
        typer.echo(json.dumps({"intervals": out}, indent=2))
        return
    _print_network(out, result.max_voltage_error_pu)


def _network_json(result: Any, book: Any, starts: Any) -> list[dict[str, Any]]:
    """The per-interval JSON of a network clearing (see ``clear-network --help``)."""
    names = result.bus_names
    live = np.flatnonzero(~np.isnan(result.voltage_pu).all(axis=0))
    ids = book.ids.astype(str)
    parts = ("total", "energy", "loss", "congestion", "voltage")
    arrays = (result.dlmp, result.energy, result.loss, result.congestion, result.voltage)
    out: list[dict[str, Any]] = []
    for t in range(result.n_intervals):
        sel = np.flatnonzero(book.interval == t)
        out.append(
            {
                "interval": starts[t].isoformat() if starts is not None else None,
                "status": str(result.status[t]),
                "substation_import_kw": float(result.substation_import_kw[t]),
                "losses_kw": float(result.losses_kw[t]),
                "shed_kw": float(result.shed_kw[t].sum()),
                "curtailed_kw": float(result.curtailed_kw[t].sum()),
                "voltage_error_pu": (
                    None if result.voltage_error_pu is None else float(result.voltage_error_pu[t])
                ),
                "dlmp": {
                    names[b]: {k: _num(a[t, b]) for k, a in zip(parts, arrays, strict=True)}
                    for b in live
                },
                "awards": {ids[i]: float(result.awards[i]) for i in sel},
                "voltage_pu": {names[b]: _num(result.voltage_pu[t, b]) for b in live},
            }
        )
    return out


def _print_network(intervals: list[dict[str, Any]], voltage_error: float) -> None:
    console = Console(width=max(Console().width, 100))
    summary = Table(title="Network-constrained clearing (DLMP, $/kWh)")
    for col in ("interval (UTC)", "status", "import kW", "losses kW", "shed kW", "DLMP min", "max"):
        summary.add_column(col, justify="left" if col in ("interval (UTC)", "status") else "right")
    for r in intervals:
        totals = [d["total"] for d in r["dlmp"].values() if d["total"] is not None]
        lo, hi = (f"{min(totals):.4f}", f"{max(totals):.4f}") if totals else ("—", "—")
        summary.add_row(
            _short_time(r["interval"]),
            r["status"],
            f"{r['substation_import_kw']:.1f}",
            f"{r['losses_kw']:.2f}",
            f"{r['shed_kw']:.2f}",
            lo,
            hi,
        )
    console.print(summary)
    console.print(f"largest LinDistFlow-vs-AC voltage difference: {voltage_error:.2e} pu")
    n_rows = sum(len(r["dlmp"]) for r in intervals)
    if n_rows > MAX_AWARD_ROWS:
        console.print(f"{n_rows} bus prices not shown; use --json to get all of them.")
        return
    table = Table(title="DLMP by bus ($/kWh) and voltage (pu)")
    for col in ("interval", "bus", "total", "energy", "loss", "congestion", "voltage", "V pu"):
        table.add_column(
            col, justify="left" if col in ("interval", "bus") else "right", no_wrap=True
        )
    for r in intervals:
        for bus, d in r["dlmp"].items():
            cells = ["—" if d[k] is None else f"{d[k]:.4f}" for k in d]
            v = r["voltage_pu"][bus]
            table.add_row(_short_time(r["interval"]), bus, *cells, f"{v:.4f}")
    console.print(table)


# --- simulation ---


@app.command("simulate")
def simulate_cmd(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (TOML), see examples/.")],
    paradigm: Annotated[
        list[str] | None,
        typer.Option(
            help="Run only this paradigm (repeatable): baseline, tou, layered, grand-central."
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write an HTML report (index.html) and the tables here.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the result tables (parquet and CSV) here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the KPIs as JSON.")] = False,
) -> None:
    """Simulate market designs on a feeder; print the KPIs with paradigms side by side."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from transactive.sim.report import write_report
    from transactive.sim.results import write_tables
    from transactive.sim.runner import run
    from transactive.sim.scenario import PARADIGMS, load_scenario

    try:
        sc = load_scenario(scenario)
        chosen = tuple(paradigm) if paradigm else None
        for name in chosen or ():
            if name not in PARADIGMS:
                raise InvalidInputError(
                    f"--paradigm: unknown {name!r} (choose from {', '.join(PARADIGMS)})"
                )
        names = chosen or sc.paradigms
        with Progress(
            TextColumn("{task.description:<14}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
            disable=as_json,
        ) as bar:
            tasks = {n: bar.add_task(n, total=sc.intervals.n) for n in names}
            result = run(
                sc, chosen, progress=lambda n, done, total: bar.update(tasks[n], completed=done)
            )
    except TransactiveError as exc:
        fail(exc)
    try:
        if out is not None:
            write_tables(result, out)
        if report is not None:
            write_report(result, report)
            write_tables(result, report / "tables")
    except OSError as exc:
        fail(f"cannot write results to {exc.filename or out or report}: {exc.strerror or exc}")
    if as_json:
        kpis = {p: {k: _num(v) for k, v in result.kpis[p].items()} for p in result.paradigms}
        typer.echo(json.dumps({"paradigms": kpis}, indent=2))
        return
    table = Table(title=f"{result.scenario} on {result.feeder}: KPIs by paradigm")
    table.add_column("KPI", no_wrap=True, min_width=24)
    for p in result.paradigms:
        table.add_column(p, justify="right")
    for k, row in result.kpis.iterrows():
        table.add_row(str(k), *(f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}" for v in row))
    # Wide enough for every paradigm side by side, even when stdout is not a terminal.
    Console(width=max(Console().width, 40 + 15 * len(result.paradigms))).print(table)
    if report is not None:
        Console().print(f"report: {report / 'index.html'}")


# --- grid ---


@app.command("hosting-capacity")
def hosting_capacity_cmd(
    feeder: str = typer.Argument(
        ..., help="Feeder name, e.g. pandapower:cigre_lv or simbench:1-LV-rural1--0-sw."
    ),
    der: str = typer.Option("pv", "--der", help="DER type: pv (generation) or ev (charging load)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    csv: str | None = typer.Option(None, "--csv", help="Write the per-bus table to this CSV."),
    tol_kw: float = typer.Option(1.0, "--tol-kw", help="Bisection resolution (kW)."),
    no_reverse_flow: bool = typer.Option(
        False, "--no-reverse-flow", help="Treat export at the substation as a violation."
    ),
    v_min: float = typer.Option(0.95, "--v-min", help="Lower voltage limit (pu)."),
    v_max: float = typer.Option(1.05, "--v-max", help="Upper voltage limit (pu)."),
) -> None:
    """Per-bus and feeder-level hosting capacity (kW) under a worst-case snapshot
    (PV: minimum load, maximum generation; EV: peak load)."""
    import json
    import sys

    from transactive.grid import Limits, hosting_capacity, load_feeder

    try:
        limits = Limits(
            v_min_pu=v_min, v_max_pu=v_max, max_reverse_flow_kw=0.0 if no_reverse_flow else None
        )
        hc = hosting_capacity(load_feeder(feeder), der, limits=limits, tol_kw=tol_kw)  # type: ignore[arg-type]
    except TransactiveError as exc:
        fail(exc)
    if csv:
        try:
            hc.per_bus.to_csv(csv, index=False)
        except OSError as exc:
            fail(f"--csv: cannot write {csv}: {exc.strerror or exc}")
    if as_json:
        payload = {
            "feeder": hc.feeder_name,
            "der": hc.der,
            "feeder_min_kw": hc.feeder_min_kw,
            "feeder_uniform_kw": hc.feeder_uniform_kw,
            "max_kw": hc.max_kw,
            "tol_kw": hc.tol_kw,
            "snapshot_violations": len(hc.snapshot_violations),
            "per_bus": hc.per_bus.to_dict(orient="records"),
        }
        json.dump(payload, sys.stdout, indent=2, default=float)
        sys.stdout.write("\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{der.upper()} hosting capacity — {hc.feeder_name}")
    for col in ("bus", "kV", "hosting kW", "limited by", "at"):
        table.add_column(col, justify="right" if col in ("kV", "hosting kW") else "left")
    for row in hc.per_bus.itertuples(index=False):
        kw = f"≥ {row.hosting_kw:,.1f}" if row.capped else f"{row.hosting_kw:,.1f}"
        table.add_row(str(row.bus), f"{row.vn_kv:g}", kw, str(row.limit), str(row.limit_element))
    console = Console()
    console.print(table)
    console.print(
        f"feeder: {hc.feeder_min_kw:,.1f} kW at any single bus; "
        f"{hc.feeder_uniform_kw:,.1f} kW spread evenly over {len(hc.per_bus)} buses; "
        f"{len(hc.snapshot_violations)} violation(s) already in the snapshot"
    )

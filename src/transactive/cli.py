"""Command-line interface (`transactive --help`): thin commands that parse, call, print.

Start-up stays fast: this module imports only the standard library and typer. numpy, pandas,
the grid libraries and rich are imported inside the commands, after the cheap checks of the
arguments (files exist, outputs can be written), so ``--help`` and bad arguments answer at
once. ``--json`` prints exactly one JSON document on stdout and nothing else.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from transactive.errors import InvalidInputError, TransactiveError

if TYPE_CHECKING:
    from transactive.market.auction import Book
    from transactive.sim.results import SimResults

app = typer.Typer(
    help="transactive: layered transactive energy markets on real distribution grids.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

# The project's price band is transactive.core.units.DEFAULT_FLOOR / DEFAULT_CAP; it is read
# when a command runs (importing it here would load numpy and pandas for `--help`).
# tests/test_cli.py checks that these help texts quote the same numbers.
FLOOR_HELP = "Price floor, $/kWh [default: -0.1, the project's DEFAULT_FLOOR]."
CAP_HELP = "Price cap, $/kWh [default: 2.0, the project's DEFAULT_CAP]."


@app.callback()
def main() -> None:
    """transactive: layered transactive energy markets on real distribution grids."""


def fail(error: str | Exception) -> NoReturn:
    """Print an error on stderr and exit: code 2 for bad input, 1 when a computation fails
    (a power flow that does not converge, a broken balance)."""
    code = 2 if isinstance(error, str | InvalidInputError) else 1
    prefix = typer.style("error:", fg="red", bold=True)  # colour only on a terminal
    typer.echo(f"{prefix} {error}", err=True)
    raise typer.Exit(code=code)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn the package's errors (and OS errors) into a message and an exit code."""
    try:
        yield
    except TransactiveError as exc:
        fail(exc)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        fail(TransactiveError(f"{where}{exc.strerror or exc}"))


def _check_input_file(path: Path, what: str) -> None:
    """A readable regular file, or InvalidInputError naming ``path`` (no heavy imports)."""
    if path.is_dir():
        raise InvalidInputError(f"{path}: is a directory, not a {what}")
    if not path.exists():
        raise InvalidInputError(f"{path}: no such {what}")
    if not path.is_file():
        raise InvalidInputError(f"{path}: not a regular file (expected a {what})")
    if not os.access(path, os.R_OK):
        raise InvalidInputError(f"{path}: not readable (check its permissions)")


def _price_band(floor: float | None, cap: float | None) -> tuple[float, float]:
    """The options or, where not given, the project's default floor and cap ($/kWh)."""
    if floor is None or cap is None:
        from transactive.core.units import DEFAULT_CAP, DEFAULT_FLOOR

        floor = DEFAULT_FLOOR if floor is None else floor
        cap = DEFAULT_CAP if cap is None else cap
    if not (math.isfinite(floor) and math.isfinite(cap) and floor < cap):
        raise InvalidInputError(f"need a finite --floor < --cap, got {floor} and {cap} $/kWh")
    return floor, cap


def _num(x: Any) -> float | None:
    """A JSON number: NaN and ±inf (which JSON lacks) become null."""
    v = float(x)
    return v if math.isfinite(v) else None


def _plain(value: Any) -> Any:
    """Nested values with numpy scalars as Python ones and non-finite floats as null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | bool) or value is None:
        return value
    item = getattr(value, "item", None)
    if callable(item):  # a numpy scalar
        value = item()
    if isinstance(value, float):
        return _num(value)
    return value if isinstance(value, int | str | bool) or value is None else str(value)


def _print_json(payload: dict[str, Any]) -> None:
    """The one JSON document of a ``--json`` run (strict JSON: no NaN)."""
    typer.echo(json.dumps(_plain(payload), indent=2, allow_nan=False))


def _iso(t: Any) -> str | None:
    return None if t is None else str(t.isoformat())


def _by_interval(book: Book) -> list[Any]:
    """Positions of the bids of each interval of ``book``, in book order."""
    import numpy as np

    order = np.argsort(book.interval, kind="stable")
    bounds = np.searchsorted(book.interval[order], np.arange(book.n_intervals + 1))
    return [order[bounds[t] : bounds[t + 1]] for t in range(book.n_intervals)]


# --- market ---

MAX_AWARD_ROWS = 200


@app.command("clear")
def clear_cmd(
    bids: Annotated[
        Path,
        typer.Argument(help="Bid file (CSV: bid_id,side,price,quantity[,interval][,owner])."),
    ],
    floor: Annotated[float | None, typer.Option(help=FLOOR_HELP, show_default=False)] = None,
    cap: Annotated[float | None, typer.Option(help=CAP_HELP, show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Clear a bid file as a uniform-price double auction (one auction per interval)."""
    with _errors():
        _check_input_file(bids, "bid file")
        lo, hi = _price_band(floor, cap)
        from transactive.market.auction import clear
        from transactive.market.bidfile import read_bids

        parsed = read_bids(bids, lo, hi)
        result = clear(parsed.book, lo, hi)
    book = parsed.book
    starts = book.interval_start
    payments = result.payments()
    out: list[dict[str, Any]] = []
    for t, sel in enumerate(_by_interval(book)):
        out.append(
            {
                "interval": _iso(starts[t]) if starts is not None else None,
                "price": _num(result.price[t]),
                "quantity": float(result.quantity[t]),
                "status": str(result.status[t]),
                "buyer_surplus": float(result.buyer_surplus[t]),
                "seller_surplus": float(result.seller_surplus[t]),
                "awards": {str(book.ids[i]): float(result.awards[i]) for i in sel},
                "owners": {str(book.ids[i]): str(book.owner[i]) for i in sel},
                "payments": {str(book.ids[i]): float(payments[i]) for i in sel},
            }
        )
    if as_json:
        _print_json({"intervals": out})
        return
    _print_clearing(out, len(book))


def _short_time(iso: str | None) -> str:
    """'2026-07-01T17:00:00+00:00' → '2026-07-01 17:00Z' for tables."""
    return "—" if iso is None else iso[:16].replace("T", " ") + "Z"


def _print_clearing(intervals: list[dict[str, Any]], n_bids: int) -> None:
    from rich.console import Console
    from rich.table import Table

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
        summary.add_column(col, justify="left" if col in ("interval (UTC)", "status") else "right")
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
    awards.add_column("owner")
    awards.add_column("award kW", justify="right")
    for r in intervals:
        for bid, kw in r["awards"].items():
            awards.add_row(_short_time(r["interval"]), bid, r["owners"][bid], f"{kw:.3f}")
    console.print(awards)


@app.command("clear-network")
def clear_network_cmd(
    feeder: Annotated[
        str, typer.Argument(help="Feeder name, e.g. pandapower:case33bw or simbench:<code>.")
    ],
    bids: Annotated[
        Path,
        typer.Argument(help="Bid file (CSV: bid_id,side,price,quantity,bus[,interval][,owner])."),
    ],
    wholesale_price: Annotated[
        float, typer.Option("--wholesale-price", help="Wholesale price at the substation, $/kWh.")
    ] = 0.05,
    floor: Annotated[float | None, typer.Option(help=FLOOR_HELP, show_default=False)] = None,
    cap: Annotated[float | None, typer.Option(help=CAP_HELP, show_default=False)] = None,
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
    with _errors():
        _check_input_file(bids, "bid file")
        from transactive.grid.registry import check_name

        check_name(feeder)  # a wrong name answers before anything heavy is imported
        if losses not in ("iterative", "none"):
            raise InvalidInputError(f"--losses must be 'iterative' or 'none', not {losses!r}")
        lo, hi = _price_band(floor, cap)
        from transactive.market.bidfile import read_bids

        parsed = read_bids(bids, lo, hi)  # before the feeder: a bad file answers at once
        from transactive.grid import Limits, load_feeder
        from transactive.market.network import clear_network

        net = load_feeder(feeder)
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
        from transactive.grid.lindistflow import verify

        # The AC check of the cleared point, whatever the loss model.
        check = verify(net, result.net_load_kw, result.net_load_kvar, result.voltage_pu, limits)
    out = _network_json(result, parsed.book, check.voltage_error_pu)
    if as_json:
        _print_json({"intervals": out})
        return
    _print_network(out, check.max_voltage_error_pu)


def _network_json(result: Any, book: Book, voltage_error: Any) -> list[dict[str, Any]]:
    """The per-interval JSON of a network clearing (see ``clear-network --help``)."""
    import numpy as np

    names = result.bus_names
    live = np.flatnonzero(~np.isnan(result.voltage_pu).all(axis=0))
    parts = ("total", "energy", "loss", "congestion", "voltage")
    arrays = (result.dlmp, result.energy, result.loss, result.congestion, result.voltage)
    starts = book.interval_start
    out: list[dict[str, Any]] = []
    for t, sel in enumerate(_by_interval(book)):
        out.append(
            {
                "interval": _iso(starts[t]) if starts is not None else None,
                "status": str(result.status[t]),
                "substation_import_kw": float(result.substation_import_kw[t]),
                "losses_kw": float(result.losses_kw[t]),
                "shed_kw": float(result.shed_kw[t].sum()),
                "curtailed_kw": float(result.curtailed_kw[t].sum()),
                "voltage_error_pu": (None if voltage_error is None else _num(voltage_error[t])),
                "dlmp": {
                    names[b]: {k: _num(a[t, b]) for k, a in zip(parts, arrays, strict=True)}
                    for b in live
                },
                "awards": {str(book.ids[i]): float(result.awards[i]) for i in sel},
                "owners": {str(book.ids[i]): str(book.owner[i]) for i in sel},
                "voltage_pu": {names[b]: _num(result.voltage_pu[t, b]) for b in live},
            }
        )
    return out


def _print_network(intervals: list[dict[str, Any]], voltage_error: float) -> None:
    from rich.console import Console
    from rich.table import Table

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
            table.add_row(_short_time(r["interval"]), bus, *cells, "—" if v is None else f"{v:.4f}")
    console.print(table)


# --- simulation ---


def _check_outputs(outputs: dict[str, Path]) -> None:
    """Every output directory usable before the run starts; distinct and not nested."""
    from transactive.sim.outputs import OutputDirError, check_output_dir

    for option, path in outputs.items():
        try:
            check_output_dir(path)
        except OutputDirError as exc:
            raise InvalidInputError(f"{option}: {exc}") from None
    if len(outputs) == 2:
        a, b = (p.resolve() for p in outputs.values())
        if a == b or a in b.parents or b in a.parents:
            raise InvalidInputError(
                "--out and --report must be different directories, neither inside the other "
                "(the report keeps its own copy of the tables in <report>/tables)"
            )


@app.command("simulate")
def simulate_cmd(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (TOML), see examples/.")],
    design: Annotated[
        list[str] | None,
        typer.Option(
            help="Run only this market design (repeatable; default: the scenario's designs)."
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Write the HTML report (index.html) and its tables (tables/) to this new "
            "directory (or replace a previous transactive output there)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write the result tables (parquet and CSV) to this new directory (or "
            "replace a previous transactive output there)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the KPIs as JSON.")] = False,
) -> None:
    """Simulate market designs on the scenario's areas; print the KPIs side by side.

    Output directories are checked before the run: an existing directory is only replaced
    if it is a previous transactive output (it has a .transactive-output marker) holding
    nothing else; anything else is refused with exit code 2 and left untouched."""
    outputs = {k: v for k, v in (("--out", out), ("--report", report)) if v is not None}
    with _errors():
        _check_input_file(scenario, "scenario file")
        _check_outputs(outputs)
        from transactive.designs.registry import names as design_names
        from transactive.sim.scenario import load_scenario

        sc = load_scenario(scenario)
        chosen = tuple(design) if design else None
        for name in chosen or ():
            if name not in design_names():
                raise InvalidInputError(
                    f"--design: unknown {name!r} (choose from {', '.join(design_names())})"
                )
        from transactive.sim.runner import run

        names = chosen or sc.designs
        result = _run_with_progress(
            lambda progress: run(sc, chosen, progress=progress), names, sc.intervals.n, as_json
        )
        _write_outputs(result, out, report)
    if as_json:
        kpis = {d: {k: _num(v) for k, v in result.kpis[d].items()} for d in result.designs}
        _print_json({"designs": kpis})
        return
    from rich.console import Console
    from rich.table import Table

    areas = ", ".join(result.areas)
    title = f"{result.scenario} on {areas}: KPIs by design"
    table = Table(title=title, min_width=len(title))  # a title is never wrapped
    table.add_column("KPI", no_wrap=True, min_width=24)
    for d in result.designs:
        table.add_column(d, justify="right")
    for k, row in result.kpis.iterrows():
        table.add_row(str(k), *(f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}" for v in row))
    # Wide enough for every design side by side, even when stdout is not a terminal.
    Console(width=max(Console().width, 40 + 15 * len(result.designs))).print(table)
    if report is not None:
        Console().print(f"report: {report / 'index.html'}")


def _run_with_progress(
    run: Callable[[Callable[[str, int, int], None]], SimResults],
    names: tuple[str, ...],
    total: int,
    quiet: bool,
) -> SimResults:
    """``run(progress)`` with a progress bar per design on stderr (none when ``quiet``)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=quiet,
    ) as bar:
        tasks = {n: bar.add_task(n, total=total) for n in names}
        return run(lambda n, done, _total: bar.update(tasks[n], completed=done))


def _write_outputs(result: SimResults, out: Path | None, report: Path | None) -> None:
    """The tables to ``out`` and the report with its tables to ``report``, each written to a
    fresh directory and put in place only when complete (transactive.sim.outputs)."""
    from transactive.sim.outputs import write_output_dir
    from transactive.sim.results import write_tables

    if out is not None:
        write_output_dir(out, lambda d: _ignore(write_tables(result, d)))
    if report is not None:
        from transactive.sim.report import one_seed, write_report

        def write(d: Path) -> None:
            # One run: a one-seed comparison against the first declared design.
            write_report(one_seed(result, result.designs[0]), d)
            write_tables(result, d / "tables")

        write_output_dir(report, write)


def _ignore(_: object) -> None:
    """Discard a return value (the writers return the path they wrote)."""


# --- grid ---


@app.command("hosting-capacity")
def hosting_capacity_cmd(
    feeder: Annotated[
        str,
        typer.Argument(help="Feeder name, e.g. pandapower:cigre_lv or simbench:1-LV-rural1--0-sw."),
    ],
    der: Annotated[
        str, typer.Option("--der", help="DER type: pv (generation) or ev (charging load).")
    ] = "pv",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="Write the per-bus table to this CSV file.")
    ] = None,
    tol_kw: Annotated[float, typer.Option("--tol-kw", help="Bisection resolution (kW).")] = 1.0,
    no_reverse_flow: Annotated[
        bool,
        typer.Option("--no-reverse-flow", help="Treat export at the substation as a violation."),
    ] = False,
    v_min: Annotated[float, typer.Option("--v-min", help="Lower voltage limit (pu).")] = 0.95,
    v_max: Annotated[float, typer.Option("--v-max", help="Upper voltage limit (pu).")] = 1.05,
) -> None:
    """Per-bus and feeder-level hosting capacity (kW) under a worst-case snapshot
    (PV: minimum load, maximum generation; EV: peak load)."""
    with _errors():
        if der not in ("pv", "ev"):
            raise InvalidInputError(f"--der must be 'pv' or 'ev', not {der!r}")
        from transactive.grid.registry import check_name

        check_name(feeder)  # a wrong name answers before anything heavy is imported
        if csv is not None:
            from transactive.sim.outputs import OutputDirError, check_output_file

            try:
                check_output_file(csv)
            except OutputDirError as exc:
                raise InvalidInputError(f"--csv: {exc}") from None
        from transactive.grid import Limits, hosting_capacity, load_feeder

        limits = Limits(
            v_min_pu=v_min, v_max_pu=v_max, max_reverse_flow_kw=0.0 if no_reverse_flow else None
        )
        hc = hosting_capacity(load_feeder(feeder), der, limits=limits, tol_kw=tol_kw)  # type: ignore[arg-type]
        if csv is not None:
            hc.per_bus.to_csv(csv, index=False)
    if as_json:
        _print_json(
            {
                "feeder": hc.feeder_name,
                "der": hc.der,
                "feeder_min_kw": hc.feeder_min_kw,
                "feeder_uniform_kw": hc.feeder_uniform_kw,
                "max_kw": hc.max_kw,
                "tol_kw": hc.tol_kw,
                "snapshot_violations": len(hc.snapshot_violations),
                "per_bus": hc.per_bus.to_dict(orient="records"),
            }
        )
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


if __name__ == "__main__":
    app()

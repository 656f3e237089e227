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

from transactive.cli_capacity import capacity_cmd
from transactive.cli_flex import flex_cmd
from transactive.cli_journal import journal_app
from transactive.cli_p2p import p2p_cmd
from transactive.cli_service import admin_app, serve_cmd
from transactive.errors import InvalidInputError, TransactiveError

if TYPE_CHECKING:
    from transactive.market.auction import Book
    from transactive.sim.batch import BatchProgress
    from transactive.sim.results import Comparison, SimResults

app = typer.Typer(
    help="transactive: layered transactive energy markets on real distribution grids.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.add_typer(journal_app, name="journal")
app.command("capacity")(capacity_cmd)
app.command("flex")(flex_cmd)
app.command("p2p")(p2p_cmd)
app.command("serve")(serve_cmd)
app.add_typer(admin_app, name="admin")

# The project's price band is transactive.core.units.DEFAULT_FLOOR / DEFAULT_CAP; it is read
# when a command runs (importing it here would load numpy and pandas for `--help`).
# tests/test_cli.py checks that these help texts quote the same numbers.
FLOOR_HELP = "Price floor, $/kWh (default: -0.1, the project's DEFAULT_FLOOR)."
CAP_HELP = "Price cap, $/kWh (default: 2.0, the project's DEFAULT_CAP)."


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


def _default_workers() -> int:
    return min(2, os.cpu_count() or 1)


SeedsOption = Annotated[
    int | None,
    typer.Option(
        "--seeds",
        help="Random draws of devices and forecast errors (seeds seed, seed+1, …); more than "
        "one reports means with 95 % confidence intervals (default: the scenario's `seeds`).",
        show_default=False,
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        help="Processes running seeds in parallel (default: min(2, number of CPUs)).",
        show_default=False,
    ),
]
DesignOption = Annotated[
    list[str] | None,
    typer.Option(help="Run only this market design (repeatable; default: the scenario's designs)."),
]


def _check_counts(seeds: int | None, workers: int | None) -> int:
    """``--seeds`` and ``--workers`` at least 1; returns the number of workers."""
    if seeds is not None and seeds < 1:
        raise InvalidInputError(f"--seeds: need at least 1 random draw, got {seeds}")
    if workers is not None and workers < 1:
        raise InvalidInputError(f"--workers: need at least 1 process, got {workers}")
    return _default_workers() if workers is None else workers


def _chosen_designs(design: list[str] | None) -> tuple[str, ...] | None:
    """The ``--design`` options, each a registered design, or None (the scenario's)."""
    if not design:
        return None
    from transactive.designs.registry import is_design
    from transactive.designs.registry import names as design_names

    for name in design:
        if not is_design(name):
            raise InvalidInputError(
                f"--design: unknown {name!r} (choose from {', '.join(design_names())})"
            )
    return tuple(design)


@app.command("simulate")
def simulate_cmd(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (TOML), see examples/.")],
    design: DesignOption = None,
    seeds: SeedsOption = None,
    workers: WorkersOption = None,
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
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the KPIs (and their summary over seeds) as JSON."),
    ] = False,
) -> None:
    """Simulate market designs on the scenario's areas; print the KPIs side by side.

    With several seeds every KPI is shown as mean [95 % confidence interval] per design, and
    a * marks a significant difference from the baseline design (paired by seed).

    Output directories are checked before the run: an existing directory is only replaced
    if it is a previous transactive output (it has a .transactive-output marker) holding
    nothing else; anything else is refused with exit code 2 and left untouched."""
    outputs = {k: v for k, v in (("--out", out), ("--report", report)) if v is not None}
    with _errors():
        n_workers = _check_counts(seeds, workers)
        _check_input_file(scenario, "scenario file")
        _check_outputs(outputs)
        chosen = _chosen_designs(design)
        from transactive.sim.scenario import load_scenario

        sc = load_scenario(scenario)  # bad input fails here, before the simulator loads
        from transactive.sim.batch import compare, seeds_for

        seed_list = seeds_for(sc, sc.seeds if seeds is None else seeds)
        names = chosen or sc.designs
        with _progress_bars(seed_list, names, sc.intervals.n, as_json) as bars:
            comparison = compare(
                sc, seed_list, workers=n_workers, designs=chosen, progress=bars("")
            )
        _write_outputs(comparison, out, report)
    result = comparison.results
    if as_json:
        _print_json(
            {
                "scenario": result.scenario,
                "seeds": seed_list,
                "baseline_design": comparison.baseline,
                "designs": _means(comparison),
                "summary": comparison.summary.to_dict(orient="records"),
            }
        )
        return
    from rich.console import Console

    if len(seed_list) == 1:
        table = _kpi_table(result)
    else:
        table = _summary_table(comparison, len(seed_list))
    # Wide enough for every design side by side, even when stdout is not a terminal.
    width = 40 + (15 if len(seed_list) == 1 else 32) * len(result.designs)
    console = Console(width=max(Console().width, width))
    console.print(table)
    if len(seed_list) > 1:
        console.print(
            f"* differs from {comparison.baseline}: the paired 95 % confidence interval of "
            f"the difference over {len(seed_list)} seeds excludes 0"
        )
    if report is not None:
        console.print(f"report: {report / 'index.html'}")


def _means(comparison: Comparison) -> dict[str, dict[str, float | None]]:
    """Mean of every KPI per design over the seeds (the value itself with one seed)."""
    s = comparison.summary
    out: dict[str, dict[str, float | None]] = {}
    for row in s.itertuples(index=False):
        out.setdefault(str(row.design), {})[str(row.kpi)] = _num(row.mean)
    return out


def _fmt(v: float, scale: float | None = None) -> str:
    """A KPI value: 3 decimals below 10 (of ``scale``, default ``v``), else 1."""
    if not math.isfinite(v):
        return "—"
    s = abs(v if scale is None else scale)
    digits = 3 if s < 10 else 1
    return f"{round(v, digits) + 0.0:,.{digits}f}"  # + 0.0: no "-0.000"


def _kpi_table(result: SimResults) -> Any:
    """One run's KPIs: a row per KPI, a column per design."""
    from rich.table import Table

    title = f"{result.scenario} on {', '.join(result.areas)}: KPIs by design"
    table = Table(title=title, min_width=len(title))  # a title is never wrapped
    table.add_column("KPI", no_wrap=True, min_width=24)
    for d in result.designs:
        table.add_column(d, justify="right")
    for k, row in result.kpis.iterrows():
        table.add_row(str(k), *(_fmt(float(v)) for v in row))
    return table


def _summary_table(comparison: Comparison, n_seeds: int) -> Any:
    """Every KPI as ``mean [lo, hi]`` per design, ``*`` where it differs significantly from
    the baseline."""
    from rich.table import Table

    result = comparison.results
    title = (
        f"{result.scenario} on {', '.join(result.areas)}: KPIs by design, "
        f"mean [95 % CI] over {n_seeds} seeds"
    )
    table = Table(title=title, min_width=len(title))
    table.add_column("KPI", no_wrap=True, min_width=24)
    for d in result.designs:
        label = f"{d} (baseline)" if d == comparison.baseline else d
        table.add_column(label, justify="right", no_wrap=True)
    s = comparison.summary.set_index(["kpi", "design"])
    for kpi in dict.fromkeys(comparison.summary["kpi"]):
        cells = []
        for d in result.designs:
            r = s.loc[(kpi, d)]
            mark = "*" if bool(r["significant"]) else " "
            m = float(r["mean"])
            cells.append(f"{_fmt(m)} [{_fmt(r['lo'], m)}, {_fmt(r['hi'], m)}]{mark}")
        table.add_row(str(kpi), *cells)
    return table


@contextmanager
def _progress_bars(
    seeds: list[int], names: tuple[str, ...], intervals: int, quiet: bool, runs: int = 1
) -> Iterator[Callable[[str], BatchProgress]]:
    """Progress bars on stderr (none when ``quiet``): one for everything (``runs``
    comparisons of ``seeds`` × ``names`` × ``intervals``) and one per seed being run. Yields
    ``bars(label)``: the progress callback of one comparison, its bars labelled ``label``."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

    per_seed = len(names) * intervals
    position = {n: i for i, n in enumerate(names)}
    # No refresh thread: worker processes are forked while this display runs.
    with Progress(
        TextColumn("{task.description:<36}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=quiet,
        auto_refresh=False,
    ) as bar:
        what = f"{runs} × {len(seeds)} seed(s)" if runs > 1 else f"{len(seeds)} seed(s)"
        overall = bar.add_task(f"all {what}", total=per_seed * len(seeds) * runs)
        tasks: dict[tuple[str, int], TaskID] = {}
        done: dict[tuple[str, int], int] = {}
        last = [0.0]

        def bars(label: str) -> BatchProgress:
            def progress(seed: int, design: str, step: int, _total: int) -> None:
                key = (label, seed)
                if key not in tasks:
                    tasks[key] = bar.add_task("", total=per_seed)
                done[key] = position[design] * intervals + step
                text = f"{label}seed {seeds.index(seed) + 1}/{len(seeds)} {design}"
                bar.update(tasks[key], completed=done[key], description=text)
                bar.update(overall, completed=sum(done.values()))
                if done[key] == per_seed:
                    bar.remove_task(tasks[key])
                now = time.monotonic()
                if now - last[0] > 0.1:  # a redraw at most ten times a second
                    bar.refresh()
                    last[0] = now

            return progress

        yield bars


def _write_outputs(comparison: Comparison, out: Path | None, report: Path | None) -> None:
    """The tables to ``out`` and the report with its tables to ``report``, each with the
    run's journal and settlement report, written to a fresh directory and put in place only
    when complete (transactive.sim.outputs)."""
    from transactive.sim.outputs import write_output_dir
    from transactive.sim.report_settlement import REPORT_FILE, SETTLEMENT_DIR, write_run_settlement

    def tables(d: Path) -> None:
        _write_comparison_tables(comparison, d)
        write_run_settlement(comparison.results, d, d)

    if out is not None:
        write_output_dir(out, tables)
    if report is not None:
        from transactive.sim.report import write_report

        def write(d: Path) -> None:
            _write_comparison_tables(comparison, d / "tables")
            write_run_settlement(comparison.results, d, d / "tables")
            link = ("Settlement report: balance, meter data, baselines, monitoring, invoices, "
                    "journal", f"{SETTLEMENT_DIR}/{REPORT_FILE}")  # fmt: skip
            write_report(comparison, d, [link])

        write_output_dir(report, write)


def _write_comparison_tables(comparison: Comparison, directory: Path) -> None:
    """The first seed's tables plus ``kpis_by_seed`` and ``summary`` (parquet and CSV)."""
    from transactive.sim.results import write_tables

    write_tables(comparison.results, directory)
    _write_frame(comparison.kpis, directory / "kpis_by_seed")
    _write_frame(comparison.summary, directory / "summary")


def _write_frame(df: Any, stem: Path) -> None:
    """``df`` as ``<stem>.parquet`` and ``<stem>.csv``."""
    df.to_parquet(stem.with_suffix(".parquet"), index=False)
    df.to_csv(stem.with_suffix(".csv"), index=False)


@app.command("sweep")
def sweep_cmd(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (TOML), see examples/.")],
    stage: Annotated[
        list[int],
        typer.Option(
            "--stage",
            help="DER stage to run (1 demonstrated, 2 broadly applied, 3 at scale); repeat "
            "it: --stage 1 --stage 2 --stage 3. Replaces the scenario's der.stage "
            "(der.penetration shares still override it).",
            show_default=False,
        ),
    ],
    design: DesignOption = None,
    seeds: SeedsOption = None,
    workers: WorkersOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write sweep.csv/.parquet (every KPI) and kpis_by_seed.csv/.parquet to this "
            "new directory (or replace a previous transactive output there)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every KPI's row as JSON.")] = False,
) -> None:
    """Compare the designs across DER stages: each KPI's mean and 95 % confidence interval
    per stage and design, and its difference from the baseline design (* significant).
    Prints the main KPIs; --out and --json hold all of them."""
    with _errors():
        n_workers = _check_counts(seeds, workers)
        if len(set(stage)) != len(stage):
            raise InvalidInputError(f"--stage: each stage once, got {', '.join(map(str, stage))}")
        _check_input_file(scenario, "scenario file")
        _check_outputs({"--out": out} if out is not None else {})
        chosen = _chosen_designs(design)
        from transactive.sim.scenario import STAGES

        for s in stage:
            if s not in STAGES:
                raise InvalidInputError(
                    f"--stage: {s} is not a DER stage (choose from {', '.join(map(str, STAGES))})"
                )
        from transactive.sim.batch import baseline_of, load_stages, main_kpis, seeds_for, sweep

        staged = load_stages(scenario, stage)
        base = staged[stage[0]]  # the stages differ only in their devices
        n = base.seeds if seeds is None else seeds
        seed_list = seeds_for(base, n)
        names = chosen or base.designs
        with _progress_bars(seed_list, names, base.intervals.n, as_json, len(stage)) as bars:
            table, long = sweep(
                staged,
                n,
                workers=n_workers,
                designs=chosen,
                progress=lambda s: bars(f"stage {s}: "),
            )
        if out is not None:
            from transactive.sim.outputs import write_output_dir

            def write(d: Path) -> None:
                _write_frame(table, d / "sweep")
                _write_frame(long, d / "kpis_by_seed")

            write_output_dir(out, write)
        baseline = baseline_of(base, chosen)
    if as_json:
        _print_json(
            {
                "scenario": base.name,
                "stages": list(stage),
                "seeds": seed_list,
                "baseline_design": baseline,
                "rows": table.to_dict(orient="records"),
            }
        )
        return
    title = (
        f"{base.name}: designs across DER stages, mean [95 % CI] over {n} seed(s) and the "
        f"difference from {baseline}"
    )
    main = main_kpis(list(dict.fromkeys(table["kpi"])), base.market.currency)
    _print_sweep(table[table["kpi"].isin(main)], main, title)


def _print_sweep(table: Any, kpis: list[str], title: str) -> None:
    """The sweep's rows of ``kpis``: by KPI, then stage, then design."""
    from rich.console import Console
    from rich.table import Table

    out = Table(title=title, min_width=len(title))
    heads = ("stage", "design", "kpi", "mean", "lo", "hi", "diff", "diff_lo", "diff_hi", "sig")
    for h in heads:
        out.add_column(h, justify="left" if h in ("design", "kpi") else "right", no_wrap=True)
    order = {k: i for i, k in enumerate(kpis)}
    rows = table.assign(_k=table["kpi"].map(order)).sort_values(["_k", "stage"], kind="stable")
    for r in rows.itertuples(index=False):
        m = float(r.mean)
        values = (r.mean, r.lo, r.hi, r.diff, r.diff_lo, r.diff_hi)
        out.add_row(
            str(r.stage),
            str(r.design),
            str(r.kpi),
            *(_fmt(float(v), m) for v in values),
            "*" if r.significant else "",
        )
    Console(width=max(Console().width, 150)).print(out)
    Console(width=max(Console().width, 150)).print(
        "* significant: the paired 95 % confidence interval of the difference excludes 0"
    )


# --- grid ---


@app.command("settle")
def settle_cmd(
    records: Annotated[
        Path,
        typer.Argument(
            help="Records directory: the tables/ of a simulate report or the --out of "
            "simulate (run.json, nodes, meters, readings.jsonl, awards), or a service export."
        ),
    ],
    baseline: Annotated[
        str,
        typer.Option(
            help="Baseline for measurement and verification (one of the registry: "
            "caiso-10-of-10, high-4-of-5, nyiso-high-5-of-10, weather-regression, "
            "meter-before-meter-after)."
        ),
    ] = "caiso-10-of-10",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write the settlement report (settlement.html), the lines, scores, flags and "
            "the invoices to this new directory (or replace a previous transactive output)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the settlement summary as JSON.")
    ] = False,
) -> None:
    """Settle a run's records again from its signed meter readings: verify every signature,
    VEE, settle in integer cents with exact balance, score the baselines, monitor bad actors."""
    with _errors():
        if not records.is_dir():
            raise InvalidInputError(f"{records}: not a directory of records")
        if out is not None:
            _check_outputs({"--out": out})
        from transactive.settlement.baselines import get_baseline

        get_baseline(baseline)
        from transactive.sim.settle_records import load_records, settle_records, summary

        settled = settle_records(load_records(records), baseline)
        if out is not None:
            from transactive.sim.outputs import write_output_dir
            from transactive.sim.report_settlement import write_settlement

            def write(d: Path) -> None:
                write_settlement(settled, d)

            write_output_dir(out, write)
    rows = summary(settled)
    payload = {
        "records": str(records),
        "currency": settled.records.run.currency,
        "baseline": baseline,
        "matches_simulation": settled.matches_simulation,
        "designs": rows,
        "flags": len(settled.monitoring.flags),
        "vee": settled.vee.to_dict(orient="records"),
    }
    if as_json:
        _print_json(payload)
        return
    from rich.console import Console
    from rich.table import Table

    from transactive.settlement.totals import format_minor

    cur = settled.records.run.currency
    table = Table(title=f"settlement ({cur})")
    for col in ("design", "lines", "participants", f"paid {cur}", "balanced"):
        table.add_column(col, justify="left" if col == "design" else "right")
    for r in rows:
        table.add_row(
            r["design"], f"{r['lines']:,}", str(r["participants"]),
            format_minor(r["paid_minor"]), "exact" if r["balanced"] else "NO",
        )  # fmt: skip
    console = Console()
    console.print(f"records: {records}", soft_wrap=True)
    console.print(table)
    match = settled.matches_simulation
    if match is not None:
        console.print(
            "equal to the simulator's settlement to the cent" if match
            else "DIFFERENT from the simulator's settlement"
        )  # fmt: skip
    console.print(f"monitoring: {len(settled.monitoring.flags)} flag(s)")
    if out is not None:
        console.print(f"report: {out / 'settlement.html'}")


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

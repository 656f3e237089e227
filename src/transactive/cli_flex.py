"""`transactive flex FEEDER FORECAST.csv OFFERS.csv`: the DSO's asks and commit for given offers.

Like :mod:`transactive.cli`, this module imports only the standard library and typer at the
top; numpy, pandas and the grid load inside the command after the cheap checks. The file
formats are in docs/flexibility.md:

* FORECAST.csv: ``time,bus,p_kw[,q_kvar]`` — net load per bus and interval (kW, kvar,
  + consumption); ``time`` ISO 8601 with an offset; buses not listed are 0.
* OFFERS.csv: ``offer_id,participant_id,bus,time,duration_h,direction,kw[,rebound],
  availability_price,price,all_or_none``.

Every problem names the file, the line (header = line 1) and the column, and exits with 2;
nothing is computed before both files have been read whole.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from transactive.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

    from transactive.grid.model import Feeder, Injections
    from transactive.market.flexibility import Asks, Commit

FORECAST_REQUIRED = ("time", "bus", "p_kw")
FORECAST_OPTIONAL = ("q_kvar",)
OFFERS_REQUIRED = (
    "offer_id",
    "participant_id",
    "bus",
    "time",
    "duration_h",
    "direction",
    "kw",
    "availability_price",
    "price",
    "all_or_none",
)
OFFERS_OPTIONAL = ("rebound",)
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


class FlexFileError(InvalidInputError):
    """A bad forecast or offers file: ``path:line: column 'c': message``."""

    def __init__(self, path: Path, line: int, column: str | None, message: str) -> None:
        where = f"{path}:{line}" + (f": column '{column}'" if column else "")
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class _Rows:
    """A CSV file read whole: its header, rows as dicts and the line of each row."""

    path: Path
    rows: list[dict[str, str]]
    lines: list[int]


def _read_csv(path: Path, required: tuple[str, ...], optional: tuple[str, ...]) -> _Rows:
    """Rows of ``path`` with exactly the known columns (required present), blank lines
    skipped; raises FlexFileError naming the line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise FlexFileError(path, 1, None, "not a UTF-8 text file") from None
    reader = csv.reader(text.splitlines())
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    for line_no, cells in enumerate(reader, start=1):
        if not any(c.strip() for c in cells):
            continue
        cells = [c.strip() for c in cells]
        if header is None:
            header = cells
            missing = [c for c in required if c not in header]
            unknown = [c for c in header if c not in required + optional]
            if missing:
                raise FlexFileError(path, line_no, None, f"missing column(s) {missing}")
            if unknown:
                known = ", ".join(required + optional)
                raise FlexFileError(path, line_no, unknown[0], f"unknown column (known: {known})")
            if len(set(header)) != len(header):
                raise FlexFileError(path, line_no, None, "a column appears twice")
            continue
        if len(cells) != len(header):
            raise FlexFileError(
                path, line_no, None, f"{len(cells)} fields, the header has {len(header)}"
            )
        rows.append(dict(zip(header, cells, strict=True)))
        lines.append(line_no)
    if header is None:
        raise FlexFileError(path, 1, None, "empty file (no header)")
    if not rows:
        raise FlexFileError(path, 1, None, "no rows after the header")
    return _Rows(path, rows, lines)


def _time(f: _Rows, i: int, col: str) -> datetime:
    raw = f.rows[i][col]
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise FlexFileError(f.path, f.lines[i], col, f"{raw!r} is not an ISO 8601 time") from None
    if t.tzinfo is None:
        raise FlexFileError(f.path, f.lines[i], col, f"{raw!r} has no UTC offset (add Z or +hh:mm)")
    return t


def _number(
    f: _Rows, i: int, col: str, *, minimum: float | None = None, empty: float | None = None
) -> float:
    raw = f.rows[i].get(col, "")
    if raw == "" and empty is not None:
        return empty
    try:
        v = float(raw)
    except ValueError:
        raise FlexFileError(f.path, f.lines[i], col, f"{raw!r} is not a number") from None
    if not math.isfinite(v):
        raise FlexFileError(f.path, f.lines[i], col, f"{raw!r} is not finite")
    if minimum is not None and v < minimum:
        raise FlexFileError(f.path, f.lines[i], col, f"{raw} must be ≥ {minimum:g}")
    return v


def _flag(f: _Rows, i: int, col: str, empty: bool | None = None) -> bool:
    raw = f.rows[i].get(col, "").lower()
    if raw == "" and empty is not None:
        return empty
    if raw in TRUE:
        return True
    if raw in FALSE:
        return False
    raise FlexFileError(f.path, f.lines[i], col, f"{raw!r} is not true or false")


def read_forecast(path: Path, feeder: Feeder) -> Injections:
    """The forecast file as per-bus net load (kW, kvar) on evenly spaced UTC intervals."""
    import numpy as np
    import pandas as pd

    from transactive.grid.model import Injections

    f = _read_csv(path, FORECAST_REQUIRED, FORECAST_OPTIONAL)
    names = {n: i for i, n in enumerate(feeder.bus_names)}
    times, buses, p, q = [], [], [], []
    for i, r in enumerate(f.rows):
        times.append(_time(f, i, "time"))
        if r["bus"] not in names:
            raise FlexFileError(
                path, f.lines[i], "bus", f"feeder {feeder.name!r} has no bus {r['bus']!r}"
            )
        buses.append(names[r["bus"]])
        p.append(_number(f, i, "p_kw"))
        q.append(_number(f, i, "q_kvar", empty=0.0))
    when = pd.DatetimeIndex(pd.to_datetime(times, utc=True))
    uniq = when.unique().sort_values()
    if len(uniq) > 1:
        steps = uniq[1:] - uniq[:-1]
        bad = np.flatnonzero(steps != steps[0])
        if bad.size:
            at = int(np.argmax(when == uniq[bad[0] + 1]))
            raise FlexFileError(path, f.lines[at], "time", "intervals are not evenly spaced")
    t_idx = uniq.get_indexer(when)
    key = t_idx * feeder.n_bus + np.asarray(buses)
    _, first = np.unique(key, return_index=True)
    if first.size != key.size:
        dup = np.setdiff1d(np.arange(key.size), first)[0]
        raise FlexFileError(path, f.lines[dup], "bus", "second row for this bus and time")
    P = np.zeros((len(uniq), feeder.n_bus))
    Q = np.zeros_like(P)
    P[t_idx, buses] = p
    Q[t_idx, buses] = q
    return Injections(P, Q, uniq)


def read_offers(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """The offers file as a table of the columns :func:`~transactive.market.flexibility.commit`
    reads (``time`` becomes ``interval_start``), and the file line of each row."""
    import pandas as pd

    f = _read_csv(path, OFFERS_REQUIRED, OFFERS_OPTIONAL)
    out: dict[str, list[Any]] = {k: [] for k in ("offer_id", "participant_id", "bus")}
    extra: dict[str, list[Any]] = {
        k: []
        for k in (
            "interval_start", "duration_h", "direction", "kw", "rebound",
            "availability_price", "price", "all_or_none",
        )
    }  # fmt: skip
    for i, r in enumerate(f.rows):
        for k in ("offer_id", "participant_id", "bus"):
            if r[k] == "":
                raise FlexFileError(path, f.lines[i], k, "is empty")
            out[k].append(r[k])
        extra["interval_start"].append(_time(f, i, "time"))
        extra["duration_h"].append(_number(f, i, "duration_h", minimum=0.0))
        d = r["direction"].lower()
        if d not in ("up", "down"):
            raise FlexFileError(
                path, f.lines[i], "direction", f"{r['direction']!r} is not up | down"
            )
        extra["direction"].append(d)
        extra["kw"].append(_number(f, i, "kw", minimum=0.0))
        extra["rebound"].append(_flag(f, i, "rebound", empty=False))
        extra["availability_price"].append(_number(f, i, "availability_price", minimum=0.0))
        extra["price"].append(_number(f, i, "price", minimum=0.0))
        extra["all_or_none"].append(_flag(f, i, "all_or_none"))
    frame = pd.DataFrame({**out, **extra})
    frame["interval_start"] = pd.to_datetime(frame["interval_start"], utc=True)
    return frame, f.lines


#: Column of the offers table → column of the offers file.
_FILE_COLUMN = {"interval_start": "time"}


def flex_cmd(
    feeder: Annotated[str, typer.Argument(help="Feeder name, e.g. simbench:1-LV-rural2--0-sw.")],
    forecast: Annotated[
        Path, typer.Argument(help="Forecast CSV: time,bus,p_kw[,q_kvar] (kW, + consumption).")
    ],
    offers: Annotated[
        Path,
        typer.Argument(
            help="Offers CSV: offer_id,participant_id,bus,time,duration_h,direction,kw,"
            "[rebound,]availability_price,price,all_or_none."
        ),
    ],
    ceiling: Annotated[
        float, typer.Option("--ceiling", help="Price ceiling of the asks (currency/kWh).")
    ] = 1.0,
    v_min: Annotated[float, typer.Option("--v-min", help="Lower voltage limit (pu).")] = 0.95,
    v_max: Annotated[float, typer.Option("--v-max", help="Upper voltage limit (pu).")] = 1.05,
    margin: Annotated[
        float, typer.Option("--margin", help="Margin inside the limits for the asks (%).")
    ] = 2.0,
    reverse_flow: Annotated[
        bool,
        typer.Option("--reverse-flow", help="Export at the substation is a violation."),
    ] = False,
    partial: Annotated[
        bool,
        typer.Option(
            "--partial",
            help="Where the offers cannot remove every violation, commit the least-cost set of "
            "least total shortfall (status partial) instead of nothing.",
        ),
    ] = False,
    area: Annotated[str, typer.Option("--area", help="DSO area of the asks.")] = "area",
    buyer: Annotated[str, typer.Option("--buyer", help="The DSO (buyer) participant.")] = "dso",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """The DSO's flexibility asks for a forecast and the least-cost commit of the offers,
    verified by an AC power flow."""
    from transactive.cli import _check_input_file, _errors

    with _errors():
        _check_input_file(forecast, "forecast file")
        _check_input_file(offers, "offers file")
        if not (math.isfinite(ceiling) and ceiling >= 0):
            raise InvalidInputError(f"--ceiling must be finite and ≥ 0, got {ceiling}")
        from transactive.grid.registry import check_name

        check_name(feeder)
        from transactive.grid import Limits, load_feeder
        from transactive.market.flexibility import FlexOfferError, commit, find_asks

        limits = Limits(v_min_pu=v_min, v_max_pu=v_max)
        table, lines = read_offers(offers)  # needs no feeder: a bad file answers at once
        grid = load_feeder(feeder)
        fc = read_forecast(forecast, grid)
        asks = find_asks(
            grid, fc, limits, area=area, buyer=buyer, node_id=area, price_ceiling=ceiling,
            margin_percent=margin, reverse_flow=reverse_flow,
        )  # fmt: skip
        try:
            result = commit(
                grid, fc, limits, asks.table, table, buyer=buyer, margin_percent=margin,
                reverse_flow=reverse_flow, partial=partial,
            )  # fmt: skip
        except FlexOfferError as exc:
            col = _FILE_COLUMN.get(exc.column, exc.column)
            raise FlexFileError(
                offers, lines[exc.row], col, f"offer {exc.offer_id!r}: {exc.detail}"
            ) from None
    payload = _payload(grid.name, asks, result)
    if as_json:
        from transactive.cli import _print_json

        _print_json(payload)
        return
    _print_tables(payload)


def _records(df: pd.DataFrame, cols: list[str]) -> list[dict[str, Any]]:
    out = []
    for r in df[cols].itertuples(index=False):
        rec = {}
        for k, v in zip(cols, r, strict=True):
            rec[k] = v.isoformat() if hasattr(v, "isoformat") else v
        out.append(rec)
    return out


def _payload(feeder: str, asks: Asks, c: Commit) -> dict[str, Any]:
    ask_cols = [
        "ask_id",
        "interval_start",
        "resource_id",
        "direction",
        "kw",
        "price_ceiling",
        "reason",
        "buses",
    ]
    com_cols = ["interval_start", "participant_id", "resource_id", "node_id", "direction",
                "committed_kw", "price", "availability_price", "buyer"]  # fmt: skip
    return {
        "feeder": feeder,
        "status": c.status,
        "cost": c.cost,
        "rounds": c.rounds,
        "violations_before": len(asks.violations),
        "violations_after": len(c.verification),
        "asks": _records(asks.table, ask_cols),
        "offers": _records(c.offers, list(c.offers.columns)),
        "commitments": _records(c.commitments, com_cols),
        "remaining": _records(c.remaining, ["ask_id", "interval_start", "resource_id", "kw"]),
        "verification": _records(c.verification, list(c.verification.columns)),
    }


def _hhmm(iso: str) -> str:
    return iso[:16].replace("T", " ") + "Z" if iso.endswith("+00:00") else iso


def _print_tables(p: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    asks = Table(title=f"Flexibility asks — {p['feeder']}")
    for col in ("ask", "interval (UTC)", "direction", "kW", "reason"):
        asks.add_column(col, justify="right" if col == "kW" else "left")
    for a in p["asks"]:
        asks.add_row(
            a["ask_id"], _hhmm(a["interval_start"]), a["direction"], f"{a['kw']:.1f}", a["reason"]
        )
    console.print(asks)
    if not p["asks"]:
        console.print("no violations in the forecast: nothing to ask")
    offers = Table(title=f"Commit — {p['status']}")
    for col in ("offer", "participant", "fraction", "cost"):
        offers.add_column(col, justify="right" if col in ("fraction", "cost") else "left")
    for o in p["offers"]:
        mark = "" if o["committed"] else " (not committed)"
        offers.add_row(
            o["offer_id"] + mark, o["participant_id"], f"{o['fraction']:.3f}", f"{o['cost']:.2f}"
        )
    console.print(offers)
    console.print(f"status: {p['status']}; cost: {p['cost']:.2f}; rounds: {p['rounds']}")
    if p["remaining"]:
        rem = Table(title="Asks not met (shortfall)")
        for col in ("ask", "interval (UTC)", "kW short"):
            rem.add_column(col, justify="right" if col == "kW short" else "left")
        for r in p["remaining"]:
            rem.add_row(r["ask_id"], _hhmm(r["interval_start"]), f"{r['kw']:.1f}")
        console.print(rem)
    console.print(f"violations before commit: {p['violations_before']}")
    console.print(f"violations after commit: {p['violations_after']}")

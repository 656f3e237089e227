"""Bid files: CSV in, :class:`~transactive.market.auction.Book` out.

Format (one block bid per row, header required)::

    bid_id,side,price,quantity[,interval][,owner][,bus]
    h1-ev,buy,0.18,7.2,2026-07-01T17:00:00Z
    pv-12,sell,0.02,4.5,2026-07-01T17:00:00Z
    base,buy,,120,2026-07-01T17:00:00Z

* ``side``: ``buy`` or ``sell``; ``price``: $/kWh; ``quantity``: kW ≥ 0.
* An empty ``price`` is a price-taking bid: a buy at the cap, a sell at the floor.
* ``interval`` (optional): ISO 8601 start of the market interval, with a time zone (UTC
  ``Z`` or an offset). Rows with the same start (compared in UTC) belong to the same
  auction; without the column, all rows form one auction.
* ``bid_id`` must be unique within an interval.
* ``owner`` (optional): the participant the bid belongs to; an empty cell (or no column)
  means the bid id. Carried into the book and the clearing, not used for clearing.
* ``bus`` (optional): name of the feeder bus the bid sits at, for network-constrained
  clearing (:mod:`transactive.market.network`); checked against a feeder with
  :meth:`BidFile.bus_positions`. The plain auction ignores it.

Blank lines are skipped. Every problem is reported with its line (as an editor counts
them, header = line 1 unless blank lines precede it) and column, and nothing is cleared.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from transactive.errors import InvalidInputError
from transactive.market.auction import Book, book_from_blocks

REQUIRED = ("bid_id", "side", "price", "quantity")
OPTIONAL = ("interval", "owner", "bus")


class BidFileError(InvalidInputError):
    """A bid file that cannot be read; ``line`` (1-based) and ``column`` say where."""

    def __init__(self, path: str, line: int, column: str | None, message: str) -> None:
        where = f"{path}:{line}" + (f": column '{column}'" if column else "")
        super().__init__(f"{where}: {message}")
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class BidFile:
    """A parsed bid file.

    book: the bids, with owners and (with an ``interval`` column) interval starts in UTC.
    line: the file line of every bid (1-based), for messages.
    bus: the bus name of every bid (None without a ``bus`` column).
    price_taking: rows with an empty price.
    path: where it was read.
    """

    book: Book
    line: NDArray[np.int64]
    bus: NDArray[np.str_] | None
    price_taking: NDArray[np.bool_]
    path: str

    @property
    def interval_starts(self) -> list[pd.Timestamp] | None:
        """Start (UTC) of each interval of the book; None if the file has no ``interval``."""
        starts = self.book.interval_start
        return None if starts is None else list(starts)

    def bus_positions(self, bus_names: list[str]) -> NDArray[np.int64]:
        """Position of every bid's bus among ``bus_names`` (a feeder's buses); a missing
        ``bus`` column or an unknown bus raises BidFileError with the line."""
        if self.bus is None:
            raise BidFileError(self.path, 1, None, "missing column 'bus' (the bus of every bid)")
        pos = pd.Index(bus_names).get_indexer(pd.Index(self.bus))
        if (pos < 0).any():
            i = int(np.argmax(pos < 0))
            close = difflib.get_close_matches(str(self.bus[i]), bus_names, n=3)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise BidFileError(
                self.path,
                int(self.line[i]),
                "bus",
                f"unknown bus '{self.bus[i]}' on this feeder{hint}",
            )
        return pos.astype(np.int64)


def check_bid_path(path: str | Path) -> None:
    """Raise InvalidInputError unless ``path`` is an existing, readable regular file."""
    p = Path(path)
    if p.is_dir():
        raise InvalidInputError(f"{p}: is a directory, not a bid file (give a CSV file)")
    if not p.exists():
        raise InvalidInputError(f"{p}: no such file")
    if not p.is_file():
        raise InvalidInputError(f"{p}: not a regular file (give a CSV file)")


def read_bids(path: str | Path, floor: float, cap: float) -> BidFile:
    """Read and validate a bid file (format above); prices must lie in [floor, cap] $/kWh."""
    if not (math.isfinite(floor) and math.isfinite(cap) and floor < cap):
        raise InvalidInputError(f"need a finite price floor < cap, got floor={floor}, cap={cap}")
    name = str(path)
    check_bid_path(path)
    t, _ = read_table(Path(path), name, REQUIRED, OPTIONAL)

    ids = np.array(t.text["bid_id"], dtype=str)
    t.fail(ids == "", "bid_id", "empty bid id")
    side = np.char.lower(np.array(t.text["side"], dtype=str))
    t.fail(~np.isin(side, ["buy", "sell"]), "side", "'{value}' is not 'buy' or 'sell'")

    price_taking = np.array([v == "" for v in t.text["price"]], dtype=bool)
    price = t.numbers("price")
    t.fail(np.isinf(price), "price", "'{value}' is not a finite price")
    price = np.where(price_taking, np.where(side == "buy", cap, floor), price)
    t.fail((price < floor) | (price > cap), "price", f"{{value}} is outside [{floor}, {cap}] $/kWh")

    qty = t.numbers("quantity")
    t.fail(np.isnan(qty), "quantity", "'{value}' is not a number")
    t.fail(np.isinf(qty), "quantity", "'{value}' is not a finite quantity")
    t.fail(qty < 0, "quantity", "{value} is negative (quantities are kW ≥ 0; use side=sell)")

    starts: list[datetime] | None = None
    interval = np.zeros(len(ids), dtype=np.int64)
    if "interval" in t.text:
        interval, starts = t.intervals("interval")

    bus = None
    if "bus" in t.text:
        bus = np.array(t.text["bus"], dtype=str)
        t.fail(bus == "", "bus", "empty bus name")

    owner = None
    if "owner" in t.text:
        given = np.array(t.text["owner"], dtype=str)
        owner = np.where(given == "", ids, given)

    order = np.lexsort((np.arange(len(ids)), ids, interval))  # by interval, id, then row
    s_ids, s_iv = ids[order], interval[order]
    again = (s_ids[1:] == s_ids[:-1]) & (s_iv[1:] == s_iv[:-1])
    dup = np.zeros(len(ids), dtype=bool)
    dup[order[1:][again]] = True  # every repeat after the first; the message names the first
    t.fail(dup, "bid_id", "duplicate bid id '{value}' in the same interval")
    book = book_from_blocks(
        ids,
        side,
        price,
        qty,
        interval,
        len(starts) if starts is not None else 1,
        owner=owner,
        interval_start=starts,
    )
    return BidFile(book, t.line, bus, price_taking, name)


def read_table(
    path: Path, name: str, required: tuple[str, ...], optional: tuple[str, ...]
) -> tuple[Table, int]:
    """A CSV file's rows as stripped text per column, with the file line of each row, and the
    header's line; the header must name every ``required`` column, no unknown one and none
    twice (errors name the file, line and column)."""
    header, header_line, rows, lines = _read_rows(path, name)
    cols = [c.strip() for c in header]
    for k, c in enumerate(cols):
        if c not in required + optional:
            expected = ", ".join(required + optional)
            raise BidFileError(name, header_line, c, f"unknown column (expected {expected})")
        if c in cols[:k]:
            raise BidFileError(name, header_line, c, "column given twice")
    for c in required:
        if c not in cols:
            raise BidFileError(name, header_line, None, f"missing column '{c}'")
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in cols]
    text = {c: [v.strip() for v in col] for c, col in zip(cols, columns, strict=True)}
    return Table(name, np.asarray(lines, dtype=np.int64), text), header_line


@dataclass(frozen=True, slots=True)
class Table:
    """The cells of a CSV input file by column (stripped text) and the line of every row."""

    name: str
    line: NDArray[np.int64]
    text: dict[str, list[str]]

    def fail(self, mask: NDArray[np.bool_], column: str, message: str) -> None:
        """Raise for the first row in ``mask``; ``{value}`` in the message is its cell."""
        if mask.any():
            i = int(np.argmax(mask))
            value = self.text[column][i]
            raise BidFileError(self.name, int(self.line[i]), column, message.format(value=value))

    def numbers(self, column: str) -> NDArray[np.float64]:
        """The column as numbers; an empty cell is NaN, anything else unreadable an error."""
        cells = self.text[column]
        fast = _all_numbers(cells)  # every cell a number: the common case
        if fast is not None and not np.isnan(fast).any():
            return fast
        out = np.full(len(self.line), np.nan)
        for i, v in enumerate(cells):
            if not v:
                continue
            x = _float(v)
            if x is None or math.isnan(x):
                raise BidFileError(self.name, int(self.line[i]), column, f"'{v}' is not a number")
            out[i] = x
        return out

    def intervals(self, column: str) -> tuple[NDArray[np.int64], list[datetime]]:
        """Interval index of every row (in order of UTC start) and the distinct starts."""
        uniq, inverse = np.unique(np.array(self.text[column], dtype=str), return_inverse=True)
        instants: list[datetime] = []
        for k, v in enumerate(uniq.tolist()):
            here = inverse.ravel() == k
            try:
                ts = datetime.fromisoformat(v)
            except ValueError:
                self.fail(here, column, "'{value}' is not an ISO 8601 time")
                raise
            if ts.tzinfo is None:
                self.fail(here, column, "'{value}' has no time zone (add 'Z' for UTC)")
            instants.append(ts.astimezone(UTC))
        distinct = sorted(set(instants))
        pos = {ts: i for i, ts in enumerate(distinct)}
        code = np.array([pos[ts] for ts in instants], dtype=np.int64)
        return code[inverse.ravel()], distinct


def _all_numbers(cells: list[str]) -> NDArray[np.float64] | None:
    """The cells as one float array, or None if one of them is not a number."""
    try:
        return np.array(cells, dtype=np.float64)
    except ValueError:
        return None


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _read_rows(path: Path, name: str) -> tuple[list[str], int, list[list[str]], list[int]]:
    """Header, its line, the data rows and each row's first line; blank lines are skipped
    and a row with more or fewer fields than the header is an error naming its line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{name}: cannot read ({exc.strerror or exc})") from None
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise BidFileError(name, line, None, f"not UTF-8 text ({exc.reason})") from None
    reader = csv.reader(io.StringIO(content, newline=""), skipinitialspace=True, strict=True)
    records: list[list[str]] = []
    starts: list[int] = []  # first physical line of every record
    try:
        if '"' not in content:  # no quoted newlines: record i is line i + 1
            records = list(reader)
            starts = list(range(1, len(records) + 1))
        else:
            start = 1
            for record in reader:
                records.append(record)
                starts.append(start)
                start = reader.line_num + 1
    except csv.Error as exc:
        line = reader.line_num
        raise BidFileError(name, line, None, f"not a readable CSV file ({exc})") from None
    keep = [i for i, r in enumerate(records) if r and (len(r) > 1 or r[0].strip())]
    if not keep:
        raise BidFileError(name, 1, None, "empty file: expected a header line")
    header, header_line = records[keep[0]], starts[keep[0]]
    for i in keep[1:]:
        if len(records[i]) != len(header):
            fields = ", ".join(c.strip() for c in header)
            message = f"{len(records[i])} fields, the header has {len(header)} ({fields})"
            raise BidFileError(name, starts[i], None, message)
    return header, header_line, [records[i] for i in keep[1:]], [starts[i] for i in keep[1:]]

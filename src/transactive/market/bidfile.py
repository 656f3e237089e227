"""Bid files: CSV in, :class:`~transactive.market.auction.Book` out.

Format (one block bid per row, header required)::

    bid_id,side,price,quantity[,interval][,owner][,bus]
    h1-ev,buy,0.18,7.2,2026-07-01T17:00:00Z
    pv-12,sell,0.02,4.5,2026-07-01T17:00:00Z
    base,buy,,120,2026-07-01T17:00:00Z

* ``side``: ``buy`` or ``sell``; ``price``: $/kWh; ``quantity``: kW ≥ 0.
* An empty ``price`` is a price-taking bid: a buy at the cap, a sell at the floor.
* ``interval`` (optional): ISO 8601 start of the market interval, with a time zone (UTC
  ``Z`` or an offset). Rows with the same start belong to the same auction; without the
  column, all rows form one auction.
* ``bid_id`` must be unique within an interval. ``owner`` (optional) is carried, not used.
* ``bus`` (optional): name of the feeder bus the bid sits at, for network-constrained
  clearing (:mod:`transactive.market.network`); checked against a feeder with
  :meth:`BidFile.bus_positions`. The plain auction ignores it.

Every problem is reported with its line and column, and nothing is cleared.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from transactive.errors import InvalidInputError
from transactive.market.auction import Book, book_from_blocks

REQUIRED = ("bid_id", "side", "price", "quantity")
OPTIONAL = ("interval", "owner", "bus")


class BidFileError(InvalidInputError):
    """A bid file that cannot be read; ``line`` (1-based, header = 1) and ``column`` say where."""

    def __init__(self, path: str, line: int, column: str | None, message: str) -> None:
        where = f"{path}:{line}" + (f": column '{column}'" if column else "")
        super().__init__(f"{where}: {message}")
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class BidFile:
    """A parsed bid file: the book and the start of each of its intervals (None if the file
    has no ``interval`` column); ``bus``: the bus name of every bid (None without a ``bus``
    column); ``price_taking``: rows with an empty price; ``path``: where it was read."""

    book: Book
    interval_starts: list[pd.Timestamp] | None
    bus: np.ndarray | None = None
    price_taking: np.ndarray | None = None
    path: str = ""

    def bus_positions(self, bus_names: list[str]) -> np.ndarray:
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
                self.path, i + 2, "bus", f"unknown bus '{self.bus[i]}' on this feeder{hint}"
            )
        return pos.astype(np.int64)


def read_bids(path: str | Path, floor: float, cap: float) -> BidFile:
    """Read and validate a bid file (format above); prices must lie in [floor, cap] $/kWh."""
    if not (np.isfinite(floor) and np.isfinite(cap) and floor < cap):
        raise InvalidInputError(f"need a finite price floor < cap, got floor={floor}, cap={cap}")
    name = str(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise InvalidInputError(f"{name}: no such file") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise BidFileError(name, 1, None, f"not a readable CSV file ({exc})") from None
    except pd.errors.EmptyDataError:
        raise BidFileError(name, 1, None, "empty file: expected a header line") from None

    cols = [c.strip() for c in df.columns]
    df.columns = pd.Index(cols)
    for c in cols:
        if c not in REQUIRED + OPTIONAL:
            raise BidFileError(
                name, 1, c, f"unknown column (expected {', '.join(REQUIRED + OPTIONAL)})"
            )
    for c in REQUIRED:
        if c not in cols:
            raise BidFileError(name, 1, None, f"missing column '{c}'")
    line = np.arange(2, len(df) + 2)  # header is line 1

    def fail(mask: np.ndarray, column: str, message: str) -> None:
        if mask.any():
            i = int(np.argmax(mask))
            value = df[column].iloc[i]
            raise BidFileError(name, int(line[i]), column, message.format(value=value))

    ids = df["bid_id"].str.strip().to_numpy(dtype=str)
    fail(ids == "", "bid_id", "empty bid id")
    side = df["side"].str.strip().str.lower().to_numpy(dtype=str)
    fail(~np.isin(side, ["buy", "sell"]), "side", "'{value}' is not 'buy' or 'sell'")

    price_text = df["price"].str.strip()
    price = pd.to_numeric(price_text.where(price_text != "", "nan"), errors="coerce").to_numpy()
    fail(np.isnan(price) & (price_text != "").to_numpy(), "price", "'{value}' is not a number")
    fail(np.isinf(price), "price", "'{value}' is not a finite price")
    price = np.where(np.isnan(price), np.where(side == "buy", cap, floor), price)
    fail((price < floor) | (price > cap), "price", f"{{value}} is outside [{floor}, {cap}] $/kWh")

    qty_text = df["quantity"].str.strip()
    qty = pd.to_numeric(qty_text, errors="coerce").to_numpy()
    fail(np.isnan(qty), "quantity", "'{value}' is not a number")
    fail(np.isinf(qty), "quantity", "'{value}' is not a finite quantity")
    fail(qty < 0, "quantity", "{value} is negative (quantities are kW ≥ 0; use side=sell)")

    starts: list[pd.Timestamp] | None = None
    interval = np.zeros(len(df), dtype=np.int64)
    if "interval" in cols:
        text = df["interval"].str.strip()
        t = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        fail(t.isna().to_numpy(), "interval", "'{value}' is not an ISO 8601 time")
        naive = ~text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True)
        fail(naive.to_numpy(), "interval", "'{value}' has no time zone (add 'Z' for UTC)")
        codes, uniq = pd.factorize(t, sort=True)
        interval = codes.astype(np.int64)
        starts = list(uniq)

    bus = None
    if "bus" in cols:
        bus = df["bus"].str.strip().to_numpy(dtype=str)
        fail(bus == "", "bus", "empty bus name")

    key = pd.DataFrame({"i": interval, "id": ids})
    fail(key.duplicated().to_numpy(), "bid_id", "duplicate bid id '{value}' in the same interval")
    n_iv = len(starts) if starts is not None else 1
    book = book_from_blocks(ids, side, price, qty, interval, n_iv)
    return BidFile(book, starts, bus, (price_text == "").to_numpy(), name)

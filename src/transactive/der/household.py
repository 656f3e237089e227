"""Fixed (price-taking) household load from the SimBench standard household profiles.

The profiles are read straight from the CSV shipped inside the installed ``simbench``
package (``networks/1-complete_data-mixed-all-*/LoadProfile.csv``, columns
``H0-A_pload`` … ``H0-L_pload``: 15-minute active-power profiles of the year 2016,
normalised to their peak), without building a SimBench net. The six profiles are read once
per process (≈1.5 s) and kept in memory.

Each household gets one of the profiles, scaled so its annual energy is
``annual_kwh``. The profile is read on the region's local clock (the context's
``utc_offset_h``, daylight saving included), by time of year: local minute-of-year in the
2016 profile (29 February removed); weekdays are not aligned across years. The load over
an interval is the mean of the 15-minute values it covers.

SimBench's profile clock is German local time with daylight saving: the CSV's ``time``
column has no 02:00–02:45 on 27 March 2016 and twice 02:00–02:45 on 30 October 2016
(35 136 rows = 366 days). The profiles are put on a regular local clock once: the missing
spring hour is linearly interpolated between 01:45 and 03:00, the repeated autumn hour is
the mean of its two readings. People's habits follow the wall clock, so a simulated
07:00 CEST reads the profile at 07:00.

Bidding: price-taking — a flat curve at the load (kW) for every price. Reactive power:
``Q = P·tan(acos power_factor)`` (lagging, absorbed like load).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from transactive.core.curves import Curves, block_curves
from transactive.der.base import (
    Context,
    DeviceType,
    EnergyReport,
    FloatArray,
    IntArray,
    check,
    choice,
    const,
    lognormal,
    report,
)
from transactive.der.params import DeviceConfig, Param
from transactive.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

#: SimBench household (H0) profile names, in column order of :func:`profiles`.
PROFILE_NAMES = ("H0-A", "H0-B", "H0-C", "H0-G", "H0-H", "H0-L")
_SLOT_H = 0.25  # profile resolution, hours
_SLOTS = 365 * 96  # one year of 15-minute slots (the leap day folds away)


@lru_cache(maxsize=1)
def profiles() -> FloatArray:
    """The SimBench H0 profiles as a ``(35040, 6)`` array of per-unit power, 15-minute slots
    of the local clock from 1 January 00:00 (leap day 29 February 2016 removed; the
    daylight-saving gap filled and the repeated hour averaged, see the module docstring)."""
    # The package's folder without importing it (importing simbench loads pandapower).
    spec = find_spec("simbench")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    paths = sorted(
        p for r in roots for p in glob.glob(os.path.join(r, "networks", "*", "LoadProfile.csv"))
    )
    if not paths:
        raise FileNotFoundError("no LoadProfile.csv found in the installed simbench package")
    import pandas as pd  # here: importing the device types must not load pandas

    cols = [f"{p}_pload" for p in PROFILE_NAMES]
    df = pd.read_csv(paths[0], sep=";", usecols=["time", *cols])
    return _local_clock(pd.to_datetime(df["time"], format="%d.%m.%Y %H:%M"), df[cols], paths[0])


def _local_clock(t: pd.Series, values: pd.DataFrame, name: str) -> FloatArray:
    """Profile rows stamped on a local clock with daylight saving (a gap in spring, a
    repeated hour in autumn) as a regular 15-minute local-clock year without 29 February."""
    import pandas as pd

    by_stamp = values.groupby(t.to_numpy()).mean()  # the repeated autumn hour: its mean
    year = int(t.iloc[len(t) // 2].year)
    grid = pd.date_range(f"{year}-01-01", f"{year + 1}-01-01", freq="15min", inclusive="left")
    full = by_stamp.reindex(grid)
    gap = int(full.isna().any(axis=1).sum())
    if gap > 4 or full.iloc[0].isna().any() or full.iloc[-1].isna().any():
        raise InvalidInputError(
            f"{name}: {gap} missing 15-minute stamps (expected ≤ 4, the DST gap)"
        )
    full = full.interpolate(method="linear")  # the spring gap, between 01:45 and 03:00
    keep = ~((grid.month == 2) & (grid.day == 29))
    arr = full.loc[keep].to_numpy(np.float64)
    if arr.shape[0] != _SLOTS:
        raise InvalidInputError(f"{name}: unexpected SimBench profile length {arr.shape[0]}")
    return arr


@lru_cache(maxsize=1)
def _cumulative() -> FloatArray:
    p = profiles()
    c: FloatArray = np.vstack([np.zeros((1, p.shape[1])), np.cumsum(p, axis=0)])
    return c


@dataclass(frozen=True, slots=True)
class HouseholdParams:
    """profile: profile column per household; scale_kw: kW per unit of profile;
    power_factor: lagging power factor."""

    profile: IntArray
    scale_kw: FloatArray
    power_factor: FloatArray

    @property
    def n(self) -> int:
        return int(self.profile.size)


@dataclass(frozen=True, slots=True)
class HouseholdState:
    """No memory; carries the fleet size."""

    n: int


def load_kw(params: HouseholdParams, t_h: float, dt_h: float, utc_offset_h: float) -> FloatArray:
    """Mean load (kW ≥ 0) of every household over ``[t_h, t_h + dt_h)`` (hours since the
    Unix epoch, UTC), read on the local clock ``UTC + utc_offset_h`` (h)."""
    c = _cumulative()
    local = t_h + utc_offset_h
    # Hours since 1 January 00:00 of the local year (the year length varies, so pandas
    # finds the year of the shared local time once).
    import pandas as pd

    ts = pd.Timestamp(local * 3.6e12)
    year_start_h = pd.Timestamp(year=ts.year, month=1, day=1).value / 3.6e12
    a = np.full(params.n, (local - year_start_h) / _SLOT_H)
    b = a + dt_h / _SLOT_H
    # Whole-slot averaging with fractional ends, periodic over the 365-day profile year.
    lo = _cum_at(c, a, params.profile)
    hi = _cum_at(c, b, params.profile)
    out: FloatArray = (hi - lo) / (b - a) * params.scale_kw
    return np.maximum(out, 0.0)


def _cum_at(c: FloatArray, x: FloatArray, col: IntArray) -> FloatArray:
    """Integral of the periodic profile (in slots) from slot 0 to position ``x``."""
    total = c[-1, col]
    wraps = np.floor(x / _SLOTS)
    r = x - wraps * _SLOTS
    k = np.minimum(np.floor(r).astype(np.int64), _SLOTS - 1)
    frac = r - k
    val = c[k, col] + frac * (c[k + 1, col] - c[k, col])
    out: FloatArray = wraps * total + val
    return out


class Household(DeviceType[HouseholdParams, HouseholdState]):
    """Fixed household loads from the SimBench H0 profiles (see the module docstring)."""

    KIND = "household"
    PARAMS = (
        Param(
            "annual_kwh",
            "kWh",
            lognormal(4000.0, 0.35, 1000.0, 15000.0),
            "[0, inf)",
            "annual energy",
        ),
        Param(
            "profile",
            "1",
            choice((0.0, 1.0, 2.0, 3.0, 4.0, 5.0), (0.4, 0.2, 0.1, 0.1, 0.1, 0.1)),
            f"[0, {len(PROFILE_NAMES) - 1}]",
            f"SimBench profile index into {', '.join(PROFILE_NAMES)}",
        ),
        Param("power_factor", "1", const(0.95), "(0, 1]", "power factor (lagging)"),
    )

    def build(self, values: Mapping[str, FloatArray], rng: np.random.Generator) -> HouseholdParams:
        """Parameters; the scale turns the profile mean into the annual energy."""
        prof_f = values["profile"]
        check(prof_f == np.round(prof_f), self.KIND, "profile", "a whole number", prof_f)
        prof = prof_f.astype(np.int64)
        mean = profiles().mean(axis=0)
        return HouseholdParams(
            prof,
            values["annual_kwh"] / (mean[prof] * 8760.0),
            values["power_factor"],
        )

    def initial_state(
        self, params: HouseholdParams, config: DeviceConfig, rng: np.random.Generator
    ) -> HouseholdState:
        """The (empty) state."""
        return HouseholdState(params.n)

    def limits(
        self, params: HouseholdParams, state: HouseholdState, ctx: Context
    ) -> tuple[FloatArray, FloatArray]:
        """No flexibility: ``[load, load]``."""
        q = load_kw(params, ctx.t_h, ctx.dt_h, ctx.utc_offset_h)
        return q, q

    def bid(self, params: HouseholdParams, state: HouseholdState, ctx: Context) -> Curves:
        """A price-taking bid: the interval's load as a block at the cap (served at any
        price up to the cap; at the cap, rationed pro rata with other price-takers)."""
        q = load_kw(params, ctx.t_h, ctx.dt_h, ctx.utc_offset_h)
        return block_curves(np.full(params.n, ctx.cap), q)

    def bid_horizon(
        self, params: HouseholdParams, state: HouseholdState, ctx: Context
    ) -> list[Curves]:
        """Flat curves for every interval of the forecast horizon (the profile is the
        forecast; read at the interval's UTC offset, so a daylight-saving switch inside the
        horizon shifts the later intervals by an hour)."""
        out = []
        for i in range(ctx.price_forecast.size):
            q = load_kw(params, ctx.t_h + i * ctx.dt_h, ctx.dt_h, ctx.utc_offset_h)
            out.append(block_curves(np.full(params.n, ctx.cap), q))
        return out

    def run(
        self,
        params: HouseholdParams,
        state: HouseholdState,
        award: FloatArray,
        ctx: Context,
        cleared_price: ArrayLike | None,
    ) -> tuple[HouseholdState, EnergyReport]:
        """The load is what it is: consumption is the profile, any other award is a
        deviation. Reports ``q_kvar`` at the power factor."""
        q = load_kw(params, ctx.t_h, ctx.dt_h, ctx.utc_offset_h)
        q_kvar = q * np.tan(np.arccos(params.power_factor))
        return state, report(q, award, ctx.dt_h, q_kvar=q_kvar)

    def uncontrolled(
        self,
        params: HouseholdParams,
        state: HouseholdState,
        ctx: Context,
        net_kw: FloatArray | None,
    ) -> FloatArray:
        """The load."""
        return load_kw(params, ctx.t_h, ctx.dt_h, ctx.utc_offset_h)

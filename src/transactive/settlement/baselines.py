"""Baselines for measurement and verification: what a meter would have drawn without the event.

One interface (:class:`Baseline`): a baseline takes the interval history of many meters
(:class:`History`), the meter-days excluded from every history window (event days), the day
and the slot window of the event, and returns the counterfactual load of every meter for
that whole day, kW, shape ``(n_meters, n_slots)``; NaN where there is not enough eligible
history. Every baseline is vectorised over meters. Presets live in one registry
(:data:`BASELINES`, :func:`get_baseline`).

- :class:`NofM`: day matching. The last *M* eligible days of the same day type, of which
  the *N* with the highest event-window load are averaged (N = M: the plain average, e.g.
  CAISO 10-in-10; N < M: "high X of Y", e.g. PJM high 4 of 5), optionally with a same-day
  adjustment (:class:`RatioAdjustment`, :class:`AdditiveAdjustment`) capped at ±cap.
- :class:`WeatherRegression`: per meter, least squares of load on slot-of-day dummies, a
  weekend-or-holiday offset and heating / cooling degree terms.
- :class:`MeterBeforeMeterAfter`: for short events, the mean load of the intervals just
  before the event window, held flat over the window.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from transactive.core.records import METER
from transactive.errors import InvalidInputError, plain

WEEKDAY = 0  #: ``History.day_type`` code of a working day
WEEKEND = 1  #: ``History.day_type`` code of a Saturday, Sunday or listed holiday


def day_types(
    dates: np.ndarray, holidays: Iterable[dt.date | str | np.datetime64] = ()
) -> np.ndarray:
    """Day-type codes of local ``dates`` (datetime64[D]): :data:`WEEKEND` for Saturdays,
    Sundays and ``holidays``, :data:`WEEKDAY` otherwise; int8, shape ``(n_days,)``."""
    d = np.asarray(dates, dtype="datetime64[D]")
    hol = np.array([str(pd.Timestamp(h).date()) for h in holidays], dtype="datetime64[D]")
    weekend = ~np.is_busday(d, weekmask="1111100") | np.isin(d, hol)
    return np.where(weekend, WEEKEND, WEEKDAY).astype(np.int8)


@dataclass(frozen=True, slots=True, eq=False)
class History:
    """Interval load of many meters on the local clock, as arrays.

    ``load_kw[i, d, s]`` is meter ``i``'s mean net import power (kW, + import, − export) in
    slot ``s`` of local day ``d``; slot ``s`` starts at local wall-clock time ``s · slot_h``
    after midnight. A 23-hour day (clocks go forward) has NaN in the slots of the skipped
    hour; on a 25-hour day (clocks go back) the slots of the repeated hour hold the mean of
    its two occurrences. Missing readings are NaN.

    ``dates`` are the local dates (datetime64[D], strictly increasing), ``day_type`` their
    codes (:data:`WEEKDAY` / :data:`WEEKEND`, see :func:`day_types`), ``meter_ids`` the
    meters, ``slot_h`` the interval length (h; ``n_slots · slot_h`` = 24), and
    ``temperature_c`` the outdoor temperature per day and slot (°C) where known.
    """

    load_kw: np.ndarray
    dates: np.ndarray
    day_type: np.ndarray
    meter_ids: np.ndarray
    slot_h: float
    temperature_c: np.ndarray | None = None

    def __post_init__(self) -> None:
        load = np.asarray(self.load_kw, dtype=float)
        if load.ndim != 3:
            raise InvalidInputError(
                f"History.load_kw must be (n_meters, n_days, n_slots), not shape {load.shape}"
            )
        n_m, n_d, n_s = load.shape
        dates = np.asarray(self.dates, dtype="datetime64[D]")
        if dates.shape != (n_d,):
            raise InvalidInputError(f"History.dates: {dates.shape} dates for {n_d} days")
        if n_d > 1 and not np.all(np.diff(dates) > np.timedelta64(0, "D")):
            raise InvalidInputError("History.dates must be strictly increasing")
        kind = np.asarray(self.day_type)
        if kind.shape != (n_d,) or not np.isin(kind, (WEEKDAY, WEEKEND)).all():
            raise InvalidInputError(
                f"History.day_type must be {n_d} codes of {WEEKDAY} (weekday) or "
                f"{WEEKEND} (weekend or holiday)"
            )
        ids = np.asarray(self.meter_ids)
        if ids.shape != (n_m,) or len(set(ids.tolist())) != n_m:
            raise InvalidInputError(f"History.meter_ids must be {n_m} distinct ids")
        if not (self.slot_h > 0 and abs(n_s * self.slot_h - 24.0) < 1e-9):
            raise InvalidInputError(
                f"History: {n_s} slots of {self.slot_h} h do not make a 24-hour day"
            )
        object.__setattr__(self, "load_kw", load)
        object.__setattr__(self, "dates", dates)
        object.__setattr__(self, "day_type", kind.astype(np.int8))
        object.__setattr__(self, "meter_ids", ids)
        object.__setattr__(self, "slot_h", float(self.slot_h))
        if self.temperature_c is not None:
            temp = np.asarray(self.temperature_c, dtype=float)
            if temp.shape != (n_d, n_s):
                raise InvalidInputError(
                    f"History.temperature_c must be (n_days, n_slots) = {(n_d, n_s)}, "
                    f"not {temp.shape}"
                )
            object.__setattr__(self, "temperature_c", temp)

    @property
    def n_meters(self) -> int:
        """Number of meters."""
        return int(self.load_kw.shape[0])

    @property
    def n_days(self) -> int:
        """Number of local days."""
        return int(self.load_kw.shape[1])

    @property
    def n_slots(self) -> int:
        """Slots per local day (24 h / ``slot_h``)."""
        return int(self.load_kw.shape[2])

    @classmethod
    def from_arrays(
        cls,
        load_kw: np.ndarray,
        first_date: dt.date | str,
        slot_h: float,
        *,
        meter_ids: Sequence[str] | None = None,
        temperature_c: np.ndarray | None = None,
        holidays: Iterable[dt.date | str | np.datetime64] = (),
    ) -> History:
        """A history of consecutive local days from ``first_date``; meters are named
        ``m0, m1, …`` unless ``meter_ids`` are given."""
        load = np.asarray(load_kw, dtype=float)
        if load.ndim != 3:
            raise InvalidInputError(
                f"load_kw must be (n_meters, n_days, n_slots), not shape {load.shape}"
            )
        dates = np.datetime64(first_date, "D") + np.arange(load.shape[1])
        ids = np.array([f"m{i}" for i in range(load.shape[0])] if meter_ids is None else meter_ids)
        return cls(load, dates, day_types(dates, holidays), ids, slot_h, temperature_c)

    @classmethod
    def from_meter(
        cls,
        meter: pd.DataFrame,
        timezone: str,
        temperature: pd.Series | None = None,
        holidays: Iterable[dt.date | str | np.datetime64] = (),
    ) -> History:
        """The history of a :data:`~transactive.core.records.METER` table (one design).

        Power is ``(import_kwh − export_kwh) / duration_h`` per reading, placed on the local
        clock of ``timezone`` (see the class docstring for daylight-saving days). Days run
        from the first to the last local date read; slots without a reading are NaN. Every
        reading must have the same duration, start on a slot boundary of the local clock
        and be the only one of its meter and start. ``temperature`` (°C, UTC-indexed) is
        interpolated linearly in time at each interval start (NaN outside its span).
        """
        METER.check(meter)
        if len(meter) == 0:
            raise InvalidInputError("meter records: the table is empty")
        try:
            tz = pd.Timestamp(0, tz=timezone).tz
        except Exception as exc:  # pandas raises several types for an unknown zone
            raise InvalidInputError(f"unknown time zone {timezone!r}") from exc
        duration = meter["duration_h"].to_numpy()
        slot_h = float(duration[0])
        if not np.all(duration == slot_h):
            other = duration[duration != slot_h][0]
            raise InvalidInputError(
                f"meter records: intervals of {slot_h} h and {plain(other)} h; a history "
                "needs one interval length"
            )
        n_slots = round(24.0 / slot_h) if slot_h > 0 else 0
        if n_slots < 1 or abs(n_slots * slot_h - 24.0) > 1e-9:
            raise InvalidInputError(f"meter records: {slot_h} h intervals do not divide a day")
        net_kwh = meter["import_kwh"].to_numpy() - meter["export_kwh"].to_numpy()
        bad = ~np.isfinite(net_kwh)
        if bad.any():
            row = meter.iloc[int(np.argmax(bad))]
            raise InvalidInputError(
                f"meter records: no number for {row['resource_id']} at {row['interval_start']}"
            )
        t_code, starts = pd.factorize(meter["interval_start"], sort=True)
        meters = meter["resource_id"].cat.remove_unused_categories()
        m_code = meters.cat.codes.to_numpy().astype(np.int64)
        n_t = len(starts)
        key = np.sort(m_code * n_t + t_code)  # (a sort: np.unique hashes, far slower here)
        repeated = key[1:] == key[:-1]
        if repeated.any():
            m, t = divmod(int(key[1:][repeated][0]), n_t)
            row = meter.iloc[int(np.flatnonzero((m_code == m) & (t_code == t))[1])]
            raise InvalidInputError(
                f"meter records: {row['resource_id']} has two readings at "
                f"{row['interval_start']} (filter the table to one design and stage)"
            )
        day_idx, slot, dates = _local_slots(pd.DatetimeIndex(starts), tz, slot_h)
        n_m, n_d = len(meters.cat.categories), len(dates)
        flat = (m_code * n_d + day_idx[t_code]) * n_slots + slot[t_code]
        size = n_m * n_d * n_slots
        total = np.bincount(flat, weights=net_kwh / slot_h, minlength=size)
        count = np.bincount(flat, minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            load = np.where(count > 0, total / count, np.nan).reshape(n_m, n_d, n_slots)
        temp = None
        if temperature is not None:
            at = _interpolate(temperature, pd.DatetimeIndex(starts))
            ok = np.isfinite(at)
            cell = day_idx * n_slots + slot
            t_sum = np.bincount(cell[ok], weights=at[ok], minlength=n_d * n_slots)
            t_cnt = np.bincount(cell[ok], minlength=n_d * n_slots)
            with np.errstate(invalid="ignore", divide="ignore"):
                temp = np.where(t_cnt > 0, t_sum / t_cnt, np.nan).reshape(n_d, n_slots)
        ids = np.asarray(meters.cat.categories, dtype=object)
        return cls(load, dates, day_types(dates, holidays), ids, slot_h, temp)


def _local_slots(
    starts: pd.DatetimeIndex, tz: dt.tzinfo | None, slot_h: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local day index and slot of each UTC start, and the local dates spanned."""
    wall = starts.tz_convert(tz).tz_localize(None)
    midnight = wall.normalize()
    offset = (wall - midnight).to_numpy().astype("timedelta64[ns]").astype(np.int64)
    slot_ns = round(slot_h * 3.6e12)
    slot, rest = np.divmod(offset, slot_ns)
    if rest.any():
        bad = starts[int(np.argmax(rest != 0))]
        raise InvalidInputError(
            f"meter records: interval start {bad} is not on a {slot_h} h slot boundary of "
            f"the local clock ({tz})"
        )
    day = midnight.to_numpy().astype("datetime64[D]")
    first = day.min()
    dates = np.arange(first, day.max() + np.timedelta64(1, "D"), dtype="datetime64[D]")
    return (day - first).astype(np.int64), slot.astype(np.int64), dates


def _interpolate(series: pd.Series, at: pd.DatetimeIndex) -> np.ndarray:
    """``series`` (UTC-indexed) interpolated linearly at ``at``; NaN outside its span."""
    if not isinstance(series.index, pd.DatetimeIndex) or series.index.tz is None:
        raise InvalidInputError("temperature must be a Series with a time-zone-aware index")
    s = series.astype(float).dropna().sort_index()
    if len(s) == 0:
        raise InvalidInputError("temperature: no values")
    x = pd.DatetimeIndex(s.index).tz_convert("UTC").as_unit("ns").asi8.astype(float)
    xq = at.tz_convert("UTC").as_unit("ns").asi8.astype(float)
    return np.interp(xq, x, s.to_numpy(), left=np.nan, right=np.nan)


@dataclass(frozen=True, slots=True)
class Window:
    """An event window: slots ``[start, stop)`` of one local day."""

    start: int
    stop: int

    def check(self, n_slots: int) -> Window:
        """This window, after checking it lies within a day of ``n_slots`` slots."""
        if not (0 <= self.start < self.stop <= n_slots):
            raise InvalidInputError(
                f"event window [{self.start}, {self.stop}) is not within a day of {n_slots} "
                "slots (0 ≤ start < stop ≤ n_slots)"
            )
        return self


WindowLike = Window | tuple[int, int]


def as_window(window: WindowLike, n_slots: int) -> Window:
    """A checked :class:`Window` from a window or a ``(start, stop)`` pair."""
    w = window if isinstance(window, Window) else Window(int(window[0]), int(window[1]))
    return w.check(n_slots)


@dataclass(frozen=True, slots=True)
class Event:
    """An event: local day indices of the history, its slot window on those days, and the
    meters it applies to (ids; ``None`` for every meter)."""

    days: tuple[int, ...]
    window: Window
    meters: tuple[str, ...] | None = None


def event_mask(history: History, events: Sequence[Event]) -> np.ndarray:
    """Meter-days of ``events``, bool ``(n_meters, n_days)``: the days every baseline
    excludes from its history window."""
    mask = np.zeros((history.n_meters, history.n_days), dtype=bool)
    index = {m: i for i, m in enumerate(history.meter_ids.tolist())}
    for ev in events:
        days = np.asarray(ev.days, dtype=np.int64)
        if ((days < 0) | (days >= history.n_days)).any():
            raise InvalidInputError(f"event days {ev.days} outside 0 … {history.n_days - 1}")
        as_window(ev.window, history.n_slots)
        if ev.meters is None:
            mask[:, days] = True
            continue
        unknown = [m for m in ev.meters if m not in index]
        if unknown:
            raise InvalidInputError(f"event names unknown meters {unknown}")
        rows = np.array([index[m] for m in ev.meters], dtype=np.int64)
        mask[np.ix_(rows, days)] = True
    return mask


def exclusion_mask(history: History, excluded: np.ndarray | None) -> np.ndarray:
    """``excluded`` as bool ``(n_meters, n_days)``: ``None`` excludes nothing, a day mask
    ``(n_days,)`` applies to every meter."""
    shape = (history.n_meters, history.n_days)
    if excluded is None:
        return np.zeros(shape, dtype=bool)
    ex = np.asarray(excluded)
    if ex.dtype != bool:
        raise InvalidInputError(f"excluded must be a bool mask, not {ex.dtype}")
    if ex.shape == (history.n_days,):
        return np.broadcast_to(ex, shape)
    if ex.shape != shape:
        raise InvalidInputError(
            f"excluded must be (n_days,) = ({history.n_days},) or (n_meters, n_days) = "
            f"{shape}, not {ex.shape}"
        )
    return ex


def eligible_days(history: History, excluded: np.ndarray | None) -> np.ndarray:
    """Meter-days a history window may use, bool ``(n_meters, n_days)``: not excluded and
    complete (every slot read; a 23-hour day is never complete)."""
    complete = np.isfinite(history.load_kw).all(axis=2)
    return complete & ~exclusion_mask(history, excluded)


def _check_day(history: History, day: int) -> int:
    if not 0 <= day < history.n_days:
        raise InvalidInputError(f"day {day} is outside the history (0 … {history.n_days - 1})")
    return int(day)


class Baseline(Protocol):
    """A baseline: ``counterfactual`` gives every meter's load for the whole of ``day``
    (kW, ``(n_meters, n_slots)``; the caller reads the window), NaN where the meter has
    not enough eligible history. ``min_history_days`` is the fewest eligible prior days it
    can work with on any day (0: none), so a day with fewer prior days has no baseline."""

    @property
    def name(self) -> str: ...

    @property
    def min_history_days(self) -> int: ...

    def counterfactual(
        self, history: History, excluded: np.ndarray | None, day: int, window: WindowLike
    ) -> np.ndarray: ...


class SameDayAdjustment(Protocol):
    """Scales or shifts a day-matching baseline to the day's own load in the hours before
    the event window."""

    def adjust(
        self, baseline: np.ndarray, actual: np.ndarray, window: Window, slot_h: float
    ) -> np.ndarray: ...


def _adjustment_slots(window: Window, slot_h: float, before_h: float, gap_h: float) -> slice:
    """Slots from ``before_h`` to ``gap_h`` before the window start (clipped at midnight)."""
    a, b = before_h / slot_h, gap_h / slot_h
    if abs(a - round(a)) > 1e-9 or abs(b - round(b)) > 1e-9:
        raise InvalidInputError(
            f"adjustment window {before_h} h … {gap_h} h before the event is not a whole "
            f"number of {slot_h} h slots"
        )
    return slice(max(window.start - round(a), 0), max(window.start - round(b), 0))


def _window_means(
    baseline: np.ndarray, actual: np.ndarray, sl: slice
) -> tuple[np.ndarray, np.ndarray]:
    """Mean baseline and actual load per meter over ``sl`` (NaN if empty or unread)."""
    if sl.stop <= sl.start:
        nan = np.full(baseline.shape[0], np.nan)
        return nan, nan
    return baseline[:, sl].mean(axis=1), actual[:, sl].mean(axis=1)


@dataclass(frozen=True, slots=True)
class RatioAdjustment:
    """Multiplicative same-day adjustment (CAISO's load-point adjustment): the baseline
    times ``actual / baseline`` averaged over the slots from ``before_h`` to ``gap_h`` hours
    before the event start, the ratio clipped to ``[1 − cap, 1 + cap]``. No adjustment (a
    ratio of 1) where that window is empty, unread, or the baseline there is not > 0."""

    before_h: float = 4.0
    gap_h: float = 1.0
    cap: float = 0.2

    def __post_init__(self) -> None:
        _check_adjustment(self.before_h, self.gap_h, self.cap)

    def adjust(
        self, baseline: np.ndarray, actual: np.ndarray, window: Window, slot_h: float
    ) -> np.ndarray:
        """The adjusted baseline, kW, ``(n_meters, n_slots)``."""
        sl = _adjustment_slots(window, slot_h, self.before_h, self.gap_h)
        base, act = _window_means(baseline, actual, sl)
        ok = np.isfinite(base) & np.isfinite(act) & (base > 0)
        ratio = np.where(ok, act / np.where(ok, base, 1.0), 1.0)
        return baseline * np.clip(ratio, 1 - self.cap, 1 + self.cap)[:, None]


@dataclass(frozen=True, slots=True)
class AdditiveAdjustment:
    """Additive same-day adjustment: the baseline plus ``actual − baseline`` averaged over
    the slots from ``before_h`` to ``gap_h`` hours before the event start, the shift
    clipped to ``± cap · |baseline there|``. No shift where that window is empty or
    unread."""

    before_h: float = 4.0
    gap_h: float = 1.0
    cap: float = 0.2

    def __post_init__(self) -> None:
        _check_adjustment(self.before_h, self.gap_h, self.cap)

    def adjust(
        self, baseline: np.ndarray, actual: np.ndarray, window: Window, slot_h: float
    ) -> np.ndarray:
        """The adjusted baseline, kW, ``(n_meters, n_slots)``."""
        sl = _adjustment_slots(window, slot_h, self.before_h, self.gap_h)
        base, act = _window_means(baseline, actual, sl)
        ok = np.isfinite(base) & np.isfinite(act)
        limit = self.cap * np.abs(np.where(ok, base, 0.0))
        shift = np.clip(np.where(ok, act - base, 0.0), -limit, limit)
        return baseline + shift[:, None]


def _check_adjustment(before_h: float, gap_h: float, cap: float) -> None:
    if not (before_h > gap_h >= 0):
        raise InvalidInputError(
            f"adjustment window must start before it ends: before_h {before_h} > gap_h {gap_h} ≥ 0"
        )
    if not 0 <= cap < 1:
        raise InvalidInputError(f"adjustment cap must be in [0, 1), not {cap}")


@dataclass(frozen=True, slots=True)
class NofM:
    """Day matching: of the last ``m`` eligible days of the target's day type (within
    ``lookback_days`` calendar days before it), the ``n`` with the highest mean load over
    the event window, averaged slot by slot; then the same-day ``adjustment``, if any.
    ``weekend`` gives ``(n, m)`` for weekend-or-holiday target days (default: the same).
    Ties in window load go to the more recent day. NaN for a meter with fewer than ``m``
    eligible days."""

    n: int
    m: int
    adjustment: SameDayAdjustment | None = None
    weekend: tuple[int, int] | None = None
    lookback_days: int = 45
    name: str = "n-of-m"

    def __post_init__(self) -> None:
        for n, m in [(self.n, self.m), *([self.weekend] if self.weekend else [])]:
            if not 1 <= n <= m:
                raise InvalidInputError(f"{self.name}: need 1 ≤ n ≤ m, not n={n}, m={m}")
        if self.lookback_days < 1:
            raise InvalidInputError(f"{self.name}: lookback_days must be ≥ 1")

    @property
    def min_history_days(self) -> int:
        """The fewest eligible prior days any target day needs (the smaller ``m``; the
        target's own ``m`` counts days of its type)."""
        return min(self.m, self.weekend[1] if self.weekend else self.m)

    def counterfactual(
        self, history: History, excluded: np.ndarray | None, day: int, window: WindowLike
    ) -> np.ndarray:
        """Counterfactual load of every meter on ``day``, kW, ``(n_meters, n_slots)``."""
        h, day = history, _check_day(history, day)
        w = as_window(window, h.n_slots)
        n, m = (self.n, self.m)
        if h.day_type[day] == WEEKEND and self.weekend is not None:
            n, m = self.weekend
        lo = max(0, day - self.lookback_days)
        same = h.day_type[lo:day] == h.day_type[day]
        cand = eligible_days(h, excluded)[:, lo:day] & same
        from_latest = np.cumsum(cand[:, ::-1], axis=1)[:, ::-1]  # 1 on the most recent
        recent = cand & (from_latest <= m)
        enough = recent.sum(axis=1) >= m
        load = h.load_kw[:, lo:day]
        pick = recent
        if n < m:
            level = np.where(recent, load[:, :, w.start : w.stop].mean(axis=2), -np.inf)
            order = np.argsort(-level[:, ::-1], axis=1, kind="stable")[:, :n]
            pick_rev = np.zeros_like(recent)
            np.put_along_axis(pick_rev, order, True, axis=1)
            pick = pick_rev[:, ::-1] & recent
        base = np.where(pick[:, :, None], load, 0.0).sum(axis=1) / n
        if self.adjustment is not None:
            base = self.adjustment.adjust(base, h.load_kw[:, day], w, h.slot_h)
        base[~enough] = np.nan
        return base


@dataclass(frozen=True, slots=True)
class WeatherRegression:
    """Per meter, ordinary least squares of load (kW) on one dummy per slot of the day, a
    weekend-or-holiday offset, heating degrees ``max(heating_base_c − T, 0)`` and cooling
    degrees ``max(T − cooling_base_c, 0)`` (T the slot's outdoor temperature, °C), fitted
    on the meter's eligible days within ``lookback_days`` before the target day and
    evaluated on the target day's temperatures. Balance points default to 15.5 °C
    (heating, the European degree-day base) and 22 °C (cooling). A term that does not vary
    over the fitting days (no day below the heating point, say) gets a zero coefficient.
    NaN for a meter with fewer than ``min_history_days`` eligible days with temperature,
    and in slots without a temperature."""

    heating_base_c: float = 15.5
    cooling_base_c: float = 22.0
    lookback_days: int = 60
    min_history_days: int = 10
    name: str = "weather-regression"

    def __post_init__(self) -> None:
        if self.cooling_base_c < self.heating_base_c:
            raise InvalidInputError(
                f"{self.name}: cooling balance point {self.cooling_base_c} °C is below the "
                f"heating one {self.heating_base_c} °C"
            )
        if self.min_history_days < 1 or self.lookback_days < 1:
            raise InvalidInputError(f"{self.name}: min_history_days, lookback_days must be ≥ 1")

    def _weather(self, history: History, days: np.ndarray) -> np.ndarray:
        """The non-dummy regressors of ``days``, ``(n_days, n_slots, 3)``: weekend-or-holiday
        (0/1), heating degrees, cooling degrees (K)."""
        assert history.temperature_c is not None
        temp = history.temperature_c[days]
        z = np.empty((*temp.shape, 3))
        z[:, :, 0] = (history.day_type[days] == WEEKEND)[:, None]
        z[:, :, 1] = np.maximum(self.heating_base_c - temp, 0.0)
        z[:, :, 2] = np.maximum(temp - self.cooling_base_c, 0.0)
        return z

    def counterfactual(
        self, history: History, excluded: np.ndarray | None, day: int, window: WindowLike
    ) -> np.ndarray:
        """Counterfactual load of every meter on ``day``, kW, ``(n_meters, n_slots)``."""
        h, day = history, _check_day(history, day)
        as_window(window, h.n_slots)
        if h.temperature_c is None:
            raise InvalidInputError(
                f"{self.name} needs temperatures: build the History with temperature_c "
                "(History.from_meter(..., temperature=...))"
            )
        lo = max(0, day - self.lookback_days)
        has_temp = np.isfinite(h.temperature_c[lo:day]).all(axis=1)
        usable = eligible_days(h, excluded)[:, lo:day] & has_temp
        out = np.full((h.n_meters, h.n_slots), np.nan)
        z_day = self._weather(h, np.array([day]))[0]  # (n_slots, 3)
        # Meters with the same usable days share one design matrix: one fit per group,
        # with every meter of the group as a right-hand side.
        if (usable == usable[:1]).all():  # the usual case, without np.unique's row sort
            patterns, group = usable[:1], np.zeros(h.n_meters, dtype=np.int64)
        else:
            patterns, group = np.unique(usable, axis=0, return_inverse=True)
        for g, pattern in enumerate(patterns):
            days = lo + np.flatnonzero(pattern)
            if len(days) < self.min_history_days:
                continue
            rows = np.flatnonzero(group.reshape(-1) == g)
            every = len(rows) == h.n_meters  # (np.take: a C-ordered copy, reshaped freely)
            y = np.take(h.load_kw, days, axis=1) if every else h.load_kw[np.ix_(rows, days)]
            coef = _fit(self._weather(h, days), y)
            out[rows] = coef[:, : h.n_slots] + coef[:, h.n_slots :] @ z_day.T
        return out


def _fit(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients per meter, ``(n_meters, n_slots + k)``: one intercept per
    slot, then the ``k`` regressors ``z`` ``(n_days, n_slots, k)``, for loads ``y``
    ``(n_meters, n_days, n_slots)`` (every day read in every slot).

    The slot dummies are partialled out (Frisch–Waugh–Lovell): the regressor coefficients
    come from the per-slot demeaned data through a k × k pseudo-inverse (zero for a
    regressor that does not vary over the days, not even by slot), the intercepts from the
    slot means. The same fit as lstsq on the full design matrix, without its
    (n_days · n_slots) × (n_slots + k) size."""
    k = z.shape[2]
    z_mean, y_mean = z.mean(axis=0), y.mean(axis=1)  # (n_s, k), (n_m, n_s)
    zc = (z - z_mean).reshape(-1, k)
    ztz = zc.T @ zc
    # Σ (y − ȳ) z̃ = Σ y z̃ since z̃ sums to 0 in each slot: no demeaned copy of y needed.
    zty = y.reshape(y.shape[0], -1) @ zc  # (n_m, k)
    beta = zty @ np.linalg.pinv(ztz, rcond=1e-12, hermitian=True)
    return np.concatenate([y_mean - beta @ z_mean.T, beta], axis=1)


@dataclass(frozen=True, slots=True)
class MeterBeforeMeterAfter:
    """For short events: the mean load of the ``before_slots`` intervals just before the
    event window on the day itself, held flat over the window (NaN outside it, and for a
    meter with an unread interval there or a window starting too early). Needs no prior
    days."""

    before_slots: int = 4
    name: str = "meter-before-meter-after"

    def __post_init__(self) -> None:
        if self.before_slots < 1:
            raise InvalidInputError(f"{self.name}: before_slots must be ≥ 1")

    @property
    def min_history_days(self) -> int:
        """No prior days: the baseline comes from the day itself."""
        return 0

    def counterfactual(
        self, history: History, excluded: np.ndarray | None, day: int, window: WindowLike
    ) -> np.ndarray:
        """Counterfactual load of every meter on ``day``, kW, ``(n_meters, n_slots)``."""
        h, day = history, _check_day(history, day)
        w = as_window(window, h.n_slots)
        out = np.full((h.n_meters, h.n_slots), np.nan)
        if w.start >= self.before_slots:
            before = h.load_kw[:, day, w.start - self.before_slots : w.start].mean(axis=1)
            out[:, w.start : w.stop] = before[:, None]
        return out


def _presets() -> dict[str, Baseline]:
    presets: list[Baseline] = [
        NofM(10, 10, RatioAdjustment(4.0, 1.0, 0.2), weekend=(4, 4), name="caiso-10-of-10"),
        NofM(4, 5, None, weekend=(2, 3), name="high-4-of-5"),
        NofM(5, 10, RatioAdjustment(4.0, 2.0, 0.2), weekend=(2, 3), name="nyiso-high-5-of-10"),
        WeatherRegression(),
        MeterBeforeMeterAfter(4, name="meter-before-meter-after"),
    ]
    return {b.name: b for b in presets}


#: Registered baselines by name (see docs/settlement.md, "Baselines").
BASELINES: Mapping[str, Baseline] = _presets()


def baseline_names() -> tuple[str, ...]:
    """Names of the registered baselines."""
    return tuple(BASELINES)


def get_baseline(name: str) -> Baseline:
    """The registered baseline ``name``; an unknown name lists the known ones."""
    try:
        return BASELINES[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown baseline {name!r}; known baselines: {', '.join(BASELINES)}"
        ) from None

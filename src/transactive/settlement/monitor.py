"""Monitoring of bad actors (GWAC roadmap RPE05, "police bad actors where necessary").

Four checks over the record tables, each returning rows of one FLAGS table
(:data:`FLAG_COLUMNS`), and :func:`monitor`, which runs every check whose input is present
and reports in a separate ``coverage`` table what ran, on how much, and what did not run
and why (a check is never skipped silently):

* :func:`baseline_inflation` — a meter whose load on the days that would enter a
  day-matching baseline (the non-event days just before an event day) rose against its own
  earlier non-event days by more than its peers' did;
* :func:`repeated_non_delivery` — a participant that repeatedly delivered less than it
  committed (flexibility commitments, :data:`COMMITMENT_COLUMNS`);
* :func:`feeder_consistency` — a substation meter whose reading disagrees with the sum of
  the meters below it plus the network losses (meters under-reporting: theft, or
  over-reporting);
* :func:`physical_capability` — readings above what the meter's connection or devices can
  carry (``physical_capability``), and negative or non-finite readings (``invalid_reading``).

Consecutive flagged intervals of one meter (or substation) and one kind are merged into one
row (``n_intervals``). Every function is vectorised over meters and intervals; only the
flags (few) are formatted one by one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from transactive.core.records import METER
from transactive.errors import InvalidInputError
from transactive.nodes.tree import Kind, Tree

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

#: Columns of the FLAGS table, in order. ``interval_start`` is the first interval concerned
#: (UTC); ``measure`` and ``threshold`` are per check (see the module docs / docs/settlement.md).
FLAG_COLUMNS = (
    "check",
    "design",
    "participant_id",
    "resource_id",
    "node_id",
    "interval_start",
    "n_intervals",
    "measure",
    "threshold",
    "detail",
)
#: Columns of the coverage table: ``status`` is ``run``, ``partial`` (some of the input could
#: not be assessed; ``detail`` says what) or ``not run``.
COVERAGE_COLUMNS = ("check", "status", "n_assessed", "n_flagged", "detail")
#: Columns of a commitments table (one row per commitment; kWh ≥ 0 of the service promised —
#: load reduced or energy provided — and the amount the measurement and verification found
#: delivered over the commitment's period).
COMMITMENT_COLUMNS = (
    "design",
    "participant_id",
    "resource_id",
    "node_id",
    "interval_start",
    "duration_h",
    "committed_kwh",
    "delivered_kwh",
)
CHECKS = (
    "baseline_inflation",
    "non_delivery",
    "feeder_consistency",
    "physical_capability",
    "invalid_reading",
)
#: Node kinds whose meter is a substation (feeder-head) meter.
SUBSTATION_KINDS: tuple[str, ...] = (str(Kind.DSO), str(Kind.FEEDER))
_MAD_TO_SIGMA = 1.4826  # MAD × this = σ for normally distributed values
#: Default window of the non-delivery check.
WINDOW = pd.Timedelta(days=30)


@dataclass(frozen=True)
class MonitorSettings:
    """Thresholds of every check (defaults in brackets).

    Baseline inflation: ``window_days`` [5] non-event days before an event (those a
    day-matching baseline uses) against the ``reference_days`` [10] non-event days before
    them; flag when the meter's ratio over its peers' median ratio exceeds
    ``inflation_ratio`` [1.2] and its robust z-score among its peers exceeds
    ``inflation_z`` [3]; a peer group needs ``min_peers`` [5] meters; a meter whose
    reference mean is below ``min_load_kw`` [0.05 kW] (e.g. a net exporter) is not assessed;
    the MAD is floored at ``mad_floor`` [0.01] (ratio units) so identical peers do not make
    every deviation infinite.

    Non-delivery: a commitment fails when delivered < committed × (1 − ``tolerance``)
    [0.1]; flag when, within ``window`` [30 days], a participant failed ≥ ``min_events``
    [3] commitments and they are ≥ ``min_share`` [0.5] of its commitments in the window.

    Feeder consistency: residual = substation net import − Σ net of the meters below (kWh).
    Without losses, flag residual outside ``loss_band`` [(0, 0.08)] × the energy through the
    feeder ± ``abs_kwh`` [0.1 kWh]; with the AC power flow's losses, flag
    |residual − losses| > ``loss_tolerance`` [0.01] × the energy through + ``abs_kwh``.

    Physical capability: flag |energy| / duration > capacity × (1 + ``margin``) [0.1].
    """

    window_days: int = 5
    reference_days: int = 10
    inflation_ratio: float = 1.2
    inflation_z: float = 3.0
    min_peers: int = 5
    min_load_kw: float = 0.05
    mad_floor: float = 0.01
    tolerance: float = 0.1
    min_events: int = 3
    min_share: float = 0.5
    window: pd.Timedelta = WINDOW
    loss_band: tuple[float, float] = (0.0, 0.08)
    abs_kwh: float = 0.1
    loss_tolerance: float = 0.01
    margin: float = 0.1
    substation_kinds: tuple[str, ...] = SUBSTATION_KINDS

    def __post_init__(self) -> None:
        if self.window_days < 1 or self.reference_days < 1 or self.min_peers < 2:
            raise InvalidInputError(
                "monitor settings: window_days and reference_days must be ≥ 1, min_peers ≥ 2"
            )
        if not 0.0 <= self.tolerance < 1.0 or self.min_events < 1 or self.window <= pd.Timedelta(0):
            raise InvalidInputError(
                "monitor settings: tolerance must be in [0, 1), min_events ≥ 1, window > 0"
            )
        lo, hi = self.loss_band
        if not lo <= hi or self.abs_kwh < 0 or self.loss_tolerance < 0 or self.margin < 0:
            raise InvalidInputError(
                f"monitor settings: loss band {self.loss_band} must be (low ≤ high); abs_kwh, "
                "loss_tolerance and margin must be ≥ 0"
            )


class Monitoring(NamedTuple):
    """What :func:`monitor` found: the flags (:data:`FLAG_COLUMNS`) and what each check
    covered (:data:`COVERAGE_COLUMNS`)."""

    flags: pd.DataFrame
    coverage: pd.DataFrame


@dataclass(frozen=True)
class _Checked:
    flags: pd.DataFrame
    assessed: int
    note: str  # what was assessed and what could not be (one sentence)
    partial: bool = False


# --- the FLAGS table -------------------------------------------------------------------------


def empty_flags() -> pd.DataFrame:
    """A FLAGS table without rows."""
    return _flags("", "", [], [], [], np.zeros(0, dtype=np.int64), [], [], [], [])


def _flags(
    check: str,
    design: Any,
    participant: Any,
    resource: Any,
    node: Any,
    start_ns: Any,
    n: Any,
    measure: Any,
    threshold: Any,
    detail: Sequence[str],
) -> pd.DataFrame:
    k = len(detail)
    cols: dict[str, Any] = {
        "check": np.full(k, check, dtype=object),
        "design": np.broadcast_to(np.asarray(design, dtype=object), (k,)),
        "participant_id": np.asarray(participant, dtype=object),
        "resource_id": np.asarray(resource, dtype=object),
        "node_id": np.asarray(node, dtype=object),
        "interval_start": pd.to_datetime(np.asarray(start_ns, dtype=np.int64), utc=True),
        "n_intervals": np.asarray(n, dtype=np.int64),
        "measure": np.asarray(measure, dtype=np.float64),
        "threshold": np.broadcast_to(np.asarray(threshold, dtype=np.float64), (k,)),
        "detail": np.asarray(list(detail), dtype=object),
    }
    out = pd.DataFrame(cols)
    for c in ("check", "design", "participant_id", "resource_id", "node_id"):
        out[c] = out[c].astype(str).astype("category")
    return out


def concat_flags(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """FLAGS tables one after the other (categories united)."""
    parts = [f for f in frames if len(f)]
    if not parts:
        return empty_flags()
    out = pd.concat(parts, ignore_index=True)
    for c in ("check", "design", "participant_id", "resource_id", "node_id"):
        out[c] = out[c].astype(str).astype("category")
    return out


def _sum_by(codes: IntArray, weights: FloatArray, n: int) -> FloatArray:
    """Σ weights per code 0 … n − 1."""
    return np.asarray(np.bincount(codes, weights=weights, minlength=n), dtype=np.float64)


def _days(x: Any) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(x)


def _dense_codes(t: IntArray) -> tuple[IntArray, IntArray]:
    """Codes of int64 values (times, ns) and the sorted values the codes stand for: by arithmetic
    on the common step when the values are a regular grid (fast), else by hashing."""
    if not t.size:
        return t.astype(np.int64), t.astype(np.int64)
    t0 = int(t.min())
    off = t - t0
    step = int(np.gcd.reduce(off)) or 1
    n = int(off.max()) // step + 1
    if n <= 4 * t.size + 1_000_000:
        return off // step, t0 + step * np.arange(n, dtype=np.int64)
    codes, values = pd.factorize(t, sort=True)
    return codes.astype(np.int64), np.asarray(values, dtype=np.int64)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _span(td: pd.Timedelta) -> str:
    return f"{td.days} days" if td == pd.Timedelta(days=td.days) else str(td)


def _ts(ns: int) -> str:
    return pd.Timestamp(int(ns), tz="UTC").strftime("%Y-%m-%d %H:%M UTC")


def _runs(group: IntArray, kind: IntArray, t_ns: IntArray, dt_ns: IntArray) -> IntArray:
    """Run id of every row (rows sorted by group, kind, time): a new run starts where the
    group or kind changes or the interval does not follow the previous one."""
    new = np.ones(group.size, dtype=bool)
    new[1:] = (
        (group[1:] != group[:-1]) | (kind[1:] != kind[:-1]) | (t_ns[1:] != t_ns[:-1] + dt_ns[:-1])
    )
    return np.cumsum(new) - 1


# --- 1. baseline inflation -------------------------------------------------------------------


def baseline_inflation(
    load_kw: FloatArray,
    day_index: pd.DatetimeIndex,
    event_days: Sequence[Any] | pd.DatetimeIndex,
    window_days: int = 5,
    ratio: float = 1.2,
    z: float = 3.0,
    *,
    meters: pd.DataFrame | None = None,
    peer_group: Sequence[Any] | NDArray[Any] | None = None,
    settings: MonitorSettings | None = None,
    design: str = "",
) -> pd.DataFrame:
    """Flags of meters that inflated their load before events (check ``baseline_inflation``).

    ``load_kw`` (n_meters, n_days, n_slots): average load per slot, kW (NaN = no reading);
    ``day_index`` (n_days): tz-aware start of each day; ``event_days``: the days with an
    event (each in ``day_index``; naive dates are read in ``day_index``'s time zone);
    ``meters``: participant_id, resource_id, node_id per meter (default ``meter <i>``);
    ``peer_group``: a label per meter (default: all peers). ``settings`` supplies the other
    thresholds (``window_days``, ``ratio``, ``z`` given here win). ``measure`` = the meter's
    ratio (window mean / reference mean) over its peers' median ratio, ``threshold`` =
    ``ratio``; ``interval_start`` = the first window day, ``n_intervals`` = its slots."""
    s = replace(
        settings or MonitorSettings(), window_days=window_days, inflation_ratio=ratio, inflation_z=z
    )
    return _baseline_inflation(load_kw, day_index, event_days, meters, peer_group, s, design).flags


def _meter_ids(meters: pd.DataFrame | None, n: int) -> tuple[NDArray[Any], ...]:
    if meters is None:
        ids = np.array([f"meter {i}" for i in range(n)], dtype=object)
        return ids, ids, ids
    cols = ("participant_id", "resource_id", "node_id")
    missing = [c for c in cols if c not in meters.columns]
    if missing or len(meters) != n:
        raise InvalidInputError(
            f"baseline inflation: meters needs columns {list(cols)} (missing {missing}) and one "
            f"row per meter ({len(meters)} rows for {n} meters)"
        )
    return tuple(meters[c].astype(str).to_numpy(dtype=object) for c in cols)


def _baseline_inflation(
    load_kw: FloatArray,
    day_index: pd.DatetimeIndex,
    event_days: Sequence[Any] | pd.DatetimeIndex,
    meters: pd.DataFrame | None,
    peer_group: Sequence[Any] | NDArray[Any] | None,
    s: MonitorSettings,
    design: str,
) -> _Checked:
    load = np.asarray(load_kw, dtype=np.float64)
    if load.ndim != 3:
        raise InvalidInputError(
            f"baseline inflation: load_kw must be (meters, days, slots), got shape {load.shape}"
        )
    n_m, n_d, n_s = load.shape
    days = pd.DatetimeIndex(day_index)
    if (
        days.size != n_d
        or days.tz is None
        or not days.is_monotonic_increasing
        or days.has_duplicates
    ):
        raise InvalidInputError(
            f"baseline inflation: day_index must be {n_d} increasing tz-aware days "
            f"(got {days.size}, tz {days.tz})"
        )
    ev = _days(event_days)
    ev = ev.tz_localize(days.tz) if ev.tz is None else ev.tz_convert(days.tz)
    is_event = days.isin(ev)
    unknown = ev[~ev.isin(days)]
    if unknown.size:
        raise InvalidInputError(
            f"baseline inflation: event days {[str(d.date()) for d in unknown]} are not in "
            "day_index"
        )
    participant, resource, node = _meter_ids(meters, n_m)
    groups = np.zeros(n_m, dtype=np.int64)
    if peer_group is not None:
        if len(peer_group) != n_m:
            raise InvalidInputError(
                f"baseline inflation: peer_group has {len(peer_group)} labels for {n_m} meters"
            )
        groups = pd.factorize(np.asarray(peer_group, dtype=object))[0].astype(np.int64)

    # Daily mean load per meter (kW), then window / reference means over non-event days
    # from cumulative sums: every event costs O(meters), not O(meters × days).
    ok = np.isfinite(load)
    daily_n = ok.sum(axis=2)
    daily = np.where(daily_n > 0, np.where(ok, load, 0.0).sum(axis=2) / np.maximum(daily_n, 1), 0)
    ne = np.flatnonzero(~is_event)
    ev_pos = np.flatnonzero(is_event)
    w, r_days = s.window_days, s.reference_days
    before = np.searchsorted(ne, ev_pos)  # non-event days before each event
    usable = before >= w + r_days
    c = before[usable]
    valid = (daily_n[:, ne] > 0).astype(np.float64)
    csum = np.concatenate([np.zeros((n_m, 1)), np.cumsum(daily[:, ne] * valid, axis=1)], axis=1)
    ccnt = np.concatenate([np.zeros((n_m, 1)), np.cumsum(valid, axis=1)], axis=1)

    def mean(lo: IntArray, hi: IntArray) -> FloatArray:
        cnt = ccnt[:, hi] - ccnt[:, lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(cnt > 0, (csum[:, hi] - csum[:, lo]) / cnt, np.nan)

    win = mean(c - w, c)  # (meters, events)
    ref = mean(c - w - r_days, c - w)
    with np.errstate(invalid="ignore", divide="ignore"):
        own = np.where(ref > s.min_load_kw, win / ref, np.nan)
    med = np.full_like(own, np.nan)
    scale = np.full_like(own, np.nan)
    n_peers = np.zeros_like(own, dtype=np.int64)
    for g in range(int(groups.max(initial=-1)) + 1):  # one pass per peer group, not per meter
        mine = groups == g
        x = own[mine]
        cnt = np.isfinite(x).sum(axis=0)
        enough = cnt >= s.min_peers
        m = np.full(x.shape[1], np.nan)
        mad = np.full(x.shape[1], np.nan)
        if enough.any():
            m[enough] = np.nanmedian(x[:, enough], axis=0)
            mad[enough] = np.nanmedian(np.abs(x[:, enough] - m[enough]), axis=0)
        med[mine] = m
        scale[mine] = np.maximum(_MAD_TO_SIGMA * mad, s.mad_floor)
        n_peers[mine] = cnt
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = own / med
        zs = (own - med) / scale
    assessed = np.isfinite(rel)
    flag = assessed & (rel > s.inflation_ratio) & (zs > s.inflation_z)
    mi, ei = np.nonzero(flag)
    ev_used = ev_pos[usable]
    first_day = ne[c - w]
    start_ns = days[first_day[ei]].tz_convert("UTC").asi8
    detail = [
        f"mean load {win[m, e]:.2f} kW on the {w} non-event days before the event day "
        f"{days[ev_used[e]].date()} is {own[m, e]:.2f}× its {r_days} earlier non-event days "
        f"({ref[m, e]:.2f} kW) while its {n_peers[m, e]} peers' median changed "
        f"{med[m, e]:.2f}×: {rel[m, e]:.2f}× relative (> {s.inflation_ratio}), robust z "
        f"{zs[m, e]:.1f} (> {s.inflation_z})"
        for m, e in zip(mi.tolist(), ei.tolist(), strict=True)
    ]
    flags = _flags(
        "baseline_inflation",
        design,
        participant[mi],
        resource[mi],
        node[mi],
        start_ns,
        np.full(mi.size, w * n_s),
        rel[mi, ei],
        s.inflation_ratio,
        detail,
    )
    lacking = int((~usable).sum())
    not_assessed = int(usable.sum()) * n_m - int(assessed.sum())
    note = (
        f"{n_m} meters × {_n(int(usable.sum()), 'event day')} assessed"
        + (f"; {lacking} event days have < {w + r_days} earlier non-event days" if lacking else "")
        + (
            f"; {not_assessed} meter-events not assessed (reference load ≤ {s.min_load_kw} kW, "
            f"no readings or < {s.min_peers} peers)"
            if not_assessed
            else ""
        )
    )
    return _Checked(flags, int(assessed.sum()), note, partial=bool(lacking or not_assessed))


def daily_load(
    meter: pd.DataFrame, tz: str = "UTC"
) -> tuple[FloatArray, pd.DatetimeIndex, pd.DataFrame]:
    """One design's meter readings as daily profiles: ``load_kw`` (meters, days, slots) of
    net import (kW, NaN where a slot has no reading), the local days (tz-aware midnights in
    ``tz``) and the meters (participant_id, resource_id, node_id). Days with daylight-saving
    changes have fewer (more) slots; missing slots are NaN."""
    METER.check(meter)
    if meter["design"].nunique() > 1:
        raise InvalidInputError("daily_load: the meter table holds several designs; pass one")
    return _daily_load(meter, np.arange(len(meter)), tz)


def _daily_load(
    meter: pd.DataFrame, rows: IntArray, tz: str
) -> tuple[FloatArray, pd.DatetimeIndex, pd.DataFrame]:
    """:func:`daily_load` of the readings at positions ``rows`` (no copy of the table)."""
    if not rows.size:
        raise InvalidInputError("daily_load: no meter readings")
    t = pd.DatetimeIndex(meter["interval_start"]).asi8[rows]
    t_code, t_vals = _dense_codes(t)  # the time zone is applied once per distinct time
    midnight = pd.DatetimeIndex(t_vals, tz="UTC").tz_convert(tz).normalize().asi8
    d_of_t, d_vals = pd.factorize(midnight, sort=True)
    seen_t = np.bincount(t_code, minlength=t_vals.size) > 0
    used = np.zeros(d_vals.size, dtype=bool)
    used[d_of_t[seen_t]] = True  # days with readings (the grid may have gaps)
    day_code = ((np.cumsum(used) - 1)[d_of_t])[t_code]
    day_vals = pd.DatetimeIndex(np.asarray(d_vals)[used], tz="UTC").tz_convert(tz)
    dt = meter["duration_h"].to_numpy(dtype=np.float64)[rows]
    dt_ns = (dt * 3.6e12).round().astype(np.int64)
    if dt_ns.min() == dt_ns.max():  # one interval length: slots per distinct time
        slot = ((t_vals - midnight) // dt_ns[0])[t_code]
    else:
        slot = (t - midnight[t_code]) // dt_ns
    res = meter["resource_id"].cat.codes.to_numpy()[rows].astype(np.int64)
    present = np.bincount(res, minlength=len(meter["resource_id"].cat.categories)) > 0
    m_code = (np.cumsum(present) - 1)[res]
    load = np.full((int(present.sum()), day_vals.size, int(slot.max()) + 1), np.nan)
    imp = meter["import_kwh"].to_numpy(dtype=np.float64)[rows]
    load[m_code, day_code, slot] = (imp - meter["export_kwh"].to_numpy()[rows]) / dt
    seen = pd.Series(m_code).drop_duplicates()  # first reading of every meter (hashing)
    first = rows[seen.index.to_numpy()[np.argsort(seen.to_numpy())]]
    ids = meter.iloc[first][["participant_id", "resource_id", "node_id"]].astype(str)
    return load, day_vals, ids.reset_index(drop=True)


# --- 2. repeated non-delivery ----------------------------------------------------------------


def repeated_non_delivery(
    commitments: pd.DataFrame,
    tolerance: float = 0.1,
    min_events: int = 3,
    window: pd.Timedelta = WINDOW,
    min_share: float = 0.5,
) -> pd.DataFrame:
    """Flags of participants that repeatedly failed their commitments (check
    ``non_delivery``). ``commitments`` has :data:`COMMITMENT_COLUMNS`. A commitment fails
    when delivered_kwh < committed_kwh × (1 − ``tolerance``); a participant is flagged when,
    within any ``window``, it failed ≥ ``min_events`` commitments making up ≥ ``min_share``
    of its commitments there. Overlapping flagged windows merge into one row: ``measure`` =
    failed commitments, ``threshold`` = ``min_events``, ``n_intervals`` = commitments in the
    episode, ``interval_start`` = the first failed one's start."""
    s = MonitorSettings(
        tolerance=tolerance, min_events=min_events, window=pd.Timedelta(window), min_share=min_share
    )
    return _non_delivery(commitments, s).flags


def _non_delivery(commitments: pd.DataFrame, s: MonitorSettings) -> _Checked:
    missing = [c for c in COMMITMENT_COLUMNS if c not in commitments.columns]
    if missing:
        raise InvalidInputError(f"commitments: missing columns {missing}")
    committed = commitments["committed_kwh"].to_numpy(dtype=np.float64)
    delivered = commitments["delivered_kwh"].to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(committed) & (committed > 0) & np.isfinite(delivered))
    if bad.any():
        i = int(np.argmax(bad))
        row = commitments.iloc[i]
        raise InvalidInputError(
            f"commitments: participant {row['participant_id']!r} at {row['interval_start']}: "
            f"committed_kwh {committed[i]} must be finite > 0 and delivered_kwh {delivered[i]} "
            "finite"
        )
    if not len(commitments):
        return _Checked(empty_flags(), 0, "no commitments")
    groups = commitments.groupby(["design", "participant_id"], observed=True, sort=False)
    g = groups.ngroup().to_numpy(dtype=np.int64)
    t_ns = pd.DatetimeIndex(pd.to_datetime(commitments["interval_start"], utc=True)).asi8
    t_s = t_ns // 1_000_000_000
    t_s = t_s - t_s.min()
    w_s = int(s.window.total_seconds())
    span = int(t_s.max()) + w_s + 1
    key = g * span + t_s  # one sorted axis: (participant, time)
    order = np.argsort(key, kind="stable")
    key, g, t_s = key[order], g[order], t_s[order]
    com, dlv = committed[order], delivered[order]
    failed = dlv < com * (1.0 - s.tolerance)
    cum = np.concatenate([[0], np.cumsum(failed)])
    idx = np.arange(key.size)
    lo = np.searchsorted(key, key - w_s, side="right")  # window (t − w, t] of each commitment
    n_fail = cum[idx + 1] - cum[lo]
    n_all = idx - lo + 1
    end = failed & (n_fail >= s.min_events) & (n_fail >= s.min_share * n_all)
    ends = np.flatnonzero(end)
    if ends.size:
        # Windows that share a commitment merge into one episode.
        new = np.ones(ends.size, dtype=bool)
        new[1:] = (g[ends[1:]] != g[ends[:-1]]) | (lo[ends[1:]] > ends[:-1])
        ep = np.cumsum(new) - 1
        last = np.zeros(int(ep.max()) + 1, dtype=np.int64)
        np.maximum.at(last, ep, ends)
        fpos = np.flatnonzero(failed)
        first = fpos[np.searchsorted(fpos, lo[ends[new]])]
    else:
        first = last = np.zeros(0, dtype=np.int64)
    k_fail = cum[last + 1] - cum[first]
    k_all = last - first + 1
    ccum = np.concatenate([[0.0], np.cumsum(com)])
    dcum = np.concatenate([[0.0], np.cumsum(dlv)])
    c_sum = ccum[last + 1] - ccum[first]
    d_sum = dcum[last + 1] - dcum[first]
    src = commitments.iloc[order[first]]
    res_codes = pd.factorize(commitments["resource_id"].astype(str).to_numpy()[order])[0]
    one_res = np.array(
        [
            res_codes[a : b + 1].min() == res_codes[a : b + 1].max()
            for a, b in zip(first, last, strict=True)
        ],
        dtype=bool,
    )
    t_abs = t_ns[order]
    detail = [
        f"failed {kf} of {ka} commitments from {_ts(t_abs[a])} to {_ts(t_abs[b])} "
        f"(delivered {ds:.1f} of {cs:.1f} kWh committed, {100 * ds / cs:.0f} %; a failure is "
        f"< {100 * (1 - s.tolerance):.0f} % delivered): ≥ {s.min_events} failures within "
        f"{_span(s.window)}"
        for kf, ka, a, b, ds, cs in zip(
            k_fail.tolist(), k_all.tolist(), first, last, d_sum, c_sum, strict=True
        )
    ]
    flags = _flags(
        "non_delivery",
        src["design"].astype(str).to_numpy(dtype=object),
        src["participant_id"].astype(str).to_numpy(dtype=object),
        np.where(one_res, src["resource_id"].astype(str).to_numpy(dtype=object), "several"),
        np.where(one_res, src["node_id"].astype(str).to_numpy(dtype=object), "several"),
        t_abs[first],
        k_all,
        k_fail,
        s.min_events,
        detail,
    )
    note = f"{key.size} commitments of {int(g.max()) + 1} participants, {int(failed.sum())} failed"
    return _Checked(flags, int(key.size), note)


# --- 3. feeder consistency -------------------------------------------------------------------


def feeder_consistency(
    meter: pd.DataFrame,
    tree: Tree,
    losses_kwh: pd.DataFrame | None = None,
    loss_band: tuple[float, float] = (0.0, 0.08),
    abs_kwh: float = 0.1,
    loss_tolerance: float = 0.01,
    substation_kinds: tuple[str, ...] = SUBSTATION_KINDS,
) -> pd.DataFrame:
    """Flags of substation meters whose reading disagrees with the meters below (check
    ``feeder_consistency``).

    Per substation meter (a meter at a node of ``substation_kinds``) and interval: residual
    = its net import − Σ net import of the meters whose nearest metered ancestor it is
    (kWh); "through" = max(|substation net|, Σ |net of the meters below|), the energy
    through the feeder. Without ``losses_kwh``, flag residual > ``loss_band[1]`` × through
    + ``abs_kwh`` (meters below under-report: theft, a bypass) or < ``loss_band[0]`` ×
    through − ``abs_kwh`` (they over-report); ``measure`` = residual / through over the
    run, ``threshold`` = the band edge crossed. With ``losses_kwh`` (columns design, node_id
    of the substation, interval_start, losses_kwh: the AC power flow's losses), flag
    |residual − losses| > ``loss_tolerance`` × through + ``abs_kwh``; ``measure`` =
    residual − losses (kWh, over the run), ``threshold`` = the tolerance summed over the run.
    Intervals where a reading is not finite are not assessed (see ``invalid_reading``)."""
    s = MonitorSettings(
        loss_band=loss_band,
        abs_kwh=abs_kwh,
        loss_tolerance=loss_tolerance,
        substation_kinds=tuple(substation_kinds),
    )
    return _feeder(meter, tree, losses_kwh, s).flags


def _node_positions(meter: pd.DataFrame, tree: Tree) -> IntArray:
    """Tree position of every reading's node (one lookup per distinct node)."""
    cat = meter["node_id"].astype("category")
    where = {str(x): i for i, x in enumerate(tree.id.tolist())}
    names = [str(x) for x in cat.cat.categories]
    unknown = [x for x in names if x not in where]
    if unknown:
        raise InvalidInputError(f"meter readings at nodes not in the tree: {unknown[:5]}")
    lut = np.array([where[x] for x in names], dtype=np.int64)
    return lut[cat.cat.codes.to_numpy()]


def _nearest_metered_ancestor(tree: Tree, metered: BoolArray) -> IntArray:
    """Per node, the nearest strict ancestor that has a meter (−1 for none), by depth levels."""
    up = np.full(tree.n, -1, dtype=np.int64)
    depth = tree.depth
    for d in range(1, int(depth.max()) + 1):  # one vectorised step per level
        nodes = np.flatnonzero(depth == d)
        p = tree.parent[nodes]
        up[nodes] = np.where(metered[p], p, up[p])
    return up


def _feeder(
    meter: pd.DataFrame, tree: Tree, losses: pd.DataFrame | None, s: MonitorSettings
) -> _Checked:
    METER.check(meter)
    pos = _node_positions(meter, tree)
    metered = np.zeros(tree.n, dtype=bool)
    metered[pos] = True
    is_sub_node = metered & np.isin(tree.kind.astype(str), list(s.substation_kinds))
    up = _nearest_metered_ancestor(tree, metered)
    up_pos = up[pos]
    rows_s = np.flatnonzero(is_sub_node[pos])  # substation readings: their own key
    rows_b = np.flatnonzero((up_pos >= 0) & is_sub_node[np.maximum(up_pos, 0)])  # below one
    if not rows_s.size or not rows_b.size:
        return _Checked(empty_flags(), 0, "no substation meter with meters below it")
    sub_nodes = np.flatnonzero(is_sub_node)
    sub_idx = np.full(tree.n, -1, dtype=np.int64)
    sub_idx[sub_nodes] = np.arange(sub_nodes.size)
    d_code = meter["design"].cat.codes.to_numpy()
    d_vals = np.asarray(meter["design"].cat.categories.astype(str), dtype=object)
    t_code, t_vals = _dense_codes(pd.DatetimeIndex(meter["interval_start"]).asi8)
    n_t, n_sub = int(t_vals.size), int(sub_nodes.size)

    def keys(rows: IntArray, owner: IntArray) -> IntArray:  # (design, substation, time)
        return (d_code[rows].astype(np.int64) * n_sub + owner) * n_t + t_code[rows]

    key_s = keys(rows_s, sub_idx[pos[rows_s]])
    key_b = keys(rows_b, sub_idx[up_pos[rows_b]])
    space = d_vals.size * n_sub * n_t
    if space <= 4 * meter.shape[0] + 1_000_000:  # sum straight into the key space
        k_all = np.arange(space, dtype=np.int64)
    else:
        codes, k_all = pd.factorize(np.concatenate([key_s, key_b]))
        key_s, key_b = codes[: key_s.size], codes[key_s.size :]
    nk = int(k_all.size)
    net = meter["import_kwh"].to_numpy(dtype=np.float64) - meter["export_kwh"].to_numpy()
    net_s, net_b = net[rows_s], net[rows_b]
    del net
    bad_s, bad_b = ~np.isfinite(net_s), ~np.isfinite(net_b)
    net_s[bad_s] = 0.0
    net_b[bad_b] = 0.0
    s_n = np.bincount(key_s, minlength=nk)
    sel = np.flatnonzero((s_n + np.bincount(key_b, minlength=nk)) > 0)  # the keys that occur
    k_vals = np.asarray(k_all[sel], dtype=np.int64)
    s_n = s_n[sel]
    s_net = _sum_by(key_s, net_s, nk)[sel]
    b_net = _sum_by(key_b, net_b, nk)[sel]
    b_gross = _sum_by(key_b, np.abs(net_b), nk)[sel]
    n_bad = (
        _sum_by(key_s, bad_s.astype(np.float64), nk) + _sum_by(key_b, bad_b.astype(np.float64), nk)
    )[sel]
    dt_full = np.zeros(nk)
    dt_full[key_s] = meter["duration_h"].to_numpy(dtype=np.float64)[rows_s]
    dt_h = dt_full[sel]
    k_design = k_vals // (n_sub * n_t)
    k_sub = (k_vals // n_t) % n_sub
    k_t = t_vals[k_vals % n_t]
    resid = s_net - b_net
    through = np.maximum(np.abs(s_net), b_gross)
    ok = (s_n > 0) & (n_bad == 0)
    if losses is not None:
        loss = _losses_per_key(
            losses, tree, np.asarray(d_vals), sub_nodes, k_design, k_sub, k_t, ok
        )
        dev = resid - loss
        tol = s.loss_tolerance * through + s.abs_kwh
        kind = np.where(dev > tol, 1, np.where(dev < -tol, -1, 0))
    else:
        lo_b, hi_b = s.loss_band
        dev = resid
        kind = np.where(
            resid > hi_b * through + s.abs_kwh,
            1,
            np.where(resid < lo_b * through - s.abs_kwh, -1, 0),
        )
    kind = np.where(ok, kind, 0)
    f = np.flatnonzero(kind != 0)
    f = f[np.lexsort((k_t[f], kind[f], k_sub[f], k_design[f]))]
    grp = k_design[f] * n_sub + k_sub[f]
    run = _runs(grp, kind[f], k_t[f], (dt_h[f] * 3.6e12).round().astype(np.int64))
    n_run = int(run.max()) + 1 if run.size else 0

    def total(x: FloatArray) -> FloatArray:
        return _sum_by(run, x[f], n_run)

    first = np.flatnonzero(np.r_[True, run[1:] != run[:-1]]) if run.size else run
    cnt = np.bincount(run, minlength=n_run)
    r_sum, s_sum, b_sum, th_sum = total(resid), total(s_net), total(b_net), total(through)
    direction = kind[f][first]
    node = sub_nodes[k_sub[f][first]]
    if losses is not None:
        l_sum, tol_sum = total(loss), total(tol)
        measure = r_sum - l_sum
        threshold = np.where(direction > 0, tol_sum, -tol_sum)
        detail = [
            f"substation meter {tree.id[nd]} read {sn:.2f} kWh over {_n(c, 'interval')} from "
            f"{_ts(t0)}, the meters below {bn:.2f} kWh and the losses {ln:.2f} kWh: "
            f"{abs(m):.2f} kWh {'unaccounted for' if dr > 0 else 'too much below'} "
            f"(tolerance {abs(th):.2f} kWh; meters below "
            f"{'under' if dr > 0 else 'over'}-report)"
            for nd, sn, c, t0, bn, ln, m, dr, th in zip(
                node,
                s_sum,
                cnt,
                k_t[f][first],
                b_sum,
                l_sum,
                measure,
                direction,
                threshold,
                strict=True,
            )
        ]
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            measure = r_sum / th_sum
        threshold = np.where(direction > 0, s.loss_band[1], s.loss_band[0])
        detail = [
            f"substation meter {tree.id[nd]} read {sn:.2f} kWh over {_n(c, 'interval')} from "
            f"{_ts(t0)}, the meters below {bn:.2f} kWh: residual {rs:.2f} kWh = "
            f"{100 * m:.1f} % of the {th:.2f} kWh through the feeder, "
            f"{'above' if dr > 0 else 'below'} the loss band {100 * s.loss_band[0]:.0f}–"
            f"{100 * s.loss_band[1]:.0f} % (meters below {'under' if dr > 0 else 'over'}-report)"
            for nd, sn, c, t0, bn, rs, m, th, dr in zip(
                node,
                s_sum,
                cnt,
                k_t[f][first],
                b_sum,
                r_sum,
                measure,
                th_sum,
                direction,
                strict=True,
            )
        ]
    # Each substation meter's own resource id (as the table spells it).
    res = meter["resource_id"].iloc[rows_s].astype(str).to_numpy(dtype=object)
    sub_res = dict(zip(sub_idx[pos[rows_s]].tolist(), res.tolist(), strict=True))
    flags = _flags(
        "feeder_consistency",
        np.asarray(d_vals, dtype=object)[k_design[f][first]],
        tree.owner[node],
        np.array([sub_res[int(i)] for i in k_sub[f][first]], dtype=object),
        tree.id[node],
        k_t[f][first],
        cnt,
        measure,
        threshold,
        detail,
    )
    n_skip = int((~ok).sum())
    # Meters below no substation meter (e.g. a design without substation readings).
    under = np.zeros(tree.n, dtype=bool)
    under[pos[rows_b]] = True
    orphans = int((metered & ~is_sub_node & ~under).sum())
    note = (
        f"{_n(n_sub, 'substation meter')} × {_n(n_t, 'interval')} × "
        f"{_n(int(np.unique(k_design).size), 'design')}, "
        + ("against the AC power flow's losses" if losses is not None else "against the loss band")
        + (
            f"; {n_skip} substation-intervals not assessed (no substation reading or a "
            "non-finite reading)"
            if n_skip
            else ""
        )
        + (f"; {orphans} meters sit below no substation meter" if orphans else "")
    )
    return _Checked(flags, int(ok.sum()), note, partial=bool(n_skip or orphans))


def _losses_per_key(
    losses: pd.DataFrame,
    tree: Tree,
    d_vals: NDArray[Any],
    sub_nodes: IntArray,
    k_design: IntArray,
    k_sub: IntArray,
    k_t: IntArray,
    ok: BoolArray,
) -> FloatArray:
    """The losses (kWh) of every (design, substation, interval) key; every assessed key
    needs one."""
    cols = ("design", "node_id", "interval_start", "losses_kwh")
    missing = [c for c in cols if c not in losses.columns]
    if missing:
        raise InvalidInputError(f"losses_kwh: missing columns {missing}")
    where = {str(x): i for i, x in enumerate(tree.id[sub_nodes].tolist())}
    lk = pd.DataFrame(
        {
            "design": losses["design"].astype(str).to_numpy(),
            "node": losses["node_id"].astype(str).map(where).to_numpy(),
            "t": pd.DatetimeIndex(pd.to_datetime(losses["interval_start"], utc=True)).asi8,
            "loss": losses["losses_kwh"].to_numpy(dtype=np.float64),
        }
    )
    dup = lk.duplicated(["design", "node", "t"])
    if dup.any():
        i = int(np.argmax(dup.to_numpy()))
        raise InvalidInputError(
            f"losses_kwh: two rows for node {losses['node_id'].iloc[i]!r} of design "
            f"{losses['design'].iloc[i]!r} at {losses['interval_start'].iloc[i]}"
        )
    want = pd.DataFrame(
        {"design": np.asarray(d_vals, dtype=object)[k_design], "node": k_sub, "t": k_t}
    )
    got = want.merge(lk, on=["design", "node", "t"], how="left", validate="many_to_one")
    loss = got["loss"].to_numpy(dtype=np.float64)
    lacking = ok & ~np.isfinite(loss)
    if lacking.any():
        i = int(np.argmax(lacking))
        raise InvalidInputError(
            f"losses_kwh: no finite losses for substation {tree.id[sub_nodes[k_sub[i]]]!r} "
            f"of design {d_vals[k_design[i]]!r} at {_ts(k_t[i])}"
        )
    return loss


def losses_from_grid(
    grid: pd.DataFrame, meter: pd.DataFrame, tree: Tree, area_names: Sequence[str]
) -> pd.DataFrame:
    """The ``losses_kwh`` table of :func:`feeder_consistency` from the simulator's grid
    summary (per design, area and power-flow step: ``time``, ``losses_kw``): every DSO
    substation reading gets the losses of the power-flow step it falls in × its duration
    (kWh), as the runner spreads a step's losses evenly over its market intervals.
    ``area_names``: the areas in tree order (area index → name)."""
    missing = [c for c in ("design", "area", "time", "losses_kw") if c not in grid.columns]
    if missing:
        raise InvalidInputError(f"grid summary: missing columns {missing}")
    dso = np.flatnonzero(tree.kind == str(Kind.DSO))
    node_of = {str(area_names[int(tree.area[d])]): str(tree.id[d]) for d in dso}
    g = pd.DataFrame(
        {
            "design": grid["design"].astype(str).to_numpy(),
            "node_id": grid["area"].astype(str).map(node_of).to_numpy(),
            "time": pd.DatetimeIndex(pd.to_datetime(grid["time"], utc=True)),
            "losses_kw": grid["losses_kw"].to_numpy(dtype=np.float64),
        }
    )
    METER.check(meter)
    nodes = meter["node_id"].cat
    at_dso = np.isin(nodes.categories.astype(str), list(node_of.values()))[nodes.codes.to_numpy()]
    sub = meter.loc[at_dso, ["design", "node_id", "interval_start", "duration_h"]]
    m = pd.DataFrame(
        {
            "design": sub["design"].astype(str).to_numpy(),
            "node_id": sub["node_id"].astype(str).to_numpy(),
            "time": pd.DatetimeIndex(sub["interval_start"]),
            "duration_h": sub["duration_h"].to_numpy(dtype=np.float64),
        }
    ).sort_values("time", kind="stable")
    got = pd.merge_asof(
        m, g.dropna(subset=["node_id"]).sort_values("time"), on="time", by=["design", "node_id"]
    )
    return pd.DataFrame(
        {
            "design": got["design"],
            "node_id": got["node_id"],
            "interval_start": got["time"],
            "losses_kwh": got["losses_kw"] * got["duration_h"],
        }
    ).reset_index(drop=True)


# --- 4. physical capability ------------------------------------------------------------------


def physical_capability(
    meter: pd.DataFrame, capacity_kw: Mapping[str, float] | pd.Series, margin: float = 0.1
) -> pd.DataFrame:
    """Flags of impossible readings: check ``physical_capability`` where import or export
    energy / duration exceeds the meter's capacity (kW, per resource_id: its connection or
    the sum of its devices' ratings) × (1 + ``margin``) — ``measure`` = the peak kW of the
    run, ``threshold`` = the limit kW — and check ``invalid_reading`` for negative or
    non-finite import/export — ``measure`` = the most negative kWh (NaN when non-finite),
    ``threshold`` = 0. Meters without a capacity are only checked for invalid readings."""
    cap, _ = _capacities(meter, capacity_kw)
    return concat_flags(
        [_invalid(meter).flags, _capability(meter, cap, MonitorSettings(margin=margin)).flags]
    )


def _capacities(
    meter: pd.DataFrame, capacity_kw: Mapping[str, float] | pd.Series
) -> tuple[FloatArray, int]:
    """Capacity (kW) of every reading's meter (NaN where none is given) and the number of
    meters without one."""
    cap = pd.Series(capacity_kw, dtype=np.float64)
    bad = cap[~(np.isfinite(cap.to_numpy()) & (cap.to_numpy() > 0))]
    if len(bad):
        raise InvalidInputError(
            f"capacity_kw: {bad.index[0]!r} has {bad.iloc[0]} kW; capacities must be finite > 0"
        )
    cat = meter["resource_id"].astype("category")
    names = pd.Index([str(x) for x in cat.cat.categories])
    lut = cap.reindex(names).to_numpy(dtype=np.float64)
    codes = cat.cat.codes.to_numpy()
    present = np.bincount(codes, minlength=names.size) > 0
    return lut[codes], int((present & ~np.isfinite(lut)).sum())


def _merged(
    meter: pd.DataFrame, flagged: BoolArray, kind: IntArray, value: FloatArray
) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """Runs of flagged readings per (design, resource, kind): first row (position in
    ``meter``), length, max and min of ``value`` over the run."""
    f = np.flatnonzero(flagged)
    design = meter["design"].cat.codes.to_numpy()[f].astype(np.int64)
    res = meter["resource_id"].cat.codes.to_numpy()[f].astype(np.int64)
    t = pd.DatetimeIndex(meter["interval_start"]).asi8[f]
    dt = (meter["duration_h"].to_numpy(dtype=np.float64)[f] * 3.6e12).round().astype(np.int64)
    o = np.lexsort((t, kind[f], res, design))
    f, design, res, t, dt = f[o], design[o], res[o], t[o], dt[o]
    run = _runs(design * (int(res.max(initial=0)) + 1) + res, kind[f], t, dt)
    first = np.flatnonzero(np.r_[True, run[1:] != run[:-1]]) if run.size else run
    n_run = first.size
    hi = np.full(n_run, -np.inf)
    lo = np.full(n_run, np.inf)
    v = value[f]
    np.maximum.at(hi, run, np.where(np.isnan(v), -np.inf, v))
    np.minimum.at(lo, run, np.where(np.isnan(v), np.inf, v))
    return f[first], np.bincount(run, minlength=n_run), hi, lo


def _ids(meter: pd.DataFrame, rows: IntArray) -> tuple[NDArray[Any], ...]:
    return tuple(
        meter[c].iloc[rows].astype(str).to_numpy(dtype=object)
        for c in ("design", "participant_id", "resource_id", "node_id")
    )


def _invalid(meter: pd.DataFrame) -> _Checked:
    METER.check(meter)
    imp = meter["import_kwh"].to_numpy(dtype=np.float64)
    exp = meter["export_kwh"].to_numpy(dtype=np.float64)
    nonfinite = ~(np.isfinite(imp) & np.isfinite(exp))
    negative = ~nonfinite & ((imp < 0) | (exp < 0))
    kind = np.where(nonfinite, 1, np.where(negative, 2, 0)).astype(np.int64)
    value = np.where(nonfinite, np.nan, np.minimum(imp, exp))
    rows, n, _, lo = _merged(meter, kind > 0, kind, value)
    design, participant, resource, node = _ids(meter, rows)
    k = kind[rows]
    detail = [
        f"{_n(c, 'reading')} from {_ts(t)}: "
        + (
            "import or export not finite"
            if kk == 1
            else f"negative, down to {v:.3f} kWh (import and export are each ≥ 0)"
        )
        for c, t, kk, v in zip(
            n.tolist(), pd.DatetimeIndex(meter["interval_start"]).asi8[rows], k, lo, strict=True
        )
    ]
    flags = _flags(
        "invalid_reading",
        design,
        participant,
        resource,
        node,
        pd.DatetimeIndex(meter["interval_start"]).asi8[rows],
        n,
        np.where(k == 1, np.nan, lo),
        0.0,
        detail,
    )
    return _Checked(flags, len(meter), f"{len(meter)} readings")


def _capability(meter: pd.DataFrame, cap: FloatArray, s: MonitorSettings) -> _Checked:
    METER.check(meter)
    dt = meter["duration_h"].to_numpy(dtype=np.float64)
    imp = meter["import_kwh"].to_numpy(dtype=np.float64)
    exp = meter["export_kwh"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        kw = np.fmax(np.abs(imp), np.abs(exp)) / dt  # NaN only when both are NaN
        limit = cap * (1.0 + s.margin)
        over = np.isfinite(cap) & (kw > limit)
    kind = np.where(np.abs(imp) >= np.abs(exp), 1, 2).astype(np.int64)  # import / export
    rows, n, hi, _ = _merged(meter, over, kind, kw)
    design, participant, resource, node = _ids(meter, rows)
    detail = [
        f"{_n(c, 'reading')} from {_ts(t)}: a peak of {p:.2f} kW of "
        f"{'import' if kk == 1 else 'export'}, {p / cp:.1f}× the meter's capacity of "
        f"{cp:.2f} kW (limit {lm:.2f} kW with the {100 * s.margin:.0f} % margin)"
        for c, t, p, kk, cp, lm in zip(
            n.tolist(),
            pd.DatetimeIndex(meter["interval_start"]).asi8[rows],
            hi,
            kind[rows],
            cap[rows],
            limit[rows],
            strict=True,
        )
    ]
    flags = _flags(
        "physical_capability",
        design,
        participant,
        resource,
        node,
        pd.DatetimeIndex(meter["interval_start"]).asi8[rows],
        n,
        hi,
        limit[rows],
        detail,
    )
    assessed = int(np.isfinite(cap).sum())
    return _Checked(flags, assessed, f"{assessed} of {len(meter)} readings have a capacity")


# --- all checks ------------------------------------------------------------------------------


def monitor(
    meter: pd.DataFrame,
    tree: Tree,
    *,
    event_days: Sequence[Any] | pd.DatetimeIndex | None = None,
    commitments: pd.DataFrame | None = None,
    capacity_kw: Mapping[str, float] | pd.Series | None = None,
    losses_kwh: pd.DataFrame | None = None,
    settings: MonitorSettings | None = None,
    tz: str = "UTC",
) -> Monitoring:
    """Run every check whose input is present over the meter readings of every design.

    ``event_days``: days with a demand-response event (local days in ``tz``; baseline
    inflation runs per design on the meters below the substations, peers = meters of the
    same node kind); ``commitments``: :data:`COMMITMENT_COLUMNS`; ``capacity_kw``: per
    meter resource_id (kW); ``losses_kwh``: see :func:`feeder_consistency`. Returns the
    flags and, per check, whether it ran, on how much, and what it flagged."""
    s = settings or MonitorSettings()
    METER.check(meter)
    rows: list[tuple[str, str, int, int, str]] = []
    found: list[pd.DataFrame] = []

    def record(check: str, got: _Checked | None, why_not: str) -> None:
        if got is None:
            rows.append((check, "not run", 0, 0, f"not run: {why_not}"))
            return
        found.append(got.flags)
        status = "partial" if got.partial else "run"
        rows.append((check, status, got.assessed, len(got.flags), got.note))

    # 1. baseline inflation, per design
    if event_days is None or len(event_days) == 0:
        record("baseline_inflation", None, "no event days")
    else:
        sub_kind = np.isin(tree.kind.astype(str), list(s.substation_kinds))
        below = ~sub_kind[_node_positions(meter, tree)]
        d_code = meter["design"].cat.codes.to_numpy()
        parts, names = [], []
        ev = _days(event_days)
        ev = (ev.tz_localize(tz) if ev.tz is None else ev.tz_convert(tz)).normalize()
        for d, design in enumerate(meter["design"].cat.categories):  # one pass per design
            at = np.flatnonzero(below & (d_code == d))
            if not at.size:
                continue
            load, days, ids = _daily_load(meter, at, tz)
            peer = tree.kind.astype(str)[_node_positions(ids, tree)]
            parts.append(
                _baseline_inflation(load, days, ev[ev.isin(days)], ids, peer, s, str(design))
            )
            names.append(str(design))
        if parts:
            record(
                "baseline_inflation",
                _Checked(
                    concat_flags([p.flags for p in parts]),
                    sum(p.assessed for p in parts),
                    "; ".join(f"{n}: {p.note}" for n, p in zip(names, parts, strict=True)),
                    any(p.partial for p in parts),
                ),
                "",
            )
        else:
            record("baseline_inflation", None, "no meters below a substation")

    # 2. non-delivery
    if commitments is None or not len(commitments):
        record("non_delivery", None, "no commitments")
    else:
        record("non_delivery", _non_delivery(commitments, s), "")

    # 3. feeder consistency
    fc = _feeder(meter, tree, losses_kwh, s)
    if fc.assessed == 0:
        record("feeder_consistency", None, fc.note)
    else:
        record("feeder_consistency", fc, "")

    # 4. physical capability and invalid readings
    if capacity_kw is None or len(capacity_kw) == 0:
        record("physical_capability", None, "no meter capacities")
    else:
        cap, n_without = _capacities(meter, capacity_kw)
        got = _capability(meter, cap, s)
        if n_without:
            got = _Checked(
                got.flags, got.assessed, got.note + f"; {n_without} meters have none", True
            )
        record("physical_capability", got, "")
    record("invalid_reading", _invalid(meter), "")

    coverage = pd.DataFrame(rows, columns=list(COVERAGE_COLUMNS))
    return Monitoring(concat_flags(found), coverage)


def report_tables(result: Monitoring) -> str:
    """The flags and the coverage as markdown tables, for the settlement report."""
    cov = result.coverage
    out = [
        "| check | status | assessed | flagged | detail |",
        "|---|---|---|---|---|",
        *(
            f"| {r.check} | {r.status} | {r.n_assessed} | {r.n_flagged} | {r.detail} |"
            for r in cov.itertuples()
        ),
        "",
    ]
    if not len(result.flags):
        return "\n".join([*out, "No flags."])
    out += [
        "| check | design | participant | resource | first interval | intervals | detail |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r.check} | {r.design} | {r.participant_id} | {r.resource_id} | "
            f"{r.interval_start:%Y-%m-%d %H:%M} | {r.n_intervals} | {r.detail} |"
            for r in result.flags.itertuples()
        ),
    ]
    return "\n".join(out)

"""Validation, estimation and editing (VEE) of stored meter readings.

Rules (documented in ``docs/settlement.md``, "Meter data and VEE"):

* **Validation** = the ingest checks (:func:`~transactive.settlement.meter_data.ingest`) plus
  plausibility: a reading whose import or export exceeds the connection's ``max_kw`` × the
  interval length is flagged ``implausible`` (:func:`validate`); it is not changed, and it is
  not used as the source of an estimate.
* **Estimation** (:func:`estimate`) of missing intervals (no reading at all), per meter:
  a gap of ≤ ``max_interpolate`` intervals between two measured readings is filled by linear
  interpolation of their energies (import and export separately, rounded half to even to
  Wh); any other missing interval takes *like-day* substitution: the value of the same local
  clock time on the most recent earlier local day of the same day type (weekday, or weekend
  = Saturday/Sunday) that holds a measured reading there. A missing interval with neither
  stays missing and is reported. Only measured, plausible readings are sources, so estimates
  are never built on estimates.
* Estimates are new readings with quality ``estimated`` and rule ``interpolated`` /
  ``like-day``; they never overwrite a reading. A later measured reading for the interval
  replaces the estimate at ingest (recorded in the store's audit).
* **Editing** (:func:`edit`) is an explicit replacement with a reason, kept in the store's
  audit with the old values; the edited reading has quality ``estimated``, rule ``edited``.

Estimation works on (meters × intervals) arrays: vectorised over meters and intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from transactive.errors import InvalidInputError
from transactive.settlement.meter_data import (
    EDITED,
    ESTIMATED,
    INTERPOLATED,
    LIKE_DAY,
    MEASURED,
    QUALITIES,
    RULES,
    AuditEntry,
    MeterStore,
    Registry,
)

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def _check_registry(store: MeterStore, registry: Registry) -> None:
    if store.meter_ids != tuple(str(m) for m in registry.meter_id):
        raise InvalidInputError("the store was made for a different registry of meters")


def limit_wh(store: MeterStore, registry: Registry) -> npt.NDArray[np.float64]:
    """The most energy each meter's connection can carry in one interval, Wh (max_kw × h)."""
    return registry.max_kw * store.grid.hours * 1000.0


def _implausible(store: MeterStore, registry: Registry) -> BoolArray:
    lim = limit_wh(store, registry)[store.meter]
    return (store.import_wh > lim) | (store.export_wh > lim)


def validate(store: MeterStore, registry: Registry) -> pd.DataFrame:
    """The stored readings flagged ``implausible``: import or export above the connection's
    capacity for the interval. Columns: meter_id, interval_start (UTC), import_wh, export_wh,
    limit_wh, quality, flag. Nothing is changed."""
    _check_registry(store, registry)
    rows = np.flatnonzero(_implausible(store, registry))
    lim = limit_wh(store, registry)[store.meter[rows]]
    return pd.DataFrame(
        {
            "meter_id": np.array(store.meter_ids, dtype=object)[store.meter[rows]],
            "interval_start": store.grid.starts[store.interval[rows]],
            "import_wh": store.import_wh[rows],
            "export_wh": store.export_wh[rows],
            "limit_wh": lim,
            "quality": np.array(QUALITIES, dtype=object)[store.quality[rows]],
            "flag": "implausible",
        }
    )


@dataclass(frozen=True)
class Estimation:
    """What :func:`estimate` did: ``estimated`` (meter_id, interval_start, rule, import_wh,
    export_wh, source_start: the like-day source interval, NaT for interpolation) and
    ``missing`` (meter_id, interval_start: no reading and no rule applies)."""

    estimated: pd.DataFrame
    missing: pd.DataFrame


def local_slots(starts: pd.DatetimeIndex, timezone: str) -> tuple[IntArray, IntArray, IntArray]:
    """Per interval start: local day number (days since the epoch), local minute of the day
    and day type (0 weekday, 1 Saturday/Sunday) in ``timezone``."""
    local = starts.tz_convert(timezone)
    day = local.tz_localize(None).normalize().asi8 // (86400 * 10**9)
    minute = np.asarray(local.hour * 60 + local.minute, np.int64)
    kind = np.asarray(local.dayofweek >= 5, np.int64)
    return np.asarray(day, np.int64), minute, kind


def like_day_source(measured: BoolArray, starts: pd.DatetimeIndex, timezone: str) -> IntArray:
    """For each meter (row) and interval (column): the interval at the same local clock time
    on the most recent earlier local day of the same day type where the meter has a measured
    reading; −1 where there is none."""
    day, minute, kind = local_slots(starts, timezone)
    n = len(starts)
    group = kind * 1440 + minute
    order = np.lexsort((np.arange(n), day, group))  # by slot group, then day, then time
    g, d = group[order], day[order]
    new_group = np.r_[True, g[1:] != g[:-1]]
    new_block = new_group | np.r_[True, d[1:] != d[:-1]]
    pos = np.arange(n)
    group_start = np.maximum.accumulate(np.where(new_group, pos, 0))
    block_start = np.maximum.accumulate(np.where(new_block, pos, 0))
    last = np.maximum.accumulate(np.where(measured[:, order], pos, -1), axis=1)
    # the last measured position before the current (group, day) block, if in the same group
    before = np.where(block_start > 0, last[:, np.maximum(block_start - 1, 0)], -1)
    ok = before >= group_start
    src_sorted = np.where(ok, order[np.maximum(before, 0)], -1)
    src = np.empty_like(src_sorted)
    src[:, order] = src_sorted
    return src


def _dense(store: MeterStore, values: IntArray, fill: int) -> IntArray:
    out = np.full((len(store.meter_ids), store.grid.n_intervals), fill, np.int64)
    out[store.meter, store.interval] = values
    return out


def estimate(
    store: MeterStore, registry: Registry, timezone: str, max_interpolate: int = 2
) -> Estimation:
    """Fill the missing intervals of every registered meter by the rules in the module
    docstring, adding the estimates to ``store`` (quality ``estimated``); ``timezone``: the
    local clock of like-day matching. Returns what was estimated and what stays missing."""
    _check_registry(store, registry)
    if type(max_interpolate) is not int or max_interpolate < 0:
        raise InvalidInputError(f"max_interpolate must be an int ≥ 0, not {max_interpolate}")
    n_m, n = len(store.meter_ids), store.grid.n_intervals
    present = _dense(store, np.ones(len(store), np.int64), 0).astype(bool)
    usable = (store.quality == MEASURED) & ~_implausible(store, registry)
    source = _dense(store, usable.astype(np.int64), 0).astype(bool)
    imp = _dense(store, store.import_wh, 0)
    exp = _dense(store, store.export_wh, 0)
    idx = np.broadcast_to(np.arange(n), (n_m, n))
    prev = np.maximum.accumulate(np.where(present, idx, -1), axis=1)
    nxt = np.minimum.accumulate(np.where(present, idx, n)[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(n_m)[:, None]
    missing = ~present
    inner = missing & (prev >= 0) & (nxt < n)
    p, q = np.where(inner, prev, 0), np.where(inner, nxt, 0)
    interp = inner & (q - p - 1 <= max_interpolate) & source[rows, p] & source[rows, q]
    w = np.where(interp, (idx - p) / np.maximum(q - p, 1), 0.0)
    est_imp = np.rint(imp[rows, p] + (imp[rows, q] - imp[rows, p]) * w).astype(np.int64)
    est_exp = np.rint(exp[rows, p] + (exp[rows, q] - exp[rows, p]) * w).astype(np.int64)
    src = like_day_source(source, store.grid.starts, timezone)
    like = missing & ~interp & (src >= 0)
    s = np.maximum(src, 0)
    est_imp = np.where(like, imp[rows, s], est_imp)
    est_exp = np.where(like, exp[rows, s], est_exp)
    fill = interp | like
    mi, ki = np.nonzero(fill)
    rule = np.where(interp[mi, ki], INTERPOLATED, LIKE_DAY).astype(np.int8)
    store.add(mi, ki, est_imp[mi, ki], est_exp[mi, ki], ESTIMATED, rule, -1)
    ids = np.array(store.meter_ids, dtype=object)
    starts = store.grid.starts
    src_k = src[mi, ki]
    estimated = pd.DataFrame(
        {
            "meter_id": ids[mi],
            "interval_start": starts[ki],
            "rule": np.array(RULES, dtype=object)[rule],
            "import_wh": est_imp[mi, ki],
            "export_wh": est_exp[mi, ki],
            "source_start": starts[np.maximum(src_k, 0)].where(rule == LIKE_DAY),
        }
    )
    mm, km = np.nonzero(missing & ~fill)
    gaps = pd.DataFrame({"meter_id": ids[mm], "interval_start": starts[km]})
    return Estimation(estimated, gaps)


def edit(
    store: MeterStore,
    meter: str,
    interval: pd.Timestamp | str,
    import_wh: int,
    export_wh: int,
    reason: str,
) -> AuditEntry:
    """Replace (or, where none is stored, add) ``meter``'s reading for the interval starting
    at ``interval`` (UTC) by hand, for ``reason``; the change, with the old values, is appended
    to ``store.audit``. The reading gets quality ``estimated`` and rule ``edited``; it keeps
    the link to the signed message it came in (the original, for audit)."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInputError("an edit needs a reason")
    for name, v in (("import_wh", import_wh), ("export_wh", export_wh)):
        if type(v) is not int or v < 0:
            raise InvalidInputError(f"edit of {meter!r}: {name} {v!r} must be an int ≥ 0 (Wh)")
    if meter not in store.meter_ids:
        raise InvalidInputError(f"edit: meter {meter!r} is not registered")
    m = store.meter_ids.index(meter)
    k = store.grid.slot(interval)
    row = int(store.find(np.array([m * store.grid.n_intervals + k]))[0])
    new = (import_wh, export_wh, QUALITIES[ESTIMATED], "edited")
    edited = EDITED
    if row < 0:
        old = None
        one = np.ones(1, np.int64)
        store.add(one * m, one * k, one * import_wh, one * export_wh, ESTIMATED, edited, -1)
    else:
        old = (
            int(store.import_wh[row]),
            int(store.export_wh[row]),
            QUALITIES[store.quality[row]],
            RULES[store.rule[row]],
        )
        store.import_wh[row], store.export_wh[row] = import_wh, export_wh
        store.quality[row], store.rule[row] = ESTIMATED, edited  # its signed original stays linked
    entry = AuditEntry(meter, store.grid.starts[k], "edit", old, new, reason)
    store.audit.append(entry)
    return entry

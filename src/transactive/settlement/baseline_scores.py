"""Placebo scoring of baselines: bias and error on days without an event.

As regulators' baseline studies do, every non-excluded day with enough history is treated
as if it had an event in ``window``: the baseline's counterfactual is compared with what the
meter actually drew. The error of a meter-day is the mean over the window's intervals of
``baseline − actual`` (kW; + the baseline over-states the load, which over-pays a reduction).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from transactive.settlement.baselines import (
    Baseline,
    History,
    WindowLike,
    as_window,
    exclusion_mask,
    get_baseline,
)

#: Columns of :func:`score_baselines`' table, in order.
SCORE_COLUMNS = (
    "baseline",
    "n_days",
    "n_meter_days",
    "mean_error_kw",
    "mean_error_percent",
    "rmse_kw",
    "cv_rmse_percent",
    "mean_abs_error_kw",
    "p10_error_kw",
    "p50_error_kw",
    "p90_error_kw",
    "note",
)

INSUFFICIENT = "insufficient history"


def placebo_errors(
    history: History,
    baseline: Baseline,
    window: WindowLike,
    excluded: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per meter-day placebo error and actual load over ``window``, kW, each
    ``(n_meters, n_days)``: error = mean over the window of baseline − actual; NaN where
    the day is excluded for the meter, the baseline has no value (not enough history) or a
    window interval is unread."""
    w = as_window(window, history.n_slots)
    ex = exclusion_mask(history, excluded)
    shape = (history.n_meters, history.n_days)
    error, actual = np.full(shape, np.nan), np.full(shape, np.nan)
    for day in range(max(baseline.min_history_days, 0), history.n_days):
        if ex[:, day].all():
            continue
        cf = baseline.counterfactual(history, ex, day, w)[:, w.start : w.stop]
        act = history.load_kw[:, day, w.start : w.stop]
        ok = ~ex[:, day] & np.isfinite(cf).all(axis=1) & np.isfinite(act).all(axis=1)
        error[ok, day] = (cf[ok] - act[ok]).mean(axis=1)
        actual[ok, day] = act[ok].mean(axis=1)
    return error, actual


def score_row(name: str, error: np.ndarray, actual: np.ndarray) -> dict[str, object]:
    """One row of the score table from per meter-day errors and actual loads (NaN: not
    scored). Percentages are of the mean actual load over the scored meter-days."""
    ok = np.isfinite(error)
    e, a = error[ok], actual[ok]
    if e.size == 0:
        nan = float("nan")
        return {
            "baseline": name,
            "n_days": 0,
            "n_meter_days": 0,
            **{c: nan for c in SCORE_COLUMNS[3:-1]},
            "note": INSUFFICIENT,
        }
    mean_actual = float(a.mean())
    bias = float(e.mean())
    rmse = float(np.sqrt(np.mean(e**2)))
    with np.errstate(divide="ignore", invalid="ignore"):
        bias_pct = float(np.float64(100.0) * bias / mean_actual)
        cv_pct = float(np.float64(100.0) * rmse / mean_actual)
    p10, p50, p90 = np.percentile(e, [10, 50, 90])
    return {
        "baseline": name,
        "n_days": int(ok.any(axis=0).sum()),
        "n_meter_days": int(e.size),
        "mean_error_kw": bias,
        "mean_error_percent": bias_pct,
        "rmse_kw": rmse,
        "cv_rmse_percent": cv_pct,
        "mean_abs_error_kw": float(np.abs(e).mean()),
        "p10_error_kw": float(p10),
        "p50_error_kw": float(p50),
        "p90_error_kw": float(p90),
        "note": "",
    }


def score_baselines(
    history: History,
    baselines: Sequence[Baseline | str],
    window: WindowLike,
    excluded: np.ndarray | None = None,
) -> pd.DataFrame:
    """Placebo scores of ``baselines`` (objects or registered names), one row each, columns
    :data:`SCORE_COLUMNS`: days and meter-days scored, bias (``mean_error_kw`` and as % of
    the mean actual load), RMSE (kW and CV as %), mean absolute error and the 10th / 50th /
    90th percentile errors (kW). A baseline that could be scored on no meter-day keeps its
    row, with counts 0, NaN metrics and the note "insufficient history"."""
    rows = []
    for b in baselines:
        base = get_baseline(b) if isinstance(b, str) else b
        error, actual = placebo_errors(history, base, window, excluded)
        rows.append(score_row(base.name, error, actual))
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS))

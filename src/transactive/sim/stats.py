"""Statistics over random seeds: each KPI's mean and 95 % confidence interval per design, and
every design's difference from the baseline design with its interval.

The seeds draw the devices and the forecast errors; every design of one seed runs on the same
draw, so differences are *paired* by seed (a paired t-interval: the noise common to all
designs of a seed cancels). With one seed the intervals are undefined (NaN) and nothing is
called significant.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

#: Columns of :func:`summarise`.
SUMMARY_COLUMNS = (
    "kpi",
    "design",
    "n",
    "mean",
    "lo",
    "hi",
    "diff",
    "diff_lo",
    "diff_hi",
    "significant",
)


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two-sided t confidence interval of ``values`` (NaNs dropped)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.nan, np.nan, np.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, np.nan, np.nan
    half = float(sps.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return mean, mean - half, mean + half


def summarise(kpis: pd.DataFrame, baseline: str, level: float = 0.95) -> pd.DataFrame:
    """Summary of a long KPI table ``seed, design, kpi, value`` (see the module docstring).

    A difference is *significant* when its interval excludes zero. The baseline's own
    difference is 0 by definition (and never significant).
    """
    if kpis.empty:
        return pd.DataFrame({c: [] for c in SUMMARY_COLUMNS})
    wide = kpis.pivot_table(
        index=["kpi", "seed"], columns="design", values="value", aggfunc="first"
    )
    rows = []
    present = set(wide.index.get_level_values(0))
    for kpi in dict.fromkeys(kpis["kpi"]):
        if kpi not in present:  # every value NaN (e.g. a ratio of a zero mean)
            for design in dict.fromkeys(kpis["design"]):
                rows.append((kpi, design, 0, *([np.nan] * 6), False))
            continue
        table = wide.loc[kpi]
        for design in dict.fromkeys(kpis["design"]):
            if design not in table.columns:
                continue
            x = table[design].to_numpy(dtype=float)
            mean, lo, hi = interval(x, level)
            if baseline in table.columns:
                d, dlo, dhi = interval(x - table[baseline].to_numpy(dtype=float), level)
            else:
                d = dlo = dhi = np.nan
            # Differences at round-off level (1e-9 of the KPI's scale) are no difference.
            tol = 1e-9 * max(1.0, float(np.nanmax(np.abs(table.to_numpy(dtype=float)))))
            sig = bool(design != baseline and np.isfinite(dlo) and (dlo > tol or dhi < -tol))
            rows.append((kpi, design, int(np.isfinite(x).sum()), mean, lo, hi, d, dlo, dhi, sig))
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))

"""Time stamps of step positions (shared by the result types and the limit summaries)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def time_at(time: pd.Index, step: np.ndarray) -> pd.Index:
    """Time stamps at step positions ``step`` (missing where ``step`` is −1)."""
    at = time[np.maximum(step, 0)]
    if at.dtype.kind in "iu":  # step numbers (no time stamps): nullable, not float
        at = at.astype("Int64")
    return at.where(step >= 0)

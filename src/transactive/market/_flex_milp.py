"""The flexibility commit on HiGHS: one LP (or MILP when some offers are all-or-none) over
the offers' fractions, the only place :mod:`transactive.market.flexibility` touches highspy.

Columns: one fraction ``x_o ∈ [0, 1]`` per offer (integer where ``integer``; 0 where not
``allowed``), then one
shortfall column ``s_k ≥ 0`` per soft row when ``soft`` is given. Rows: ``lo ≤ A x + B s ≤ hi``
where ``B`` puts ``soft_sign[k]`` at row ``soft_row[k]``. Objective: ``cost · x`` or, in the
shortfall phase (``minimise_shortfall=True``), ``Σ s`` (kW) only. ``soft_cap`` bounds each
``s_k`` above (kW); ``shortfall_cap`` adds the row ``Σ s ≤ shortfall_cap`` and drops ``Σ s``
from the objective (the cost phase of the lexicographic partial commit).

Internal to :mod:`transactive.market.flexibility`.
"""

from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp
from highspy._core import _Highs
from numpy.typing import NDArray

from transactive.errors import NetworkClearingError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

OPTIMAL = "optimal"
INFEASIBLE = "infeasible"


@dataclass(frozen=True)
class Solution:
    """HiGHS's answer: ``status`` (``optimal``, ``infeasible`` or HiGHS's status text),
    the offer fractions ``x`` (0 unless optimal), the shortfalls ``s`` (kW, per soft row) and
    the objective (currency, or kW in the shortfall phase)."""

    status: str
    x: FloatArray
    s: FloatArray
    objective: float


def solve(
    cost: FloatArray,
    integer: BoolArray,
    A: sp.csr_matrix,
    lo: FloatArray,
    hi: FloatArray,
    *,
    soft_row: IntArray | None = None,
    soft_sign: FloatArray | None = None,
    minimise_shortfall: bool = False,
    allowed: BoolArray | None = None,
    soft_cap: FloatArray | None = None,
    shortfall_cap: float | None = None,
) -> Solution:
    """Solve the commit model described in the module docstring (MILP if any ``integer``);
    offers not ``allowed`` are held at 0."""
    n = int(cost.size)
    m = int(A.shape[0])
    k = 0 if soft_row is None else int(soft_row.size)
    if n + k == 0:  # nothing to choose: feasible iff 0 satisfies every row
        ok = bool(np.all(lo <= 1e-9) and np.all(hi >= -1e-9))
        return Solution(OPTIMAL if ok else INFEASIBLE, np.zeros(0), np.zeros(0), 0.0)
    if k:
        assert soft_row is not None and soft_sign is not None
        B = sp.csr_matrix((soft_sign, (soft_row, np.arange(k))), shape=(m, k))
        M = sp.hstack([A, B], format="csc")
    else:
        M = sp.csc_matrix(A)
    if k and shortfall_cap is not None:  # one more row: Σ s ≤ shortfall_cap
        total = sp.csr_matrix(np.concatenate([np.zeros(n), np.ones(k)])[None, :])
        M = sp.vstack([M, total], format="csc")
        lo = np.append(lo, -np.inf)
        hi = np.append(hi, shortfall_cap)
        m += 1
    M.sum_duplicates()
    lp = highspy.HighsLp()
    lp.num_col_ = n + k
    lp.num_row_ = m
    s_cost = np.zeros(k) if shortfall_cap is not None else np.ones(k)
    obj = np.concatenate([np.zeros(n) if minimise_shortfall else cost, s_cost])
    lp.col_cost_ = obj
    lp.col_lower_ = np.zeros(n + k)
    top = np.ones(n) if allowed is None else np.where(allowed, 1.0, 0.0)
    s_top = np.full(k, highspy.kHighsInf) if soft_cap is None else np.maximum(soft_cap, 0.0)
    lp.col_upper_ = np.concatenate([top, s_top])
    lp.row_lower_ = np.where(np.isfinite(lo), lo, -highspy.kHighsInf)
    lp.row_upper_ = np.where(np.isfinite(hi), hi, highspy.kHighsInf)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = M.indptr.astype(np.int32)
    lp.a_matrix_.index_ = M.indices.astype(np.int32)
    lp.a_matrix_.value_ = M.data.astype(np.float64)
    if integer.any():
        vt = highspy.HighsVarType
        kinds = [vt.kInteger if b else vt.kContinuous for b in integer.tolist()]
        lp.integrality_ = kinds + [vt.kContinuous] * k
    # highspy.Highs() prints its banner before options can be set: use the core class.
    h = _Highs()
    try:
        h.setOptionValue("output_flag", False)
        h.setOptionValue("mip_rel_gap", 1e-9)
        h.passModel(lp)
        h.run()
        status = h.getModelStatus()
    except Exception as exc:  # the solver's own errors become ours
        raise NetworkClearingError(f"HiGHS failed on the flexibility commit: {exc}") from exc
    ms = highspy.HighsModelStatus
    if status == ms.kOptimal:
        col = np.asarray(h.getSolution().col_value, dtype=np.float64)
        x = np.clip(col[:n], 0.0, 1.0)
        x[integer] = np.round(x[integer])
        s = np.maximum(col[n:], 0.0)
        return Solution(OPTIMAL, x, s, float(h.getInfo().objective_function_value))
    label = (
        INFEASIBLE
        if status in (ms.kInfeasible, ms.kUnboundedOrInfeasible)
        else h.modelStatusToString(status)
    )
    return Solution(label, np.zeros(n), np.zeros(k), float("nan"))

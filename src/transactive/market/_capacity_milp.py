"""The capacity auction's selection on HiGHS: one row, one column per offer (a MILP where
some offers are indivisible, else an LP), the only place :mod:`transactive.market.capacity`
touches highspy (as :mod:`transactive.market._network_lp` does for the network clearing).

Internal to :mod:`transactive.market.capacity`.
"""

from __future__ import annotations

import highspy
import numpy as np
from highspy._core import _Highs
from numpy.typing import NDArray

from transactive.errors import TransactiveError

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


class CapacityError(TransactiveError):
    """The capacity MILP could not be solved (a solver failure); the message says why."""


def solve_selection(
    cost: FloatArray, firm: FloatArray, need: float, divisible: BoolArray
) -> FloatArray:
    """min cost·x s.t. firm·x ≥ need, 0 ≤ x ≤ 1, x integer where not divisible (HiGHS)."""
    n = cost.size
    lp = highspy.HighsLp()
    lp.num_col_ = n
    lp.num_row_ = 1
    lp.col_cost_ = cost
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.where(firm > 0, 1.0, 0.0)
    lp.row_lower_ = np.array([need])
    lp.row_upper_ = np.array([np.inf])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.arange(n + 1, dtype=np.int32)
    lp.a_matrix_.index_ = np.zeros(n, dtype=np.int32)
    lp.a_matrix_.value_ = firm
    vt = highspy.HighsVarType
    if not divisible.all():  # an LP otherwise
        lp.integrality_ = [vt.kContinuous if d else vt.kInteger for d in divisible]
    # As in market/_network_lp.py: the core class, silenced before any other call.
    h = _Highs()
    try:
        h.setOptionValue("output_flag", False)
        h.setOptionValue("mip_rel_gap", 0.0)
        h.setOptionValue("mip_abs_gap", 0.0)
        h.setOptionValue("mip_feasibility_tolerance", 1e-10)
        h.setOptionValue("primal_feasibility_tolerance", 1e-10)
        h.passModel(lp)
        h.run()
        status = h.getModelStatus()
    except Exception as exc:  # the solver's own errors become ours
        raise CapacityError(f"HiGHS failed on the capacity MILP: {exc}") from exc
    if status != highspy.HighsModelStatus.kOptimal:
        raise CapacityError(f"HiGHS could not solve the capacity MILP: "
                            f"{h.modelStatusToString(status)}")  # fmt: skip
    return np.asarray(h.getSolution().col_value, dtype=np.float64)

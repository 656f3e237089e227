"""The assignment LP of :mod:`transactive.market.p2p` on HiGHS (the only p2p module that
imports the solver).

    max  Σ_k w_k x_k                      w_k = b_i − s_j − c_k for pair k = (buyer i, seller j)
    s.t. Σ_{k: buyer i}  x_k ≤ q_i        (buyer rows, dual u_i ≥ 0)
         Σ_{k: seller j} x_k ≤ q_j        (seller rows, dual v_j ≥ 0)
         0 ≤ x_k ≤ cap_k                  (cap: inf, or what the DSO left of the pair)

solved as ``min −w·x``; the columns are built from index arrays (one sparse matrix, no loop
over pairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp
from highspy._core import _Highs
from numpy.typing import NDArray

from transactive.errors import TransactiveError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class P2PMatchingError(TransactiveError):
    """HiGHS could not solve the matching LP (it is always feasible: x = 0)."""


@dataclass(frozen=True)
class LPResult:
    """Traded kWh per pair ``x``, the order duals ``dual`` (≥ 0, currency/kWh, one per
    order: the surplus per kWh the order keeps) and the welfare (currency)."""

    x: FloatArray
    dual: FloatArray
    welfare: float


def solve_assignment(
    weight: FloatArray,
    pair_buy: IntArray,
    pair_sell: IntArray,
    qty: FloatArray,
    cap: FloatArray | None = None,
) -> LPResult:
    """Solve the LP above. ``weight``, ``pair_buy``, ``pair_sell`` (order positions) and
    ``cap`` are per pair; ``qty`` (kWh ≥ 0) per order (buyers and sellers share one
    numbering: every order is one row)."""
    n_pair, n_ord = int(weight.size), int(qty.size)
    if n_pair == 0:
        return LPResult(np.zeros(0), np.zeros(n_ord), 0.0)
    rows = np.concatenate([pair_buy, pair_sell]).astype(np.int64)
    cols = np.tile(np.arange(n_pair, dtype=np.int64), 2)
    A = sp.csc_matrix((np.ones(2 * n_pair), (rows, cols)), shape=(n_ord, n_pair))
    lp = highspy.HighsLp()
    lp.num_col_ = n_pair
    lp.num_row_ = n_ord
    lp.col_cost_ = -np.asarray(weight, dtype=np.float64)
    lp.col_lower_ = np.zeros(n_pair)
    lp.col_upper_ = np.full(n_pair, np.inf) if cap is None else np.asarray(cap, dtype=np.float64)
    lp.row_lower_ = np.full(n_ord, -np.inf)
    lp.row_upper_ = np.asarray(qty, dtype=np.float64)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32)
    lp.a_matrix_.value_ = A.data
    # HiGHS writes its banner on construction unless output_flag is off first (see
    # market/_network_lp.py): use the core class and silence it before anything else.
    h = _Highs()
    try:
        h.setOptionValue("output_flag", False)
        h.passModel(lp)
        h.run()
        status = h.getModelStatus()
    except Exception as exc:  # the solver's own errors become ours
        raise P2PMatchingError(f"HiGHS failed on the p2p matching LP: {exc}") from exc
    if status != highspy.HighsModelStatus.kOptimal:
        raise P2PMatchingError(
            f"HiGHS could not solve the p2p matching LP: {h.modelStatusToString(status)}"
        )
    s = h.getSolution()
    x = np.clip(np.asarray(s.col_value, dtype=np.float64), 0.0, None)
    # row_dual = ∂(min cost)/∂(row bound) ≤ 0 for a binding ≤ row: the order's surplus is −it.
    dual = np.maximum(-np.asarray(s.row_dual, dtype=np.float64), 0.0)
    return LPResult(x, dual, float(np.dot(weight, x)))

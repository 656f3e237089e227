"""First-order (1R1C) thermal model shared by the HVAC and water-heater fleets.

    C · dT/dt = H · (T_ref − T) + Q

C: heat capacity, kWh/K; H: conductance to the reference temperature, kW/K; T_ref: °C;
Q: net heat input, kW (constant over the step). With ``a = exp(−H·dt/C)`` the exact
solution over ``dt`` hours is ``T1 = T_eq + (T0 − T_eq)·a`` with ``T_eq = T_ref + Q/H``, and
the time-average temperature is ``T_eq + (T0 − T_eq)·(1 − a)·C/(H·dt)``. The energy balance
``C·(T1 − T0) = (H·(T_ref − T_avg) + Q)·dt`` holds exactly and is checked by the callers.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from transactive.der.base import FloatArray


def decay(c: FloatArray, h: FloatArray, dt_h: float) -> FloatArray:
    """``exp(−H·dt/C)``."""
    out: FloatArray = np.exp(-h * dt_h / c)
    return out


def rc_step(
    t0: FloatArray, c: FloatArray, h: FloatArray, t_ref: FloatArray, q: FloatArray, dt_h: float
) -> tuple[FloatArray, FloatArray]:
    """``(T1, T_avg)`` after ``dt_h`` hours at constant heat input ``q`` (kW)."""
    a = decay(c, h, dt_h)
    t_eq = t_ref + q / h
    t1 = t_eq + (t0 - t_eq) * a
    x = h * dt_h / c
    # (1 − a)/x, accurate for small x.
    frac = np.where(x > 1e-8, -np.expm1(-x) / np.where(x > 1e-8, x, 1.0), 1.0 - 0.5 * x)
    t_avg = t_eq + (t0 - t_eq) * frac
    return t1, t_avg


def heat_for_target(
    t0: FloatArray,
    c: FloatArray,
    h: FloatArray,
    t_ref: FloatArray,
    target: FloatArray,
    dt_h: float,
) -> FloatArray:
    """Constant heat input (kW, any sign) that brings ``T0`` to ``target`` in ``dt_h``."""
    a = decay(c, h, dt_h)
    t_eq = (target - t0 * a) / (1.0 - a)
    out: FloatArray = h * (t_eq - t_ref)
    return out


def thermostat_heat_kw(
    t0: FloatArray,
    on: NDArray[np.bool_],
    setpoint: FloatArray,
    deadband: FloatArray,
    s: FloatArray,
    c: FloatArray,
    h: FloatArray,
    t_ref: FloatArray,
    rated_th: FloatArray,
    dt_h: float,
) -> FloatArray:
    """Thermal power (kW ≥ 0, in direction ``s``: +1 heating, −1 cooling) of a hysteresis
    thermostat holding ``setpoint ± deadband/2`` (°C) over one interval of ``dt_h`` hours.

    At the start of the interval the unit switches on at the edge it works against
    (``T ≤ set − band/2`` heating, ``T ≥ set + band/2`` cooling), off at the other edge,
    and otherwise keeps its state ``on``. An *on* unit delivers what brings the temperature
    to the far edge by the end of the interval, an *off* unit what keeps it at the near
    edge (0 unless the edge would be crossed: the thermostat switches on inside the
    interval); both at most ``rated_th``. With constant heat the 1R1C temperature moves
    monotonically, so it stays inside the deadband whenever the rating allows.
    """
    lo, hi = setpoint - 0.5 * deadband, setpoint + 0.5 * deadband
    tol = 1e-9
    heating = s > 0
    start_on = np.where(heating, t0 <= lo + tol, t0 >= hi - tol)
    stop = np.where(heating, t0 >= hi - tol, t0 <= lo + tol)
    run = start_on | (on & ~stop)
    target = np.where(run == heating, hi, lo)  # on: far edge, off: near edge
    q = s * heat_for_target(t0, c, h, t_ref, target, dt_h)
    out: FloatArray = np.clip(q, 0.0, rated_th)
    return out


def discomfort_kh(
    temp_c: FloatArray, low_c: FloatArray, high_c: FloatArray, dt_h: float
) -> FloatArray:
    """Degree-hours (K·h) outside the comfort band ``[low_c, high_c]`` over an interval at
    ``temp_c``."""
    out: FloatArray = (np.maximum(temp_c - high_c, 0.0) + np.maximum(low_c - temp_c, 0.0)) * dt_h
    return out


def deviation_kh(
    t0: FloatArray,
    c: FloatArray,
    h: FloatArray,
    t_eq: FloatArray,
    target: FloatArray,
    dt_h: float,
) -> FloatArray:
    """``∫ |T(t) − target| dt`` over ``dt_h`` hours (K·h) along the exact 1R1C path
    ``T(t) = T_eq + (T0 − T_eq)·exp(−t/τ)``, ``τ = C/H`` (h).

    With ``F(t) = ∫₀ᵗ (T − target) = (T_eq − target)·t + (T0 − T_eq)·τ·(1 − e^{−t/τ})``, the
    path is monotone, so it crosses ``target`` at most once, at ``t*`` with
    ``e^{−t*/τ} = (target − T_eq)/(T0 − T_eq)``; the integral is ``|F(dt)|`` without a
    crossing and ``|F(t*)| + |F(dt) − F(t*)|`` with one.
    """
    tau = c / h
    x = dt_h / tau
    # F(dt) = (T_avg − target)·dt, T_avg as in rc_step (accurate for small x).
    frac = np.where(x > 1e-8, -np.expm1(-x) / np.where(x > 1e-8, x, 1.0), 1.0 - 0.5 * x)
    f_dt = (t_eq + (t0 - t_eq) * frac - target) * dt_h
    span = t0 - t_eq
    safe = np.where(span != 0.0, span, 1.0)
    r = np.where(span != 0.0, (target - t_eq) / safe, np.nan)
    with np.errstate(invalid="ignore"):
        crosses = (r > np.exp(-x)) & (r < 1.0)
    t_star = -tau * np.log(np.where(crosses, r, 1.0))
    f_star = (t_eq - target) * t_star + tau * (t0 - target) * np.where(crosses, 1.0, 0.0)
    out: FloatArray = np.where(crosses, np.abs(f_star) + np.abs(f_dt - f_star), np.abs(f_dt))
    return out

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

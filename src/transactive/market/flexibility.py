"""Flexibility ask and commit (USEF / PG&E ask-bid-commit): the DSO's side.

*Ask* (:func:`find_asks`): the AC power flow of the day-ahead forecast is checked against
the limits (:func:`~transactive.grid.limits.check_limits` rules: thermal loading, voltage
band, and reverse flow at the substation where ``reverse_flow=True``); every violated
element gets one ask (rows per interval, :data:`~transactive.core.records.FLEX_ASKS`):
direction ``up`` (reduce net import) for an overload by import or an undervoltage,
``down`` for an overload by export, an overvoltage or reverse flow; ``kw`` is the change of
net import at the element's own bus that brings it back inside its limit with the margin,
from the sensitivities below; ``buses`` the buses downstream of the element.

*Commit* (:func:`commit`): the least-cost set of offers
(:data:`~transactive.core.records.FLEX_OFFERS`) that removes every violation and creates
none. One fraction ``x_o ∈ [0, 1]`` per offer (binary if all-or-none: then a MILP) scales
every row of the offer, rebound rows included; the objective is
``Σ_o x_o · Σ_{non-rebound rows} (availability_price · kw + price · kw · duration_h)``.

Network model: the LinDistFlow linearisation (:func:`~transactive.grid.lindistflow.linearise`)
at the forecast's AC operating point, which it reproduces exactly. Sensitivities of every
branch flow ``P`` (kW at the parent end), squared bus voltage ``v²`` and substation import
to the net load of each offer bus are exact for that linear model (a forward solve of a 1 kW
change). Offers change active power only; **reactive power is held at the forecast**: a
branch's apparent-power limit ``L/100 · rating · V_parent`` becomes the linear bound
``|P| ≤ √((L/100 · rating · V)² − Q₀²)``. Per interval with offers:

* every element violated in the forecast must end inside its limit with the margin: loading
  ``limit − margin_percent`` points, voltage ``margin_percent`` % of the band width inside
  the band, substation export ``margin_percent`` % of the substation rating below the limit;
* every other element must stay within its limit (rebound intervals included).

Then the AC power flow of forecast + committed change verifies; each element still violated
gets its row tightened by the measured gap between the AC value and the linear one and the
model is solved again (at most ``max_rounds`` rounds). A thermal row starts with the gap at
the forecast (AC loading is the larger of both ends, the linear one the parent end's).

Status: ``committed``; ``no-violations`` (nothing to buy); ``infeasible`` (the offers
cannot remove every violation: nothing is committed and ``remaining`` lists the asks with
their shortfall in kW, from a second solve that minimises the total shortfall);
``partial`` (only with ``partial=True``, when the full cover is infeasible: see below);
``unverified`` (a violation remained after ``max_rounds``: the last commit is returned);
or HiGHS's own status text.

*Partial commit* (``partial=True``): each violated row gets a shortfall ``s_k`` (kW at the
element's own bus) with ``0 ≤ s_k ≤`` its whole need, so no violated quantity may get worse
than in the forecast; the rows of every other element stay hard (no new violation). Two
solves, lexicographic: first ``min Σ s``, then the least cost with ``Σ s ≤ optimum + 1e-6 kW``.
The AC power flow verifies with the same tightening rounds: a *new* violation tightens its
row; a forecast violation that got *worse* in AC tightens its cap. ``remaining`` lists the
asks still short (``kw`` = shortfall, linear model). ``verification`` then holds the
remaining violations; its column ``forecast_magnitude`` is the same element's, interval's and
kind's magnitude in the forecast (NaN for a violation the forecast did not have): a row is
*reduced* where ``magnitude ≤ forecast_magnitude`` and *new* where ``forecast_magnitude`` is
NaN (a ``partial`` result has none of these). Nothing useful to buy: ``infeasible``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray

from transactive.core.records import COMMITMENTS, FLEX_ASKS
from transactive.errors import BalanceError, InvalidInputError, plain
from transactive.grid.limits import Limits, check_limits, excess, step_hours
from transactive.grid.lindistflow import Linearisation, RadialNetwork, forward, linearise, radial
from transactive.grid.model import Feeder, Injections, downstream
from transactive.grid.powerflow import PowerFlow
from transactive.grid.results import PowerFlowResult
from transactive.market import _flex_milp

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

__all__ = [
    "OFFER_COLUMNS",
    "Asks",
    "Commit",
    "FlexOfferError",
    "commit",
    "find_asks",
]

#: Columns :func:`commit` reads from the offers (the other FLEX_OFFERS columns are optional).
OFFER_COLUMNS = (
    "offer_id",
    "participant_id",
    "bus",
    "interval_start",
    "duration_h",
    "direction",
    "kw",
    "rebound",
    "availability_price",
    "price",
    "all_or_none",
)

THERMAL, VOLTAGE, REVERSE = 0, 1, 2
#: Fraction below which an offer counts as not committed.
_X_TOL = 1e-7
#: A linear row broken by more than this (kW or pu²) joins the model.
_ROW_TOL = 1e-6
#: Shortfall (kW) below which an ask counts as met.
_SHORT_TOL = 1e-6
#: Extra tightening per verification round: loading points (%), pu, kW.
_PUSH = (0.05, 2e-4, 0.1)
#: A forecast violation counts as worse beyond this (loading points, pu, kW).
_WORSE = (1e-3, 1e-6, 1e-3)
#: Slack on the optimal total shortfall in the cost phase of a partial commit (kW).
_LEXI_TOL = 1e-6
#: A linear value this close to its bound counts as at the bound (kW, pu², kW).
_NEAR = (0.5, 1e-4, 0.5)


class FlexOfferError(InvalidInputError):
    """A bad offer row: ``row`` (position in the offers table), ``offer_id`` and ``column``."""

    def __init__(self, row: int, offer_id: str, column: str, message: str) -> None:
        super().__init__(f"offer {offer_id!r}: column {column!r}: {message}")
        self.row = row
        self.offer_id = offer_id
        self.column = column
        self.detail = message


@dataclass(frozen=True)
class Asks:
    """The DSO's asks: ``table`` FLEX_ASKS rows (one per ask and interval), ``violations``
    the :func:`~transactive.grid.limits.check_limits` rows of the forecast's AC power flow
    (reverse flow only where asked for), ``loading`` that power flow."""

    table: pd.DataFrame
    violations: pd.DataFrame
    loading: PowerFlowResult


@dataclass(frozen=True)
class Commit:
    """The commit (see the module docstring): ``status``, ``offers`` (one row per offer:
    offer_id, participant_id, all_or_none, within_ceiling, fraction, committed, availability_cost,
    utilisation_cost, cost in currency), ``commitments`` (COMMITMENTS rows), ``delta_kw``
    (committed change of net import, interval × offer bus, kW, + import), ``verification``
    (check_limits rows of the AC power flow of forecast + delta; empty = clean), ``cost``
    (currency), ``remaining`` (FLEX_ASKS rows not met, ``kw`` = shortfall), ``rounds``
    (solves made, each verified by an AC power flow) and ``max_error`` (largest gap
    between the AC loading and the corrected linear model at the commit, % points)."""

    status: str
    offers: pd.DataFrame
    commitments: pd.DataFrame
    delta_kw: pd.DataFrame
    verification: pd.DataFrame
    cost: float
    remaining: pd.DataFrame
    rounds: int = 0
    max_error: float = 0.0


# --- the forecast's network state ----------------------------------------------------------


@dataclass(frozen=True)
class _State:
    """The forecast on the linear network model. Monitored quantities ``q`` (M): thermal
    (flow P into the branch to bus ``e``, kW), voltage (v² at bus ``e``, pu²), reverse (import
    at source ``e``, kW); ``X0`` their forecast values (T × M), ``Q0`` branch kvar,
    ``S_ref`` rating × parent voltage (kVA), ``corr`` the AC − linear gap (loading points,
    pu, kW), ``viol`` +1 / −1 where the upper / lower limit is violated."""

    feeder: Feeder
    net: RadialNetwork
    lin: Linearisation
    ac: PowerFlowResult
    pf: PowerFlow
    time: pd.DatetimeIndex
    dt: float
    limits: Limits
    reverse_flow: bool
    margin: float
    kind: IntArray
    e: IntArray
    element: IntArray  # branch, bus or source row of each quantity
    pct: FloatArray
    X0: FloatArray
    Q0: FloatArray
    S_ref: FloatArray
    corr0: FloatArray
    viol: NDArray[np.int8]

    @property
    def M(self) -> int:
        return int(self.kind.size)

    @property
    def T(self) -> int:
        return len(self.time)


def _assess(
    feeder: Feeder,
    forecast: Injections,
    limits: Limits,
    reverse_flow: bool,
    margin: float,
    duration_h: float | None,
) -> _State:
    """AC power flow of the forecast, its linearisation and the monitored quantities."""
    if forecast.p_kw.shape[1] != feeder.n_bus:
        raise InvalidInputError(
            f"forecast has {forecast.p_kw.shape[1]} bus columns, feeder {feeder.name!r} "
            f"has {feeder.n_bus} buses"
        )
    if not isinstance(forecast.time, pd.DatetimeIndex) or forecast.time.tz is None:
        raise InvalidInputError("forecast needs UTC interval starts (Injections.time)")
    dt = _interval_hours(forecast.time, duration_h)
    if not 0 <= margin < 50:
        raise InvalidInputError(f"margin_percent must be within 0 … 50, got {margin}")
    net = radial(feeder)
    pf = PowerFlow(feeder)
    ac = pf.run(forecast)
    lin = linearise(net, ac)
    p_e, q_e = forecast.p_kw[:, net.bus], forecast.q_kvar[:, net.bus]
    P, Q, v = forward(net, lin, p_e, q_e)
    nonroot = np.flatnonzero(net.nonroot)
    th = nonroot[np.isfinite(net.rating_kva[nonroot])]
    kinds = [np.full(th.size, THERMAL), np.full(nonroot.size, VOLTAGE)]
    es = [th, nonroot]
    elem = [net.branch[th], net.bus[nonroot]]
    if reverse_flow and limits.max_reverse_flow_kw is not None:
        roots = net.roots
        kinds.append(np.full(roots.size, REVERSE))
        es.append(roots)
        elem.append(net.source_row[roots])
    kind = np.concatenate(kinds).astype(np.int64)
    e = np.concatenate(es).astype(np.int64)
    element = np.concatenate(elem).astype(np.int64)
    is_trafo = net.is_trafo[e]
    pct = np.where(
        kind == THERMAL,
        np.where(is_trafo, limits.max_trafo_loading_percent, limits.max_line_loading_percent),
        np.nan,
    )
    X0 = np.where(kind == VOLTAGE, v[:, e], P[:, e])
    Q0 = np.where(kind == THERMAL, Q[:, e], 0.0)
    S_ref = np.where(kind == THERMAL, net.rating_kva[e] * lin.v_ref[:, e], np.nan)
    ac_load = ac.loading_percent[:, np.where(kind == THERMAL, element, 0)]
    with np.errstate(invalid="ignore", divide="ignore"):
        lin_load = 100.0 * np.hypot(X0, Q0) / S_ref
    corr0 = np.where(kind == THERMAL, np.nan_to_num(ac_load - lin_load), 0.0)
    state = _State(
        feeder, net, lin, ac, pf, forecast.time, dt, limits, reverse_flow, margin,
        kind, e, element, pct, X0, Q0, S_ref, corr0, np.zeros(X0.shape, dtype=np.int8),
    )  # fmt: skip
    object.__setattr__(state, "viol", _violated(state, ac))
    return state


def _violated(s: _State, ac: PowerFlowResult) -> NDArray[np.int8]:
    """+1 / −1 where a quantity's upper / lower limit is violated in ``ac`` (T × M), by the
    rules of :func:`~transactive.grid.limits.excess`."""
    ex = excess(s.feeder, ac.vm_pu, ac.loading_percent, ac.source_p_kw, s.limits)
    el = s.element
    th = (s.kind == THERMAL)[None, :]
    over_th = (ex.line + ex.trafo)[:, np.where(th[0], el, 0)] > 0
    sign_p = np.where(_flow_at_parent(s, ac) >= 0, 1, -1)
    vb = np.where(s.kind == VOLTAGE, el, 0)
    under, over = ex.undervoltage[:, vb] > 0, ex.overvoltage[:, vb] > 0
    rb = np.where(s.kind == REVERSE, el, 0)
    rev = ex.reverse[:, rb] > 0 if ex.reverse.size else np.zeros(s.X0.shape, dtype=bool)
    out = np.where(th & over_th, sign_p, 0)
    vol = (s.kind == VOLTAGE)[None, :]
    out = np.where(vol & over, 1, np.where(vol & under, -1, out))
    out = np.where((s.kind == REVERSE)[None, :] & rev, -1, out)
    return out.astype(np.int8)


def _flow_at_parent(s: _State, ac: PowerFlowResult) -> FloatArray:
    """Active flow into each thermal quantity's branch at its parent end (kW, T × M)."""
    br = np.maximum(s.net.branch[s.e], 0)
    fwd = s.net.forward[s.e]
    out: FloatArray = np.where(fwd, ac.p_from_kw[:, br], ac.p_to_kw[:, br])
    return out


def _bounds(s: _State, corr: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Lower and upper bounds of every quantity (T × M, X units) with the margin on the
    quantities violated in the forecast and the AC − linear gaps ``corr``."""
    lim = s.limits
    m = s.margin
    kind = s.kind[None, :]
    viol = s.viol
    # thermal: |P| ≤ √(S_max² − Q0²)
    pct = s.pct[None, :] - np.where(viol != 0, m, 0.0)
    with np.errstate(invalid="ignore"):
        s_max = np.maximum(pct - corr, 0.0) / 100.0 * s.S_ref
        p_max = np.sqrt(np.maximum(s_max**2 - s.Q0**2, 0.0))
    band = m / 100.0 * (lim.v_max_pu - lim.v_min_pu)
    v_lo = lim.v_min_pu + np.where(viol < 0, band, 0.0) - corr
    v_hi = lim.v_max_pu - np.where(viol > 0, band, 0.0) - corr
    rev = lim.max_reverse_flow_kw if lim.max_reverse_flow_kw is not None else np.inf
    rating = s.feeder.substation_rating_kva
    r_margin = m / 100.0 * (rating if np.isfinite(rating) else 0.0)
    r_lo = -rev + np.where(viol < 0, r_margin, 0.0) - corr
    lo = np.where(kind == THERMAL, -p_max, np.where(kind == VOLTAGE, v_lo**2, r_lo))
    hi = np.where(kind == THERMAL, p_max, np.where(kind == VOLTAGE, v_hi**2, np.inf))
    return lo, hi


def _response(s: _State, t: IntArray, e: IntArray) -> FloatArray:
    """Change of every quantity (K × M, X units) per kW more net load at bus ``e[k]`` in
    interval ``t[k]``: exact for the linear model (difference of two forward solves)."""
    lin = Linearisation(*(getattr(s.lin, f.name)[t] for f in fields(Linearisation)))
    base_p = np.zeros((t.size, s.net.n))
    zero_q = np.zeros_like(base_p)
    P0, _, v0 = forward(s.net, lin, base_p, zero_q)
    unit = base_p.copy()
    unit[np.arange(t.size), e] = 1.0
    P1, _, v1 = forward(s.net, lin, unit, zero_q)
    out: FloatArray = np.where(s.kind == VOLTAGE, (v1 - v0)[:, s.e], (P1 - P0)[:, s.e])
    return out


def _self_response(s: _State, t: IntArray, q: IntArray) -> FloatArray:
    """|∂X_q/∂p| at the quantity's own bus (per kW), for (t[k], q[k])."""
    if t.size == 0:
        return np.zeros(0)
    r = _response(s, t, s.e[q])
    out: FloatArray = np.abs(r[np.arange(t.size), q])
    return np.maximum(out, 1e-12)


def _filtered(s: _State, ac: PowerFlowResult) -> pd.DataFrame:
    """check_limits rows of ``ac``; reverse flow only where it is a violation here; with
    ``forecast_magnitude`` the same row's magnitude in the forecast (NaN: not violated)."""
    v = check_limits(s.feeder, ac, s.limits)
    if not s.reverse_flow:
        v = v[v["kind"] != "reverse_flow"].reset_index(drop=True)
    f = check_limits(s.feeder, s.ac, s.limits)
    key = ["time", "element", "kind"]
    before = f[[*key, "magnitude"]].rename(columns={"magnitude": "forecast_magnitude"})
    return v.merge(before, on=key, how="left", validate="one_to_one")


# --- asks -----------------------------------------------------------------------------------


def _resource(s: _State) -> list[str]:
    f = s.feeder
    names = []
    src = [str(x) for x in f.sources["name"]]
    for k, el in zip(s.kind.tolist(), s.element.tolist(), strict=True):
        if k == THERMAL:
            names.append(f"branch:{f.branch_names[el]}")
        elif k == VOLTAGE:
            names.append(f"bus:{f.bus_names[el]}")
        else:
            names.append(f"source:{src[el]}")
    return names


def _ask_rows(
    s: _State,
    *,
    area: str,
    buyer: str,
    node_id: str,
    price_ceiling: float,
    design: str,
    market_id: str,
    stage: str,
) -> pd.DataFrame:
    """FLEX_ASKS rows of the forecast's violations (see :func:`find_asks`)."""
    t, q = (a.astype(np.int64) for a in np.nonzero(s.viol))
    if t.size == 0:
        return FLEX_ASKS.empty()
    lo, hi = _bounds(s, s.corr0)
    X0 = s.X0[t, q]
    need = np.maximum(np.maximum(X0 - hi[t, q], lo[t, q] - X0), 0.0)
    sigma = _response(s, t, s.e[q])[np.arange(t.size), q]
    kw = need / np.maximum(np.abs(sigma), 1e-12)
    side = s.viol[t, q].astype(np.float64)
    up = side * np.where(s.kind[q] == VOLTAGE, -1.0, 1.0) > 0
    direction = np.where(up, "up", "down")
    res = np.asarray(_resource(s), dtype=object)
    f = s.feeder
    uq = np.unique(q)
    bus_list = {}
    for qq in uq.tolist():  # one downstream walk per violated element
        b = f.source_buses[s.element[qq]] if s.kind[qq] == REVERSE else s.net.bus[s.e[qq]]
        bus_list[qq] = ";".join(f.bus_names[i] for i in downstream(f, int(b)))
    reason = _reasons(s, t, q)
    ask_id = [f"{area}:{res[qq]}:{d}" for qq, d in zip(q.tolist(), direction, strict=True)]
    frame = FLEX_ASKS.frame(
        {
            "design": design,
            "market_id": market_id,
            "stage": stage,
            "interval_start": s.time[t],
            "duration_h": _duration(s),
            "participant_id": buyer,
            "resource_id": res[q],
            "node_id": node_id,
            "ask_id": ask_id,
            "area": area,
            "buses": [bus_list[qq] for qq in q.tolist()],
            "direction": direction,
            "kw": kw,
            "price_ceiling": float(price_ceiling),
            "reason": reason,
        }
    )
    return frame.sort_values(["ask_id", "interval_start"], kind="stable").reset_index(drop=True)


def _duration(s: _State) -> float:
    return s.dt


def _interval_hours(time: pd.DatetimeIndex, duration_h: float | None) -> float:
    """The forecast's interval length (h): its step, or ``duration_h`` (required for a
    single interval, else it must equal the step)."""
    if len(time) == 0:
        raise InvalidInputError("forecast has no intervals")
    step = step_hours(time)
    if len(time) > 1 and not np.isfinite(step):
        raise InvalidInputError("forecast intervals must be evenly spaced")
    if duration_h is None:
        if len(time) == 1:
            raise InvalidInputError("a single-interval forecast needs duration_h (h)")
        return step
    if not (np.isfinite(duration_h) and duration_h > 0):
        raise InvalidInputError(f"duration_h must be > 0, got {duration_h}")
    if len(time) > 1 and abs(duration_h - step) > 1e-9:
        raise InvalidInputError(f"duration_h {duration_h} h ≠ the forecast's step {step} h")
    return float(duration_h)


def _reasons(s: _State, t: IntArray, q: IntArray) -> list[str]:
    ac = s.ac
    out = []
    for tt, qq in zip(t.tolist(), q.tolist(), strict=True):
        k, el = int(s.kind[qq]), int(s.element[qq])
        if k == THERMAL:
            what = "trafo_overload" if s.net.is_trafo[s.e[qq]] else "line_overload"
            out.append(f"{what} {ac.loading_percent[tt, el]:.1f} %")
        elif k == VOLTAGE:
            what = "overvoltage" if s.viol[tt, qq] > 0 else "undervoltage"
            out.append(f"{what} {ac.vm_pu[tt, el]:.4f} pu")
        else:
            out.append(f"reverse_flow {-ac.source_p_kw[tt, el]:.1f} kW")
    return out


def find_asks(
    feeder: Feeder,
    forecast: Injections,
    limits: Limits,
    *,
    area: str,
    buyer: str,
    node_id: str,
    price_ceiling: float,
    design: str = "",
    market_id: str = "",
    margin_percent: float = 2.0,
    reverse_flow: bool = False,
    stage: str = "flex-ask",
    duration_h: float | None = None,
) -> Asks:
    """The asks of the forecast (kW, currency/kWh; see the module docstring): the AC power
    flow of ``forecast`` (net load per bus, kW/kvar, UTC intervals), one ask per violated
    element and direction with one row per interval. ``price_ceiling`` (currency/kWh) is
    copied to every row; ``buyer`` (the DSO) is each row's participant; ``duration_h``: the
    interval length, needed only for a single-interval forecast."""
    if not np.isfinite(price_ceiling) or price_ceiling < 0:
        raise InvalidInputError(f"price_ceiling must be finite and ≥ 0, got {price_ceiling}")
    s = _assess(feeder, forecast, limits, reverse_flow, margin_percent, duration_h)
    table = _ask_rows(
        s, area=area, buyer=buyer, node_id=node_id, price_ceiling=price_ceiling,
        design=design, market_id=market_id, stage=stage,
    )  # fmt: skip
    return Asks(table, _filtered(s, s.ac), s.ac)


# --- offers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Offers:
    """Validated offer rows as arrays: per row its offer, interval, energised bus ``e``,
    sign (+1 = more net import), kW, rebound; per offer id, participant, all-or-none and
    costs (currency)."""

    frame: pd.DataFrame
    ids: list[str]
    row_offer: IntArray
    row_t: IntArray
    row_bus: IntArray
    row_e: IntArray
    row_sign: FloatArray
    row_kw: FloatArray
    row_rebound: BoolArray
    participant: list[str]
    aon: BoolArray
    availability_cost: FloatArray
    utilisation_cost: FloatArray
    max_price: FloatArray  # highest utilisation price of the paid rows (currency/kWh)

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def cost(self) -> FloatArray:
        out: FloatArray = self.availability_cost + self.utilisation_cost
        return out


def _bad(df: pd.DataFrame, mask: NDArray[np.bool_], column: str, message: str) -> None:
    if mask.any():
        i = int(np.argmax(mask))
        raise FlexOfferError(i, str(plain(df["offer_id"].iloc[i])), column, message.format(i=i))


def _bool_column(df: pd.DataFrame, col: str) -> BoolArray:
    raw = df[col]
    if raw.dtype == bool:
        return raw.to_numpy(dtype=bool)
    text = raw.astype(str).str.strip().str.lower()
    ok = text.isin(["true", "false", "1", "0"]).to_numpy(dtype=bool)
    _bad(df, ~ok, col, "must be true or false")
    out: BoolArray = text.isin(["true", "1"]).to_numpy(dtype=bool)
    return out


def _float_column(df: pd.DataFrame, col: str, minimum: float | None = 0.0) -> FloatArray:
    vals = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
    _bad(df, ~np.isfinite(vals), col, "is not a finite number")
    if minimum is not None:
        _bad(df, vals < minimum, col, f"must be ≥ {minimum:g}")
    return vals


def _offers(s: _State, offers: pd.DataFrame) -> _Offers:
    """Check the offers against the feeder and the forecast (first bad row raises
    :class:`FlexOfferError` naming offer and column) and turn them into arrays."""
    missing = [c for c in OFFER_COLUMNS if c not in offers.columns]
    if missing:
        raise InvalidInputError(f"offers: missing column(s) {missing}")
    df = offers.reset_index(drop=True)
    ids = df["offer_id"].astype(str)
    _bad(df, (ids.str.strip() == "").to_numpy(dtype=bool), "offer_id", "is empty")
    f = s.feeder
    pos = pd.Index(f.bus_names).get_indexer(pd.Index(df["bus"].astype(str)))
    _bad(df, pos < 0, "bus", f"feeder {f.name!r} has no such bus")
    e = s.net.index[np.maximum(pos, 0)]
    _bad(df, e < 0, "bus", "bus is not connected to a source")
    try:
        when = pd.DatetimeIndex(pd.to_datetime(df["interval_start"], utc=True))
    except (ValueError, TypeError):
        when = pd.DatetimeIndex(
            pd.to_datetime(df["interval_start"], utc=True, errors="coerce", format="ISO8601")
        )
        _bad(df, np.asarray(when.isna()), "interval_start", "is not an ISO 8601 time")
    t = s.time.get_indexer(when)
    first, last = s.time[0].isoformat(), s.time[-1].isoformat()
    _bad(df, t < 0, "interval_start", f"is not an interval of the forecast ({first} … {last})")
    dur = _float_column(df, "duration_h", None)
    _bad(df, np.abs(dur - _duration(s)) > 1e-9, "duration_h", f"must be {_duration(s):g} h")
    direction = df["direction"].astype(str).str.strip().str.lower()
    _bad(df, ~direction.isin(["up", "down"]).to_numpy(dtype=bool), "direction", "not up | down")
    kw = _float_column(df, "kw")
    avail = _float_column(df, "availability_price")
    price = _float_column(df, "price")
    rebound = _bool_column(df, "rebound")
    aon_row = _bool_column(df, "all_or_none")
    codes, uniq = pd.factorize(ids)
    codes = codes.astype(np.int64)
    n = uniq.size
    first_row = np.full(n, len(df), dtype=np.int64)
    np.minimum.at(first_row, codes, np.arange(len(df)))
    aon = aon_row[first_row]
    _bad(df, aon_row != aon[codes], "all_or_none", "differs between the rows of the offer")
    part = df["participant_id"].astype(str).to_numpy()
    _bad(df, part != part[first_row][codes], "participant_id", "differs within the offer")
    dup = pd.DataFrame({"o": codes, "t": t, "b": pos, "r": rebound}).duplicated().to_numpy()
    _bad(df, dup, "interval_start", "second row of the offer for this bus, interval and kind")
    paid = ~rebound
    av_cost = np.bincount(codes, weights=np.where(paid, avail * kw, 0.0), minlength=n)
    ut_cost = np.bincount(codes, weights=np.where(paid, price * kw * dur, 0.0), minlength=n)
    sign = np.where(direction.to_numpy() == "down", 1.0, -1.0)
    top = np.zeros(n)
    np.maximum.at(top, codes, np.where(paid, price, 0.0))
    return _Offers(
        df, [str(x) for x in uniq], codes, t.astype(np.int64), pos.astype(np.int64),
        e.astype(np.int64), sign, kw, rebound, [str(x) for x in part[first_row]], aon,
        av_cost.astype(np.float64), ut_cost.astype(np.float64), top,
    )  # fmt: skip


# --- commit ---------------------------------------------------------------------------------


def _matrix(s: _State, o: _Offers) -> sp.csr_matrix:
    """Change of every quantity per unit fraction of each offer: (T·M) × offers, X units."""
    pair = o.row_t * s.net.n + o.row_e
    uniq, inv = np.unique(pair, return_inverse=True)
    resp = _response(s, uniq // s.net.n, uniq % s.net.n)  # K × M
    M = s.M
    vals = (o.row_sign * o.row_kw)[:, None] * resp[inv]
    rows = o.row_t[:, None] * M + np.arange(M)[None, :]
    cols = np.broadcast_to(o.row_offer[:, None], vals.shape)
    keep = np.abs(vals) > 1e-12
    A = sp.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(s.T * M, o.n))
    A.sum_duplicates()
    return A


def _delta(s: _State, o: _Offers, x: FloatArray) -> FloatArray:
    """Committed change of net import per interval and feeder bus (T × bus, kW)."""
    w = o.row_sign * o.row_kw * x[o.row_offer]
    flat = np.bincount(
        o.row_t * s.feeder.n_bus + o.row_bus, weights=w, minlength=s.T * s.feeder.n_bus
    )
    out: FloatArray = flat.astype(np.float64).reshape(s.T, s.feeder.n_bus)
    return out


def _measured_gap(s: _State, ac: PowerFlowResult, X: FloatArray) -> FloatArray:
    """AC − linear value of every quantity at the linear prediction ``X`` (T × M): loading
    points, pu, kW."""
    th = np.where(s.kind == THERMAL, s.element, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        lin_load = 100.0 * np.hypot(X, s.Q0) / s.S_ref
        lin_v = np.sqrt(np.maximum(X, 0.0))
    vb = np.where(s.kind == VOLTAGE, s.element, 0)
    rb = np.where(s.kind == REVERSE, s.element, 0)
    ac_src = ac.source_p_kw[:, rb] if ac.source_p_kw.size else np.zeros_like(X)
    gap = np.where(
        s.kind == THERMAL,
        np.nan_to_num(ac.loading_percent[:, th] - lin_load),
        np.where(s.kind == VOLTAGE, np.nan_to_num(ac.vm_pu[:, vb] - lin_v), ac_src - X),
    )
    out: FloatArray = gap
    return out


def commit(
    feeder: Feeder,
    forecast: Injections,
    limits: Limits,
    asks: pd.DataFrame,
    offers: pd.DataFrame,
    *,
    buyer: str,
    margin_percent: float = 2.0,
    reverse_flow: bool = False,
    max_rounds: int = 5,
    duration_h: float | None = None,
    partial: bool = False,
) -> Commit:
    """Commit the least-cost offers that remove the forecast's violations and create none
    (see the module docstring). ``asks``: the FLEX_ASKS table of :func:`find_asks` (names
    the remaining asks; an offer whose utilisation price is above the highest
    ``price_ceiling`` of the asks is not eligible); ``offers``: FLEX_OFFERS rows (at least
    :data:`OFFER_COLUMNS`; bad rows raise :class:`FlexOfferError`); ``buyer``: the DSO,
    buyer of every commitment; ``duration_h`` as in :func:`find_asks`; ``partial``: where
    the offers cannot remove every violation, commit the least-cost set that minimises the
    total shortfall (status ``partial``) instead of nothing."""
    if max_rounds < 1:
        raise InvalidInputError(f"max_rounds must be ≥ 1, got {max_rounds}")
    s = _assess(feeder, forecast, limits, reverse_flow, margin_percent, duration_h)
    o = _offers(s, offers)
    if not s.viol.any():
        return _result(s, o, "no-violations", np.zeros(o.n), s.ac, asks, None, 0, 0.0, buyer)
    allowed = o.max_price <= _ceiling(asks) + 1e-12
    A = _matrix(s, o)
    X0 = s.X0.ravel()
    corr = s.corr0.copy()
    soft = np.flatnonzero(s.viol.ravel() != 0)
    ac = s.ac
    best: tuple[FloatArray, PowerFlowResult, float] | None = None
    refined = False
    active = np.zeros(X0.size, dtype=bool)
    active[soft] = True
    for rnd in range(1, max_rounds + 1):
        lo, hi = (b.ravel() for b in _bounds(s, corr))
        sol = _solve_rows(o, A, X0, lo, hi, active, allowed=allowed)
        if sol.status != _flex_milp.OPTIMAL and best is not None:
            break  # the refined model lost the solution: keep the verified one
        if sol.status == _flex_milp.INFEASIBLE and partial:
            return _commit_partial(
                s, o, A, forecast, corr, active, soft, allowed, asks, buyer, rnd, max_rounds
            )
        if sol.status == _flex_milp.INFEASIBLE:
            short = _shortfall(s, o, A, X0, lo, hi, active, soft, allowed)
            return _result(s, o, "infeasible", np.zeros(o.n), s.ac, asks, short, rnd, 0.0, buyer)
        if sol.status != _flex_milp.OPTIMAL:
            return _result(s, o, sol.status, np.zeros(o.n), s.ac, asks, None, rnd, 0.0, buyer)
        x = sol.x
        ac = s.pf.run(Injections(forecast.p_kw + _delta(s, o, x), forecast.q_kvar, forecast.time))
        X = (X0 + A @ x).reshape(s.T, s.M)
        gap = _measured_gap(s, ac, X)
        error = float(np.abs(np.where(s.kind == THERMAL, gap - corr, 0.0)).max(initial=0.0))
        ac_viol = _violated(s, ac)
        if not ac_viol.any():
            if best is None or float(o.cost @ x) < float(o.cost @ best[0]) - 1e-9:
                best = (x, ac, error)
            if refined:
                break
            # clean: refit the rows at their bound to the AC values there, try once more
            lo2, hi2 = (b.reshape(s.T, s.M) for b in (lo, hi))
            tol = np.asarray(_NEAR)[s.kind][None, :]
            near_hi, near_lo = X > hi2 - tol, X < lo2 + tol
            side = np.where(s.kind[None, :] == THERMAL, 1.0, np.where(near_hi, 1.0, -1.0))
            corr = np.where(near_hi | near_lo, gap + side * _push(s), corr)
            refined = True
            continue
        if best is not None:
            break
        side = np.where(s.kind[None, :] == THERMAL, 1.0, ac_viol.astype(np.float64))
        corr = np.where(ac_viol != 0, gap + side * _push(s), corr)
    if best is not None:
        x, ac, error = best
        return _result(s, o, "committed", x, ac, asks, None, rnd, error, buyer)
    return _result(s, o, "unverified", x, ac, asks, None, max_rounds, error, buyer)


def _commit_partial(
    s: _State,
    o: _Offers,
    A: sp.csr_matrix,
    forecast: Injections,
    corr: FloatArray,
    active: BoolArray,
    soft: IntArray,
    allowed: BoolArray,
    asks: pd.DataFrame,
    buyer: str,
    first: int,
    max_rounds: int,
) -> Commit:
    """The partial commit (module docstring), from round ``first`` with the tightening
    ``corr`` and rows ``active`` the full commit reached."""
    X0 = s.X0.ravel()
    t, q = np.divmod(soft, s.M)
    sigma = _self_response(s, t, q)
    side = s.viol.ravel()[soft].astype(np.float64)
    kind = s.kind[q]
    # X units per unit of excess (loading points, pu, kW) and the extra push per round
    scale = np.where(kind == THERMAL, s.S_ref[t, q] / 100.0, np.where(kind == VOLTAGE, 2.0, 1.0))
    scale = np.nan_to_num(scale, nan=1.0)
    ex0 = _excess_q(s, s.ac).ravel()[soft]
    worse_tol = np.asarray(_WORSE)[kind]
    nw = np.zeros(soft.size)  # how much each soft quantity must improve on the forecast (X)
    x, ac, error = np.zeros(o.n), s.ac, 0.0
    short = np.zeros(s.T * s.M)
    best: tuple[FloatArray, PowerFlowResult, float, FloatArray] | None = None
    refined = False
    for rnd in range(first, max_rounds + 1):
        lo, hi = (b.ravel() for b in _bounds(s, corr))
        bound = np.where(side > 0, hi[soft], lo[soft])
        cap = (side * (X0[soft] - bound) - nw) / sigma
        sign = -side * sigma
        least = _solve_rows(
            o, A, X0, lo, hi, active, soft=soft, soft_sign=sign, allowed=allowed, soft_cap=cap,
            minimise_shortfall=True,
        )  # fmt: skip
        if least.status != _flex_milp.OPTIMAL:
            return _result(s, o, least.status, np.zeros(o.n), s.ac, asks, None, rnd, 0.0, buyer)
        floor = float(least.s.sum())
        sol = _solve_rows(
            o, A, X0, lo, hi, active, soft=soft, soft_sign=sign, allowed=allowed, soft_cap=cap,
            shortfall_cap=floor + _LEXI_TOL,
        )  # fmt: skip
        if sol.status != _flex_milp.OPTIMAL:
            sol = least
        if best is not None and float(sol.s.sum()) > float(best[3].sum()) + _LEXI_TOL:
            break  # the refit lost shortfall: keep the verified commit
        x = sol.x
        short = np.zeros(s.T * s.M)
        short[soft] = np.where(sol.s > 10 * _LEXI_TOL, sol.s, 0.0)  # the slack is no shortfall
        if not (x > _X_TOL).any():  # nothing helps: as without partial
            return _result(
                s, o, "infeasible", x, s.ac, asks, short.reshape(s.T, s.M), rnd, 0.0, buyer
            )
        ac = s.pf.run(Injections(forecast.p_kw + _delta(s, o, x), forecast.q_kvar, forecast.time))
        X = (X0 + A @ x).reshape(s.T, s.M)
        gap = _measured_gap(s, ac, X)
        error = float(np.abs(np.where(s.kind == THERMAL, gap - corr, 0.0)).max(initial=0.0))
        ac_viol = _violated(s, ac)
        new = (ac_viol != 0) & (s.viol == 0)
        ex = _excess_q(s, ac).ravel()[soft]
        worse = ex > ex0 + worse_tol
        if not new.any() and not worse.any():
            if best is None or float(o.cost @ x) < float(o.cost @ best[0]) - 1e-9:
                best = (x, ac, error, short)
            if refined:
                break
            # clean: refit the rows at their bound to the AC values there, try once more
            lo2, hi2 = (b.reshape(s.T, s.M) for b in (lo, hi))
            tol = np.asarray(_NEAR)[s.kind][None, :]
            near_hi, near_lo = X > hi2 - tol, X < lo2 + tol
            side_b = np.where(s.kind[None, :] == THERMAL, 1.0, np.where(near_hi, 1.0, -1.0))
            corr = np.where(near_hi | near_lo, gap + side_b * _push(s), corr)
            refined = True
            continue
        if best is not None:
            break
        side_new = np.where(s.kind[None, :] == THERMAL, 1.0, ac_viol.astype(np.float64))
        corr = np.where(new, gap + side_new * _push(s), corr)
        push = np.asarray(_PUSH)[kind]
        nw = np.where(worse, nw + (ex - ex0 + push) * scale, nw)
    if best is not None:
        x, ac, error, short = best
        return _result(s, o, "partial", x, ac, asks, short.reshape(s.T, s.M), rnd, error, buyer)
    return _result(
        s, o, "unverified", x, ac, asks, short.reshape(s.T, s.M), max_rounds, error, buyer
    )


def _excess_q(s: _State, ac: PowerFlowResult) -> FloatArray:
    """How far every monitored quantity is beyond its limit in ``ac`` (T × M: loading
    points, pu, kW; 0 within)."""
    ex = excess(s.feeder, ac.vm_pu, ac.loading_percent, ac.source_p_kw, s.limits)
    th = np.where(s.kind == THERMAL, s.element, 0)
    vb = np.where(s.kind == VOLTAGE, s.element, 0)
    rb = np.where(s.kind == REVERSE, s.element, 0)
    rev = ex.reverse[:, rb] if ex.reverse.size else np.zeros(s.X0.shape)
    out: FloatArray = np.where(
        s.kind == THERMAL,
        (ex.line + ex.trafo)[:, th],
        np.where(s.kind == VOLTAGE, (ex.undervoltage + ex.overvoltage)[:, vb], rev),
    )
    return out


def _push(s: _State) -> FloatArray:
    out: FloatArray = np.asarray(_PUSH)[s.kind][None, :]
    return out


def _ceiling(asks: pd.DataFrame) -> float:
    """The highest price ceiling of the asks (currency/kWh; inf without asks)."""
    if asks.empty or "price_ceiling" not in asks.columns:
        return float("inf")
    return float(pd.to_numeric(asks["price_ceiling"]).max())


def _solve_rows(
    o: _Offers,
    A: sp.csr_matrix,
    X0: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    active: BoolArray,
    *,
    soft: IntArray | None = None,
    soft_sign: FloatArray | None = None,
    minimise_shortfall: bool = False,
    allowed: BoolArray | None = None,
    soft_cap: FloatArray | None = None,
    shortfall_cap: float | None = None,
) -> _flex_milp.Solution:
    """Solve with the rows in ``active`` only, adding every row (of those some fractions in
    [0, 1] can bring to a bound) that the solution breaks, until it breaks none: constraint
    generation on the linear model, so the rows that never bind stay out. ``active`` is
    updated in place (it keeps the rows for the next round); ``soft`` rows must be in it."""
    up = np.asarray(A.maximum(0).sum(axis=1)).ravel()
    down = np.asarray(A.minimum(0).sum(axis=1)).ravel()
    reach = (X0 + up > hi - 1e-9) | (X0 + down < lo + 1e-9)
    while True:
        rows = np.flatnonzero(active)
        at = None if soft is None else np.searchsorted(rows, soft)
        sol = _flex_milp.solve(
            o.cost, o.aon, A[rows], lo[rows] - X0[rows], hi[rows] - X0[rows],
            soft_row=at, soft_sign=soft_sign, minimise_shortfall=minimise_shortfall,
            allowed=allowed, soft_cap=soft_cap, shortfall_cap=shortfall_cap,
        )  # fmt: skip
        if sol.status != _flex_milp.OPTIMAL:
            return sol
        X = X0 + A @ sol.x
        broken = reach & ~active & ((X > hi + _ROW_TOL) | (X < lo - _ROW_TOL))
        if not broken.any():
            return sol
        active |= broken


def _shortfall(
    s: _State,
    o: _Offers,
    A: sp.csr_matrix,
    X0: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    active: BoolArray,
    soft: IntArray,
    allowed: BoolArray,
) -> FloatArray:
    """Smallest total shortfall (kW at each violated element's own bus) over the offers,
    per soft row (T × M, 0 elsewhere); all of it when even that problem has no solution."""
    t, q = np.divmod(soft, s.M)
    sigma = _self_response(s, t, q)
    side = s.viol.ravel()[soft].astype(np.float64)
    sol = _solve_rows(
        o, A, X0, lo, hi, active, soft=soft, soft_sign=-side * sigma, minimise_shortfall=True,
        allowed=allowed,
    )  # fmt: skip
    out = np.zeros(s.T * s.M)
    if sol.status == _flex_milp.OPTIMAL:
        out[soft] = sol.s
    else:
        need = np.maximum(np.maximum(X0[soft] - hi[soft], lo[soft] - X0[soft]), 0.0)
        out[soft] = np.maximum(need / sigma, _SHORT_TOL * 10)
    return out.reshape(s.T, s.M)


def _result(
    s: _State,
    o: _Offers,
    status: str,
    x: FloatArray,
    ac: PowerFlowResult,
    asks: pd.DataFrame,
    short: FloatArray | None,
    rounds: int,
    max_gap: float,
    buyer: str,
) -> Commit:
    x = np.where(x > _X_TOL, x, 0.0)
    on = x > 0
    offers = pd.DataFrame(
        {
            "offer_id": o.ids,
            "participant_id": o.participant,
            "all_or_none": o.aon,
            "within_ceiling": o.max_price <= _ceiling(asks) + 1e-12,
            "fraction": x,
            "committed": on,
            "availability_cost": x * o.availability_cost,
            "utilisation_cost": x * o.utilisation_cost,
            "cost": x * o.cost,
        }
    )
    d = _delta(s, o, x)
    buses = np.unique(o.row_bus)
    names = [s.feeder.bus_names[b] for b in buses]
    delta = pd.DataFrame(d[:, buses], index=s.time, columns=names)
    cost = float((x * o.cost).sum())
    commitments = _commitments(o, x, buyer)
    c = commitments
    paid = c["committed_kw"] * (c["availability_price"] + c["price"] * c["duration_h"])
    if abs(float(paid.sum()) - cost) > 1e-6 * (1.0 + abs(cost)):
        raise BalanceError(
            f"flexibility commit: the commitments are worth {float(paid.sum()):.6f}, the "
            f"committed offers cost {cost:.6f}"
        )
    return Commit(
        status=status,
        offers=offers,
        commitments=commitments,
        delta_kw=delta,
        verification=_filtered(s, ac),
        cost=cost,
        remaining=_remaining(s, asks, short, buyer),
        rounds=rounds,
        max_error=max_gap,
    )


def _commitments(o: _Offers, x: FloatArray, buyer: str) -> pd.DataFrame:
    """COMMITMENTS rows: the non-rebound rows of committed offers × their fraction."""
    take = (x[o.row_offer] > 0) & ~o.row_rebound
    if not take.any():
        return COMMITMENTS.empty()
    df = o.frame[take]
    ids = df["offer_id"].astype(str).to_numpy()

    def col(name: str, default: object) -> object:
        if name in df.columns:
            return df[name].astype(str).to_numpy()
        return default

    return COMMITMENTS.frame(
        {
            "design": col("design", ""),
            "market_id": col("market_id", ""),
            "stage": col("stage", "flex-commit"),
            "interval_start": pd.to_datetime(df["interval_start"], utc=True).to_numpy(),
            "duration_h": pd.to_numeric(df["duration_h"]).to_numpy(dtype=float),
            "participant_id": df["participant_id"].astype(str).to_numpy(),
            "resource_id": col("resource_id", ids),
            "node_id": col("node_id", df["bus"].astype(str).to_numpy()),
            "direction": df["direction"].astype(str).str.strip().str.lower().to_numpy(),
            "committed_kw": o.row_kw[take] * x[o.row_offer[take]],
            "price": pd.to_numeric(df["price"]).to_numpy(dtype=float),
            "availability_price": pd.to_numeric(df["availability_price"]).to_numpy(dtype=float),
            "buyer": buyer,
        }
    )


def _remaining(s: _State, asks: pd.DataFrame, short: FloatArray | None, buyer: str) -> pd.DataFrame:
    """The asks rows whose element and interval kept a shortfall (kw = shortfall, kW): the
    caller's rows where ``asks`` has them, else rows made here as :func:`find_asks` would."""
    if short is None:
        return FLEX_ASKS.empty()
    t, q = np.nonzero(short > _SHORT_TOL)
    if t.size == 0:
        return FLEX_ASKS.empty()
    res = np.asarray(_resource(s), dtype=object)
    need = pd.Series(short[t, q], index=pd.MultiIndex.from_arrays([res[q], s.time[t]]))
    parts = []
    if not asks.empty:
        at = need.index.get_indexer(_keys(asks))
        parts.append(asks[at >= 0])
    area = str(asks["area"].iloc[0]) if not asks.empty and "area" in asks.columns else ""
    own = _ask_rows(
        s, area=area, buyer=buyer, node_id=buyer, price_ceiling=_ceiling(asks), design="",
        market_id="", stage="flex-ask",
    )  # fmt: skip
    own_keys = _keys(own)
    mine = need.index.get_indexer(own_keys) >= 0
    if parts:
        mine &= ~own_keys.isin(_keys(parts[0]))
    parts.append(own[mine])
    out = FLEX_ASKS.concat([p[FLEX_ASKS.names] for p in parts])
    out["kw"] = need.reindex(_keys(out)).to_numpy()
    return out.reset_index(drop=True)


def _keys(asks: pd.DataFrame) -> pd.MultiIndex:
    """(resource_id, interval_start in UTC) of every ask row."""
    return pd.MultiIndex.from_arrays(
        [asks["resource_id"].astype(str), pd.to_datetime(asks["interval_start"], utc=True)]
    )

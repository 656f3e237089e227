"""KPIs per design, read from a run's records and summaries over the *evaluated* period (rows
at or after :attr:`SimResults.kpi_start`; the warm-up is excluded from every KPI): physics,
synchronisation, comfort and service, and money. Money KPIs end in the scenario's currency
code (``…_usd``, ``…_eur``).

Definitions a planner can check:

* **Violation durations** (``undervoltage_h``, ``overvoltage_h``, ``line_overload_h``,
  ``trafo_overload_h``, ``reverse_flow_violation_h``): the hours in which at least one
  element of an area is outside its limit, summed over the areas — the number of power-flow
  steps with a violation of that kind times the step length, so the figure does not depend on
  the power-flow sampling rate. Reverse flow is a violation only where the scenario sets
  ``limits.max_reverse_flow_kw``; ``reverse_flow_h`` (area-hours with export) is information.
* **Synchronisation**, from the substation meter records (one reading per area and market
  interval: the devices' net energy plus the power flow's losses), summed over the areas to
  the total import ``P_t`` (kW, + import) at market-interval resolution:

  - ``max_ramp_kw`` = ``max_t |P_t − P_{t−1}|``;
  - ``peak_to_average`` = ``max_t P_t / mean_t P_t`` (NaN when the mean is not positive);
  - ``rebound_kw``: the *payback* after a price fall. A price fall is an interval ``t`` whose
    price the homes see (the areas' mean of the market summary's ``price``) is below the
    previous interval's by at least :data:`REBOUND_STEP` of the evaluated period's price
    range (max − min) and by at least :data:`REBOUND_MIN_STEP`. Its rebound is the peak of
    ``P`` over the :data:`REBOUND_WINDOW_H` hours from ``t`` on minus the mean of ``P`` over
    the same length before ``t`` (falls without a full window before them are skipped);
    ``rebound_kw`` is the largest rebound, 0 without price falls or when the load never rises
    after one.
* **Comfort and service** (from the dispatch records): ``comfort_dev_kh`` — ``∫|T − T_set|dt``
  against each home's preferred setpoint, mean per house with a heat pump / air conditioner;
  ``hot_water_dev_kh`` likewise per water heater; ``discomfort_kh`` — K·h outside the comfort
  bands, summed over every HVAC unit and water heater; unmet and curtailed energy split by
  device kind.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
import pandas as pd

from transactive.designs.registry import split_variant
from transactive.settlement import participant_totals
from transactive.settlement.totals import MINOR
from transactive.sim.capacity_stage import capacity_kpis
from transactive.sim.market_power import MARKET_POWER_BETTER, MARKET_POWER_KPIS, market_power_kpis
from transactive.sim.results import SimResults

#: A price fall counts for ``rebound_kw`` when it is at least this fraction of the evaluated
#: period's price range …
REBOUND_STEP = 0.10
#: … and at least this much (currency/kWh), so rounding noise of a flat tariff never counts.
REBOUND_MIN_STEP = 1e-4
#: Length of the windows before and after a price fall that ``rebound_kw`` compares, h.
REBOUND_WINDOW_H = 1.0

#: KPI name (unit in the suffix; ``{cur}``: the currency code) → one-line meaning, in order.
KPI_DOCS: dict[str, str] = {
    "peak_import_kw": "highest import at the TSO (all substations, AC power flow)",
    "energy_import_kwh": "energy imported at the substations",
    "energy_export_kwh": "energy exported at the substations",
    "losses_kwh": "network losses",
    "worst_v_min_pu": "lowest bus voltage",
    "worst_v_max_pu": "highest bus voltage",
    "undervoltage_h": "hours with a bus below the voltage band (summed over areas)",
    "overvoltage_h": "hours with a bus above the voltage band (summed over areas)",
    "line_overload_h": "hours with a line above its loading limit (summed over areas)",
    "trafo_overload_h": "hours with a transformer above its loading limit (summed over areas)",
    "reverse_flow_violation_h": "hours with export beyond the scenario's reverse-flow limit",
    "reverse_flow_h": "substation-hours with export (information, not a violation)",
    "intervention_kwh": "energy the DSO's real-time interventions reversed (grand central)",
    "max_ramp_kw": "largest change of the total substation import between market intervals",
    "peak_to_average": "peak / mean of the total substation import (market intervals)",
    "rebound_kw": "largest rise of import in the hour after a price fall over the hour before",
    "comfort_dev_kh": "|room temperature − preferred setpoint| integrated, mean per house (K·h)",
    "hot_water_dev_kh": "|tank temperature − preferred setpoint| integrated, mean per tank (K·h)",
    "discomfort_kh": "degree-hours outside the comfort bands, all HVAC units and water heaters",
    "unmet_ev_kwh": "EV energy still needed at departure",
    "unmet_shiftable_kwh": "shiftable-load energy not served when its window closed",
    "curtailed_pv_kwh": "PV energy curtailed: volt-watt, export and feed-in limits, market",
    "curtailed_load_kwh": "energy of curtailable loads shed",
    "tier_bypass_cost_{cur}": "the reversed energy valued at the real-time price it was "
    "scheduled at: the money the DSO's interventions unwind",
    "total_cost_{cur}": "what homes and aggregators pay in total (settlement)",
    "all_in_price_{cur}_per_kwh": "what homes pay per kWh they import, every charge included "
    "(network charges too): comparable across tariffs and markets",
    "mean_price_{cur}_per_kwh": "mean energy price homes see (a tariff includes the network; "
    "market prices do not: information)",
    "max_price_{cur}_per_kwh": "highest energy price homes see (information)",
    "mean_bill_{cur}": "mean household bill over the period",
    "aggregator_revenue_{cur}": "what the aggregators earn (− pay) in settlement",
    "dso_revenue_{cur}": "what the DSOs keep: received from participants − wholesale",
    "wholesale_purchases_{cur}": "what the DSOs pay the wholesale market",
    "capacity_procured_kw": "firm kW contracted by the capacity auction before the run (0 "
    "unless it defers the upgrade; same on every design)",
    "deferral_value_{cur}": "the capacity auction's deferral NPV as an equal amount per year "
    "of the deferral (0 unless it defers; same on every design)",
    "p2p_volume_kwh": "energy traded peer to peer between homes",
    "p2p_mean_price_{cur}_per_kwh": "kWh-weighted mean price sellers got peer to peer "
    "(before the network charge; 0 without trades)",
    "flex_asked_kwh": "flexibility the DSOs asked for a day ahead (asks × interval length)",
    "flex_committed_kwh": "flexibility the DSOs committed (commitments, rebound not counted)",
    "flex_delivered_kwh": "flexibility delivered against the baseline, at most the commitment "
    "(the paid utilisation energy)",
    "flex_cost_{cur}": "what the DSOs pay for flexibility: availability + utilisation − penalties",
    "flex_cost_per_kwh_{cur}": "the DSOs' flexibility cost per kWh of relief delivered (0 when "
    "none was delivered)",
    "violations_avoided_h": "area-hours with a violation in the day-ahead forecast of the inner "
    "design minus area-hours with a violation in the run (flexibility designs; 0 otherwise)",
}

#: The market-power measures of :mod:`transactive.sim.market_power` a run reports: every one
#: but the residual supply indices (undefined without sellers or demand, so not a KPI every
#: design has); an HHI is 0 where nobody sells.
MARKET_POWER = {k: v for k, v in MARKET_POWER_KPIS.items() if not k.endswith("_rsi_min")}
KPI_DOCS.update(MARKET_POWER)

Better = Literal["lower", "higher"] | None

#: Which way is better for each KPI of :data:`KPI_DOCS` (``None``: information only, or a
#: transfer whose sign is nobody's gain, e.g. a stakeholder's revenue).
KPI_BETTER: dict[str, Better] = {
    "peak_import_kw": "lower",
    "energy_import_kwh": None,
    "energy_export_kwh": None,
    "losses_kwh": "lower",
    "worst_v_min_pu": "higher",
    "worst_v_max_pu": "lower",
    "undervoltage_h": "lower",
    "overvoltage_h": "lower",
    "line_overload_h": "lower",
    "trafo_overload_h": "lower",
    "reverse_flow_violation_h": "lower",
    "reverse_flow_h": None,
    "intervention_kwh": "lower",
    "max_ramp_kw": "lower",
    "peak_to_average": "lower",
    "rebound_kw": "lower",
    "comfort_dev_kh": "lower",
    "hot_water_dev_kh": "lower",
    "discomfort_kh": "lower",
    "unmet_ev_kwh": "lower",
    "unmet_shiftable_kwh": "lower",
    "curtailed_pv_kwh": "lower",
    "curtailed_load_kwh": "lower",
    "tier_bypass_cost_{cur}": "lower",
    "total_cost_{cur}": "lower",
    "all_in_price_{cur}_per_kwh": "lower",
    "mean_price_{cur}_per_kwh": None,
    "max_price_{cur}_per_kwh": None,
    "mean_bill_{cur}": "lower",
    "aggregator_revenue_{cur}": None,
    "dso_revenue_{cur}": None,
    "wholesale_purchases_{cur}": "lower",
    "capacity_procured_kw": None,
    "deferral_value_{cur}": "higher",
    "p2p_volume_kwh": None,
    "p2p_mean_price_{cur}_per_kwh": None,
    "flex_asked_kwh": None,
    "flex_committed_kwh": None,
    "flex_delivered_kwh": None,
    "flex_cost_{cur}": "lower",
    "flex_cost_per_kwh_{cur}": "lower",
    "violations_avoided_h": "higher",
    **{k: MARKET_POWER_BETTER[k] for k in MARKET_POWER},
}

_CATEGORY: dict[str, str] = {
    "p2p_volume_kwh": "info",
    "p2p_mean_price_{cur}_per_kwh": "info",
    "energy_import_kwh": "info",
    "energy_export_kwh": "info",
    "reverse_flow_h": "info",
    "max_ramp_kw": "synchronisation",
    "peak_to_average": "synchronisation",
    "rebound_kw": "synchronisation",
    "comfort_dev_kh": "comfort",
    "hot_water_dev_kh": "comfort",
    "discomfort_kh": "comfort",
    "unmet_ev_kwh": "comfort",
    "unmet_shiftable_kwh": "comfort",
    "curtailed_pv_kwh": "comfort",
    "curtailed_load_kwh": "comfort",
    "capacity_procured_kw": "info",
    "flex_asked_kwh": "info",
    "flex_committed_kwh": "info",
    "flex_delivered_kwh": "info",
    **dict.fromkeys(MARKET_POWER, "market power"),
}

#: Violation kind of the check table → its duration KPI.
_DURATIONS = {
    "undervoltage": "undervoltage_h",
    "overvoltage": "overvoltage_h",
    "line_overload": "line_overload_h",
    "trafo_overload": "trafo_overload_h",
    "reverse_flow": "reverse_flow_violation_h",
}
#: (report key, device kind) → KPI.
_BY_KIND = {
    ("unmet_kwh", "ev"): "unmet_ev_kwh",
    ("unmet_kwh", "shiftable"): "unmet_shiftable_kwh",
    ("curtailed_kwh", "pv"): "curtailed_pv_kwh",
    ("curtailed_kwh", "curtailable"): "curtailed_load_kwh",
}


def kpi_names(currency: str) -> list[str]:
    """The KPI names for a currency, in report order."""
    return [k.format(cur=currency.lower()) for k in KPI_DOCS]


def kpi_template(name: str) -> str:
    """The :data:`KPI_DOCS` key of a KPI name (``total_cost_eur`` → ``total_cost_{cur}``);
    raises ``KeyError`` for a name that is not a KPI."""
    if name in KPI_DOCS:
        return name
    for key in KPI_DOCS:
        if "{cur}" in key and re.fullmatch(
            re.escape(key).replace(re.escape("{cur}"), "[a-z]{3}"), name
        ):
            return key
    raise KeyError(f"{name!r} is not a KPI (see transactive.sim.kpis.KPI_DOCS)")


def kpi_better(name: str) -> Better:
    """Which way is better for KPI ``name`` (currency resolved), see :data:`KPI_BETTER`."""
    return KPI_BETTER[kpi_template(name)]


def kpi_category(name: str) -> str:
    """``grid``, ``synchronisation``, ``comfort`` (comfort and service), ``money``, ``market
    power`` or ``info`` (no better direction) for KPI ``name`` (currency resolved)."""
    key = kpi_template(name)
    if key in _CATEGORY:
        return _CATEGORY[key]
    return "money" if "{cur}" in key else "grid"


def compute_kpis(results: SimResults, pf_hours: float) -> pd.DataFrame:
    """KPI table over the evaluated period: index = KPI name (unit suffix), columns = designs.

    pf_hours: length of a power-flow step in hours.
    """
    cur = results.currency.lower()
    ev = results.evaluated
    lines = ev(results.settlement)
    totals = participant_totals(lines) if len(lines) else None
    if totals is not None:  # integer sums of minor units, in currency for the statistics
        totals[["paid", "received", "net"]] = totals[["paid", "received", "net"]] / MINOR
    role = dict(
        zip(results.participants["participant_id"], results.participants["role"], strict=True)
    )
    cols = {}
    for name in results.designs:
        g = ev(_of(results.grid, name), "time")
        m = ev(_of(results.market, name), "time")
        b = _of(results.bills, name)
        v = ev(_of(results.violations, name), "time")
        d = ev(_of(results.dispatch, name))
        meter = ev(_of(results.meter, name))
        sub = g["substation_kw"].to_numpy(dtype=float)
        tso = g.groupby("time")["substation_kw"].sum().to_numpy(dtype=float)
        t = totals[totals["design"] == name] if totals is not None else pd.DataFrame()
        who = t["participant_id"].astype(str).map(role) if len(t) else pd.Series([], dtype=str)
        dso = who == "dso"
        participants = who.isin(["home", "aggregator"])
        agg = who == "aggregator"
        homes = who == "home"
        n_homes = len(b) if len(b) else int((results.participants["role"] == "home").sum())
        import_kw = substation_import_kw(meter, role)
        cols[name] = {
            "peak_import_kw": float(tso.max(initial=0.0)),
            "energy_import_kwh": float(np.clip(sub, 0, None).sum() * pf_hours),
            "energy_export_kwh": float(np.clip(-sub, 0, None).sum() * pf_hours),
            "losses_kwh": float(g["losses_kw"].sum() * pf_hours),
            "worst_v_min_pu": float(g["v_min_pu"].min()),
            "worst_v_max_pu": float(g["v_max_pu"].max()),
            **violation_hours(v, pf_hours),
            "reverse_flow_h": float((sub < 0).sum() * pf_hours),
            **intervention(m, cur),
            "max_ramp_kw": max_ramp_kw(import_kw.to_numpy()),
            "peak_to_average": peak_to_average(import_kw.to_numpy()),
            "rebound_kw": rebound_kw(import_kw, home_price(m)),
            **comfort_and_service(d),
            f"total_cost_{cur}": float(t["net"][participants].sum()) if len(t) else 0.0,
            f"all_in_price_{cur}_per_kwh": all_in_price(t, homes, meter, role),
            f"mean_price_{cur}_per_kwh": float(m["price"].mean()),
            f"max_price_{cur}_per_kwh": float(m["price"].max()),
            f"mean_bill_{cur}": float(t["paid"][homes].sum()) / n_homes
            if len(t) and n_homes
            else 0.0,
            f"aggregator_revenue_{cur}": float(0.0 - t["net"][agg].sum()) if len(t) else 0.0,
            f"dso_revenue_{cur}": float(0.0 - t["net"][dso].sum()) if len(t) else 0.0,
            f"wholesale_purchases_{cur}": float(t["paid"][dso].sum()) - _dso_flex_paid(lines, name)
            if len(t)
            else 0.0,
            **flexibility_kpis(results, name, lines, v, pf_hours),
            **market_power(results, name),
            **capacity_kpis(results.capacity, cur),
            **p2p_kpis(ev(_of(results.trades, name)), cur),
        }
    return pd.DataFrame(cols).reindex(run_kpi_names(results))


#: KPIs of the optional stages, shown only when the run has the stage (a week without a
#: capacity auction, trades or a flexibility variant would otherwise carry rows of zeros).
STAGE_KPIS: dict[str, tuple[str, ...]] = {
    "capacity": ("capacity_procured_kw", "deferral_value_{cur}"),
    "p2p": ("p2p_volume_kwh", "p2p_mean_price_{cur}_per_kwh"),
    "flexibility": (
        "flex_asked_kwh",
        "flex_committed_kwh",
        "flex_delivered_kwh",
        "flex_cost_{cur}",
        "flex_cost_per_kwh_{cur}",
        "violations_avoided_h",
        "flex_hhi_max",
        "flex_pivotal_share",
        "flagged_offers",
    ),
}


def stages_run(results: SimResults) -> set[str]:
    """The optional stages of :data:`STAGE_KPIS` the run has: ``capacity`` (a capacity auction
    table), ``p2p`` (any peer-to-peer trade), ``flexibility`` (a flexibility variant)."""
    run = set()
    if len(results.capacity):
        run.add("capacity")
    if len(results.trades):
        run.add("p2p")
    if any(split_variant(d)[1] for d in results.designs):
        run.add("flexibility")
    return run


def run_kpi_names(results: SimResults) -> list[str]:
    """The KPI names of a run, in report order: every KPI but those of optional stages the
    run does not have (:func:`stages_run`)."""
    have = stages_run(results)
    drop = {k for stage, keys in STAGE_KPIS.items() if stage not in have for k in keys}
    cur = results.currency.lower()
    return [k.format(cur=cur) for k in KPI_DOCS if k not in drop]


def p2p_kpis(trades: pd.DataFrame, cur: str) -> dict[str, float]:
    """P2P volume (kWh) and the kWh-weighted mean seller price of ``trades``."""
    if trades.empty:
        return {"p2p_volume_kwh": 0.0, f"p2p_mean_price_{cur}_per_kwh": 0.0}
    kwh = trades["kwh"].to_numpy(dtype=float)
    price = np.nan_to_num(trades["price"].to_numpy(dtype=float))
    total = float(kwh.sum())
    mean = float(np.dot(kwh, price) / total) if total > 0 else 0.0
    return {"p2p_volume_kwh": total, f"p2p_mean_price_{cur}_per_kwh": mean}


def all_in_price(
    totals: pd.DataFrame, homes: pd.Series, meter: pd.DataFrame, role: dict[str, str]
) -> float:
    """What homes paid in all (currency) per kWh their meters imported (NaN without
    imports)."""
    if not len(totals) or meter.empty:
        return float("nan")
    who = meter["participant_id"].astype(str).map(role)
    imported = float(meter["import_kwh"][(who == "home").to_numpy()].sum())
    paid = float(totals["paid"][homes].sum())
    return paid / imported if imported > 0 else float("nan")


def intervention(market: pd.DataFrame, cur: str) -> dict[str, float]:
    """Energy the DSO's interventions reversed (kWh) and its value at the area's real-time
    price (currency) — 0 in designs where the DSO does not intervene."""
    if "intervention_kwh" not in market.columns or market.empty:
        return {"intervention_kwh": 0.0, f"tier_bypass_cost_{cur}": 0.0}
    kwh = market["intervention_kwh"].to_numpy(dtype=float)
    price = market["price"].to_numpy(dtype=float)
    return {
        "intervention_kwh": float(kwh.sum()),
        f"tier_bypass_cost_{cur}": float((kwh * np.nan_to_num(price)).sum()),
    }


def _of(df: pd.DataFrame, design: str) -> pd.DataFrame:
    """The rows of one design (an empty table stays as it is)."""
    if df.empty or "design" not in df.columns:
        return df
    return df[(df["design"] == design).to_numpy(dtype=bool)]


def violation_hours(violations: pd.DataFrame, pf_hours: float) -> dict[str, float]:
    """Duration KPI (h) per violation kind: power-flow steps of an area with at least one
    element of that kind outside its limit, counted once per (area, step), times
    ``pf_hours``. ``violations``: the run's violation table (``area``, ``time``, ``kind``)."""
    out = dict.fromkeys(_DURATIONS.values(), 0.0)
    if violations.empty:
        return out
    area = violations["area"] if "area" in violations.columns else pd.Series("", violations.index)
    steps = pd.DataFrame(
        {
            "area": area.astype(str).to_numpy(),
            "time": pd.to_datetime(violations["time"], utc=True).to_numpy(),
            "kind": violations["kind"].astype(str).to_numpy(),
        }
    ).drop_duplicates()
    counts = steps["kind"].value_counts()
    for kind, key in _DURATIONS.items():
        out[key] = float(counts.get(kind, 0)) * pf_hours
    return out


def substation_import_kw(meter: pd.DataFrame, role: dict[str, str]) -> pd.Series:
    """Total substation import (kW, + import) per market interval, indexed by interval start:
    the substation meter readings (meters of the DSO participants) summed over the areas."""
    if meter.empty:
        return pd.Series([], dtype=float)
    # Map the (categorical) ids, not millions of strings.
    sub = meter[(meter["participant_id"].map(role) == "dso").to_numpy(dtype=bool)]
    kw = (sub["import_kwh"] - sub["export_kwh"]) / sub["duration_h"]
    out: pd.Series = kw.groupby(sub["interval_start"]).sum().sort_index()
    return out.astype(float)


def home_price(market: pd.DataFrame) -> pd.Series:
    """The price the homes see per interval (currency/kWh): the market summary's ``price``
    averaged over the areas, indexed by interval start."""
    if market.empty:
        return pd.Series([], dtype=float)
    out: pd.Series = market.groupby("time")["price"].mean().sort_index()
    out.index = pd.to_datetime(out.index, utc=True)
    return out.astype(float)


def max_ramp_kw(load_kw: np.ndarray) -> float:
    """Largest absolute change (kW) between consecutive values of ``load_kw``; 0 for fewer
    than two values."""
    x = np.asarray(load_kw, dtype=float)
    return float(np.abs(np.diff(x)).max(initial=0.0))


def peak_to_average(load_kw: np.ndarray) -> float:
    """Peak over mean of ``load_kw``; NaN when the mean is not positive (net export)."""
    x = np.asarray(load_kw, dtype=float)
    mean = float(x.mean()) if x.size else 0.0
    return float(x.max()) / mean if mean > 0 else float("nan")


def rebound_kw(load_kw: pd.Series, price: pd.Series) -> float:
    """Largest rebound (kW) after a price fall, see the module docstring.

    load_kw: total import per interval (kW), price: the homes' price per interval
    (currency/kWh), both indexed by interval start on the same regular grid (the load's
    index is used; prices are aligned to it).
    """
    if len(load_kw) < 2 or price.empty:
        return 0.0
    idx = pd.DatetimeIndex(pd.to_datetime(load_kw.index, utc=True))
    step_h = float(np.median((idx[1:] - idx[:-1]) / pd.Timedelta(hours=1)))
    w = max(round(REBOUND_WINDOW_H / step_h), 1)
    p = price.reindex(idx).to_numpy(dtype=float)
    x = load_kw.to_numpy(dtype=float)
    fall = -np.diff(p)  # fall[i]: price drop into interval i + 1
    span = float(np.nanmax(p) - np.nanmin(p)) if np.isfinite(p).any() else 0.0
    threshold = max(REBOUND_STEP * span, REBOUND_MIN_STEP)
    with np.errstate(invalid="ignore"):
        events = np.flatnonzero(fall >= threshold) + 1
    events = events[events >= w]
    if events.size == 0:
        return 0.0
    csum = np.concatenate([[0.0], np.cumsum(x)])
    before = (csum[events] - csum[events - w]) / w
    # Peak over [t, t + w): a running maximum via a strided window view (truncated at the end).
    padded = np.concatenate([x, np.full(w - 1, -np.inf)])
    peaks = np.lib.stride_tricks.sliding_window_view(padded, w).max(axis=1)[events]
    return float(max(np.max(peaks - before), 0.0))


def comfort_and_service(dispatch: pd.DataFrame) -> dict[str, float]:
    """Comfort and service KPIs from dispatch records (see the module docstring)."""
    out = {
        "comfort_dev_kh": 0.0,
        "hot_water_dev_kh": 0.0,
        "discomfort_kh": 0.0,
        **dict.fromkeys(_BY_KIND.values(), 0.0),
    }
    if dispatch.empty:
        return out
    kind = dispatch["device_kind"]
    out["comfort_dev_kh"] = _comfort_mean(dispatch, kind, "hvac")
    out["hot_water_dev_kh"] = _comfort_mean(dispatch, kind, "water_heater")
    out["discomfort_kh"] = float(dispatch["discomfort_kh"].sum())
    for (column, dev), key in _BY_KIND.items():
        out[key] = float(dispatch[column][(kind == dev).to_numpy(dtype=bool)].sum())
    return out


def _comfort_mean(dispatch: pd.DataFrame, kind: pd.Series, device: str) -> float:
    """``comfort_dev_kh`` summed over the period, mean per device of ``device`` kind."""
    mine = (kind == device).to_numpy(dtype=bool)
    n = int(dispatch["resource_id"][mine].nunique())
    return float(dispatch["comfort_dev_kh"][mine].sum()) / n if n else 0.0


def flexibility_kpis(
    results: SimResults,
    design: str,
    lines: pd.DataFrame,
    violations: pd.DataFrame,
    pf_hours: float,
) -> dict[str, float]:
    """The flexibility KPIs of ``design`` over the evaluated period (see :data:`KPI_DOCS`):
    from its asks and commitments, its flexibility settlement ``lines`` (the evaluated
    settlement) and its realised ``violations``. ``violations_avoided_h`` compares area-hours:
    the (area, interval) pairs with an ask (a forecast violation) times the interval length,
    less the (area, power-flow step) pairs with a violation times the step length."""
    cur = results.currency.lower()
    asks = results.evaluated(_of(results.flex_asks, design))
    com = results.evaluated(_of(results.commitments, design))
    flex = _of(lines, design)
    flex = flex[flex["charge"].astype(str).str.startswith("flex_").to_numpy(dtype=bool)]
    paid = flex["amount"].to_numpy(dtype=np.int64)
    by_dso = flex["charge"].astype(str).to_numpy() != "flex_penalty"
    cost = float(paid[by_dso].sum() - paid[~by_dso].sum()) / MINOR
    util = flex["charge"].astype(str).to_numpy() == "flex_utilisation"
    delivered = float(flex["quantity_kwh"].to_numpy(dtype=float)[util].sum())
    is_flex = "+flex" in design
    if is_flex:
        asked_h = float(
            asks[["area", "interval_start", "duration_h"]]
            .drop_duplicates(["area", "interval_start"])["duration_h"]
            .sum()
        )
        realised_h = (
            float(violations[["area", "time"]].drop_duplicates().shape[0]) * pf_hours
            if len(violations)
            else 0.0
        )
        avoided = asked_h - realised_h
    else:
        avoided = 0.0
    return {
        "flex_asked_kwh": float((asks["kw"] * asks["duration_h"]).sum()) if len(asks) else 0.0,
        "flex_committed_kwh": float((com["committed_kw"] * com["duration_h"]).sum())
        if len(com)
        else 0.0,
        "flex_delivered_kwh": delivered,
        f"flex_cost_{cur}": cost,
        f"flex_cost_per_kwh_{cur}": cost / delivered if delivered > 0 else 0.0,
        "violations_avoided_h": avoided,
    }


def market_power(results: SimResults, design: str) -> dict[str, float]:
    """The market-power KPIs of ``design`` (:func:`~transactive.sim.market_power.
    market_power_kpis`) over the evaluated period. The offers of a strategic variant
    (``…+flex-strategic``) are screened against the truthful variant's offers of the same
    run (``…+flex``) as the aggregator's competitive history, when the run has it; every
    other design's against its own."""
    ev = results.evaluated
    offers = ev(results.flex_offers)
    history = None
    if design.endswith("+flex-strategic"):
        truthful = _of(offers, design.removesuffix("-strategic"))
        history = truthful if len(truthful) else None
    got = market_power_kpis(
        ev(results.bids), offers, ev(results.flex_asks), design, history=history
    )
    return {k: float(np.nan_to_num(got[k])) for k in MARKET_POWER}


def _dso_flex_paid(lines: pd.DataFrame, design: str) -> float:
    """What the DSOs paid for flexibility in ``design`` (availability and utilisation lines,
    currency): part of their payments, not of their wholesale purchases."""
    if lines.empty:
        return 0.0
    mine = _of(lines, design)
    paid = mine["charge"].astype(str).isin(["flex_availability", "flex_utilisation"])
    return float(mine["amount"][paid.to_numpy(dtype=bool)].sum()) / MINOR

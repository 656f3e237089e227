"""KPIs per paradigm from a run's tables: physics, prices and the value to each stakeholder."""

from __future__ import annotations

import numpy as np
import pandas as pd

from transactive.sim.results import SimResults

#: KPI name (unit in the suffix) → one-line meaning, in report order.
KPI_DOCS: dict[str, str] = {
    "peak_import_kw": "highest substation import (AC power flow)",
    "energy_import_kwh": "energy imported at the substation",
    "energy_export_kwh": "energy exported at the substation",
    "losses_kwh": "network losses",
    "voltage_violations": "bus-steps outside the voltage band",
    "worst_v_min_pu": "lowest bus voltage",
    "worst_v_max_pu": "highest bus voltage",
    "thermal_overloads": "line- and transformer-steps above 100 % loading",
    "reverse_flow_h": "hours with export at the substation",
    "pv_curtailed_kwh": "PV energy curtailed (inverter functions and market)",
    "ev_unmet_kwh": "EV energy still needed at departure",
    "comfort_violation_kh": "degree-hours outside comfort bands (HVAC, water heaters)",
    "total_cost_usd": "what homes and the aggregator pay in total (bills + aggregator)",
    "mean_price_usd_per_kwh": "mean price seen by homes",
    "max_price_usd_per_kwh": "highest price seen by homes",
    "mean_bill_usd": "mean household bill over the period",
    "aggregator_revenue_usd": "what the battery aggregator (VPP) earns",
    "dso_revenue_usd": "what the DSO/retailer keeps: bills + aggregator − wholesale",
    "wholesale_purchases_usd": "paid to the wholesale market",
}


def compute_kpis(
    results: SimResults, totals: dict[str, dict[str, float]], pf_hours: float
) -> pd.DataFrame:
    """KPI table: index = KPI name (unit suffix), columns = paradigms.

    totals: per paradigm, the quantities summed during the run (curtailment, unmet energy,
    comfort, money); pf_hours: length of a power-flow step in hours.
    """
    cols = {}
    for name in results.paradigms:
        g = results.grid[results.grid["paradigm"] == name]
        m = results.market[results.market["paradigm"] == name]
        b = results.bills[results.bills["paradigm"] == name]
        v = results.violations[results.violations["paradigm"] == name]
        sub = g["substation_kw"].to_numpy(dtype=float)
        kinds = v["kind"].astype(str) if len(v) else pd.Series([], dtype=str)
        tot = totals[name]
        cols[name] = {
            "peak_import_kw": float(sub.max(initial=0.0)),
            "energy_import_kwh": float(np.clip(sub, 0, None).sum() * pf_hours),
            "energy_export_kwh": float(-np.clip(sub, None, 0).sum() * pf_hours),
            "losses_kwh": float(g["losses_kw"].sum() * pf_hours),
            "voltage_violations": float(kinds.isin(["undervoltage", "overvoltage"]).sum()),
            "worst_v_min_pu": float(g["v_min_pu"].min()),
            "worst_v_max_pu": float(g["v_max_pu"].max()),
            "thermal_overloads": float(kinds.isin(["line_overload", "trafo_overload"]).sum()),
            "reverse_flow_h": float((sub < 0).sum() * pf_hours),
            "pv_curtailed_kwh": tot["pv_curtailed_kwh"],
            "ev_unmet_kwh": tot["ev_unmet_kwh"],
            "comfort_violation_kh": tot["comfort_violation_kh"],
            "total_cost_usd": tot["participant_cost_usd"],
            "mean_price_usd_per_kwh": float(m["price"].mean()),
            "max_price_usd_per_kwh": float(m["price"].max()),
            "mean_bill_usd": float(b["bill_usd"].mean()),
            "aggregator_revenue_usd": tot["aggregator_revenue_usd"],
            "dso_revenue_usd": tot["dso_revenue_usd"],
            "wholesale_purchases_usd": tot["wholesale_purchases_usd"],
        }
    return pd.DataFrame(cols).reindex(list(KPI_DOCS))

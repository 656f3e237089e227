"""KPIs per design, read from a run's records and summaries: physics, prices and the value
to each stakeholder. Money KPIs end in the scenario's currency code (``…_usd``, ``…_eur``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from transactive.settlement import participant_totals
from transactive.sim.results import SimResults

#: KPI name (unit in the suffix; ``{cur}``: the currency code) → one-line meaning, in order.
KPI_DOCS: dict[str, str] = {
    "peak_import_kw": "highest import at the TSO (all substations, AC power flow)",
    "energy_import_kwh": "energy imported at the substations",
    "energy_export_kwh": "energy exported at the substations",
    "losses_kwh": "network losses",
    "voltage_violations": "bus-steps outside the voltage band",
    "worst_v_min_pu": "lowest bus voltage",
    "worst_v_max_pu": "highest bus voltage",
    "thermal_overloads": "line- and transformer-steps above their loading limit",
    "reverse_flow_h": "substation-hours with export",
    "curtailed_kwh": "energy curtailed: PV (inverter functions, market), curtailable loads",
    "unmet_kwh": "energy still needed when sessions end: EVs at departure, shiftable loads",
    "comfort_violation_kh": "degree-hours outside comfort bands",
    "total_cost_{cur}": "what homes and aggregators pay in total (settlement)",
    "mean_price_{cur}_per_kwh": "mean price seen by homes",
    "max_price_{cur}_per_kwh": "highest price seen by homes",
    "mean_bill_{cur}": "mean household bill over the period",
    "aggregator_revenue_{cur}": "what the aggregators earn (− pay) in settlement",
    "dso_revenue_{cur}": "what the DSOs keep: received from participants − wholesale",
    "wholesale_purchases_{cur}": "what the DSOs pay the wholesale market",
}


def kpi_names(currency: str) -> list[str]:
    """The KPI names for a currency, in report order."""
    return [k.format(cur=currency.lower()) for k in KPI_DOCS]


def compute_kpis(results: SimResults, pf_hours: float) -> pd.DataFrame:
    """KPI table: index = KPI name (unit suffix), columns = designs.

    pf_hours: length of a power-flow step in hours.
    """
    cur = results.currency.lower()
    totals = participant_totals(results.settlement) if len(results.settlement) else None
    role = dict(
        zip(results.participants["participant_id"], results.participants["role"], strict=True)
    )
    cols = {}
    for name in results.designs:
        g = results.grid[results.grid["design"] == name]
        m = results.market[results.market["design"] == name]
        b = results.bills[results.bills["design"] == name]
        v = results.violations[results.violations["design"] == name]
        d = results.dispatch[results.dispatch["design"].astype(str) == name]
        sub = g["substation_kw"].to_numpy(dtype=float)
        tso = g.groupby("time")["substation_kw"].sum().to_numpy(dtype=float)
        kinds = v["kind"].astype(str) if len(v) else pd.Series([], dtype=str)
        t = totals[totals["design"] == name] if totals is not None else pd.DataFrame()
        who = t["participant_id"].astype(str).map(role) if len(t) else pd.Series([], dtype=str)
        dso = who == "dso"
        participants = who.isin(["home", "aggregator"])
        agg = who == "aggregator"
        cols[name] = {
            "peak_import_kw": float(tso.max(initial=0.0)),
            "energy_import_kwh": float(np.clip(sub, 0, None).sum() * pf_hours),
            "energy_export_kwh": float(np.clip(-sub, 0, None).sum() * pf_hours),
            "losses_kwh": float(g["losses_kw"].sum() * pf_hours),
            "voltage_violations": float(kinds.isin(["undervoltage", "overvoltage"]).sum()),
            "worst_v_min_pu": float(g["v_min_pu"].min()),
            "worst_v_max_pu": float(g["v_max_pu"].max()),
            "thermal_overloads": float(kinds.isin(["line_overload", "trafo_overload"]).sum()),
            "reverse_flow_h": float((sub < 0).sum() * pf_hours),
            "curtailed_kwh": float(d["curtailed_kwh"].sum()),
            "unmet_kwh": float(d["unmet_kwh"].sum()),
            "comfort_violation_kh": float(d["discomfort_kh"].sum()),
            f"total_cost_{cur}": float(t["net"][participants].sum()) if len(t) else 0.0,
            f"mean_price_{cur}_per_kwh": float(m["price"].mean()),
            f"max_price_{cur}_per_kwh": float(m["price"].max()),
            f"mean_bill_{cur}": float(b["bill"].mean()) if len(b) else 0.0,
            f"aggregator_revenue_{cur}": float(0.0 - t["net"][agg].sum()) if len(t) else 0.0,
            f"dso_revenue_{cur}": float(0.0 - t["net"][dso].sum()) if len(t) else 0.0,
            f"wholesale_purchases_{cur}": float(t["paid"][dso].sum()) if len(t) else 0.0,
        }
    return pd.DataFrame(cols).reindex(kpi_names(cur))

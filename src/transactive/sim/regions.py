"""Regions: one consistent data bundle per country, chosen by the scenario key ``region``.

A region fills the scenario's defaults *under* the user's own keys (the user's keys win, key
by key, table by table), so a German SimBench feeder runs with German weather, prices,
clock, currency, voltage norm, tariffs and device shares unless the file says otherwise:

``"de"`` (default) — Germany
    * clock ``Europe/Berlin`` (CET/CEST), currency EUR;
    * weather ``de-try-04``: DWD test reference year 2010, region 4 (Potsdam), the reference
      climate of German building-energy codes (DIN V 18599-10: "Referenzstandort Potsdam")
      and central in the country's climate range (annual GHI ≈ 1070 kWh/m², mean 9.5 °C);
    * wholesale: the SMARD day-ahead series of 2018 (``wholesale.prices = "smard-2018"``),
      German bidding zone, €/MWh converted to €/kWh at the edge;
    * voltage band 0.90–1.10 pu (EN 50160: ±10 % of the nominal voltage);
    * price floor/cap −0.5 / 3.0 €/kWh = the day-ahead market's technical limits
      (−500 / 3000 €/MWh, EPEX SPOT / SDAC harmonised limits in 2018);
    * tariffs (BDEW-Strompreisanalyse, January 2019, average household, 3500 kWh/a, year
      2018): 29.47 ct/kWh = 6.20 procurement and sales + 7.27 network (incl. metering) +
      16.00 taxes, levies and surcharges; the network charge of the market designs is the
      network part (7.27 ct/kWh). The TOU variant uses the German two-rate (HT/NT) hours:
      HT 06:00–22:00, NT 22:00–06:00 local time; only the procurement part varies, in
      proportion to the 2018 day-ahead price in HT vs NT hours weighted by the SimBench
      H0-A profile, so the H0 household pays the flat average (see :data:`DE_TOU`);
    * device shares per DER stage from SimBench's own DER scenarios: stage 1 ↔ scenario 0
      (today), 2 ↔ 1, 3 ↔ 2, as PV systems, PV home storage, heat pumps (profiles ``Air*``,
      ``Soil*``) and home charging points (``HLS*``) per household load (``H0*``) in the six
      SimBench LV grids ``1-LV-{rural1,rural2,rural3,semiurb4,semiurb5,urban6}--N-sw``
      (:func:`simbench_der_counts`); heat pumps are the ``hvac`` kind (heating, not air
      conditioning); SimBench has no electric water heaters, so their share is 0.

``"us"`` — today's behaviour: Greensboro NC TMY3 (shipped with pvlib), the modelled US merit
order (or a user-supplied price file), USD, ANSI C84.1 range A (0.95–1.05 pu), clock
``America/New_York``, the GWAC stage presets of :data:`transactive.sim.scenario.STAGES`.

:func:`provenance` lists, per input the scenario actually uses, its source, licence and year.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from transactive.sim.scenario import Scenario

__all__ = [
    "DE_COUNTS",
    "DE_STAGES",
    "DE_TOU",
    "PRESETS",
    "REGIONS",
    "SHIPPED_PRICES",
    "merge_region",
    "provenance",
    "shipped_prices",
    "simbench_der_counts",
    "utc_offsets_h",
]

#: Region names.
REGIONS: tuple[str, ...] = ("de", "us")

#: Price series shipped in the package: name → (file under ``transactive/data``, year).
SHIPPED_PRICES: dict[str, tuple[str, int]] = {
    "smard-2018": ("de/smard/day_ahead_de_2018.csv", 2018),
    "smard-2015": ("de/smard/day_ahead_de_2015.csv", 2015),
}

#: SimBench DER elements per DER scenario in the six LV grids (``…--N-sw``), counted by
#: :func:`simbench_der_counts` (a test recounts them): household loads (H0 profiles), PV
#: generators, PV home storage, heat pumps (Air/Soil profiles), home charging points (HLS).
DE_COUNTS: dict[int, dict[str, int]] = {
    0: {"households": 434, "pv": 44, "battery": 0, "hvac": 0, "ev": 0},
    1: {"households": 434, "pv": 64, "battery": 29, "hvac": 28, "ev": 18},
    2: {"households": 434, "pv": 79, "battery": 55, "hvac": 72, "ev": 49},
}

#: Share of homes (%) with each device per DER stage for Germany: stage s ↔ SimBench DER
#: scenario s − 1, elements per household load (no electric water heaters in SimBench).
DE_STAGES: dict[int, dict[str, float]] = {
    s + 1: {
        **{k: round(100.0 * c[k] / c["households"], 2) for k in ("pv", "battery", "ev", "hvac")},
        "water_heater": 0.0,
    }
    for s, c in DE_COUNTS.items()
}

#: German retail tariffs, €/kWh (see the module docstring): flat = BDEW 2018 average; TOU
#: peak/off-peak = flat + 0.0620 · (P − P̄)/P̄ with P the H0-A-weighted SMARD 2018 price in HT
#: (06–22 h) resp. NT hours (47.63 and 37.66 €/MWh) and P̄ their weighted mean (45.84 €/MWh).
DE_TOU: dict[str, Any] = {
    "flat": 0.2947,
    "tou_peak": 0.2971,
    "tou_offpeak": 0.2836,
    "tou_peak_hours": [6, 22],
}

#: The six SimBench LV grids the German device shares are counted in.
SIMBENCH_LV_GRIDS: tuple[str, ...] = (
    "rural1",
    "rural2",
    "rural3",
    "semiurb4",
    "semiurb5",
    "urban6",
)

#: Region presets as scenario tables (merged under the user's keys by :func:`merge_region`).
PRESETS: dict[str, dict[str, Any]] = {
    "de": {
        "timezone": "Europe/Berlin",
        "weather_site": "de-try-04",
        "market": {"floor": -0.5, "cap": 3.0, "currency": "EUR"},
        "grid": {"v_min_pu": 0.90, "v_max_pu": 1.10},
        "wholesale": {"source": "prices", "prices": "smard-2018"},
        "tariff": DE_TOU,
        # German homes heat with heat pumps and have no air conditioning (SimBench's heat
        # pumps are heating profiles): the hvac devices heat only.
        "der": {"config": {"hvac": {"can_cool": 0}}},
    },
    "us": {
        "timezone": "America/New_York",
        "weather_site": "greensboro",
        "market": {"currency": "USD"},
        "grid": {"v_min_pu": 0.95, "v_max_pu": 1.05},
        "wholesale": {"source": "merit-order"},
    },
}

#: Region-specific stage presets (the US ones are the schema's own ``STAGES``).
_STAGE_PRESETS: dict[str, dict[int, dict[str, float]]] = {"de": DE_STAGES}


def shipped_prices(name: str) -> Path:
    """The path of a shipped price series (:data:`SHIPPED_PRICES`)."""
    return Path(str(resources.files("transactive") / "data" / SHIPPED_PRICES[name][0]))


def _merge(default: Any, user: Any) -> Any:
    """``user`` over ``default``: tables merge key by key (recursively), anything else in
    ``user`` wins."""
    if isinstance(default, Mapping) and isinstance(user, Mapping):
        out = dict(copy.deepcopy(dict(default)))
        for k, v in user.items():
            out[k] = _merge(default[k], v) if k in default else v
        return out
    return user


def merge_region(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The raw scenario (parsed TOML) with its region's preset filled in under the user's
    keys. ``raw["region"]`` must already be a known region (the schema checks it first).

    Rules beyond key-by-key merging: a user ``wholesale.source`` other than ``prices`` drops
    the preset's price file; a DER ``stage`` takes the region's stage shares (user
    ``der.penetration`` entries still win). The one device parameter a preset sets
    (``de``: heat pumps heat only, ``hvac.can_cool = 0``) is kept by a dumped scenario only
    if it differs from the class default; a file that sets it back to the class default
    (1) must say so again after a round trip."""
    region = str(raw.get("region", "de"))
    preset = copy.deepcopy(PRESETS[region])
    user = dict(raw)
    wholesale = user.get("wholesale")
    if isinstance(wholesale, Mapping) and wholesale.get("source", "prices") != "prices":
        preset["wholesale"].pop("prices", None)
    der = user.get("der")
    stage = der.get("stage") if isinstance(der, Mapping) else None
    stages = _STAGE_PRESETS.get(region)
    if stages is not None and type(stage) is int and stage in stages:
        preset.setdefault("der", {})["penetration"] = dict(stages[stage])
    merged: dict[str, Any] = _merge(preset, user)
    merged["region"] = region
    return merged


def utc_offsets_h(starts: pd.DatetimeIndex, timezone: str) -> np.ndarray:
    """UTC offset (h) of the ``timezone`` clock at each UTC instant of ``starts``
    (daylight saving included), vectorised."""
    import numpy as np
    import pandas as pd

    utc = pd.DatetimeIndex(starts).tz_convert("UTC")
    local = utc.tz_convert(timezone).tz_localize(None)
    out: np.ndarray = (local.asi8 - utc.tz_localize(None).asi8) / 3.6e12
    return np.asarray(out, dtype=np.float64)


def simbench_der_counts(scenario: int) -> dict[str, int]:
    """Count the DER elements of SimBench DER scenario ``scenario`` (0, 1, 2) in the six LV
    grids :data:`SIMBENCH_LV_GRIDS` (``1-LV-<grid>--<scenario>-sw``), read from the installed
    simbench package's complete-data CSVs: household loads (profile ``H0*``), PV generators
    (``RES.csv`` type ``PV``), storage units (``Storage.csv``; all ``PV_Storage``), heat
    pumps (load profiles ``Air*``, ``Soil*``) and home charging points (``HLS*``)."""
    import os

    import pandas as pd
    from simbench import extract_simbench_grids_from_csv as sbx

    subnets = []
    path = ""
    for grid in SIMBENCH_LV_GRIDS:
        _, par = sbx.get_simbench_code_and_parameters(f"1-LV-{grid}--{scenario}-sw")
        path = sbx.complete_data_path(par[5])
        subnets.append(str(sbx.get_relevant_subnets(par, path)[0]))

    def table(name: str, cols: list[str]) -> pd.DataFrame:
        f = os.path.join(path, name)
        if not os.path.exists(f):  # scenario 0 ships no storage table
            return pd.DataFrame({c: pd.Series(dtype=str) for c in cols})
        df = pd.read_csv(f, sep=";", usecols=cols, dtype=str)
        return df[df["subnet"].isin(subnets)]

    load = table("Load.csv", ["profile", "subnet"])["profile"]
    res = table("RES.csv", ["type", "subnet"])
    sto = table("Storage.csv", ["type", "subnet"])
    return {
        "households": int(load.str.startswith("H0").sum()),
        "pv": int((res["type"] == "PV").sum()),
        "battery": len(sto),
        "hvac": int(load.str.match(r"^(Air|Soil)").sum()),
        "ev": int(load.str.startswith("HLS").sum()),
    }


# --- provenance --------------------------------------------------------------------------------

_LICENCE_SIMBENCH = "ODbL 1.0 (SimBench database)"


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:  # pragma: no cover - the package is a dependency
        return "?"


def provenance(scenario: Scenario) -> pd.DataFrame:
    """One row per data input the scenario uses: columns ``what, source, licence, year``
    (grid per area, household profiles, weather, prices, device shares, tariff)."""
    import pandas as pd

    sc = scenario
    rows: list[tuple[str, str, str, str]] = []
    for area in sc.areas:
        kind, _, code = area.feeder.partition(":")
        if kind == "simbench":
            rows.append(
                (
                    f"grid ({area.name})",
                    f"SimBench {code} (simbench {_version('simbench')})",
                    _LICENCE_SIMBENCH,
                    "2019",
                )
            )
        else:
            rows.append(
                (
                    f"grid ({area.name})",
                    f"pandapower network {code} (pandapower {_version('pandapower')})",
                    "BSD-3-Clause (pandapower)",
                    "",
                )
            )
    rows.append(
        (
            "household profiles",
            "SimBench H0 standard household load profiles (LoadProfile.csv), on the local clock",
            _LICENCE_SIMBENCH,
            "2016",
        )
    )
    from transactive.der.sites import SITES

    site = sc.weather_site
    if SITES[site][1] == "try":
        rows.append(
            (
                "weather",
                f"DWD test reference year TRY2010 {SITES[site][0].removesuffix('.gz')} ({site}), "
                "as shipped in pycity_base 0.3.3",
                "DWD terms of use (source: Deutscher Wetterdienst); pycity_base: MIT",
                "2010 (reference period 1988–2007)",
            )
        )
    else:
        rows.append(
            (
                "weather",
                f"NREL typical meteorological year {SITES[site][0]} ({site}), shipped with pvlib "
                f"{_version('pvlib')}",
                "NREL NSRDB (US public data); pvlib: BSD-3-Clause",
                "TMY (1991–2005)" if SITES[site][1] == "tmy3" else "TMY2 (1961–1990)",
            )
        )
    w = sc.wholesale
    if w.source == "prices" and w.prices is not None:
        named = {shipped_prices(k).resolve(): k for k in SHIPPED_PRICES}
        name = named.get(Path(w.prices).resolve())
        if name is not None:
            rows.append(
                (
                    "wholesale prices",
                    f"SMARD.de day-ahead prices, German bidding zone ({name})",
                    "CC BY 4.0 (Bundesnetzagentur | SMARD.de)",
                    str(SHIPPED_PRICES[name][1]),
                )
            )
        else:
            rows.append(("wholesale prices", f"user-supplied file {w.prices}", "user-supplied", ""))
    else:
        rows.append(
            (
                "wholesale prices",
                "modelled merit order (transactive data/wholesale/merit_order.csv: NREL ATB and "
                "EIA cost ranges)",
                "Apache-2.0 (this project)",
                "2023–2024",
            )
        )
    stages = _STAGE_PRESETS.get(sc.region)
    stage = sc.der.stage
    if stage is not None and stages is not None and sc.der.penetration == stages[stage]:
        rows.append(
            (
                "device shares",
                f"SimBench DER scenario {stage - 1} (per household load in the six 1-LV-* grids)",
                _LICENCE_SIMBENCH,
                "2019",
            )
        )
    elif stage is not None and stages is None:
        from transactive.sim.scenario import STAGES

        src = "GWAC TE roadmap §4.2 stage preset"
        if sc.der.penetration != STAGES[stage]:
            src += ", with the scenario's own shares"
        rows.append(("device shares", src, "", ""))
    else:
        rows.append(("device shares", "scenario file (der.penetration)", "user-supplied", ""))
    t = sc.tariff
    own = {k: getattr(t, k) for k in DE_TOU}
    own["tou_peak_hours"] = list(t.tou_peak_hours)
    if sc.region == "de" and own == DE_TOU:
        rows.append(
            (
                "tariff",
                "BDEW-Strompreisanalyse (Jan 2019): average household price 2018; TOU from SMARD "
                "2018 HT/NT prices",
                "figures cited from BDEW; SMARD CC BY 4.0",
                "2018",
            )
        )
    elif t == type(t)():
        rows.append(("tariff", "schema defaults (illustrative US retail tariff)", "", ""))
    else:
        rows.append(("tariff", "scenario values (tariff.*)", "user-supplied", ""))
    return pd.DataFrame(rows, columns=["what", "source", "licence", "year"])

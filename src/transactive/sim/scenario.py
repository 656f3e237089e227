"""Scenario files (TOML): one validated schema, read once at the edge.

Every key is declared once below (type, unit, bounds, default, meaning); the models are the
typed, frozen values the program uses. The reference page ``docs/scenario.md`` is generated
from them (``python -m transactive.sim.scenario_docs``). Example (``examples/summer-day.toml``)::

    name = "summer-day"
    feeder = "simbench:1-LV-semiurb4--0-sw"   # one area; or [[areas]] tables
    region = "de"                     # data bundle and defaults (transactive.sim.regions)
    start = "2016-07-12T00:00:00Z"
    end = "2016-07-13T00:00:00Z"
    market_interval_min = 15
    designs = [...]                   # names registered in transactive.designs.registry
    [der]
    stage = 3
    [der.config.pv]
    capacity_kw = { normal = [6.0, 2.0, 2.0, 15.0] }

The ``region`` (default ``"de"``) fills defaults under the file's own keys
(:func:`transactive.sim.regions.merge_region`): time zone, weather site, wholesale prices,
voltage band, price band, currency, tariffs and the DER stage shares.

Bad input raises :class:`ScenarioError` listing every problem, one per line, as
``<file>: '<dotted.key>': <reason>``. NaN and infinity are rejected everywhere.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from transactive.core.units import DEFAULT_CAP, DEFAULT_FLOOR
from transactive.designs.registry import is_design
from transactive.designs.registry import names as design_names
from transactive.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from transactive.core.time import Intervals
    from transactive.grid.limits import Limits

__all__ = [
    "CONFIG_KINDS",
    "DEVICES",
    "MAX_TOTAL_HOMES",
    "STAGES",
    "Aggregator",
    "Area",
    "Capacity",
    "Der",
    "Dso",
    "Flexibility",
    "Forecast",
    "GridLimits",
    "Homes",
    "Market",
    "Scenario",
    "ScenarioError",
    "Tariff",
    "Wholesale",
    "config_table",
    "load_scenario",
    "parse_config",
    "parse_scenario",
    "tou_price",
]

#: Device kinds homes (or the aggregator) may own: keys of ``der.penetration``.
DEVICES: tuple[str, ...] = ("pv", "battery", "ev", "hvac", "water_heater")
#: Device kinds with a ``[der.config.<kind>]`` table (every home has a ``household`` load).
CONFIG_KINDS: tuple[str, ...] = (*DEVICES, "household")
#: Most homes one scenario may simulate (checked by the runner once the feeders are known).
MAX_TOTAL_HOMES = 200_000

#: Share of homes (%) with each device per DER stage (GWAC TE roadmap §4.2: stage 1
#: "persistently demonstrated", 2 "broadly applied", 3 "at scale"): the ``us`` region's
#: presets; Germany's come from SimBench (:data:`transactive.sim.regions.DE_STAGES`).
STAGES: dict[int, dict[str, float]] = {
    1: {"pv": 10, "battery": 2, "ev": 5, "hvac": 60, "water_heater": 40},
    2: {"pv": 30, "battery": 10, "ev": 20, "hvac": 70, "water_heater": 45},
    3: {"pv": 60, "battery": 30, "ev": 50, "hvac": 80, "water_heater": 50},
}


class ScenarioError(InvalidInputError):
    """A scenario that cannot be run. The message lists every problem, one per line:
    ``<file>: '<dotted.key>': <reason>``."""


# --- declaration helpers ---------------------------------------------------------------------

Num = Annotated[float, Strict()]  # a TOML number (integer or float; not a bool, not a string)
Int = Annotated[int, Strict()]  # a TOML integer
Hour = Annotated[int, Strict(), Field(ge=0, le=24)]


def _key(
    default: Any = ...,
    description: str = "",
    unit: str = "",
    bounds: str = "",
    default_text: str = "",
    **constraints: Any,
) -> Any:
    """A schema field: ``unit``, free-text ``bounds`` (for rules the numeric constraints do
    not express) and ``default_text`` (a default computed at validation) go to the JSON
    schema and the reference page."""
    extra: dict[str, Any] = {}
    for k, v in (("unit", unit), ("bounds", bounds), ("default_text", default_text)):
        if v:
            extra[k] = v
    return Field(default, description=description, json_schema_extra=extra or None, **constraints)


def _fail(key: str, message: str, **ctx: Any) -> PydanticCustomError:
    """A validation error for ``key`` (dotted, relative to the model that raises it)."""
    return PydanticCustomError("scenario", message, {"key": key, **ctx})


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, validate_default=False
    )


# --- sections --------------------------------------------------------------------------------

AreaName = Annotated[str, StringConstraints(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]


class Area(_Model):
    """One DSO area: everything below one T-D substation."""

    name: AreaName = _key(description="Area name, unique in the scenario ([A-Za-z0-9_.-]+).")
    feeder: Annotated[str, StringConstraints(min_length=1)] = _key(
        description="Feeder of the area: `simbench:<code>` or `pandapower:<name>`."
    )


class Der(_Model):
    """Distributed energy resources in the homes."""

    stage: Annotated[int, Strict(), Field(ge=1, le=3)] | None = _key(
        None,
        "Penetration preset (GWAC TE roadmap §4.2): 1 demonstrated, 2 broadly applied, 3 at "
        "scale; `der.penetration` overrides it per kind.",
        bounds="1, 2 or 3",
    )
    penetration: dict[str, Annotated[float, Strict(), Field(ge=0, le=100)]] = _key(
        {},
        "Share of homes with each device kind (pv, battery, ev, hvac, water_heater), merged "
        "over the stage preset; after validation it holds the merged shares.",
        unit="%",
        bounds="0 … 100 each",
    )
    config: dict[str, Any] = _key(
        {},
        "Device parameters per kind (`[der.config.<kind>]`, kinds: "
        + ", ".join(CONFIG_KINDS)
        + "): a number (constant) or a one-key table `{ uniform = [lo, hi] }`, "
        "`{ normal = [mean, sd, low?, high?] }`, `{ lognormal = [median, sigma, low?, high?] }`, "
        "`{ const = x }`, `{ choice = [[values], [p]] }`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _merge_stage(cls, raw: Any) -> Any:
        stage = raw.get("stage") if isinstance(raw, dict) else None
        if type(stage) is int and stage in STAGES and isinstance(raw.get("penetration", {}), dict):
            return {**raw, "penetration": {**STAGES[stage], **raw.get("penetration", {})}}
        return raw

    @field_validator("penetration")
    @classmethod
    def _known_kinds(cls, v: dict[str, float]) -> dict[str, float]:
        for kind in v:
            if kind not in DEVICES:
                raise _fail(
                    kind,
                    "unknown key (expected one of {known})",
                    known=", ".join(DEVICES),
                )
        return v

    @field_validator("config", mode="before")
    @classmethod
    def _device_configs(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            raise _fail("", "must be a table of device kinds")
        out: dict[str, Any] = {}
        for kind, table in v.items():
            if kind not in CONFIG_KINDS:
                raise _fail(
                    kind,
                    "unknown key (expected one of {known})",
                    known=", ".join(CONFIG_KINDS),
                )
            from transactive.der.params import DeviceConfig

            if isinstance(table, _config_class(kind)):  # already a config (built in code)
                out[kind] = table
            elif isinstance(table, Mapping) and not isinstance(table, DeviceConfig):
                try:
                    out[kind] = parse_config(kind, table, f"der.config.{kind}")
                except InvalidInputError as exc:
                    key, _, reason = str(exc).partition(": ")
                    raise _fail(
                        key.removeprefix("der.config."), "{reason}", reason=reason
                    ) from None
            else:
                raise _fail(kind, "must be a table of device parameters")
        return out

    @field_serializer("config")
    def _config_tables(self, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {kind: config_table(c) for kind, c in config.items()}

    @property
    def fractions(self) -> dict[str, float]:
        """Share of homes with each device kind, 0 … 1."""
        return {k: v / 100.0 for k, v in self.penetration.items()}


class Homes(_Model):
    """The homes attached to the feeders' load points."""

    service_limit_kw: Num = _key(25.0, "Service connection limit per home, import and export.",
                                 unit="kW", ge=0)  # fmt: skip


class Aggregator(_Model):
    """The aggregator (VPP): holds the named device kinds instead of the homes."""

    name: Annotated[str, StringConstraints(min_length=1)] = _key(
        "vpp", "Participant id of the aggregator."
    )
    devices: tuple[str, ...] = _key(
        ("battery",),
        "Device kinds the aggregator holds (instead of the homes); each a known kind, unique.",
        bounds="each in " + ", ".join(DEVICES),
    )

    @field_validator("devices")
    @classmethod
    def _known_unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        seen: set[str] = set()
        for i, kind in enumerate(v):
            if kind not in DEVICES:
                raise _fail(
                    str(i), "unknown device kind '{kind}' (expected one of {known})",
                    kind=kind, known=", ".join(DEVICES),
                )  # fmt: skip
            if kind in seen:
                raise _fail(str(i), "'{kind}' is listed twice", kind=kind)
            seen.add(kind)
        return v


class Dso(_Model):
    """The distribution system operator of each area."""

    substation_limit_kw: Num | None = _key(
        None,
        "The DSO's limit on the area's net import/export; unset = the substation "
        "transformers' rating (kVA).",
        unit="kW",
        ge=0,
    )
    intervention_margin_percent: Num = _key(
        10.0,
        "Grand central: the DSO curtails the market's schedule until every branch is this "
        "far below its thermal limit (head room for the reactive power and losses its "
        "active-power check ignores: ≈ 5 % at power factor 0.95, 2–3 % losses).",
        unit="%",
        ge=0,
        lt=50,
    )
    loss_iterations: Int = _key(
        2,
        "Network clearing: LinDistFlow loss linearisations iterated against the AC power flow.",
        ge=1,
        le=20,
    )


class GridLimits(_Model):
    """Operating limits of the feeders (DESIGN.md §6)."""

    v_min_pu: Num = _key(0.95, "Lowest allowed bus voltage (ANSI C84.1 range A: 0.95; region "
                         "de: EN 50160, 0.90).", unit="pu", gt=0,
                         bounds="> 0, < v_max_pu")  # fmt: skip
    v_max_pu: Num = _key(1.05, "Highest allowed bus voltage (ANSI C84.1 range A: 1.05; region "
                         "de: EN 50160, 1.10).", unit="pu", gt=0, bounds="> v_min_pu")  # fmt: skip
    max_line_loading_percent: Num = _key(100.0, "Line thermal limit.", unit="%", gt=0)
    max_trafo_loading_percent: Num = _key(100.0, "Transformer thermal limit.", unit="%", gt=0)
    max_reverse_flow_kw: Num | None = _key(
        None,
        "Most the substation may export; unset: reverse flow is reported, not a violation.",
        unit="kW",
        ge=0,
    )

    @model_validator(mode="after")
    def _band(self) -> GridLimits:
        if not self.v_min_pu < self.v_max_pu:
            raise _fail(
                "v_min_pu", "{lo} pu must be below v_max_pu = {hi} pu",
                lo=self.v_min_pu, hi=self.v_max_pu,
            )  # fmt: skip
        return self


class Market(_Model):
    """Market rules of every auction."""

    floor: Num = _key(DEFAULT_FLOOR, "Price floor (region de: −0.5, the day-ahead limit).",
                      unit="currency/kWh", bounds="< cap")  # fmt: skip
    cap: Num = _key(DEFAULT_CAP, "Price cap (the value of lost load; region de: 3.0, the "
                    "day-ahead limit).", unit="currency/kWh", bounds="> floor")  # fmt: skip
    currency: Annotated[str, StringConstraints(min_length=1)] = _key(
        "USD", "Currency of every price and bill (prices are per kWh of it; region de: EUR)."
    )
    bid_diversity: Num = _key(
        0.02,
        "Designs with diversified bids (`total-dso-diversified`): standard deviation of the "
        "fixed random price offset each device adds to its bid curve, against synchronised "
        "response to price steps.",
        unit="currency/kWh",
        ge=0,
    )

    @model_validator(mode="after")
    def _band(self) -> Market:
        if not self.floor < self.cap:
            raise _fail(
                "cap", "cap {cap} must exceed floor {floor}", cap=self.cap, floor=self.floor
            )
        return self


class Forecast(_Model):
    """What devices know ahead."""

    horizon_h: Num = _key(24.0, "How far ahead devices see prices.", unit="h", gt=0, le=168)
    temperature_error_k: Num = _key(
        1.5,
        "Day-ahead forecast error of the air temperature: standard deviation of an AR(1) "
        "error (hourly persistence `error_persistence`).",
        unit="K",
        ge=0,
        le=10,
    )
    irradiance_error: Num = _key(
        0.3,
        "Day-ahead forecast error of the solar irradiance: relative standard deviation of an "
        "AR(1) multiplicative error (irradiance stays ≥ 0).",
        ge=0,
        le=2,
    )
    load_error: Num = _key(
        0.15,
        "Day-ahead forecast error of each home's fixed load: relative standard deviation of "
        "a per-home, per-day log-normal factor.",
        ge=0,
        le=2,
    )
    ev_arrival_error_h: Num = _key(
        1.0,
        "Day-ahead forecast error of EV arrival times: standard deviation per vehicle and day.",
        unit="h",
        ge=0,
        le=12,
    )
    error_persistence: Num = _key(
        0.9,
        "Hour-to-hour correlation of the AR(1) weather and price errors.",
        ge=0,
        lt=1,
    )
    real_time_price_error: Num = _key(
        0.012,
        "Real-time minus day-ahead wholesale price (price series only): standard deviation of "
        "an AR(1) error.",
        unit="currency/kWh",
        ge=0,
    )


class Records(_Model):
    """Which record tables a run keeps (awards, dispatch, meter readings and settlement are
    always kept: money is computed from them)."""

    bids: Annotated[bool, Strict()] = _key(
        True,
        "Keep the bid records: one row per breakpoint of every node's curve and interval "
        "(the largest table; switch off for speed runs).",
    )


class Wholesale(_Model):
    """The wholesale (TSO) market above the substation."""

    source: Literal["merit-order", "prices"] = _key(
        "merit-order",
        "`merit-order`: a modelled supply stack; `prices`: a price series (region de: "
        "`prices`; us: `merit-order`).",
    )
    prices: Path | None = _key(
        None,
        "Price series: a shipped name (`smard-2018`, `smard-2015`: SMARD day-ahead, German "
        "bidding zone) or a CSV of `start,price` (currency/MWh) relative to the scenario file's "
        "folder; required iff source = `prices` (region de: `smard-2018`).",
    )
    system_scale: Num = _key(
        20.0, "Rest-of-system load = scale × the area's base load (merit order).", gt=0
    )

    @field_validator("prices")
    @classmethod
    def _resolve(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        if v is None:
            return None
        from transactive.sim.regions import SHIPPED_PRICES, shipped_prices

        if str(v) in SHIPPED_PRICES:
            return shipped_prices(str(v))
        base = Path((info.context or {}).get("base_dir", "."))
        p = (base / v).resolve()
        if not p.is_file():
            raise _fail(
                "", "'{name}' is neither a shipped price series ({known}) nor a file ({path})",
                name=str(v), known=", ".join(SHIPPED_PRICES), path=str(p),
            )  # fmt: skip
        return p

    @model_validator(mode="after")
    def _needs_prices(self) -> Wholesale:
        if self.source == "prices" and self.prices is None:
            raise _fail("prices", "missing: source = 'prices' needs a CSV file of start,price")
        if self.source != "prices" and self.prices is not None:
            raise _fail("prices", "only used with source = 'prices'")
        return self


class Tariff(_Model):
    """Retail tariffs (business as usual). Peak hours are local time ``[start, end)`` on the
    scenario's `timezone` clock (daylight saving included). Region de: BDEW 2018 average
    household price and HT/NT hours (:data:`transactive.sim.regions.DE_TOU`)."""

    flat: Num = _key(0.16, "Flat tariff (design `baseline`; region de: 0.2947).",
                     unit="currency/kWh")  # fmt: skip
    tou_peak: Num = _key(0.34, "Time-of-use price within the peak hours (region de: 0.2971).",
                         unit="currency/kWh")  # fmt: skip
    tou_offpeak: Num = _key(0.11, "Time-of-use price outside the peak hours (region de: "
                            "0.2836).", unit="currency/kWh")  # fmt: skip
    tou_peak_hours: tuple[Hour, Hour] = _key(
        (16, 21),
        "Peak hours [start, end) in local time; start > end wraps past midnight (region de: "
        "[6, 22], the HT hours).",
        unit="h",
        bounds="0 … 24 each",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "tz_offset_h" in raw:
            raise _fail(
                "tz_offset_h",
                "replaced by the top-level key `timezone` (an IANA name such as "
                "'Europe/Berlin'; daylight saving included)",
            )
        return raw


class LevyKey(_Model):
    """A levy on the homes' imports (:mod:`transactive.settlement.levies`)."""

    name: Annotated[str, StringConstraints(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")] = _key(
        description="Levy name; its lines are charged as `levy:<name>` ([A-Za-z0-9_.-]+)."
    )
    per_kwh: Num = _key(description="Levy per imported kWh.", unit="currency/kWh")
    on: Literal["import"] = _key("import", "What the levy is charged on: the imported kWh.")
    payee: Annotated[str, StringConstraints(min_length=1)] = _key(
        "state", "Participant id that receives the levy (outside the tree, e.g. `state`)."
    )


class P2P(_Model):
    """Peer-to-peer trading inside each area (the p2p design, docs/p2p.md): homes with
    surplus sell it to homes with demand, the rest goes to the retailer."""

    feed_in: Num = _key(0.08, "What the retailer pays for a home's exported energy in the p2p "
                        "design: the sellers' alternative.", unit="currency/kWh", ge=0)  # fmt: skip
    network_charge: Num = _key(0.02, "Flat network charge per traded kWh, paid by the buyer to "
                               "the DSO.", unit="currency/kWh", ge=0)  # fmt: skip
    local_only_percent: Num = _key(20.0, "Share of homes that trade only inside their feeder "
                                   "section (seeded draw).", unit="%", ge=0, le=100)  # fmt: skip
    green_only_percent: Num = _key(20.0, "Share of homes that buy only from sellers with PV "
                                   "(seeded draw).", unit="%", ge=0, le=100)  # fmt: skip


class Settlement(_Model):
    """Settlement (:mod:`transactive.settlement`): the network rate design, levies, VAT and
    the settlement period the balance is checked over. The German default tariff (BDEW's
    average household price) already contains the levies and VAT, so both default to none."""

    network_rate: Literal["fixed", "volumetric", "demand"] = _key(
        "fixed",
        "How each DSO recovers its revenue requirement from its home connections: `fixed` per "
        "connection for the period, `volumetric` per imported kWh, `demand` per kW of each "
        "connection's peak interval import; each recovers it to the cent.",
    )
    levies: tuple[LevyKey, ...] = _key(
        (), "Levies on the homes' imports (`[[settlement.levies]]`); none by default."
    )
    vat_percent: Num = _key(
        0.0,
        "VAT on what each home pays per settlement period (energy, network, levies).",
        unit="%",
        ge=0,
        le=100,
    )
    vat_payee: Annotated[str, StringConstraints(min_length=1)] = _key(
        "state", "Participant id that receives the VAT."
    )
    period: Literal["whole", "month", "day"] = _key(
        "whole",
        "Settlement period (UTC) the balance is checked over and VAT is computed per: the "
        "evaluated period as one, calendar months or days.",
    )

    @model_validator(mode="after")
    def _unique_levies(self) -> Settlement:
        names = [lv.name for lv in self.levies]
        if len(set(names)) != len(names):
            raise _fail("levies", "levy names must be unique, got {names}", names=names)
        return self


class Capacity(_Model):
    """Capacity / non-wires-alternative auction before the run, "months ahead"
    (:mod:`transactive.sim.capacity_stage`): the DSO of `area` procures firm flexibility at
    its substation from the aggregator's batteries for a season of windows, and compares it
    with upgrading the substation (:mod:`transactive.market.capacity`). Off unless `element`
    is set."""

    element: Literal["substation"] | None = _key(
        None, "The constrained element: `substation` (the area's T-D substation); unset: off."
    )
    area: AreaName | None = _key(
        None, "The area whose element is constrained.", default_text="the first area"
    )
    need_kw: Num | None = _key(
        None,
        "Firm kW needed in every window; unset = the peak of `need_design`'s substation import "
        "in the run's window intervals above `rating_kw`.",
        unit="kW",
        ge=0,
    )
    need_design: str | None = _key(
        None,
        "The business-as-usual design whose peak is the DSO's forecast (one of `designs`).",
        default_text="the scenario's `baseline`",
    )
    rating_kw: Num | None = _key(
        None,
        "Rating of the element for the need.",
        unit="kW",
        ge=0,
        default_text="the DSO's substation limit",
    )
    first: date | None = _key(
        None, "First day of the season (local date).", default_text="the run's first day"
    )
    last: date | None = _key(
        None, "Last day of the season (local date).", default_text="the run's last day"
    )
    weekdays: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = _key(
        ("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
        "Weekdays with a window.",
        min_length=1,
    )
    hours: tuple[Num, Num] = _key(
        (17.0, 20.0), "Window hours [start, end) on the scenario's local clock.", unit="h"
    )
    event_duration_h: Num | None = _key(
        None, "Event an offer must hold its kW for; unset = the window.", unit="h", gt=0
    )
    events: Int = _key(0, "Activations per season an offer must allow.", ge=0)
    capex: Num | None = _key(
        None, "Capital cost of the upgrade (required when on).", unit="currency", ge=0
    )
    life_years: Num = _key(40.0, "Economic life of the upgrade.", unit="yr", gt=0)
    discount_rate: Num = _key(0.05, "Discount rate per year.", ge=0, lt=1)
    upgrade_kw: Num | None = _key(
        None, "Capacity the upgrade adds.", unit="kW", gt=0, default_text="`rating_kw`"
    )
    deferral_years: Num = _key(3.0, "Years the auction defers the upgrade.", unit="yr", gt=0)
    method: Literal["annuity", "capex"] = _key(
        "annuity", "Deferral value: the upgrade's avoided annuities or its deferred capex."
    )
    price_per_kw: Num | None = _key(
        None,
        "The aggregator's availability price (required when on).",
        unit="currency/kW per season",
        ge=0,
    )
    reliability: Num = _key(0.95, "Delivery probability of the aggregator's offers.", gt=0, le=1)
    offer_kw: Literal["firm", "nameplate"] = _key(
        "firm",
        "What the aggregator offers per bus: `firm` (what its batteries hold over an event) or "
        "`nameplate` (their power; the performance test then disqualifies energy-short buses).",
    )
    divisible: Annotated[bool, Strict()] = _key(True, "The DSO may take part of an offer.")
    pricing: Literal["pay-as-bid", "uniform"] = _key("pay-as-bid", "Payment rule.")
    risk_threshold: Num = _key(
        0.05, "Highest under-delivery risk at which the DSO defers.", ge=0, le=1
    )
    risk_unit: Literal["provider", "offer"] = _key("provider", "What fails independently.")

    @model_validator(mode="after")
    def _complete(self) -> Capacity:
        if self.element is not None:
            for key in ("capex", "price_per_kw"):
                if getattr(self, key) is None:
                    raise _fail(key, "missing (required when `element` is set)")
        h0, h1 = self.hours
        if not 0 <= h0 < h1 <= 24:
            raise _fail("hours", "need 0 ≤ start < end ≤ 24, got [{h0}, {h1}]", h0=h0, h1=h1)
        if self.first is not None and self.last is not None and self.last < self.first:
            raise _fail("last", "{last} is before first", last=str(self.last))
        return self


class Strategic(_Model):
    """The strategic aggregator (issue 12, market power): where it is pivotal for an ask, it
    marks its offers up towards the ask's price ceiling and withholds part of them
    (:func:`transactive.market.strategy.strategic_offers`)."""

    markup: Num = _key(
        0.8,
        "Share of the gap between its truthful price and the ask's price ceiling it adds "
        "(0: truthful, 1: bid the ceiling).",
        ge=0,
        le=1,
    )
    withhold_percent: Num = _key(
        0.0, "Share of its offered kW it withholds where pivotal.", unit="%", ge=0, le=100
    )


class Flexibility(_Model):
    """Flexibility ask-bid-commit (issue 12; docs/flexibility.md, "In the simulator"): each
    listed design gets a variant `<design>+flex` (and `<design>+flex-strategic` with
    `[flexibility.strategic]`) in which, each local day ahead, the DSO forecasts its grid,
    asks for flexibility where it finds violations, the aggregator offers its batteries'
    flexibility around their forecast schedule (with the rebound), the DSO commits the
    least-cost set, and in real time the committed batteries deliver; delivery is measured
    against a baseline and settled."""

    designs: tuple[str, ...] = _key(
        description="Inner designs that get a flexibility variant (added to `designs` when "
        "missing).",
        bounds="each a registered design, unique",
        min_length=1,
    )
    price_ceiling: Num = _key(
        1.0, "The most the DSO pays per kWh of flexibility (utilisation).", unit="currency/kWh",
        gt=0,
    )  # fmt: skip
    availability_price: Num = _key(
        0.002, "The aggregator's availability price per committed kW and interval.",
        unit="currency/kW", ge=0,
    )  # fmt: skip
    margin_percent: Num = _key(
        5.0, "The DSO asks for enough to bring each violated element this far inside its "
        "limit (forecast error, linearisation).", unit="%", ge=0, lt=50,
    )  # fmt: skip
    reverse_flow: Annotated[bool, Strict()] = _key(
        False, "Ask for flexibility against reverse flow at the substation too."
    )
    baseline: Annotated[str, StringConstraints(min_length=1)] = _key(
        "meter-before-meter-after",
        "Baseline of the settlement.baselines registry delivery is measured against. "
        "`meter-before-meter-after` needs no prior days, so it works from the first day of a "
        "one-week run after one warm-up day (day-matching baselines need 5–10 prior days).",
    )
    tolerance_percent: Num = _key(
        10.0, "Delivery within this share below the commitment is not penalised.", unit="%",
        ge=0, le=100,
    )  # fmt: skip
    penalty_factor: Num = _key(
        1.5, "Penalty per kWh of shortfall, times the utilisation price.", ge=0
    )
    rebound_h: Num = _key(
        8.0, "Hours after an activation over which a battery's rebound (payback) is spread "
        "(the day-ahead forecast runs on this far into the next day for it).",
        unit="h", gt=0, le=24,
    )  # fmt: skip
    strategic: Strategic | None = _key(
        None, "The strategic aggregator (`{ markup = 0.8, withhold_percent = 0 }`); unset: "
        "no strategic variant."
    )  # fmt: skip

    @field_validator("designs")
    @classmethod
    def _inner(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for i, d in enumerate(v):
            if d not in design_names() or "+" in d:
                raise _fail(
                    str(i), "unknown inner design '{design}' (choose from {known})",
                    design=d, known=", ".join(n for n in design_names() if "+" not in n),
                )  # fmt: skip
        if len(set(v)) != len(v):
            raise _fail("", "designs must be unique, got {v}", v=list(v))
        return v

    @field_validator("baseline")
    @classmethod
    def _known_baseline(cls, v: str) -> str:
        from transactive.settlement.baselines import baseline_names

        if v not in baseline_names():
            raise _fail("", "unknown baseline '{name}' (choose from {known})",
                        name=v, known=", ".join(baseline_names()))  # fmt: skip
        return v

    def variants(self) -> tuple[str, ...]:
        """The flexibility variants of the inner designs."""
        suffixes = ("+flex", "+flex-strategic") if self.strategic is not None else ("+flex",)
        return tuple(f"{d}{s}" for d in self.designs for s in suffixes)


# --- the scenario ----------------------------------------------------------------------------


def _baseline_design(v: str | None, info: ValidationInfo) -> str | None:
    """The scenario's baseline: one of its designs (validated before it), by default the
    first."""
    designs = info.data.get("designs")
    if designs is None:  # `designs` itself is wrong; that error is reported
        return v
    if v is None:
        return str(designs[0])
    if v not in designs:
        raise _fail("", "'{design}' is not one of `designs` ({known})",
                    design=v, known=", ".join(designs))  # fmt: skip
    return v


def _add_variants(raw: dict[str, Any], flex: dict[str, Any]) -> None:
    """Append the flexibility variants of ``[flexibility].designs`` that ``designs`` lacks."""
    inner = flex.get("designs")
    if not isinstance(inner, list) or not all(isinstance(d, str) for d in inner):
        return  # the schema reports it
    suffixes = ["+flex"] + (["+flex-strategic"] if isinstance(flex.get("strategic"), dict) else [])
    extra = [f"{d}{s}" for d in inner for s in suffixes]
    raw["designs"] = [*raw["designs"], *[d for d in extra if d not in raw["designs"]]]


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


class Scenario(_Model):
    """A validated scenario. Prices per kWh of the currency, powers kW, times UTC."""

    name: Annotated[str, StringConstraints(min_length=1)] = _key(
        description="Scenario name.", default_text="the file's stem"
    )
    region: Literal["de", "us"] = _key(
        "de",
        "Data bundle whose defaults fill every key the file leaves out "
        "(`transactive.sim.regions`): `de` Germany (DWD weather, SMARD prices, Europe/Berlin, "
        "EUR, EN 50160, BDEW tariffs, SimBench DER shares), `us` (Greensboro TMY3, merit "
        "order, America/New_York, USD, ANSI C84.1).",
    )
    timezone: Annotated[str, StringConstraints(min_length=1)] = _key(
        "Europe/Berlin",
        "IANA time zone of the local clock (tariff hours, household profiles, EV plug-in, "
        "hot-water draws; daylight saving included). Replaces `tariff.tz_offset_h`.",
        default_text="the region's: de `Europe/Berlin`, us `America/New_York`",
    )
    weather_site: Annotated[str, StringConstraints(min_length=1)] = _key(
        "de-try-04",
        "Weather site (`transactive.der.sites.SITES`): `de-try-01` … `de-try-15` (DWD TRY2010 "
        "climate regions), `greensboro`, `sand_point`, `miami` (pvlib TMY).",
        default_text="the region's: de `de-try-04` (Potsdam), us `greensboro`",
    )
    areas: tuple[Area, ...] = _key(
        description="DSO areas (`[[areas]]`); or `feeder = X` alone for one area named `area`.",
        bounds="≥ 1, unique names",
        min_length=1,
    )
    start: AwareDatetime = _key(description="Start of the period, with a time zone (stored UTC).")
    end: AwareDatetime = _key(description="End of the period (exclusive).", bounds="> start")
    market_interval_min: Int = _key(
        15, "Market interval length; divides the period.", unit="min", gt=0
    )
    powerflow_interval_min: Int | None = _key(
        None,
        "AC power-flow step; a multiple of the market interval that divides the period. "
        "Unset = the market interval.",
        unit="min",
        gt=0,
    )
    designs: tuple[str, ...] = _key(
        design_names(),
        "Market designs to compare (old key: `paradigms`), each one registered in "
        "`transactive.designs.registry`: " + ", ".join(design_names()) + "; default: all.",
        bounds="≥ 1, unique",
        min_length=1,
    )
    baseline: Annotated[str | None, AfterValidator(_baseline_design)] = _key(
        None,
        "The design every other is compared with (differences and their intervals); one of "
        "`designs`.",
        default_text="the first of `designs`",
        validate_default=True,
    )
    seed: Int = _key(0, "Random seed of the device population and the forecast errors.", ge=0)
    seeds: Int = _key(
        1,
        "How many random draws of devices and forecast errors to run (seeds `seed`, "
        "`seed + 1`, …); with more than one, KPIs are reported as means with 95 % "
        "confidence intervals.",
        ge=1,
        le=1000,
    )
    warmup_days: Num = _key(
        1,
        "Days simulated before `start` so devices reach a steady state (batteries, thermal "
        "mass, EV sessions); excluded from every KPI and from the money. A whole number of "
        "market intervals.",
        unit="d",
        ge=0,
        le=14,
    )
    homes_per_load: Int = _key(
        1,
        f"Homes attached to each load point of the feeders (≤ {MAX_TOTAL_HOMES:_} homes in all).",
        ge=1,
        le=1000,
    )
    der: Der = _key(Der(), "Distributed energy resources.")
    homes: Homes = _key(Homes(), "The homes.")
    aggregator: Aggregator = _key(Aggregator(), "The aggregator.")
    dso: Dso = _key(Dso(), "The DSO.")
    grid: GridLimits = _key(GridLimits(), "Operating limits.")
    market: Market = _key(Market(), "Market rules.")
    forecast: Forecast = _key(Forecast(), "Forecasts.")
    wholesale: Wholesale = _key(Wholesale(), "Wholesale market.")
    tariff: Tariff = _key(Tariff(), "Retail tariffs.")
    records: Records = _key(Records(), "Record tables kept.")
    settlement: Settlement = _key(Settlement(), "Settlement.")
    capacity: Capacity = _key(Capacity(), "Capacity / non-wires-alternative auction.")
    p2p: P2P = _key(P2P(), "Peer-to-peer trading.")
    flexibility: Flexibility | None = _key(
        None, "Flexibility ask-bid-commit (`[flexibility]`); unset: none."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, raw: Any, info: ValidationInfo) -> Any:
        """``feeder = X`` ≡ one area; ``paradigms`` ≡ ``designs``; name = the file's stem."""
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        from transactive.sim.regions import REGIONS, merge_region

        if raw.get("region", "de") in REGIONS:  # else the schema names the bad region
            raw = merge_region(raw)
        if "feeder" in raw:
            if "areas" in raw:
                raise _fail("feeder", "give either `feeder` (one area) or [[areas]], not both")
            raw["areas"] = [{"name": "area", "feeder": raw.pop("feeder")}]
        if "paradigms" in raw:
            if "designs" in raw:
                raise _fail("paradigms", "old name of `designs`: give only `designs`")
            raw["designs"] = raw.pop("paradigms")
            if isinstance(info.context, dict):  # messages name the key as written
                info.context["designs_key"] = "paradigms"
        flex = raw.get("flexibility")
        if isinstance(flex, dict) and isinstance(raw.get("designs"), list):
            _add_variants(raw, flex)
        if "name" not in raw:
            raw["name"] = Path(str((info.context or {}).get("source", "scenario"))).stem
        return raw

    @model_validator(mode="after")
    def _flex_variants(self) -> Scenario:
        wanted = set(self.flexibility.variants()) if self.flexibility is not None else set()
        for i, d in enumerate(self.designs):
            if "+flex" in d and d not in wanted:
                raise _fail(
                    f"designs.{i}", "'{design}' needs its inner design in [flexibility].designs "
                    "(and `-strategic` a [flexibility.strategic] table)", design=d,
                )  # fmt: skip
        return self

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return v.astimezone(UTC)

    @field_validator("timezone")
    @classmethod
    def _iana(cls, v: str) -> str:
        if v not in _time_zones():
            raise _fail("", "unknown IANA time zone '{tz}' (e.g. 'Europe/Berlin')", tz=v)
        return v

    @field_validator("weather_site")
    @classmethod
    def _site(cls, v: str) -> str:
        from transactive.der.sites import SITES

        if v not in SITES:
            raise _fail(
                "", "unknown weather site '{site}' (choose from {known})",
                site=v, known=", ".join(SITES),
            )  # fmt: skip
        return v

    @field_validator("areas")
    @classmethod
    def _unique_areas(cls, v: tuple[Area, ...]) -> tuple[Area, ...]:
        seen: set[str] = set()
        for i, a in enumerate(v):
            if a.name in seen:
                raise _fail(f"{i}.name", "area name '{name}' is used twice", name=a.name)
            seen.add(a.name)
        return v

    @field_validator("designs")
    @classmethod
    def _known_designs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        seen: set[str] = set()
        for i, d in enumerate(v):
            if not is_design(d):
                raise _fail(
                    str(i), "unknown design '{design}' (choose from {known})",
                    design=d, known=", ".join(design_names()),
                )  # fmt: skip
            if d in seen:
                raise _fail(str(i), "duplicate design '{design}'", design=d)
            seen.add(d)
        return v

    @model_validator(mode="after")
    def _period(self) -> Scenario:
        period = self.end - self.start
        if period <= timedelta(0):
            raise _fail("end", "{end} is not after start {start}",
                        end=self.end.isoformat(), start=self.start.isoformat())  # fmt: skip
        m = self.market_interval_min
        if period % timedelta(minutes=m):
            raise _fail("market_interval_min", "{m} min does not divide the period ({h} h)",
                        m=m, h=period / timedelta(hours=1))  # fmt: skip
        warm = timedelta(days=self.warmup_days)
        if warm % timedelta(minutes=m):
            raise _fail("warmup_days", "{d} d is not a whole number of {m}-minute intervals",
                        d=self.warmup_days, m=m)  # fmt: skip
        pf = self.powerflow_interval_min
        if pf is not None and pf % m:
            raise _fail(
                "powerflow_interval_min", "{pf} min is not a multiple of market_interval_min = {m}",
                pf=pf, m=m,
            )  # fmt: skip
        if pf is not None and period % timedelta(minutes=pf):
            raise _fail("powerflow_interval_min", "{pf} min does not divide the period ({h} h)",
                        pf=pf, h=period / timedelta(hours=1))  # fmt: skip
        return self

    @model_validator(mode="after")
    def _capacity_refs(self) -> Scenario:
        c = self.capacity
        if c.element is None:
            return self
        if c.area is not None and c.area not in [a.name for a in self.areas]:
            raise _fail("capacity.area", "'{area}' is not an area of the scenario", area=c.area)
        if c.need_kw is None and c.need_design is not None and c.need_design not in self.designs:
            raise _fail("capacity.need_design", "'{d}' is not one of `designs` (or set need_kw)",
                        d=c.need_design)  # fmt: skip
        return self

    # --- derived, read-only ---
    @property
    def intervals(self) -> Intervals:
        """The market intervals simulated (UTC): the warm-up days, then the period."""
        from transactive.core.time import Intervals

        return Intervals.between(
            self.run_start, self.end, timedelta(minutes=self.market_interval_min)
        )

    @property
    def run_start(self) -> datetime:
        """Start of the simulation: ``warmup_days`` before ``start`` (UTC)."""
        return self.start - timedelta(days=self.warmup_days)

    @property
    def warmup_intervals(self) -> int:
        """Market intervals of the warm-up."""
        return round(self.warmup_days * 1440 / self.market_interval_min)

    @property
    def utc_offsets_h(self) -> np.ndarray:
        """UTC offset (h) of the scenario's local clock at each market interval start."""
        from transactive.sim.regions import utc_offsets_h

        return utc_offsets_h(self.intervals.starts, self.timezone)

    @property
    def powerflow_every(self) -> int:
        """Market intervals per AC power-flow step."""
        pf = self.powerflow_interval_min or self.market_interval_min
        return pf // self.market_interval_min

    @property
    def limits(self) -> Limits:
        """The grid operating limits (:class:`transactive.grid.limits.Limits`)."""
        from transactive.grid.limits import Limits

        g = self.grid
        return Limits(
            v_min_pu=g.v_min_pu,
            v_max_pu=g.v_max_pu,
            max_line_loading_percent=g.max_line_loading_percent,
            max_trafo_loading_percent=g.max_trafo_loading_percent,
            max_reverse_flow_kw=g.max_reverse_flow_kw,
        )


# --- reading ---------------------------------------------------------------------------------


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (TOML); errors name the file and the key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{p}: no such scenario file") from None
    except IsADirectoryError:
        raise ScenarioError(f"{p}: is a directory, not a scenario file (TOML)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{p}: cannot read the scenario file ({exc})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{p}: not valid TOML ({exc})") from None
    return parse_scenario(raw, base_dir=p.parent, source=str(p))


def parse_scenario(
    raw: dict[str, Any], base_dir: Path = Path("."), source: str = "scenario"
) -> Scenario:
    """Validate a scenario given as a dict (the parsed TOML); relative files are resolved
    against ``base_dir``; ``source`` names the file in messages and gives the default name."""
    if not isinstance(raw, dict):
        raise ScenarioError(f"{source}: a scenario must be a table, not {type(raw).__name__}")
    context: dict[str, Any] = {"base_dir": base_dir, "source": source}
    try:
        return Scenario.model_validate(raw, context=context)
    except ValidationError as exc:
        lines = [_describe(e, context.get("designs_key", "designs")) for e in exc.errors()]
        raise ScenarioError("\n".join(f"{source}: {line}" for line in lines)) from None


def _describe(e: Any, designs_key: str = "designs") -> str:
    """``'<dotted.key>': <reason>`` of one pydantic error (``designs_key``: the name the
    file used for ``designs``)."""
    loc = [str(x) for x in e["loc"]]
    loc[:1] = [designs_key] if loc[:1] == ["designs"] else loc[:1]
    ctx = e.get("ctx") or {}
    kind = e["type"]
    if kind == "scenario":
        loc = [*loc, *[p for p in str(ctx.get("key", "")).split(".") if p]]
        reason = e["msg"]
    elif kind == "extra_forbidden":
        known = _keys_at(loc[:-1])
        reason = "unknown key" + (f" (expected one of {', '.join(known)})" if known else "")
    elif kind == "missing":
        reason = "missing (required)"
    else:
        msg = e["msg"]
        reason = msg[0].lower() + msg[1:] if msg else kind
        reason = f"{reason}, got {_shown(e['input'])}" if "input" in e else reason
    return f"'{'.'.join(loc) or '<top>'}': {reason}"


def _shown(value: object) -> str:
    """A short rendering of a bad input value for a message."""
    text = value.isoformat() if isinstance(value, datetime) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _keys_at(loc: list[str]) -> list[str]:
    """The keys the schema allows in the table at ``loc`` (empty if it is not a model)."""
    model: Any = Scenario
    for part in loc:
        if part.isdigit():  # an item of a tuple of tables, e.g. areas.1
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
        inner = [a for a in get_args(model) if isinstance(a, type) and issubclass(a, BaseModel)]
        model = inner[0] if inner else model
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    extra = ["feeder", "paradigms"] if model is Scenario else []
    return sorted([*model.model_fields, *extra])


# --- device configs (declared once in transactive.der) -----------------------------------


def _config_class(kind: str) -> type:
    from transactive.der.devices import DEVICE_TYPES

    return DEVICE_TYPES[kind].Config


def parse_config(kind: str, table: Mapping[str, object], where: str) -> Any:
    """A device config from a ``[der.config.<kind>]`` table
    (:func:`transactive.der.parse_config`)."""
    from transactive.der.params import parse_config as der_parse_config

    return der_parse_config(kind, table, where)


def config_table(config: Any) -> dict[str, Any]:
    """The ``[der.config.<kind>]`` table of a device config: the parameters that differ from
    the defaults, as :func:`parse_config` reads them (inverse of it)."""
    return {
        p.name: _dist_table(config[p.name]) for p in config.PARAMS if config[p.name] != p.default
    }


def _dist_table(d: Any) -> Any:
    if isinstance(d, int | float):  # a plain (non-distribution) parameter
        return float(d)
    if d.kind == "const":
        return float(d.a)
    if d.kind == "choice":
        return {"choice": [list(d.values), list(d.p)] if d.p else [list(d.values)]}
    args = [float(d.a), float(d.b)]
    if d.kind in ("normal", "lognormal"):
        lo_default = -math.inf if d.kind == "normal" else 0.0
        tail = [float(d.low), float(d.high)]
        if tail[1] == math.inf:
            tail.pop()
            if tail[0] == lo_default:
                tail.pop()
        args += tail
    return {d.kind: args}


# --- tariffs ---------------------------------------------------------------------------------


def tou_price(tariff: Tariff, starts: pd.DatetimeIndex, timezone: str) -> np.ndarray:
    """Time-of-use price (currency/kWh) at each UTC interval start; the peak hours are read
    on the ``timezone`` clock (IANA name, daylight saving included)."""
    import numpy as np

    local = starts.tz_convert(timezone)
    local_h = np.asarray(local.hour + local.minute / 60.0, dtype=np.float64)
    lo, hi = tariff.tou_peak_hours
    # [lo, hi) local hours; lo > hi wraps past midnight (e.g. [22, 6]).
    peak = (local_h >= lo) & (local_h < hi) if lo <= hi else (local_h >= lo) | (local_h < hi)
    out: np.ndarray = np.where(peak, tariff.tou_peak, tariff.tou_offpeak)
    return out

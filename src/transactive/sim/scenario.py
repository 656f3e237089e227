"""Scenario files (TOML): read once at the edge, validated, returned as plain typed values.

Example (``examples/summer-day.toml``)::

    name = "summer-day"
    feeder = "simbench:1-LV-semiurb4--0-sw"
    start = "2016-07-12T00:00:00Z"
    end = "2016-07-13T00:00:00Z"
    market_interval_min = 15        # divides the period
    powerflow_interval_min = 15     # a multiple of the market interval
    paradigms = ["baseline", "tou", "layered", "grand-central"]
    seed = 7
    homes_per_load = 1              # homes attached to each load point of the feeder

    [der]
    stage = 3                       # penetration preset 1 | 2 | 3 …
    [der.penetration]               # … or / and explicit % of homes (0–100)
    ev = 50
    [der.config.pv]                 # device parameters: a number (constant) or a
    capacity_kw = { normal = [6.0, 2.0, 2.0, 15.0] }   # distribution {uniform|normal|…}

    [homes]
    service_limit_kw = 25           # per home, import and export

    [dso]
    substation_limit_kw = 400       # default: the substation transformers' rating (kVA)
    clearing = "uniform"            # how `layered` clears: "uniform" or "network" (DLMPs);
                                    # the paradigm `layered-network` always uses "network"

    [market]
    floor = -0.1                    # $/kWh
    cap = 2.0                       # $/kWh
    network_charge = 0.04           # $/kWh on imports, the DSO's revenue

    [wholesale]
    source = "merit-order"          # or "prices" with prices = "prices.csv" ($/MWh)
    system_scale = 20               # rest-of-system load = scale × the area's base load

    [tariff]
    flat = 0.16                     # $/kWh (baseline)
    tou_peak = 0.34                 # $/kWh within tou_peak_hours (local time)
    tou_offpeak = 0.11
    tou_peak_hours = [16, 21]
    tz_offset_h = -5                # local time = UTC + offset

Unknown keys, impossible values and missing files are reported with the key's name.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from transactive.core.time import Intervals, as_utc
from transactive.der import base as der_base
from transactive.der.fleet import CONFIGS
from transactive.errors import InvalidInputError

PARADIGMS = ("baseline", "tou", "layered", "layered-network", "grand-central")
DEVICES = ("pv", "battery", "ev", "hvac", "water_heater")

#: Share of homes (%) with each device per DER stage (GWAC TE roadmap §4.2: stage 1
#: "persistently demonstrated", 2 "broadly applied", 3 "at scale").
STAGES: dict[int, dict[str, float]] = {
    1: {"pv": 10, "battery": 2, "ev": 5, "hvac": 60, "water_heater": 40},
    2: {"pv": 30, "battery": 10, "ev": 20, "hvac": 70, "water_heater": 45},
    3: {"pv": 60, "battery": 30, "ev": 50, "hvac": 80, "water_heater": 50},
}


class ScenarioError(InvalidInputError):
    """A scenario file that cannot be run; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Tariff:
    """Retail tariffs, $/kWh. Peak hours are local time ``[start, end)``."""

    flat: float = 0.16
    tou_peak: float = 0.34
    tou_offpeak: float = 0.11
    tou_peak_hours: tuple[int, int] = (16, 21)
    tz_offset_h: float = -5.0


@dataclass(frozen=True, slots=True)
class Wholesale:
    """Wholesale source: ``merit-order`` (modelled) or ``prices`` (CSV file, $/MWh)."""

    source: str = "merit-order"
    prices: Path | None = None
    system_scale: float = 20.0


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated scenario. Prices $/kWh, powers kW, times UTC."""

    name: str
    feeder: str
    intervals: Intervals  # market intervals
    powerflow_every: int  # market intervals per power-flow step
    paradigms: tuple[str, ...]
    seed: int
    homes_per_load: int
    penetration: dict[str, float]  # fraction of homes 0…1 per device type
    device_config: dict[str, Any] = field(default_factory=dict)  # kind → der config object
    service_limit_kw: float = 25.0
    substation_limit_kw: float | None = None  # None: the substation transformers' rating
    dso_clearing: str = "uniform"  # "uniform" | "network": the DSO's clearing in `layered`
    floor: float = -0.1
    cap: float = 2.0
    network_charge: float = 0.04
    wholesale: Wholesale = Wholesale()
    tariff: Tariff = Tariff()


_TOP = {
    "name", "feeder", "start", "end", "market_interval_min", "powerflow_interval_min",
    "paradigms", "seed", "homes_per_load", "der", "homes", "dso", "market", "wholesale", "tariff",
}  # fmt: skip


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (format in the module docstring)."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"{p}: no such scenario file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{p}: not valid TOML ({exc})") from None
    return parse_scenario(raw, base_dir=p.parent, source=str(p))


def parse_scenario(
    raw: dict[str, Any], base_dir: Path = Path("."), source: str = "scenario"
) -> Scenario:
    """Validate a scenario given as a dict (the parsed TOML)."""

    def err(key: str, message: str) -> ScenarioError:
        return ScenarioError(f"{source}: '{key}': {message}")

    _no_unknown(raw, _TOP, "", err)
    for key in ("feeder", "start", "end"):
        if key not in raw:
            raise err(key, "missing (required)")
    name = _typed(raw.get("name", Path(source).stem), str, "name", err)
    feeder = _typed(raw["feeder"], str, "feeder", err)
    try:
        start, end = as_utc(raw["start"]), as_utc(raw["end"])
    except (InvalidInputError, ValueError) as exc:
        raise err("start/end", str(exc)) from None
    m_min = _positive_int(raw.get("market_interval_min", 15), "market_interval_min", err)
    pf_min = _positive_int(raw.get("powerflow_interval_min", m_min), "powerflow_interval_min", err)
    if pf_min % m_min:
        raise err(
            "powerflow_interval_min", f"{pf_min} is not a multiple of market_interval_min={m_min}"
        )
    try:
        intervals = Intervals.between(start, end, timedelta(minutes=m_min))
    except InvalidInputError as exc:
        raise err("market_interval_min", str(exc)) from None
    if intervals.n % (pf_min // m_min):
        raise err("powerflow_interval_min", f"{pf_min} min does not divide the period")

    paradigms = raw.get("paradigms", list(PARADIGMS))
    if not isinstance(paradigms, list) or not paradigms:
        raise err("paradigms", f"must be a non-empty list of {', '.join(PARADIGMS)}")
    for x in paradigms:
        if x not in PARADIGMS:
            raise err("paradigms", f"unknown paradigm {x!r} (choose from {', '.join(PARADIGMS)})")
    seed = _typed(raw.get("seed", 0), int, "seed", err)
    if seed < 0:
        raise err("seed", f"{seed} must be ≥ 0")
    homes_per_load = _positive_int(raw.get("homes_per_load", 1), "homes_per_load", err)

    der = _table(raw, "der", err)
    _no_unknown(der, {"stage", "penetration", "config"}, "der.", err)
    pen: dict[str, float] = {}
    if "stage" in der:
        stage = der["stage"]
        if stage not in STAGES:
            raise err("der.stage", f"{stage!r} is not one of {sorted(STAGES)}")
        pen.update(STAGES[stage])
    explicit = _table(der, "penetration", err, "der.")
    _no_unknown(explicit, set(DEVICES), "der.penetration.", err)
    for k, v in explicit.items():
        pen[k] = _number(v, f"der.penetration.{k}", err)
    for k, v in pen.items():
        if not 0 <= v <= 100:
            raise err(f"der.penetration.{k}", f"{v} % is not within 0–100 %")
    config = _table(der, "config", err, "der.")
    _no_unknown(config, set(DEVICES) | {"household"}, "der.config.", err)

    homes = _table(raw, "homes", err)
    _no_unknown(homes, {"service_limit_kw"}, "homes.", err)
    dso = _table(raw, "dso", err)
    _no_unknown(dso, {"substation_limit_kw", "clearing"}, "dso.", err)
    clearing = dso.get("clearing", "uniform")
    if clearing not in ("uniform", "network"):
        raise err("dso.clearing", f"{clearing!r} is not 'uniform' or 'network'")
    sub_limit = None
    if "substation_limit_kw" in dso:
        sub_limit = _number(dso["substation_limit_kw"], "dso.substation_limit_kw", err)
        if sub_limit < 0:
            raise err("dso.substation_limit_kw", f"{sub_limit} must be ≥ 0")
    market = _table(raw, "market", err)
    _no_unknown(market, {"floor", "cap", "network_charge"}, "market.", err)
    floor = _number(market.get("floor", -0.1), "market.floor", err)
    cap = _number(market.get("cap", 2.0), "market.cap", err)
    if not floor < cap:
        raise err("market.cap", f"cap {cap} must exceed floor {floor}")
    charge = _number(market.get("network_charge", 0.04), "market.network_charge", err)
    service = _number(homes.get("service_limit_kw", 25.0), "homes.service_limit_kw", err)
    for key, v in (("market.network_charge", charge), ("homes.service_limit_kw", service)):
        if v < 0:
            raise err(key, f"{v} must be ≥ 0")

    ws = _table(raw, "wholesale", err)
    _no_unknown(ws, {"source", "prices", "system_scale"}, "wholesale.", err)
    wsource = ws.get("source", "merit-order")
    if wsource not in ("merit-order", "prices"):
        raise err("wholesale.source", f"{wsource!r} is not 'merit-order' or 'prices'")
    prices = None
    if wsource == "prices":
        if "prices" not in ws:
            raise err("wholesale.prices", "missing: a CSV file of start,price ($/MWh)")
        prices = (base_dir / _typed(ws["prices"], str, "wholesale.prices", err)).resolve()
        if not prices.is_file():
            raise err("wholesale.prices", f"no such file: {prices}")
    scale = _number(ws.get("system_scale", 20.0), "wholesale.system_scale", err)
    if scale <= 0:
        raise err("wholesale.system_scale", f"{scale} must be > 0")

    tf = _table(raw, "tariff", err)
    _no_unknown(
        tf, {"flat", "tou_peak", "tou_offpeak", "tou_peak_hours", "tz_offset_h"}, "tariff.", err
    )
    hours = tf.get("tou_peak_hours", [16, 21])
    if not (
        isinstance(hours, list)
        and len(hours) == 2
        and all(isinstance(h, int) and 0 <= h <= 24 for h in hours)
    ):
        raise err("tariff.tou_peak_hours", f"{hours!r} is not [start_hour, end_hour] within 0–24")
    tariff = Tariff(
        flat=_number(tf.get("flat", 0.16), "tariff.flat", err),
        tou_peak=_number(tf.get("tou_peak", 0.34), "tariff.tou_peak", err),
        tou_offpeak=_number(tf.get("tou_offpeak", 0.11), "tariff.tou_offpeak", err),
        tou_peak_hours=(hours[0], hours[1]),
        tz_offset_h=_number(tf.get("tz_offset_h", -5.0), "tariff.tz_offset_h", err),
    )
    return Scenario(
        name=name,
        feeder=feeder,
        intervals=intervals,
        powerflow_every=pf_min // m_min,
        paradigms=tuple(paradigms),
        seed=seed,
        homes_per_load=homes_per_load,
        penetration={k: v / 100.0 for k, v in pen.items()},
        device_config={k: _device_config(k, v, err) for k, v in config.items()},
        service_limit_kw=service,
        substation_limit_kw=sub_limit,
        dso_clearing=clearing,
        floor=floor,
        cap=cap,
        network_charge=charge,
        wholesale=Wholesale(wsource, prices, scale),
        tariff=tariff,
    )


def tou_price(tariff: Tariff, starts: pd.DatetimeIndex) -> Any:
    """Time-of-use price ($/kWh) at each UTC interval start."""
    import numpy as np

    local_h = ((starts.hour + starts.minute / 60.0 + tariff.tz_offset_h) % 24).to_numpy()
    lo, hi = tariff.tou_peak_hours
    # [lo, hi) local hours; lo > hi wraps past midnight (e.g. [22, 6]).
    peak = (local_h >= lo) & (local_h < hi) if lo <= hi else (local_h >= lo) | (local_h < hi)
    return np.where(peak, tariff.tou_peak, tariff.tou_offpeak)


def _device_config(kind: str, values: Any, err: Any) -> Any:
    """A device config (``transactive.der``) from ``[der.config.<kind>]``: numbers are
    constants, one-key tables are distributions (``{ uniform = [lo, hi] }``, ``normal``,
    ``lognormal``, ``const``)."""
    if not isinstance(values, dict):
        raise err(f"der.config.{kind}", "must be a table of device parameters")
    cls = CONFIGS[kind]
    known = {f.name for f in fields(cls)}
    _no_unknown(values, known, f"der.config.{kind}.", err)
    return cls(**{key: _dist(v, f"der.config.{kind}.{key}", err) for key, v in values.items()})


def _dist(v: Any, key: str, err: Any) -> Any:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return der_base.const(float(v))
    dists: dict[str, Callable[..., Any]] = {
        "uniform": der_base.uniform,
        "normal": der_base.normal,
        "lognormal": der_base.lognormal,
        "const": der_base.const,
    }
    if isinstance(v, dict) and len(v) == 1:
        ((name, args),) = v.items()
        if name in dists and isinstance(args, list | int | float):
            try:
                return dists[name](*(args if isinstance(args, list) else [args]))
            except (TypeError, ValueError) as exc:
                raise err(key, str(exc)) from None
    raise err(
        key,
        f"expected a number or a table like {{ uniform = [lo, hi] }} "
        f"({', '.join(dists)}), got {v!r}",
    )


def _no_unknown(table: dict[str, Any], known: set[str], prefix: str, err: Any) -> None:
    for key in table:
        if key not in known:
            raise err(prefix + key, f"unknown key (expected one of {', '.join(sorted(known))})")


def _table(raw: dict[str, Any], key: str, err: Any, prefix: str = "") -> dict[str, Any]:
    v = raw.get(key, {})
    if not isinstance(v, dict):
        raise err(prefix + key, "must be a table")
    return v


def _typed(v: Any, t: type, key: str, err: Any) -> Any:
    if not isinstance(v, t) or isinstance(v, bool):
        raise err(key, f"{v!r} must be a {t.__name__}")
    return v


def _number(v: Any, key: str, err: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise err(key, f"{v!r} must be a number")
    return float(v)


def _positive_int(v: Any, key: str, err: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise err(key, f"{v!r} must be a positive integer")
    return v

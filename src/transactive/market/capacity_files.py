"""Input files of the capacity auction (:mod:`transactive.market.capacity`): the need (TOML)
and the sealed offers (CSV). Format reference: ``docs/capacity.md``.

Need file (TOML; every table rejects unknown keys)::

    element = "trafo MV1.101-LV1.101"   # the constrained element
    currency = "EUR"
    peak_kw = 452.0                     # forecast peak in the windows …
    rating_kw = 400.0                   # … over the rating = the need (or: need_kw = 52)
    eligible_nodes = []                 # locations behind the constraint (empty: any)
    pricing = "pay-as-bid"              # or "uniform"
    risk_threshold = 0.05
    risk_unit = "provider"              # or "offer"
    [season]
    first = 2027-06-01                  # local dates, inclusive
    last = 2027-08-31
    weekdays = ["mon", "tue", "wed", "thu", "fri"]
    hours = [17, 20]                    # local [start, end)
    timezone = "Europe/Berlin"
    events = 20                         # activations per season an offer must allow
    [upgrade]
    capex = 250000
    life_years = 40
    discount_rate = 0.05
    capacity_kw = 400
    deferral_years = 3

Offers file (CSV, header required)::

    offer_id,provider,resource,node,firm_kw,price,energy_kwh,max_activations,reliability,divisible
    b1,vpp-north,bess-12,LV1.101 Bus 4,20,18.5,90,40,0.97,no

Errors name the file and the key (TOML) or the line and column (CSV); nothing is cleared.
"""

from __future__ import annotations

import math
import tomllib
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from transactive.errors import InvalidInputError
from transactive.market.bidfile import BidFileError, read_table
from transactive.market.capacity import (
    DEFAULT_RISK_THRESHOLD,
    WEEKDAYS,
    Need,
    Offers,
    Season,
    Upgrade,
    make_offers,
    need_from_peak,
)

Num = Annotated[float, Strict()]
Text = Annotated[str, StringConstraints(min_length=1)]


def _key(default: Any = ..., description: str = "", unit: str = "", **kw: Any) -> Any:
    extra: Any = {"unit": unit} if unit else None
    return Field(default, description=description, json_schema_extra=extra, **kw)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SeasonKeys(_Model):
    """The season's windows: dates, weekdays and local hours (the region's clock)."""

    first: date = _key(description="First day of the season (local date, inclusive).")
    last: date = _key(description="Last day of the season (local date, inclusive).")
    weekdays: tuple[Annotated[str, StringConstraints(to_lower=True)], ...] = _key(
        ("mon", "tue", "wed", "thu", "fri"),
        "Weekdays with a window: mon, tue, wed, thu, fri, sat, sun.",
        min_length=1,
    )
    hours: tuple[Num, Num] = _key(
        description="Window hours [start, end) on the local clock, 0 ≤ start < end ≤ 24.",
        unit="h",
    )
    timezone: Text | None = _key(
        None, "IANA time zone of the windows (in a scenario: unset = the scenario's)."
    )
    event_duration_h: Num | None = _key(
        None,
        "Longest event an offer must hold its kW for (performance test); unset = the window.",
        unit="h",
        gt=0,
    )
    events: Annotated[int, Strict()] = _key(
        0, "Activations per season an offer must allow (0: no requirement).", ge=0
    )

    @field_validator("weekdays")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [d for d in v if d not in WEEKDAYS]
        if bad:
            raise ValueError(f"unknown weekday {bad[0]!r} (expected {', '.join(WEEKDAYS)})")
        return v

    @model_validator(mode="after")
    def _order(self) -> SeasonKeys:
        h0, h1 = self.hours
        if not 0 <= h0 < h1 <= 24:
            raise ValueError(f"hours must satisfy 0 ≤ start < end ≤ 24, got [{h0}, {h1}]")
        if self.last < self.first:
            raise ValueError(f"last {self.last} is before first {self.first}")
        d = self.event_duration_h
        if d is not None and d > h1 - h0:
            raise ValueError(f"event_duration_h {d} h is longer than the window ({h1 - h0} h)")
        return self

    def season(self, timezone: str | None = None) -> Season:
        """The library's :class:`Season` (``timezone``: used when the keys give none)."""
        tz = self.timezone or timezone
        if tz is None:
            raise InvalidInputError("'season.timezone': missing (an IANA name, e.g. Europe/Berlin)")
        return Season(
            self.first,
            self.last,
            tuple(sorted({WEEKDAYS.index(d) for d in self.weekdays})),
            (float(self.hours[0]), float(self.hours[1])),
            tz,
        )


class UpgradeKeys(_Model):
    """The wires alternative and how long the NWA defers it."""

    capex: Num = _key(description="Capital cost of the upgrade.", unit="currency", ge=0)
    life_years: Num = _key(description="Economic life of the upgrade.", unit="yr", gt=0)
    discount_rate: Num = _key(description="Discount rate per year, e.g. 0.05.", ge=0, lt=1)
    capacity_kw: Num | None = _key(
        None,
        "Capacity the upgrade adds (for its cost per kW-year); in a scenario unset = the "
        "element's rating.",
        unit="kW",
        gt=0,
    )
    deferral_years: Num = _key(3.0, "Years the NWA defers the upgrade.", unit="yr", gt=0)
    method: Literal["annuity", "capex"] = _key(
        "annuity",
        "Value of the deferral: `annuity` (the upgrade's annuities for the deferral years) or "
        "`capex` (the deferred capital cost).",
    )

    def upgrade(self, capacity_kw: float | None = None) -> Upgrade:
        kw = self.capacity_kw if self.capacity_kw is not None else capacity_kw
        if kw is None:
            raise InvalidInputError("upgrade.capacity_kw: missing (the kW the upgrade adds)")
        return Upgrade(self.capex, self.life_years, self.discount_rate, kw)


class NeedFile(_Model):
    """A need file (module docstring)."""

    element: Text = _key(description="The constrained element (node, line or transformer).")
    currency: Text = _key("EUR", "Currency of the prices and the capex.")
    need_kw: Num | None = _key(None, "Firm kW needed in every window.", unit="kW", ge=0)
    peak_kw: Num | None = _key(None, "Forecast peak flow in the windows.", unit="kW")
    rating_kw: Num | None = _key(None, "Rating of the element.", unit="kW", ge=0)
    eligible_nodes: tuple[Text, ...] = _key((), "Locations behind the constraint (empty: any).")
    pricing: Literal["pay-as-bid", "uniform"] = _key("pay-as-bid", "Payment rule.")
    risk_threshold: Num = _key(DEFAULT_RISK_THRESHOLD, "Highest risk to defer.", ge=0, le=1)
    risk_unit: Literal["provider", "offer"] = _key("provider", "What fails independently.")
    season: SeasonKeys
    upgrade: UpgradeKeys

    @model_validator(mode="after")
    def _one_need(self) -> NeedFile:
        given = self.need_kw is not None
        peak = self.peak_kw is not None and self.rating_kw is not None
        if given == peak or (not peak and (self.peak_kw, self.rating_kw) != (None, None)):
            raise ValueError("give either need_kw or both peak_kw and rating_kw")
        return self

    def need(self) -> Need:
        kw = self.need_kw
        if kw is None:
            assert self.peak_kw is not None and self.rating_kw is not None
            kw = need_from_peak(self.peak_kw, self.rating_kw)
        s = self.season
        return Need(self.element, s.season(), kw, s.event_duration_h, s.events, self.eligible_nodes)


def validation_lines(exc: ValidationError) -> list[str]:
    """``'<dotted.key>': <reason>`` per pydantic error."""
    out = []
    for e in exc.errors():
        key = ".".join(str(x) for x in e["loc"]) or "<top>"
        msg = e["msg"].removeprefix("Value error, ")
        msg = msg[:1].lower() + msg[1:]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "missing (required)"
        elif "input" in e and e["type"] not in ("value_error", "assertion_error"):
            msg = f"{msg}, got {e['input']!r}"
        out.append(f"'{key}': {msg}")
    return out


def read_need(path: str | Path) -> NeedFile:
    """Read and validate a need file; errors name the file and every bad key."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"{p}: no such need file") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{p}: is a directory, not a need file (TOML)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{p}: cannot read the need file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"{p}: not valid TOML ({exc})") from None
    try:
        nf = NeedFile.model_validate(raw)
        nf.season.season()  # the time zone is required here
    except ValidationError as exc:
        raise InvalidInputError("\n".join(f"{p}: {x}" for x in validation_lines(exc))) from None
    except InvalidInputError as exc:
        raise InvalidInputError(f"{p}: {exc}") from None
    import zoneinfo

    if nf.season.timezone not in zoneinfo.available_timezones():
        raise InvalidInputError(f"{p}: 'season.timezone': unknown IANA time zone "
                                f"{nf.season.timezone!r}")  # fmt: skip
    return nf


REQUIRED = ("offer_id", "provider", "firm_kw", "price", "reliability")
OPTIONAL = ("resource", "node", "energy_kwh", "max_activations", "divisible")
_YES = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False, "": False}


def read_offers(path: str | Path) -> tuple[Offers, np.ndarray]:
    """Read and validate an offers file: the offers and the file line of each."""
    name = str(path)
    t, header_line = read_table(Path(path), name, REQUIRED, OPTIONAL)
    if not len(t.line):
        raise BidFileError(name, header_line, None, "no offers (only a header)")
    text, n = t.text, len(t.line)

    def required_number(c: str, rule: str, bad: Any) -> np.ndarray:
        x = t.numbers(c)
        t.fail(np.isnan(x), c, "empty (a number is required)")
        t.fail(~np.isfinite(x) | bad(x), c, f"{{value}} is not {rule}")
        return x

    def optional_number(c: str, rule: str, bad: Any, empty: float) -> np.ndarray:
        if c not in text:
            return np.full(n, empty)
        x = t.numbers(c)
        t.fail(np.isinf(x) | (~np.isnan(x) & bad(x)), c, f"{{value}} is not {rule}")
        return np.where(np.isnan(x), empty, x)

    ids = np.array(text["offer_id"], dtype=str)
    t.fail(ids == "", "offer_id", "empty offer id")
    _, first = np.unique(ids, return_index=True)
    dup = np.ones(n, dtype=bool)
    dup[first] = False
    t.fail(dup, "offer_id", "duplicate offer id '{value}'")
    provider = np.array(text["provider"], dtype=str)
    t.fail(provider == "", "provider", "empty provider")
    firm = required_number("firm_kw", "a kW > 0", lambda x: x <= 0)
    price = required_number("price", "a price ≥ 0 (currency/kW per season)", lambda x: x < 0)
    rel = required_number("reliability", "in (0, 1]", lambda x: (x <= 0) | (x > 1))
    energy = optional_number("energy_kwh", "a kWh > 0 (or empty)", lambda x: x <= 0, math.nan)
    acts = optional_number("max_activations", "≥ 0 (or empty)", lambda x: x < 0, math.inf)
    div = np.zeros(n, dtype=bool)
    if "divisible" in text:
        low = [v.lower() for v in text["divisible"]]
        t.fail(np.array([v not in _YES for v in low]), "divisible", "'{value}' is not yes/no")
        div = np.array([_YES[v] for v in low], dtype=bool)
    offers = make_offers(
        ids,
        firm,
        price,
        provider=provider,
        resource=np.where(np.array(text.get("resource", [""] * n)) == "", ids,
                          np.array(text.get("resource", [""] * n))),
        node=np.array(text.get("node", [""] * n), dtype=str),
        energy_kwh=energy,
        max_activations=acts,
        reliability=rel,
        divisible=div,
    )  # fmt: skip
    return offers, t.line

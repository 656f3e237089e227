"""Capacity / non-wires-alternative (NWA) auction: months ahead, the DSO buys firm flexibility
at a constrained element for a season instead of upgrading it, and decides *defer* or *build*.

1. **Need** (:class:`Need`): the constrained element, a :class:`Season` of windows (a date
   range, weekdays and local hours on the region's clock) and the firm kW needed in every
   window (given, or :func:`need_from_peak`: forecast peak − rating).
2. **Offers** (:class:`Offers`, sealed bids): provider, resource, location, firm kW in the
   windows, availability price (currency per kW per season; one season a year, so also per
   kW-year), optional energy per event and activations per season, reliability (a delivery
   probability: historical delivery ratio or per technology).
3. **Performance test** (:func:`qualify`): an offer qualifies only if its resource can hold
   the offered kW over an event (energy ≥ kW × event duration: a 10 kWh battery is firm for
   2.5 kW over 4 h), allows the season's activations and sits behind the constraint; every
   disqualified offer carries its reason. Qualified kW count de-rated: ``reliability × kW``.
4. **Clearing** (:func:`clear`): least offered cost ``Σ price·kW·x`` such that the de-rated
   kW reach the need, ``x ∈ {0, 1}`` for indivisible offers and ``[0, 1]`` for divisible
   ones: a MILP on HiGHS (exact: zero MIP gap). Pricing ``pay-as-bid`` (the default: sealed-
   bid procurements such as Piclo Flex and Con Edison's BQDM pay each provider its own
   availability price; bidders shade towards their expected clearing price) or ``uniform``
   (every accepted de-rated kW earns the highest accepted price per de-rated kW, so each
   provider gets at least its bid). The selection is the same under both; only payments
   differ. Availability payment = kW × price. :func:`run_auction` secures the need: when
   the least-cost set's under-delivery risk is above the threshold, the de-rated target is
   raised in steps (5 % of the need) until it is not — redundancy bought at least cost.
5. **Decision** (:func:`decide`): the upgrade (capex, life, discount rate) is annualised by
   the capital recovery factor ``CRF = r / (1 − (1+r)^−L)``; deferring it by ``k`` years is
   worth ``NPV = PV(avoided) − PV(capacity payments)`` with payments (one season a year) and
   avoided annuities at each year's end, ``PV = annual × (1 − (1+r)^−k) / r``. ``avoided`` is
   the upgrade's annuity for ``k`` years (method ``annuity``, the default: the upgrade and its
   replacements all move ``k`` years) or the deferred capex ``capex·(1 − (1+r)^−k)`` (method
   ``capex``: one upgrade, no replacement). Under-delivery risk (:func:`delivery_risk`): each
   provider (or each offer) delivers all its awarded kW with probability = its reliability,
   independently, or nothing; the exact distribution of delivered kW gives
   ``P(delivered < need)`` and the expected shortfall. **Defer only if NPV > 0 and the risk is
   at most the threshold** (default :data:`DEFAULT_RISK_THRESHOLD` = 5 %).

Simplifications (stated): the need, the offers and their prices repeat unchanged in every
deferred year; reliability is all-or-nothing per provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from transactive.errors import BalanceError, InvalidInputError
from transactive.market._capacity_milp import CapacityError as CapacityError
from transactive.market._capacity_milp import solve_selection

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

Pricing = Literal["pay-as-bid", "uniform"]
RiskUnit = Literal["provider", "offer"]
Method = Literal["annuity", "capex"]

#: Highest under-delivery risk (probability that delivered firm kW < need) at which the DSO
#: still defers: 5 %, a common planning confidence (a 1-in-20 shortfall per season).
DEFAULT_RISK_THRESHOLD = 0.05
#: Most independent units whose 2^n delivery outcomes are enumerated exactly; beyond it the
#: distribution is convolved on a kW grid (:func:`delivery_risk`).
EXACT_UNITS = 16
#: Bins of the kW grid of the convolution (step = total awarded kW / this).
RISK_BINS = 20_000
_TOL = 1e-9
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# --- need ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Season:
    """Windows of the season: every date ``first … last`` (inclusive) whose weekday is in
    ``weekdays`` (0 = Monday), local hours ``[hours[0], hours[1])`` on ``timezone``'s clock."""

    first: date
    last: date
    weekdays: tuple[int, ...]
    hours: tuple[float, float]
    timezone: str

    def __post_init__(self) -> None:
        h0, h1 = self.hours
        if not 0 <= h0 < h1 <= 24:
            raise InvalidInputError(f"season hours must satisfy 0 ≤ start < end ≤ 24, got {h0, h1}")
        if self.last < self.first:
            raise InvalidInputError(f"season last {self.last} is before first {self.first}")
        if not self.weekdays or any(d not in range(7) for d in self.weekdays):
            raise InvalidInputError(f"season weekdays must be 0 (Mon) … 6, got {self.weekdays}")

    @property
    def window_h(self) -> float:
        """Length of one window (h, local clock)."""
        return float(self.hours[1] - self.hours[0])

    def windows(self) -> pd.DataFrame:
        """One row per window: ``start`` and ``end`` in UTC."""
        days = pd.date_range(self.first, self.last, freq="D")
        days = days[np.isin(days.weekday, self.weekdays)]
        h0, h1 = (pd.to_timedelta(h, unit="h") for h in self.hours)
        local = {"start": days + h0, "end": days + h1}
        return pd.DataFrame(
            {
                k: v.tz_localize(self.timezone, nonexistent="shift_forward", ambiguous=True)
                .tz_convert("UTC")
                .rename(None)
                for k, v in local.items()
            }
        )

    def contains(self, starts: pd.DatetimeIndex, duration_h: float) -> BoolArray:
        """Which intervals (UTC ``starts``, length ``duration_h``) lie inside a window."""
        local = starts.tz_convert(self.timezone)
        h = np.asarray(local.hour + local.minute / 60.0, dtype=np.float64)
        d = local.normalize().tz_localize(None).date
        out: BoolArray = (
            np.isin(local.weekday, self.weekdays)
            & (h >= self.hours[0] - _TOL)
            & (h + duration_h <= self.hours[1] + _TOL)
            & (d >= self.first)
            & (d <= self.last)
        )
        return out


@dataclass(frozen=True)
class Need:
    """What the DSO procures: firm ``need_kw`` at ``element`` in every window of ``season``.

    event_duration_h: the longest event an offer must hold (default: the window length);
    events: activations per season an offer must allow (0: no requirement); eligible_nodes:
    locations behind the constraint (empty: anywhere)."""

    element: str
    season: Season
    need_kw: float
    event_duration_h: float | None = None
    events: int = 0
    eligible_nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not np.isfinite(self.need_kw) or self.need_kw < 0:
            raise InvalidInputError(f"need_kw must be a finite kW ≥ 0, got {self.need_kw}")
        d = self.event_duration_h
        if d is not None and not 0 < d <= self.season.window_h:
            raise InvalidInputError(
                f"event_duration_h must be in (0, {self.season.window_h}] h (the window), got {d}"
            )
        if self.events < 0:
            raise InvalidInputError(f"events must be ≥ 0, got {self.events}")

    @property
    def duration_h(self) -> float:
        """The event duration the performance test holds offers to (h)."""
        return self.season.window_h if self.event_duration_h is None else self.event_duration_h


def need_from_peak(peak_kw: float, rating_kw: float) -> float:
    """Firm kW needed: the forecast peak above the element's rating (0 if it fits)."""
    if not (np.isfinite(peak_kw) and np.isfinite(rating_kw)) or rating_kw < 0:
        raise InvalidInputError(f"need a finite peak and rating ≥ 0 kW, got {peak_kw, rating_kw}")
    return float(max(peak_kw - rating_kw, 0.0))


# --- offers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Offers:
    """Sealed capacity offers as arrays (one entry per offer).

    firm_kw: kW available in every window; price: availability price, currency per kW per
    season; energy_kwh: energy per event (NaN: not energy-limited); max_activations: per
    season (inf: unlimited); reliability: delivery probability in (0, 1]; divisible: the DSO
    may take a share (else all or nothing)."""

    id: NDArray[np.str_]
    provider: NDArray[np.str_]
    resource: NDArray[np.str_]
    node: NDArray[np.str_]
    firm_kw: FloatArray
    price: FloatArray
    energy_kwh: FloatArray
    max_activations: FloatArray
    reliability: FloatArray
    divisible: BoolArray

    def __post_init__(self) -> None:
        n = self.id.size
        for name in ("provider", "resource", "node", "firm_kw", "price", "energy_kwh",
                     "max_activations", "reliability", "divisible"):  # fmt: skip
            if getattr(self, name).shape != (n,):
                raise InvalidInputError(f"offers: '{name}' has {getattr(self, name).size} "
                                        f"entries, expected {n}")  # fmt: skip
        _check(self, ~np.isfinite(self.firm_kw) | (self.firm_kw <= 0), "firm_kw", "a kW > 0")
        _check(self, ~np.isfinite(self.price) | (self.price < 0), "price", "a price ≥ 0")
        _check(self, self.energy_kwh <= 0, "energy_kwh", "> 0 kWh (or empty)")
        _check(self, np.isinf(self.energy_kwh), "energy_kwh", "finite (or empty)")
        _check(self, np.isnan(self.max_activations) | (self.max_activations < 0),
               "max_activations", "≥ 0 (or empty)")  # fmt: skip
        r = self.reliability
        _check(self, ~np.isfinite(r) | (r <= 0) | (r > 1), "reliability", "in (0, 1]")
        if np.unique(self.id).size != n:
            ids, counts = np.unique(self.id, return_counts=True)
            raise InvalidInputError(f"offer id '{ids[counts > 1][0]}' is used twice")

    @property
    def n(self) -> int:
        return int(self.id.size)

    @property
    def cost(self) -> FloatArray:
        """Cost of each whole offer (currency per season)."""
        out: FloatArray = self.firm_kw * self.price
        return out

    def take(self, mask: BoolArray) -> Offers:
        """The offers where ``mask`` is true."""
        return Offers(**{k: getattr(self, k)[mask] for k in self.__dataclass_fields__})


def make_offers(
    id: list[str] | NDArray[np.str_],
    firm_kw: list[float] | FloatArray,
    price: list[float] | FloatArray,
    *,
    provider: list[str] | NDArray[np.str_] | None = None,
    resource: list[str] | NDArray[np.str_] | None = None,
    node: list[str] | NDArray[np.str_] | None = None,
    energy_kwh: list[float] | FloatArray | None = None,
    max_activations: list[float] | FloatArray | None = None,
    reliability: list[float] | FloatArray | float = 1.0,
    divisible: list[bool] | BoolArray | bool = False,
) -> Offers:
    """:class:`Offers` from lists; a missing provider / resource is the offer id, a missing
    node empty, energy unlimited (NaN), activations unlimited (inf)."""
    ids = np.asarray(id, dtype=str)
    n = ids.size

    def text(v: object) -> NDArray[np.str_]:
        return ids.copy() if v is None else np.asarray(v, dtype=str)

    def num(v: object, default: float) -> FloatArray:
        return np.full(n, default) if v is None else np.asarray(v, dtype=np.float64).ravel()

    return Offers(
        id=ids,
        provider=text(provider),
        resource=text(resource),
        node=np.full(n, "") if node is None else np.asarray(node, dtype=str),
        firm_kw=num(firm_kw, np.nan),
        price=num(price, np.nan),
        energy_kwh=num(energy_kwh, np.nan),
        max_activations=num(max_activations, np.inf),
        reliability=np.broadcast_to(np.asarray(reliability, dtype=np.float64), (n,)).copy(),
        divisible=np.broadcast_to(np.asarray(divisible, dtype=bool), (n,)).copy(),
    )


def _check(offers: Offers, bad: BoolArray, column: str, rule: str) -> None:
    if bad.any():
        i = int(np.argmax(bad))
        value = getattr(offers, column)[i]
        raise InvalidInputError(f"offer '{offers.id[i]}': {column} must be {rule}, got {value}")


# --- performance test ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Qualification:
    """Result of the performance test per offer: ``qualified``, ``deliverable_kw`` (what the
    resource holds over an event), ``firm_kw`` (de-rated: reliability × offered kW, 0 when
    disqualified) and the ``reason`` of a disqualification ("" when qualified)."""

    qualified: BoolArray
    deliverable_kw: FloatArray
    firm_kw: FloatArray
    reason: NDArray[np.str_]


def qualify(offers: Offers, need: Need) -> Qualification:
    """The performance test (module docstring, 3) of every offer against ``need``."""
    d = need.duration_h
    deliverable = np.fmin(offers.firm_kw, offers.energy_kwh / d)  # NaN energy: the firm kW
    reasons = [np.full(offers.n, "", dtype=object)]
    short = deliverable < offers.firm_kw * (1 - _TOL)
    reasons.append(
        np.where(
            short,
            [
                f"{e:g} kWh holds {e / d:.2f} kW over a {d:g} h event, not the {q:g} kW offered"
                for e, q in zip(offers.energy_kwh, offers.firm_kw, strict=True)
            ],
            "",
        )
    )
    few = offers.max_activations < need.events
    reasons.append(
        np.where(
            few,
            [
                f"allows {a:g} activations, the season needs {need.events}"
                for a in offers.max_activations
            ],
            "",
        )
    )
    if need.eligible_nodes:
        away = ~np.isin(offers.node, list(need.eligible_nodes))
        reasons.append(
            np.where(away, [f"node '{x}' is not behind {need.element}" for x in offers.node], "")
        )
    joined = np.array(["; ".join(r for r in row if r) for row in zip(*reasons, strict=True)])
    ok = joined == ""
    return Qualification(
        qualified=ok,
        deliverable_kw=deliverable,
        firm_kw=np.where(ok, offers.reliability * offers.firm_kw, 0.0),
        reason=joined.astype(str),
    )


# --- clearing -----------------------------------------------------------------------------------

Status = Literal["cleared", "short", "no-need"]


@dataclass(frozen=True)
class Clearing:
    """The auction's result per offer: ``share`` taken (0 … 1), ``awarded_kw`` (contracted),
    ``firm_kw`` (de-rated awarded kW), ``payment`` (currency per season); ``price`` the
    uniform price per de-rated kW (NaN under pay-as-bid); ``status``: ``cleared``,
    ``short`` (the qualified offers cannot reach the need: nothing is bought) or ``no-need``."""

    share: FloatArray
    awarded_kw: FloatArray
    firm_kw: FloatArray
    payment: FloatArray
    price: float
    pricing: Pricing
    status: Status
    target_kw: float = float("nan")  # the de-rated kW the selection had to reach

    @property
    def selected(self) -> BoolArray:
        out: BoolArray = self.share > _TOL
        return out

    @property
    def cost(self) -> float:
        """Total availability payments, currency per season."""
        return float(self.payment.sum())


def clear(
    offers: Offers,
    need: Need,
    pricing: Pricing = "pay-as-bid",
    q: Qualification | None = None,
    target_kw: float | None = None,
) -> Clearing:
    """Least-cost selection of the qualified offers reaching ``target_kw`` de-rated kW (default
    ``need.need_kw``; :func:`run_auction` raises it to secure the need)."""
    if pricing not in ("pay-as-bid", "uniform"):
        raise InvalidInputError(f"pricing must be 'pay-as-bid' or 'uniform', not {pricing!r}")
    q = qualify(offers, need) if q is None else q
    zero = np.zeros(offers.n)
    if need.need_kw <= _TOL:
        return Clearing(zero, zero, zero, zero, float("nan"), pricing, "no-need")
    target = need.need_kw if target_kw is None else max(target_kw, need.need_kw)
    if q.firm_kw.sum() < target * (1 - _TOL):
        return Clearing(zero, zero, zero, zero, float("nan"), pricing, "short")
    x = np.clip(solve_selection(offers.cost, q.firm_kw, target, offers.divisible), 0.0, 1.0)
    x[x < _TOL] = 0.0
    x[~offers.divisible] = np.round(x[~offers.divisible])
    awarded = x * offers.firm_kw
    firm = x * q.firm_kw
    if pricing == "uniform":
        per_firm = offers.price / offers.reliability
        price = float(per_firm[x > 0].max())
        payment = price * firm
    else:
        price = float("nan")
        payment = awarded * offers.price
    bid = awarded * offers.price
    if (payment < bid - 1e-9 * (1 + bid)).any() or not np.isfinite(payment).all():
        raise BalanceError("capacity payments below an accepted offer's own price")
    return Clearing(x, awarded, firm, payment, price, pricing, "cleared", target)


# --- under-delivery risk ------------------------------------------------------------------------


def delivery_risk(kw: FloatArray, prob: FloatArray, need_kw: float) -> tuple[float, float]:
    """``(P(D < need_kw), E[max(need_kw − D, 0)])`` for ``D = Σ B_j kw_j`` with independent
    ``B_j ~ Bernoulli(prob_j)``. Exact enumeration for ≤ :data:`EXACT_UNITS` units, else a
    convolution on a grid of :data:`RISK_BINS` steps with every ``kw_j`` rounded *down* to it
    (so the risk and the shortfall are never understated)."""
    kw = np.asarray(kw, dtype=np.float64)
    prob = np.asarray(prob, dtype=np.float64)
    keep = kw > 0
    kw, prob = kw[keep], prob[keep]
    if need_kw <= 0:
        return 0.0, 0.0
    if kw.size <= EXACT_UNITS:
        outcomes = (np.arange(2**kw.size)[:, None] >> np.arange(kw.size)) & 1  # 2^n × n
        p = np.prod(np.where(outcomes == 1, prob, 1 - prob), axis=1)
        delivered = outcomes @ kw
    else:
        step = kw.sum() / RISK_BINS
        size = np.floor(kw / step + 1e-9).astype(np.int64)
        dist = np.zeros(int(size.sum()) + 1)
        dist[0] = 1.0
        for s, pj in zip(size, prob, strict=True):
            shifted = np.zeros_like(dist)
            shifted[s:] = dist[: dist.size - s]
            dist = (1 - pj) * dist + pj * shifted
        p, delivered = dist, np.arange(dist.size) * step
    short = delivered < need_kw - _TOL * max(need_kw, 1.0)
    risk = float(p[short].sum())
    shortfall = float((p * np.clip(need_kw - delivered, 0.0, None)).sum())
    return min(max(risk, 0.0), 1.0), shortfall


def clearing_risk(
    offers: Offers, clearing: Clearing, need_kw: float, unit: RiskUnit = "provider"
) -> tuple[float, float]:
    """:func:`delivery_risk` of the awarded kW: one unit per provider (its awarded kW, with the
    kW-weighted mean reliability of its awarded offers, which keeps the expected delivery)
    or per offer."""
    if unit not in ("provider", "offer"):
        raise InvalidInputError(f"risk unit must be 'provider' or 'offer', not {unit!r}")
    if clearing.status != "cleared":
        return (0.0, 0.0) if clearing.status == "no-need" else (1.0, need_kw)
    sel = clearing.selected
    kw = clearing.awarded_kw[sel]
    rel = offers.reliability[sel]
    if unit == "offer":
        return delivery_risk(kw, rel, need_kw)
    _, group = np.unique(offers.provider[sel], return_inverse=True)
    total = np.bincount(group, weights=kw).astype(np.float64)
    mean_rel = np.bincount(group, weights=kw * rel) / total
    return delivery_risk(total, mean_rel, need_kw)


# --- the upgrade and the decision ---------------------------------------------------------------


@dataclass(frozen=True)
class Upgrade:
    """The wires alternative: ``capex`` (currency), ``life_years``, ``discount_rate`` (per
    year, e.g. 0.05), ``capacity_kw`` the upgrade adds."""

    capex: float
    life_years: float
    discount_rate: float
    capacity_kw: float

    def __post_init__(self) -> None:
        for name, ok in (
            ("capex", self.capex >= 0),
            ("life_years", self.life_years > 0),
            ("discount_rate", 0 <= self.discount_rate < 1),
            ("capacity_kw", self.capacity_kw > 0),
        ):
            value = getattr(self, name)
            if not (np.isfinite(value) and ok):
                raise InvalidInputError(f"upgrade {name}: {value} is out of range")


def annuity_factor(rate: float, years: float) -> float:
    """Present value of 1 per year at each year's end for ``years`` years: (1 − (1+r)^−n)/r."""
    if rate == 0:
        return float(years)
    return float((1 - (1 + rate) ** -years) / rate)


def capital_recovery_factor(rate: float, years: float) -> float:
    """Yearly payment that repays 1 over ``years`` years at ``rate``: 1 / annuity factor."""
    return 1.0 / annuity_factor(rate, years)


@dataclass(frozen=True)
class Decision:
    """Defer the upgrade with the NWA or build it, with the figures behind it (currency,
    kW; per year = per season)."""

    defer: bool
    action: Literal["defer", "build", "none"]
    reason: str
    npv: float
    annualised_upgrade_cost: float
    upgrade_cost_per_kw_year: float
    capacity_cost_per_year: float
    cost_per_kw_year: float  # NWA: capacity payments per year per kW of need
    procured_kw: float
    procured_firm_kw: float
    need_kw: float
    under_delivery_risk: float
    expected_shortfall_kw: float
    risk_threshold: float
    deferral_years: float
    method: Method
    pricing: Pricing
    annuity_factor: float  # PV of 1 currency/yr over the deferral years

    @property
    def annual_value(self) -> float:
        """The NPV as an equal yearly amount over the deferral years (currency/yr):
        ``NPV / annuity factor``, the deferral value per year; 0 unless it defers."""
        return self.npv / self.annuity_factor if self.defer else 0.0


def decide(
    offers: Offers,
    need: Need,
    clearing: Clearing,
    upgrade: Upgrade,
    deferral_years: float,
    risk_threshold: float = DEFAULT_RISK_THRESHOLD,
    method: Method = "annuity",
    risk_unit: RiskUnit = "provider",
) -> Decision:
    """Compare the cleared NWA with the upgrade (module docstring, 5)."""
    if not (np.isfinite(deferral_years) and deferral_years > 0):
        raise InvalidInputError(f"deferral_years must be > 0, got {deferral_years}")
    if not 0 <= risk_threshold <= 1:
        raise InvalidInputError(f"risk_threshold must be in [0, 1], got {risk_threshold}")
    if method not in ("annuity", "capex"):
        raise InvalidInputError(f"method must be 'annuity' or 'capex', not {method!r}")
    r, k = upgrade.discount_rate, deferral_years
    crf = capital_recovery_factor(r, upgrade.life_years)
    annual = upgrade.capex * crf
    a_k = annuity_factor(r, k)
    avoided = annual * a_k if method == "annuity" else upgrade.capex * (1 - (1 + r) ** -k)
    payments = clearing.cost
    risk, shortfall = clearing_risk(offers, clearing, need.need_kw, risk_unit)
    npv = avoided - payments * a_k
    action: Literal["defer", "build", "none"]
    if clearing.status == "no-need":
        action, reason, npv = "none", "no need: the forecast peak fits the rating", 0.0
    elif clearing.status == "short":
        action = "build"
        reason = (f"qualified offers reach only {float(qualified_firm(offers, need)):.1f} of "
                  f"{need.need_kw:.1f} firm kW")  # fmt: skip
        npv = float("nan")
    elif npv <= 0:
        action, reason = "build", "the capacity payments cost more than the deferral saves"
    elif risk > risk_threshold:
        action = "build"
        reason = f"under-delivery risk {risk:.1%} is above the {risk_threshold:.1%} threshold"
    else:
        action = "defer"
        reason = f"NPV > 0 and under-delivery risk {risk:.1%} ≤ {risk_threshold:.1%}"
    return Decision(
        defer=action == "defer",
        action=action,
        reason=reason,
        npv=float(npv),
        annualised_upgrade_cost=float(annual),
        upgrade_cost_per_kw_year=float(annual / upgrade.capacity_kw),
        capacity_cost_per_year=float(payments),
        cost_per_kw_year=float(payments / need.need_kw) if need.need_kw > 0 else 0.0,
        procured_kw=float(clearing.awarded_kw.sum()),
        procured_firm_kw=float(clearing.firm_kw.sum()),
        need_kw=float(need.need_kw),
        under_delivery_risk=float(risk),
        expected_shortfall_kw=float(shortfall),
        risk_threshold=float(risk_threshold),
        deferral_years=float(k),
        method=method,
        pricing=clearing.pricing,
        annuity_factor=float(a_k),
    )


def qualified_firm(offers: Offers, need: Need) -> float:
    """De-rated kW of all qualified offers."""
    return float(qualify(offers, need).firm_kw.sum())


# --- one call -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Auction:
    """Everything one capacity auction produced: the offers, their qualification, the
    clearing and the decision."""

    offers: Offers
    qualification: Qualification
    clearing: Clearing
    decision: Decision

    def table(self) -> pd.DataFrame:
        """One row per offer: identity, offered and de-rated kW, price, qualification with
        its reason, share, awarded kW and payment."""
        o, q, c = self.offers, self.qualification, self.clearing
        return pd.DataFrame(
            {
                "offer_id": o.id,
                "provider": o.provider,
                "resource": o.resource,
                "node": o.node,
                "firm_kw": o.firm_kw,
                "energy_kwh": o.energy_kwh,
                "price": o.price,
                "reliability": o.reliability,
                "deliverable_kw": q.deliverable_kw,
                "qualified": q.qualified,
                "reason": q.reason,
                "share": c.share,
                "awarded_kw": c.awarded_kw,
                "firm_awarded_kw": c.firm_kw,
                "payment": c.payment,
            }
        )


def run_auction(
    offers: Offers,
    need: Need,
    upgrade: Upgrade,
    deferral_years: float,
    *,
    pricing: Pricing = "pay-as-bid",
    risk_threshold: float = DEFAULT_RISK_THRESHOLD,
    method: Method = "annuity",
    risk_unit: RiskUnit = "provider",
    secure: bool = True,
    step: float = 0.05,
) -> Auction:
    """Qualify, clear and decide (the module docstring's steps 3–5). With ``secure`` the DSO
    raises its de-rated target from the need in steps of ``step`` × need until the
    under-delivery risk is at most ``risk_threshold`` (redundancy against a provider's
    failure), keeping the plain clearing when no target reaches it."""
    q = qualify(offers, need)
    c = clear(offers, need, pricing, q)
    if secure and c.status == "cleared":
        target, total = need.need_kw, float(q.firm_kw.sum())
        while clearing_risk(offers, c, need.need_kw, risk_unit)[0] > risk_threshold:
            if target >= total * (1 - _TOL):
                c = clear(offers, need, pricing, q)  # no secure target: the plain clearing
                break
            target = min(target + step * need.need_kw, total)
            c = clear(offers, need, pricing, q, target)
    d = decide(offers, need, c, upgrade, deferral_years, risk_threshold, method, risk_unit)
    return Auction(offers, q, c, d)

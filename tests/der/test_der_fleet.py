"""Common protocol: reproducibility, config validation, monotone curves, award honoured."""

from __future__ import annotations

import numpy as np
import pytest
from der_helpers import ctx_at, price_path, run

from transactive.core.curves import Curves, dispatch, quantity_at
from transactive.der import (
    DEVICE_TYPES,
    EV,
    HVAC,
    PV,
    Battery,
    Shiftable,
    Weather,
    const,
    make_context,
    make_fleet,
    make_population,
    uniform,
)
from transactive.errors import InvalidInputError

KINDS = sorted(DEVICE_TYPES)


def _arrays(obj: object) -> dict[str, np.ndarray]:
    return {
        k: np.asarray(getattr(obj, k))
        for k in obj.__dataclass_fields__  # type: ignore[attr-defined]
    }


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_fleet_other_seed_other_fleet(kind: str, summer: Weather) -> None:
    a, b, c = (make_fleet(kind, 50, seed=s) for s in (7, 7, 8))
    pa, pb, pc = _arrays(a.params), _arrays(b.params), _arrays(c.params)
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
    assert any(pa[k].dtype.kind == "f" and not np.array_equal(pa[k], pc[k]) for k in pa), (
        "a different seed should change some parameter"
    )
    # The whole trajectory is reproducible too (sessions, draws, temperatures).
    prices = price_path(len(summer) + 96)
    _, ra, _, _ = run(a, summer, prices, n=24)
    _, rb, _, _ = run(b, summer, prices, n=24)
    for x, y in zip(ra, rb, strict=True):
        np.testing.assert_array_equal(x.energy_kwh, y.energy_kwh)


@pytest.mark.parametrize("kind", KINDS)
def test_curves_non_increasing_and_one_per_device(kind: str, summer: Weather) -> None:
    fleet = make_fleet(kind, 300, seed=1)
    prices = price_path(len(summer) + 96, seed=2)
    grid = np.linspace(-0.1, 1.2, 27)
    for i in range(0, 96, 7):
        ctx = ctx_at(summer, i, prices)
        c = fleet.bid(ctx)
        assert c.n == fleet.n
        q = np.stack([quantity_at(c, p) for p in grid])
        assert np.all(np.diff(q, axis=0) <= 1e-12), f"{kind}: curve increases with price"
        fleet, _ = fleet.step(fleet.respond(ctx, c, price=prices[i]), ctx)


@pytest.mark.parametrize("kind", KINDS)
def test_dispatch_award_is_honoured_within_limits(kind: str, summer: Weather) -> None:
    """A parent disaggregates a random total with ``dispatch``; every device consumes exactly
    its award (the award lies between the curve's limits, which are inside device limits)."""
    fleet = make_fleet(kind, 200, seed=5)
    prices = price_path(len(summer) + 96, seed=3)
    rng = np.random.default_rng(0)

    def award(f, ctx, c: Curves, i: int) -> np.ndarray:  # type: ignore[no-untyped-def]
        p = prices[i]
        lo = quantity_at(c, p, side="right").sum()
        hi = quantity_at(c, p, side="left").sum()
        total = lo + rng.random() * (hi - lo)
        a = dispatch(c, p, total)
        out = f.respond(ctx, c, award=a)
        np.testing.assert_allclose(out, a, atol=1e-9)
        return out

    _, reports, awards, _ = run(fleet, summer, prices, award=award, n=96)
    for r, a in zip(reports, awards, strict=True):
        np.testing.assert_allclose(r.power_kw, a, atol=1e-9)
        np.testing.assert_allclose(r.deviation_kwh, 0.0, atol=1e-9)
        np.testing.assert_allclose(r.energy_kwh, r.power_kw * 0.25)


@pytest.mark.parametrize("kind", KINDS)
def test_award_beyond_limits_is_clipped_and_reported(kind: str, summer: Weather) -> None:
    fleet = make_fleet(kind, 100, seed=2)
    prices = price_path(len(summer) + 96)
    ctx = ctx_at(summer, 40, prices)
    lo, hi = fleet.limits(ctx)
    big = np.full(fleet.n, 1e3)
    c = fleet.bid(ctx)
    np.testing.assert_allclose(fleet.respond(ctx, c, award=big), hi)
    _, r = fleet.step(big, ctx)
    np.testing.assert_allclose(r.power_kw, hi, atol=1e-9)
    np.testing.assert_allclose(r.deviation_kwh, (hi - big) * 0.25, atol=1e-9)
    _, r = fleet.step(-big, ctx)
    np.testing.assert_allclose(r.power_kw, lo, atol=1e-9)


@pytest.mark.parametrize(
    ("kind", "config", "field"),
    [
        ("battery", Battery.config(capacity_kwh=const(-1.0)), "capacity_kwh"),
        ("battery", Battery.config(soc_max=const(1.2)), "soc_max"),
        ("battery", Battery.config(soc_min=const(0.9), soc_max=const(0.5)), "soc_min"),
        ("battery", Battery.config(soc0=const(-0.1)), "soc0"),
        ("battery", Battery.config(eta_charge=const(1.1)), "eta_charge"),
        ("pv", PV.config(capacity_kw=const(0.0)), "capacity_kw"),
        ("pv", PV.config(tilt_deg=const(95.0)), "tilt_deg"),
        ("pv", PV.config(volt_var=1.5), "volt_var"),
        ("pv", PV.config(capacity_kw=uniform(5.0, 1.0)), "capacity_kw"),
        ("ev", EV.config(charger_kw=const(-7.0)), "charger_kw"),
        ("hvac", HVAC.config(ua_kw_per_k=const(0.0)), "ua_kw_per_k"),
        ("shiftable", Shiftable.config(duration_h=const(20.0)), "window_end_h"),
    ],
)
def test_bad_config_names_the_field(kind: str, config: object, field: str) -> None:
    with pytest.raises(InvalidInputError, match=field):
        make_fleet(kind, 10, config, seed=0)


def test_bad_make_fleet_arguments() -> None:
    with pytest.raises(InvalidInputError, match="unknown device type"):
        make_fleet("fusion", 3)
    with pytest.raises(InvalidInputError, match="integer"):
        make_fleet("pv", -1)
    with pytest.raises(InvalidInputError, match="pv config"):
        make_fleet("pv", 3, Battery.config())
    with pytest.raises(InvalidInputError, match="penetration"):
        make_population(10, {"pv": 1.5})
    with pytest.raises(InvalidInputError, match="penetration"):
        make_population(10, {"dragon": 0.5})


def test_population_penetration_and_reproducibility() -> None:
    pop = make_population(1000, {"pv": 0.3, "battery": 0.1, "ev": 0.25}, seed=4)
    assert pop.fleets["pv"].n == 300 and pop.fleets["battery"].n == 100
    assert pop.fleets["household"].n == 1000
    for kind, idx in pop.home.items():
        assert idx.size == pop.fleets[kind].n
        assert np.unique(idx).size == idx.size and idx.min() >= 0 and idx.max() < 1000
    again = make_population(1000, {"pv": 0.3, "battery": 0.1, "ev": 0.25}, seed=4)
    np.testing.assert_array_equal(again.home["pv"], pop.home["pv"])
    np.testing.assert_array_equal(
        again.fleets["pv"].params.capacity_kw, pop.fleets["pv"].params.capacity_kw
    )


def test_context_validation() -> None:
    with pytest.raises(InvalidInputError):
        make_context("2024-01-01T00:00", 0.25, [0.1], floor=0.0, cap=1.0)  # naive time
    with pytest.raises(InvalidInputError):
        make_context("2024-01-01T00:00Z", 0.0, [0.1], floor=0.0, cap=1.0)
    with pytest.raises(InvalidInputError):
        make_context("2024-01-01T00:00Z", 0.25, [], floor=0.0, cap=1.0)
    with pytest.raises(InvalidInputError):
        make_context("2024-01-01T00:00Z", 0.25, [0.1], floor=1.0, cap=0.5)
    ctx = make_context("2024-01-01T00:00Z", 0.25, [0.1, 0.1], floor=0.0, cap=2.0)
    assert ctx.price_std == pytest.approx(0.02)  # floor of 1 % of the price range

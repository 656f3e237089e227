"""Device classes: one parameter declaration per type (sampling, validation, config, docs),
picklable fleets, reactive power in every report, the scenario parser."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from der_helpers import ctx_at, price_path

from transactive.der import (
    DEVICE_TYPES,
    Battery,
    Dist,
    Household,
    Param,
    Weather,
    const,
    make_context,
    make_fleet,
    parameter_docs,
    parse_config,
)
from transactive.der.params import typical
from transactive.errors import InvalidInputError

KINDS = sorted(DEVICE_TYPES)

#: The first three values of one parameter per type, ``make_fleet(kind, 40, seed=3)``, as
#: the fleets were drawn before the device classes (same seed → same fleet).
SEEDED = {
    "pv": ("capacity_kw", [7.047877808722702, 6.098099032933512, 5.22473693346648]),
    "battery": ("capacity_kwh", [10.413696492633944, 8.786783526028193, 13.995798302953471]),
    "ev": ("daily_kwh", [7.531675168667059, 11.1215381890235, 12.376047244155515]),
    "hvac": ("cool_kw_th", [10.081269311858614, 7.896503924768769, 8.758204394651054]),
    "water_heater": ("shift_h", [0.4195180824024636, -1.2096318089169564, -0.46357917564841555]),
    "shiftable": ("window_end_h", [30.569270773403563, 30.262222209948092, 30.078817881071394]),
    "curtailable": ("voll", [0.4446476783629353, 0.6590200555926715, 0.8018009932953172]),
    # (scale_kw moved by <1e-4 when the profiles were put on the DST-correct local clock)
    "household": ("scale_kw", [3.945428595762731, 3.959635293311591, 5.734611595086602]),
}


@pytest.mark.parametrize("kind", KINDS)
def test_seeded_fleets_are_the_ones_drawn_before(kind: str) -> None:
    name, values = SEEDED[kind]
    got = getattr(make_fleet(kind, 40, seed=3).params, name)[:3]
    np.testing.assert_array_equal(got, values)


@pytest.mark.parametrize("kind", KINDS)
def test_one_declaration_per_type(kind: str) -> None:
    cls = DEVICE_TYPES[kind]
    assert cls.KIND == kind
    names = [p.name for p in cls.PARAMS]
    assert len(set(names)) == len(names)
    cfg = cls.Config()
    assert list(cfg) == names  # the config is a mapping built from the declaration
    for p in cls.PARAMS:
        assert isinstance(p, Param) and isinstance(p.default, Dist)
        assert cfg[p.name] == p.default
        assert p.unit and p.meaning, f"{kind}.{p.name}: unit and meaning are declared"
        assert p.inside(typical(p.default)), f"{kind}.{p.name}: default outside its bounds"
    # Drawn parameters respect the declared bounds.
    fleet = make_fleet(kind, 500, seed=1)
    drawn = cfg.sample(500, np.random.default_rng(0))
    for p in cls.PARAMS:
        assert np.all(p.inside(drawn[p.name])), p.name
    assert fleet.n == 500


def test_bounds_are_checked_on_drawn_arrays_naming_type_and_parameter() -> None:
    cfg = Battery.config(capacity_kwh=const(-5.0))
    with pytest.raises(InvalidInputError, match="battery parameter 'capacity_kwh' must be > 0"):
        make_fleet("battery", 3, cfg)
    with pytest.raises(InvalidInputError, match="household parameter 'power_factor'"):
        make_fleet("household", 3, Household.config(power_factor=1.2))
    with pytest.raises(InvalidInputError, match="household parameter 'profile'"):
        make_fleet("household", 3, Household.config(profile=1.5))
    with pytest.raises(InvalidInputError, match="unknown parameter"):
        Battery.config(capacity=const(3.0))
    with pytest.raises(InvalidInputError, match="unknown parameter"):
        Battery().make_params(capacity=3.0)


def test_param_bounds_and_rules() -> None:
    p = Param("x", "1", const(0.5), "(0, 1]", "a fraction")
    np.testing.assert_array_equal(p.inside([0.0, 0.5, 1.0, 1.1, np.nan]), [0, 1, 1, 0, 0])
    assert p.rule == "in (0, 1]"
    assert Param("y", "kW", const(1.0), "(0, inf)", "m").rule == "> 0"
    assert Param("y", "kW", const(1.0), "[0, inf)", "m").rule == "≥ 0"
    unlimited = Param("z", "kW", const(math.inf), "[0, inf]", "m")
    assert unlimited.inside(math.inf) and not Param("w", "kW", const(1.0), "[0, inf)").inside(
        math.inf
    )
    with pytest.raises(ValueError, match="bounds"):
        Param("bad", "1", const(0.0), "0..1", "m")
    with pytest.raises(ValueError, match="low ≤ high"):
        Param("bad", "1", const(0.0), "[2, 1]", "m")


@pytest.mark.parametrize("kind", KINDS)
def test_every_fleet_pickles_and_the_copy_behaves_identically(kind: str, summer: Weather) -> None:
    fleet = make_fleet(kind, 40, seed=2)
    prices = price_path(len(summer) + 96, seed=1)
    ctx0 = ctx_at(summer, 0, prices)
    fleet, _ = fleet.step(fleet.respond(ctx0, fleet.bid(ctx0), price=prices[0]), ctx0)
    copy = pickle.loads(pickle.dumps(fleet))
    assert copy.model == fleet.model and copy.kind == kind
    assert pickle.loads(pickle.dumps(fleet.model.Config())) == fleet.model.Config()
    for i in range(1, 30, 3):
        ctx = ctx_at(summer, i, prices)
        ca, cb = fleet.bid(ctx), copy.bid(ctx)
        np.testing.assert_array_equal(ca.price, cb.price)
        np.testing.assert_array_equal(ca.quantity, cb.quantity)
        pa = fleet.respond(ctx, ca, price=prices[i])
        pb = copy.respond(ctx, cb, price=prices[i])
        np.testing.assert_array_equal(pa, pb)
        fleet, ra = fleet.step(pa, ctx, cleared_price=prices[i])
        copy, rb = copy.step(pb, ctx, cleared_price=prices[i])
        np.testing.assert_array_equal(ra.energy_kwh, rb.energy_kwh)
        assert ra.extra.keys() == rb.extra.keys()
        for k in ra.extra:
            np.testing.assert_array_equal(ra.extra[k], rb.extra[k], err_msg=k)


@pytest.mark.parametrize("kind", KINDS)
def test_every_report_carries_reactive_power(kind: str, summer: Weather) -> None:
    fleet = make_fleet(kind, 50, seed=4)
    prices = price_path(len(summer) + 96)
    ctx = ctx_at(summer, 40, prices)
    _, r = fleet.step(fleet.respond(ctx, fleet.bid(ctx), price=prices[40]), ctx)
    q = r.extra["q_kvar"]
    assert q.shape == (fleet.n,) and np.all(np.isfinite(q))
    if kind == "household":
        pf = fleet.params.power_factor
        np.testing.assert_allclose(q, r.power_kw * np.tan(np.arccos(pf)), rtol=1e-12)
        np.testing.assert_allclose(q / r.power_kw, math.tan(math.acos(0.95)), rtol=1e-12)
    elif kind != "pv":
        np.testing.assert_array_equal(q, 0.0)


def test_household_power_factor_is_a_parameter() -> None:
    fleet = make_fleet("household", 10, Household.config(power_factor=1.0), seed=1)
    ctx = make_context("2024-07-01T23:00Z", 0.25, [0.1], floor=0.0, cap=1.0)
    _, r = fleet.step(fleet.limits(ctx)[1], ctx)
    assert np.all(r.power_kw > 0)
    np.testing.assert_allclose(r.extra["q_kvar"], 0.0, atol=1e-12)


def test_make_context_needs_the_price_band() -> None:
    with pytest.raises(TypeError):
        make_context("2024-07-01T23:00Z", 0.25, [0.1])  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        make_context("2024-07-01T23:00Z", 0.25, [0.1], cap=1.0)  # type: ignore[call-arg]


# --- the scenario parser -------------------------------------------------------------------

W = "der.config.battery"


def test_parse_config_reads_every_distribution() -> None:
    cfg = parse_config(
        "battery",
        {
            "capacity_kwh": 12,
            "power_kw": {"uniform": [3.0, 5.0]},
            "soc0": {"normal": [0.5, 0.1, 0.2, 0.8]},
            "degradation_cost": {"lognormal": [0.02, 0.2]},
            "eta_charge": {"const": 0.9},
            "charge_quantile": {"choice": [[0.2, 0.3], [0.25, 0.75]]},
            "discharge_quantile": {"choice": [[0.7, 0.8]]},
        },
        W,
    )
    assert cfg["capacity_kwh"] == const(12.0)
    assert cfg["power_kw"] == Dist("uniform", 3.0, 5.0)
    assert cfg["soc0"] == Dist("normal", 0.5, 0.1, 0.2, 0.8)
    assert cfg["degradation_cost"] == Dist("lognormal", 0.02, 0.2, 0.0, math.inf)
    assert cfg["eta_charge"] == const(0.9)
    assert cfg["charge_quantile"] == Dist("choice", values=(0.2, 0.3), p=(0.25, 0.75))
    assert cfg["discharge_quantile"].values == (0.7, 0.8)
    assert cfg["soc_max"] == Battery.Config()["soc_max"]  # not given: the default
    # The parsed config drives make_fleet like the same config built in code.
    a = make_fleet("battery", 20, cfg, seed=1)
    b = make_fleet("battery", 20, Battery.config(**dict(cfg)), seed=1)
    np.testing.assert_array_equal(a.params.charge_kw, b.params.charge_kw)
    np.testing.assert_array_equal(a.params.capacity_kwh, 12.0)
    pv = parse_config("pv", {"export_limit_kw": math.inf}, "der.config.pv")
    assert pv["export_limit_kw"] == const(math.inf)  # [0, inf] admits "no limit"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"capacity_kwh": -5}, f"{W}.capacity_kwh: -5 must be > 0"),
        ({"eta_charge": 1.5}, f"{W}.eta_charge: 1.5 must be in (0, 1]"),
        ({"eta_charge": {"const": 0.0}}, f"{W}.eta_charge: 0 must be in (0, 1]"),
        ({"soc_min": {"choice": [[0.1, 2.0]]}}, f"{W}.soc_min: 2 must be in [0, 1]"),
        ({"capacity": 5}, f"{W}.capacity: unknown key"),
        ({"capacity_kwh": math.nan}, f"{W}.capacity_kwh: nan is not a finite number"),
        ({"capacity_kwh": math.inf}, f"{W}.capacity_kwh: inf is not a finite number"),
        ({"power_kw": {"uniform": [5.0, math.nan]}}, f"{W}.power_kw: nan is not a finite"),
        ({"power_kw": {"uniform": [5.0, 1.0]}}, f"{W}.power_kw: uniform needs a ≤ b"),
        ({"power_kw": {"uniform": [5.0]}}, f"{W}.power_kw: uniform takes [lo, hi]"),
        ({"power_kw": {"normal": [5.0, -1.0]}}, f"{W}.power_kw: normal sd must be ≥ 0"),
        ({"power_kw": {"lognormal": [0.0, 0.3]}}, f"{W}.power_kw: lognormal needs median"),
        ({"power_kw": {"choice": [[3.0, 5.0], [0.5, 0.6]]}}, f"{W}.power_kw: choice prob"),
        ({"power_kw": {"gamma": [1.0, 2.0]}}, f"{W}.power_kw: unknown distribution 'gamma'"),
        ({"power_kw": {"uniform": [1, 2], "const": 3}}, f"{W}.power_kw: expected a number"),
        ({"power_kw": "fast"}, f"{W}.power_kw: expected a number"),
        ({"power_kw": True}, f"{W}.power_kw: expected a number"),
        ({"power_kw": {"uniform": ["1", 2]}}, f"{W}.power_kw: '1' is not a number"),
    ],
)
def test_parse_config_rejects_bad_values_naming_the_key(table: dict, message: str) -> None:
    with pytest.raises(InvalidInputError) as exc:
        parse_config("battery", table, W)
    assert str(exc.value).startswith(message), str(exc.value)


def test_parse_config_rejects_unknown_kinds_and_non_tables() -> None:
    with pytest.raises(InvalidInputError, match=r"^der\.config\.fusion: unknown device type"):
        parse_config("fusion", {}, "der.config.fusion")
    with pytest.raises(InvalidInputError, match=r"^der\.config\.pv: must be a table"):
        parse_config("pv", [1, 2], "der.config.pv")  # type: ignore[arg-type]


def test_parameter_docs_has_a_table_per_type() -> None:
    doc = parameter_docs()
    for kind, cls in DEVICE_TYPES.items():
        assert f"### `{kind}`" in doc
        for p in cls.PARAMS:
            assert f"| `{p.name}` | {p.unit} |" in doc
    assert "| `capacity_kwh` | kWh | `uniform = [5, 15]` | `(0, inf)` |" in doc
    assert "| `annual_kwh` | kWh | `lognormal = [4000, 0.35, 1000, 15000]` |" in doc


def test_the_devices_page_shows_the_current_declarations() -> None:
    page = (Path(__file__).parents[2] / "docs" / "devices.md").read_text(encoding="utf-8")
    marker = "regenerate with"
    assert marker in page
    generated = page.split("-->\n\n", 1)[1]
    assert generated == parameter_docs(), (
        "docs/devices.md is stale: regenerate its parameter section (see the comment in it)"
    )


def test_types_without_horizon_bids_say_so() -> None:
    ctx = make_context("2024-07-01T12:00Z", 0.25, [0.1, 0.2], floor=0.0, cap=1.0)
    with pytest.raises(InvalidInputError, match="pv fleets do not bid over a horizon"):
        make_fleet("pv", 3).bid_horizon(ctx)
    assert len(make_fleet("battery", 3).bid_horizon(ctx)) == 2
    assert Battery.param("soc0").bounds == "[0, 1]"
    with pytest.raises(KeyError):
        Battery.param("soc")

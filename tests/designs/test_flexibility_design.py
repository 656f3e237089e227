"""The flexibility variants of a design: resolved by the registry, cleared as the inner design
plus the committed change of the committed devices (within their limits), never in the
day-ahead stage; bad names and schedules refused."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

import transactive.sim.runner as runner
from transactive.core.curves import concat, quantity_at
from transactive.designs.base import Setting
from transactive.designs.flexibility import Flexible
from transactive.designs.registry import design_class, is_design, names, split_variant
from transactive.designs.tariff import FlatUncontrolled
from transactive.errors import InvalidInputError
from transactive.nodes.tree import roll_up
from transactive.sim.scenario import parse_scenario
from transactive.sim.world import build_world


def test_the_registry_resolves_flexibility_variants() -> None:
    flex = design_class("bau-flat+flex")
    strategic = design_class("bau-flat+flex-strategic")
    assert issubclass(flex, Flexible) and issubclass(strategic, Flexible)
    assert flex.name == "bau-flat+flex" and strategic.name == "bau-flat+flex-strategic"
    assert flex.inner_class is FlatUncontrolled and flex.stages == FlatUncontrolled.stages
    assert not flex.strategic and strategic.strategic
    assert design_class("bau-flat+flex") is flex  # built once
    assert design_class("total-dso+flex").stages == ("day-ahead", "real-time")
    assert split_variant("bau-tou+flex-strategic") == ("bau-tou", "+flex-strategic")
    assert is_design("grand-central+flex") and not is_design("nope+flex")
    assert not is_design("bau-flat+flex+flex")
    assert not any("+" in n for n in names())  # variants are not registered designs
    for bad in ("nope+flex", "bau-flat+flex+flex", "+flex"):
        with pytest.raises(InvalidInputError, match="unknown design"):
            design_class(bad)


@pytest.fixture(scope="module")
def setting():  # type: ignore[no-untyped-def]
    sc = parse_scenario(
        {
            "feeder": "simbench:1-LV-rural2--0-sw",
            "start": "2018-02-26T00:00:00+01:00",
            "end": "2018-02-26T04:00:00+01:00",
            "warmup_days": 0,
            "market_interval_min": 60,
            "designs": ["bau-flat"],
            "der": {"stage": 3, "penetration": {"battery": 50}},
            "aggregator": {"devices": ["battery"]},
            "flexibility": {"designs": ["bau-flat"]},
        }
    )
    world = build_world(sc)
    return world, runner.make_setting(world)


def flexible(s: Setting) -> Flexible:
    design = design_class("bau-flat+flex")(s)
    assert isinstance(design, Flexible)
    return design


def test_clear_adds_the_committed_change_within_the_device_limits(setting) -> None:  # type: ignore[no-untyped-def]
    world, s = setting
    design = flexible(s)
    inner = FlatUncontrolled(s)
    fleets = list(world.devices.fleets)
    ctxs = runner.interval_contexts(
        world, 1, design.forecast(1), world.weather, np.ones(world.devices.n), 1.0
    )
    bids = concat([f.bid(c) for f, c in zip(fleets, ctxs, strict=True)])
    unc = partial(runner._uncontrolled, world, fleets, ctxs)
    batteries = np.flatnonzero(world.devices.kind == "battery")[:3]
    delta = np.zeros((3, world.devices.n))
    delta[1, batteries] = [-2.0, -1e6, 3.0]  # the second beyond any battery's power
    design.schedule(0, delta)
    base = inner.clear(1, "tariff", bids, unc)
    got = design.clear(1, "tariff", bids, unc)
    lo, hi = quantity_at(bids, s.scenario.market.cap), quantity_at(bids, s.scenario.market.floor)
    want = base.device_kw.copy()
    want[batteries] = np.clip(want[batteries] + delta[1, batteries], lo[batteries], hi[batteries])
    np.testing.assert_allclose(got.device_kw, want)
    assert got.device_kw[batteries[1]] == pytest.approx(lo[batteries[1]])  # clipped at its limit
    np.testing.assert_allclose(got.node_kw, roll_up(s.plan, want))
    # other intervals and the day-ahead stage: the inner design's clearing
    np.testing.assert_allclose(design.clear(2, "tariff", bids, unc).device_kw, base.device_kw)
    np.testing.assert_allclose(design.clear(1, "day-ahead", bids, unc).device_kw, base.device_kw)
    # schedules add up (a rebound running into the next day), past ones are dropped
    design.schedule(1, delta[1:2])
    np.testing.assert_allclose(design.activation(1)[batteries], 2 * delta[1, batteries])
    assert not design.activation(0).any()


def test_a_bad_schedule_is_refused(setting) -> None:  # type: ignore[no-untyped-def]
    _, s = setting
    design = flexible(s)
    with pytest.raises(InvalidInputError, match="schedule"):
        design.schedule(0, np.zeros((2, 3)))
    with pytest.raises(InvalidInputError, match="schedule"):
        design.schedule(0, np.full((1, s.plan.n_devices), np.nan))

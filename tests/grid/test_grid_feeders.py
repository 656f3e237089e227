"""Feeder loading: registry, conversion from pandapower, SimBench profiles, disk cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandapower as pp
import pandas as pd
import pytest

from transactive.errors import InvalidInputError, UnknownFeederError, UnsupportedComponentError
from transactive.grid import Feeder, available_feeders, cache_dir, load_feeder
from transactive.grid import feeders as feeders_mod
from transactive.grid._simbench_codes import SIMBENCH_CODES
from transactive.grid.feeders import feeder_from_pandapower, pandapower_net

SIMBENCH_NAME = "simbench:1-LV-rural1--0-sw"
REQUIRED = [
    "pandapower:cigre_lv",
    "pandapower:cigre_mv",
    "pandapower:case33bw",
    "pandapower:kerber_dorfnetz",
    "pandapower:lv_schutterwald",
]


def test_registry_lists_pandapower_and_all_simbench_codes() -> None:
    names = available_feeders()
    assert set(REQUIRED) <= set(names)
    assert sum(n.startswith("simbench:") for n in names) == 246
    assert SIMBENCH_NAME in names


def test_unknown_feeder_lists_available_names() -> None:
    with pytest.raises(UnknownFeederError, match="pandapower:cigre_lv") as err:
        load_feeder("pandapower:cigre_lvv")
    assert "Did you mean pandapower:cigre_lv" in str(err.value)
    assert "simbench:1-LV-rural1--0-sw" in str(err.value)
    with pytest.raises(UnknownFeederError):
        load_feeder("simbench:not-a-code")
    assert issubclass(UnknownFeederError, InvalidInputError)


@pytest.mark.parametrize("name", REQUIRED)
def test_pandapower_feeders_convert_every_in_service_element(name: str) -> None:
    feeder = load_feeder(name)
    net = pandapower_net(name)
    assert feeder.n_bus == len(net.bus)
    kinds = feeder.branches["kind"].value_counts()
    assert kinds.get("line", 0) == int(net.line.in_service.sum())
    assert kinds.get("trafo", 0) == int(net.trafo.in_service.sum())
    assert len(feeder.loads) == int(net.load.in_service.sum())
    assert len(feeder.sources) == int(net.ext_grid.in_service.sum())
    assert feeder.loads["p_kw"].sum() == pytest.approx(net.load.p_mw.sum() * 1e3)
    assert feeder.topology.energized[feeder.source_buses].all()


def test_open_switches_open_branch_ends() -> None:
    feeder = load_feeder("pandapower:cigre_mv")
    net = pandapower_net("pandapower:cigre_mv")
    open_line_switches = int((~net.switch.closed & (net.switch.et == "l")).sum())
    br = feeder.branches
    n_open_ends = int((~br["from_closed"]).sum() + (~br["to_closed"]).sum())
    assert open_line_switches == 3 and n_open_ends == 3
    assert feeder.topology.is_radial  # the CIGRE MV rings are operated open


def test_closed_bus_bus_switches_become_switch_branches() -> None:
    feeder = load_feeder("pandapower:cigre_lv")
    sw = feeder.branches[feeder.branches["kind"] == "switch"]
    assert len(sw) == 3
    assert (sw["r_ohm"] == 0).all() and sw["from_closed"].all()


def test_kerber_networks_are_deterministic() -> None:
    a = feeder_from_pandapower(pandapower_net("pandapower:kerber_dorfnetz"), "a")
    b = feeder_from_pandapower(pandapower_net("pandapower:kerber_dorfnetz"), "b")
    pd.testing.assert_frame_equal(a.branches, b.branches)


def test_unsupported_component_is_named() -> None:
    net = pandapower_net("pandapower:cigre_lv")
    pp.create_gen(net, bus=5, p_mw=0.01, vm_pu=1.0)
    with pytest.raises(UnsupportedComponentError, match="'gen'"):
        feeder_from_pandapower(net, "with-gen")


def test_simbench_feeder_has_yearly_profiles(simbench_feeder: Feeder) -> None:
    prof = simbench_feeder.profiles
    assert prof is not None
    assert prof.load_p_kw.shape == (35136, len(simbench_feeder.loads))  # 2016: 366 days
    assert prof.sgen_p_kw.shape == (35136, len(simbench_feeder.sgens))
    assert str(prof.time.tz) == "UTC"
    steps = np.diff(prof.time.asi8) / 1e9
    assert (steps == 900).all()
    # absolute profiles peak near the nameplate of the elements
    assert (prof.sgen_p_kw.max(axis=0) <= simbench_feeder.sgens["p_kw"].to_numpy() + 1e-9).all()
    assert (prof.load_p_kw.max(axis=0) > 0).all()


def test_second_load_comes_from_parquet_cache(
    simbench_feeder: Feeder, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = list(Path(cache_dir()).glob("simbench_1-LV-rural1--0-sw-*/*.parquet"))
    assert {f.name for f in files} >= {"buses.parquet", "load_p_kw.parquet", "time.parquet"}

    def no_pandapower(name: str) -> None:
        raise AssertionError("cache miss: pandapower was called")

    monkeypatch.setattr(feeders_mod, "pandapower_net", no_pandapower)
    again = load_feeder(SIMBENCH_NAME)
    for table in ("buses", "branches", "transformers", "sources", "loads", "sgens"):
        pd.testing.assert_frame_equal(getattr(again, table), getattr(simbench_feeder, table))
    assert again.profiles is not None and simbench_feeder.profiles is not None
    np.testing.assert_array_equal(again.profiles.load_p_kw, simbench_feeder.profiles.load_p_kw)
    assert again.profiles.time.equals(simbench_feeder.profiles.time)


def test_static_registry_matches_the_libraries() -> None:
    """The registry's name lists (kept so that resolving a name imports no simbench) are
    exactly what the installed libraries provide."""
    import simbench as sb

    from transactive.grid.registry import PANDAPOWER_NETWORKS

    assert list(SIMBENCH_CODES) == list(sb.collect_all_simbench_codes())
    assert list(PANDAPOWER_NETWORKS) == list(feeders_mod._pp_networks())


_LOOKUP_SCRIPT = """
import sys, time
t0 = time.perf_counter()
from transactive.errors import UnknownFeederError
from transactive.grid import load_feeder
try:
    load_feeder("simbench:1-LV-rural1--0-sww")
except UnknownFeederError:
    pass
bad = time.perf_counter() - t0
heavy = sorted(m for m in ("pandapower", "simbench", "power_grid_model") if m in sys.modules)
print("bad-name", heavy, "pandas" in sys.modules)
feeder = load_feeder(sys.argv[1])
heavy = sorted(m for m in ("pandapower", "simbench", "power_grid_model") if m in sys.modules)
print("cached", heavy, feeder.n_bus)
print(f"{bad:.3f}", file=sys.stderr)
"""


def test_names_and_cache_lookup_import_no_pandapower_or_simbench(
    simbench_feeder: Feeder,
) -> None:
    """A bad name is rejected, and a cached feeder read, without importing pandapower,
    simbench or power-grid-model (nor pandas for the bad name): a real subprocess, since
    this test process has imported them all."""
    run = subprocess.run(
        [sys.executable, "-c", _LOOKUP_SCRIPT, SIMBENCH_NAME],
        capture_output=True,
        text=True,
        env=dict(os.environ),  # the session's TRANSACTIVE_CACHE_DIR holds the feeder
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "bad-name [] False",
        f"cached [] {simbench_feeder.n_bus}",
    ]

"""Limit checks on small networks with known answers."""

from __future__ import annotations

import numpy as np
import pandapower as pp
import pytest

from transactive.errors import InvalidInputError
from transactive.grid import Limits, base_injections, check_limits, run_powerflow
from transactive.grid.feeders import feeder_from_pandapower


def _two_bus(vm_pu: float = 1.0, max_i_ka: float = 1.0) -> pp.pandapowerNet:
    net = pp.create_empty_network()
    a = pp.create_bus(net, vn_kv=0.4, name="a")
    b = pp.create_bus(net, vn_kv=0.4, name="b")
    pp.create_ext_grid(net, a, vm_pu=vm_pu, name="grid")
    pp.create_line_from_parameters(
        net,
        a,
        b,
        length_km=0.1,
        r_ohm_per_km=0.1,
        x_ohm_per_km=0.05,
        c_nf_per_km=0.0,
        max_i_ka=max_i_ka,
        name="ab",
    )
    return net


def test_overvoltage_magnitude_is_exact_without_load() -> None:
    feeder = feeder_from_pandapower(_two_bus(vm_pu=1.06), "hot")
    res = run_powerflow(feeder, base_injections(feeder))
    v = check_limits(feeder, res, Limits())
    assert list(v["element"]) == ["b"]  # the source bus is not checked by default
    assert v["kind"].iloc[0] == "overvoltage"
    assert v["magnitude"].iloc[0] == pytest.approx(0.01, abs=1e-9)
    both = check_limits(feeder, res, Limits(check_source_voltage=True))
    assert sorted(both["element"]) == ["a", "b"]
    assert check_limits(feeder, res, Limits(v_max_pu=1.07)).empty


def test_line_overload_and_undervoltage() -> None:
    net = _two_bus(max_i_ka=0.1)
    pp.create_load(net, 1, p_mw=0.1)  # ≈ 144 A at 0.4 kV through a 100 A line
    feeder = feeder_from_pandapower(net, "hot-line")
    res = run_powerflow(feeder, base_injections(feeder))
    v = check_limits(feeder, res, Limits())
    line = v[v["kind"] == "line_overload"]
    assert list(line["element"]) == ["ab"]
    i_a = 100.0 / (np.sqrt(3) * 0.4 * res.vm_pu[0, 1])  # current at the load end
    assert line["value"].iloc[0] == pytest.approx(i_a, rel=1e-3)  # 100 A rating → % = A
    assert line["magnitude"].iloc[0] == pytest.approx(line["value"].iloc[0] - 100.0)
    assert v[v["kind"] == "undervoltage"].empty  # 0.1 km of 0.1 ohm/km: tiny drop
    tight = check_limits(feeder, res, Limits(v_min_pu=res.vm_pu[0, 1] + 1e-4))
    assert list(tight.loc[tight["kind"] == "undervoltage", "element"]) == ["b"]


def test_transformer_overload() -> None:
    net = pp.create_empty_network()
    hv = pp.create_bus(net, vn_kv=10.0, name="hv")
    lv = pp.create_bus(net, vn_kv=0.4, name="lv")
    pp.create_ext_grid(net, hv)
    pp.create_transformer_from_parameters(
        net,
        hv,
        lv,
        sn_mva=0.1,
        vn_hv_kv=10.0,
        vn_lv_kv=0.4,
        vkr_percent=1.0,
        vk_percent=4.0,
        pfe_kw=0.0,
        i0_percent=0.0,
        name="T1",
    )
    pp.create_load(net, lv, p_mw=0.15)
    feeder = feeder_from_pandapower(net, "hot-trafo")
    res = run_powerflow(feeder, base_injections(feeder))
    v = check_limits(feeder, res, Limits(v_min_pu=0.5))
    assert list(v["kind"]) == ["trafo_overload"]
    assert v["element"].iloc[0] == "T1"
    assert 150.0 < v["value"].iloc[0] < 160.0  # 150 kW + losses, at a voltage below 1 pu


def test_reverse_flow_at_the_substation() -> None:
    net = _two_bus()
    pp.create_sgen(net, 1, p_mw=0.05)
    feeder = feeder_from_pandapower(net, "export")
    res = run_powerflow(feeder, base_injections(feeder))
    v = check_limits(feeder, res, Limits())
    rev = v[v["kind"] == "reverse_flow"]
    assert list(rev["element"]) == ["grid"]
    exported = 50.0 - res.losses_kw[0]
    assert rev["value"].iloc[0] == pytest.approx(exported, rel=1e-9)
    assert check_limits(feeder, res, Limits(max_reverse_flow_kw=60.0)).empty
    assert check_limits(feeder, res, Limits(max_reverse_flow_kw=None)).empty


def test_violation_table_columns_and_times(simbench_feeder) -> None:  # type: ignore[no-untyped-def]
    from transactive.grid import profile_injections

    inj = profile_injections(simbench_feeder, start=0, steps=96)
    res = run_powerflow(simbench_feeder, inj)
    v = check_limits(simbench_feeder, res, Limits(v_min_pu=0.99, v_max_pu=1.0))
    assert list(v.columns) == [
        "time",
        "element",
        "element_type",
        "kind",
        "value",
        "limit",
        "magnitude",
    ]
    assert len(v) > 0 and (v["magnitude"] > 0).all()
    assert set(v["time"]) <= set(inj.time)
    src = int(simbench_feeder.source_buses[0])
    mask = np.ones(simbench_feeder.n_bus, dtype=bool)
    mask[src] = False
    over = int((res.vm_pu[:, mask] > 1.0).sum())
    assert (v["kind"] == "overvoltage").sum() == over


def test_limits_validation() -> None:
    with pytest.raises(InvalidInputError, match="v_min_pu"):
        Limits(v_min_pu=1.1, v_max_pu=1.0)
    with pytest.raises(InvalidInputError, match="max_line_loading_percent"):
        Limits(max_line_loading_percent=0)
    with pytest.raises(InvalidInputError, match="max_reverse_flow_kw"):
        Limits(max_reverse_flow_kw=-1)

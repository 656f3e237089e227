"""LinDistFlow as a grid model: the linearisation at an AC point reproduces it, and
``verify`` compares LinDistFlow voltages with an AC power flow of the same injections."""

from __future__ import annotations

import numpy as np
import pytest

from transactive.errors import InvalidInputError
from transactive.grid import Limits, PowerFlow, base_injections, load_feeder
from transactive.grid.lindistflow import forward, linearise, lossless, radial, verify


def test_linearised_model_reproduces_the_ac_point_and_verify_measures_the_gap() -> None:
    feeder = load_feeder("pandapower:case33bw")
    inj = base_injections(feeder)
    net = radial(feeder)
    p, q = inj.p_kw[:, net.bus], inj.q_kvar[:, net.bus]
    pf = PowerFlow(feeder)
    ac = pf.run(inj)
    # at the AC point the linearised equations hold exactly: forward gives the AC voltages
    _, _, v_lin = forward(net, linearise(net, ac), p, q)
    vm = np.full((1, feeder.n_bus), np.nan)
    vm[:, net.bus] = np.sqrt(v_lin)
    exact = verify(feeder, inj.p_kw, inj.q_kvar, vm, Limits(), powerflow=pf)
    assert exact.max_voltage_error_pu < 1e-7  # the AC solver tolerance
    # the lossless model is not exact: the gap is what verify reports, per interval
    _, _, v0 = forward(net, lossless(net, 1), p, q)
    vm[:, net.bus] = np.sqrt(v0)
    check = verify(feeder, inj.p_kw, inj.q_kvar, vm, Limits())
    gap = np.abs(np.sqrt(v0) - ac.vm_pu[:, net.bus]).max()
    assert check.voltage_error_pu == pytest.approx([gap]) and gap > 1e-3
    # case33bw at nominal load is below 0.95 pu at its far end: AC violations are reported
    assert (check.violations["kind"] == "undervoltage").any()
    assert check.violations.equals(exact.violations)


def test_verify_rejects_mismatched_inputs() -> None:
    feeder = load_feeder("pandapower:case33bw")
    inj = base_injections(feeder)
    with pytest.raises(InvalidInputError, match="must all be"):
        verify(feeder, inj.p_kw, inj.q_kvar, np.ones((2, feeder.n_bus)), Limits())
    other = PowerFlow(load_feeder("pandapower:cigre_lv"))
    with pytest.raises(InvalidInputError, match="another feeder"):
        verify(feeder, inj.p_kw, inj.q_kvar, np.ones((1, feeder.n_bus)), Limits(), powerflow=other)

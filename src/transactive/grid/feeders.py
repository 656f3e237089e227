"""Convert real distribution feeders (pandapower built-ins and SimBench) to :class:`Feeder`.

This is the only module that touches pandapower objects; names and the cache lookup are in
:mod:`transactive.grid.registry` (cheap to import), and pandapower / simbench are imported
here only when a conversion runs. Converted feeders (tables and
SimBench yearly profiles) are cached as parquet under the user cache directory
(``platformdirs.user_cache_dir("transactive")/feeders``, override with the environment
variable ``TRANSACTIVE_CACHE_DIR``), so a second load reads a few parquet files.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transactive.errors import UnsupportedComponentError
from transactive.grid.model import Feeder, Profiles
from transactive.grid.registry import (
    CONVERTER_VERSION,
    available_feeders,
    cache_dir,
    check_name,
    load_feeder,
)

__all__ = [
    "available_feeders",
    "cache_dir",
    "convert",
    "feeder_from_pandapower",
    "load_feeder",
    "pandapower_net",
    "read_cache",
    "write_cache",
]

_TABLES = ("buses", "branches", "transformers", "sources", "loads", "sgens")
_PROFILE_ARRAYS = ("load_p_kw", "load_q_kvar", "sgen_p_kw", "sgen_q_kvar")
# pandapower tables this converter does not model; an in-service row raises
_UNSUPPORTED = (
    "gen",
    "trafo3w",
    "impedance",
    "ward",
    "xward",
    "dcline",
    "shunt",
    "motor",
    "asymmetric_load",
    "asymmetric_sgen",
    "svc",
    "tcsc",
    "ssc",
    "vsc",
)


def _pp_networks() -> dict[str, Callable[[], Any]]:
    import pandapower.networks as pn

    return {
        "pandapower:cigre_lv": pn.create_cigre_network_lv,
        "pandapower:cigre_mv": pn.create_cigre_network_mv,
        "pandapower:cigre_mv_pv_wind": lambda: pn.create_cigre_network_mv(with_der="pv_wind"),
        "pandapower:case33bw": pn.case33bw,
        "pandapower:kerber_dorfnetz": pn.create_kerber_dorfnetz,
        "pandapower:kerber_landnetz_freileitung_1": pn.create_kerber_landnetz_freileitung_1,
        "pandapower:kerber_landnetz_freileitung_2": pn.create_kerber_landnetz_freileitung_2,
        "pandapower:kerber_landnetz_kabel_1": pn.create_kerber_landnetz_kabel_1,
        "pandapower:kerber_landnetz_kabel_2": pn.create_kerber_landnetz_kabel_2,
        "pandapower:kerber_vorstadtnetz_kabel_1": pn.create_kerber_vorstadtnetz_kabel_1,
        "pandapower:kerber_vorstadtnetz_kabel_2": pn.create_kerber_vorstadtnetz_kabel_2,
        "pandapower:lv_schutterwald": pn.lv_schutterwald,
    }


def pandapower_net(name: str) -> Any:
    """The pandapower network behind a registry name (for cross-checks; slow for SimBench)."""
    check_name(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name.startswith("simbench:"):
            import simbench as sb

            return sb.get_simbench_net(name.removeprefix("simbench:"))
        state = random.getstate()
        try:
            random.seed(0)  # Kerber networks draw branch-out cable types at random
            return _pp_networks()[name]()
        finally:
            random.setstate(state)


def convert(name: str) -> Feeder:
    """Convert the network behind a registry name (with SimBench profiles), uncached."""
    net = pandapower_net(name)
    return feeder_from_pandapower(net, name=name, with_profiles=name.startswith("simbench:"))


# -- pandapower -> Feeder -----------------------------------------------------------------
def feeder_from_pandapower(net: Any, name: str, with_profiles: bool = False) -> Feeder:
    """Convert a pandapower network (and, for SimBench, its profiles) to a :class:`Feeder`.

    Out-of-service elements are dropped; open switches open the branch end they sit on;
    closed bus-bus switches become zero-impedance 'switch' branches."""
    _reject_unsupported(net, name)
    bus_pp = net.bus.index.to_numpy()
    pos = pd.Series(np.arange(bus_pp.size), index=bus_pp)
    names = net.bus["name"]
    use_names = names.notna().all() and names.astype(str).is_unique
    buses = pd.DataFrame(
        {
            "name": names.astype(str).to_numpy() if use_names else bus_pp.astype(str),
            "vn_kv": net.bus["vn_kv"].to_numpy(dtype=float),
        }
    )
    bus_ok = pd.Series(net.bus["in_service"].to_numpy(dtype=bool), index=bus_pp)
    f_hz = float(getattr(net, "f_hz", 50.0) or 50.0)
    lines = _lines(net, pos, bus_ok, buses, f_hz)
    trafos, nameplate = _trafos(net, pos, bus_ok, name)
    switches = _bus_switches(net, pos, bus_ok)
    branches = pd.concat([lines, trafos, switches], ignore_index=True)
    nameplate.index = branches.index[branches["kind"] == "trafo"]
    base_kva = 1000.0
    z_base = branches["vn_kv"].to_numpy() ** 2 / (base_kva / 1000.0)
    branches["r_pu"] = branches["r_ohm"].to_numpy() / z_base
    branches["x_pu"] = branches["x_ohm"].to_numpy() / z_base
    branches["rating_kva"] = np.sqrt(3.0) * branches["vn_kv"] * branches["i_max_a"]

    eg = net.ext_grid[net.ext_grid["in_service"].astype(bool)]
    sources = pd.DataFrame(
        {
            "name": _names(eg, "ext_grid"),
            "bus": pos[eg["bus"].to_numpy()].to_numpy(),
            "vm_pu": eg["vm_pu"].to_numpy(dtype=float),
            "va_degree": eg["va_degree"].to_numpy(dtype=float),
        }
    )
    loads, load_idx, sto_idx = _loads(net, pos, name)
    sgens, sgen_idx = _sgens(net, pos)
    profiles = (
        _simbench_profiles(net, load_idx, sto_idx, sgen_idx, sgens) if with_profiles else None
    )
    return Feeder(
        name=name,
        buses=buses,
        branches=branches,
        transformers=nameplate,
        sources=sources,
        loads=loads,
        sgens=sgens,
        profiles=profiles,
        base_kva=base_kva,
        f_hz=f_hz,
        meta={"converter": CONVERTER_VERSION},
    )


def _names(df: pd.DataFrame, prefix: str) -> np.ndarray:
    if "name" in df and df["name"].notna().all() and df["name"].astype(str).is_unique:
        return df["name"].astype(str).to_numpy()
    return np.array([f"{prefix} {i}" for i in df.index], dtype=object)


def _reject_unsupported(net: Any, name: str) -> None:
    for table in _UNSUPPORTED:
        df = net[table] if table in net else None
        if df is not None and len(df) and df.get("in_service", pd.Series(True)).astype(bool).any():
            raise UnsupportedComponentError(
                f"feeder {name!r} has in-service pandapower '{table}' elements "
                f"(e.g. index {df.index[0]}), which the grid converter does not model"
            )


def _switch_ends(net: Any, et: str) -> pd.DataFrame:
    sw = net.switch
    return sw[(sw["et"] == et) & ~sw["closed"].astype(bool)]


def _lines(
    net: Any, pos: pd.Series, bus_ok: pd.Series, buses: pd.DataFrame, f_hz: float
) -> pd.DataFrame:
    ln = net.line[net.line["in_service"].astype(bool)]
    par = ln["parallel"].to_numpy(dtype=float)
    length = ln["length_km"].to_numpy(dtype=float)
    fb = ln["from_bus"].to_numpy()
    tb = ln["to_bus"].to_numpy()
    g = ln["g_us_per_km"].to_numpy(dtype=float) if "g_us_per_km" in ln else np.zeros(len(ln))
    from_closed = bus_ok[fb].to_numpy()
    to_closed = bus_ok[tb].to_numpy()
    opened = _switch_ends(net, "l")
    opened = opened[opened["element"].isin(ln.index)]
    row = pd.Series(np.arange(len(ln)), index=ln.index)
    r = row[opened["element"].to_numpy()].to_numpy()
    at_from = opened["bus"].to_numpy() == fb[r]
    from_closed[r[at_from]] = False
    to_closed[r[~at_from]] = False
    fpos = pos[fb].to_numpy()
    return pd.DataFrame(
        {
            "name": _names(ln, "line"),
            "kind": "line",
            "from_bus": fpos,
            "to_bus": pos[tb].to_numpy(),
            "from_closed": from_closed,
            "to_closed": to_closed,
            "r_ohm": ln["r_ohm_per_km"].to_numpy(dtype=float) * length / par,
            "x_ohm": ln["x_ohm_per_km"].to_numpy(dtype=float) * length / par,
            "b_us": 2
            * np.pi
            * f_hz
            * ln["c_nf_per_km"].to_numpy(dtype=float)
            * 1e-3
            * length
            * par,
            "g_us": g * length * par,
            "vn_kv": buses["vn_kv"].to_numpy()[fpos],
            "i_max_a": ln["max_i_ka"].to_numpy(dtype=float) * 1e3 * ln["df"].to_numpy(float) * par,
        }
    )


def _col(df: pd.DataFrame, col: str, default: float) -> np.ndarray:
    if col not in df:
        return np.full(len(df), default)
    return pd.to_numeric(df[col], errors="coerce").fillna(default).to_numpy(dtype=float)


def _trafos(
    net: Any, pos: pd.Series, bus_ok: pd.Series, name: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    tr = net.trafo[net.trafo["in_service"].astype(bool)]
    par = tr["parallel"].to_numpy(dtype=float)
    sn = tr["sn_mva"].to_numpy(dtype=float)
    vn_lv = tr["vn_lv_kv"].to_numpy(dtype=float)
    tap_neutral = _col(tr, "tap_neutral", 0.0)
    tap_pos = np.where(np.isnan(_col(tr, "tap_pos", np.nan)), tap_neutral, _col(tr, "tap_pos", 0))
    off_neutral = tap_pos != tap_neutral
    if (off_neutral & (_col(tr, "tap_step_degree", 0.0) != 0)).any():
        raise UnsupportedComponentError(f"feeder {name!r}: phase-shifting tap changers")
    if "tap_dependency_table" in tr and (off_neutral & tr["tap_dependency_table"].eq(True)).any():
        raise UnsupportedComponentError(f"feeder {name!r}: tap-dependent transformer impedance")
    shift = _col(tr, "shift_degree", 0.0)
    if np.any(np.abs(shift / 30 - np.round(shift / 30)) > 1e-9):
        raise UnsupportedComponentError(
            f"feeder {name!r}: transformer phase shift not a multiple of 30°"
        )
    z_base = vn_lv**2 / sn
    zk = tr["vk_percent"].to_numpy(dtype=float) / 100 * z_base / par
    rk = tr["vkr_percent"].to_numpy(dtype=float) / 100 * z_base / par
    hv = tr["hv_bus"].to_numpy()
    lv = tr["lv_bus"].to_numpy()
    from_closed = bus_ok[hv].to_numpy()
    to_closed = bus_ok[lv].to_numpy()
    opened = _switch_ends(net, "t")
    opened = opened[opened["element"].isin(tr.index)]
    row = pd.Series(np.arange(len(tr)), index=tr.index)
    r = row[opened["element"].to_numpy()].to_numpy()
    at_hv = opened["bus"].to_numpy() == hv[r]
    from_closed[r[at_hv]] = False
    to_closed[r[~at_hv]] = False
    branches = pd.DataFrame(
        {
            "name": _names(tr, "trafo"),
            "kind": "trafo",
            "from_bus": pos[hv].to_numpy(),
            "to_bus": pos[lv].to_numpy(),
            "from_closed": from_closed,
            "to_closed": to_closed,
            "r_ohm": rk,
            "x_ohm": np.sqrt(np.maximum(zk**2 - rk**2, 0.0)),
            "b_us": 0.0,
            "g_us": 0.0,
            "vn_kv": vn_lv,
            "i_max_a": sn * par * 1e3 / (np.sqrt(3) * vn_lv),
        }
    )
    tap_side = tr["tap_side"].astype(object).where(tr["tap_side"].notna(), "").to_numpy()
    if "tap_changer_type" in tr:
        # pandapower >= 3 changes the ratio only for 'Ratio'/'Symmetrical' tap changers;
        # a missing type means no tap changer, so the tap position is ignored there too
        ratio_tap = tr["tap_changer_type"].isin(["Ratio", "Symmetrical"]).to_numpy()
        tap_side = np.where(ratio_tap, tap_side, "")
    nameplate = pd.DataFrame(
        {
            "sn_kva": sn * par * 1e3,
            "vn_hv_kv": tr["vn_hv_kv"].to_numpy(dtype=float),
            "vn_lv_kv": vn_lv,
            "vk_percent": tr["vk_percent"].to_numpy(dtype=float),
            "vkr_percent": tr["vkr_percent"].to_numpy(dtype=float),
            "pfe_kw": _col(tr, "pfe_kw", 0.0) * par,
            "i0_percent": _col(tr, "i0_percent", 0.0),
            "shift_degree": shift,
            "tap_side": np.asarray(tap_side, dtype=object).astype(str),
            "tap_pos": tap_pos,
            "tap_neutral": tap_neutral,
            "tap_min": _col(tr, "tap_min", 0.0),
            "tap_max": _col(tr, "tap_max", 0.0),
            "tap_step_percent": _col(tr, "tap_step_percent", 0.0),
        }
    )
    return branches, nameplate


def _bus_switches(net: Any, pos: pd.Series, bus_ok: pd.Series) -> pd.DataFrame:
    sw = net.switch
    bb = sw[(sw["et"] == "b") & sw["closed"].astype(bool)]
    if "z_ohm" in bb:
        z = bb["z_ohm"].fillna(0.0).to_numpy(dtype=float)
        if (z != 0).any():
            raise UnsupportedComponentError("bus-bus switches with non-zero z_ohm")
    fb = bb["bus"].to_numpy()
    tb = bb["element"].to_numpy()
    ok = bus_ok[fb].to_numpy() & bus_ok[tb].to_numpy()
    return pd.DataFrame(
        {
            "name": [f"switch {i}" for i in bb.index],
            "kind": "switch",
            "from_bus": pos[fb].to_numpy(),
            "to_bus": pos[tb].to_numpy(),
            "from_closed": ok,
            "to_closed": ok,
            "r_ohm": 0.0,
            "x_ohm": 0.0,
            "b_us": 0.0,
            "g_us": 0.0,
            "vn_kv": net.bus["vn_kv"].to_numpy(dtype=float)[pos[fb].to_numpy()],
            "i_max_a": np.nan,
        }
    )


def _loads(net: Any, pos: pd.Series, name: str) -> tuple[pd.DataFrame, pd.Index, pd.Index]:
    ld = net.load[net.load["in_service"].astype(bool)]
    zip_cols = [c for c in ld.columns if c.startswith(("const_z_", "const_i_"))]
    if zip_cols and (ld[zip_cols].fillna(0).to_numpy(dtype=float) != 0).any():
        raise UnsupportedComponentError(
            f"feeder {name!r}: voltage-dependent (ZIP) loads; "
            "only constant-power loads are modelled"
        )
    st = net.storage[net.storage["in_service"].astype(bool)] if "storage" in net else ld.iloc[:0]

    def table(df: pd.DataFrame, kind: str) -> pd.DataFrame:
        scale = _col(df, "scaling", 1.0)
        return pd.DataFrame(
            {
                "name": _names(df, kind),
                "bus": pos[df["bus"].to_numpy()].to_numpy(),
                "kind": kind,
                "p_kw": df["p_mw"].to_numpy(dtype=float) * scale * 1e3,
                "q_kvar": _col(df, "q_mvar", 0.0) * scale * 1e3,
                "profile": df["profile"].astype(str).to_numpy() if "profile" in df else "",
            }
        )

    loads = pd.concat([table(ld, "load"), table(st, "storage")], ignore_index=True)
    return loads, ld.index, st.index


def _sgens(net: Any, pos: pd.Series) -> tuple[pd.DataFrame, pd.Index]:
    sg = net.sgen[net.sgen["in_service"].astype(bool)]
    scale = _col(sg, "scaling", 1.0)
    p = sg["p_mw"].to_numpy(dtype=float) * scale * 1e3
    sn = _col(sg, "sn_mva", np.nan) * 1e3
    kind = sg["type"].astype(object).where(sg["type"].notna(), "sgen") if len(sg) else []
    sgens = pd.DataFrame(
        {
            "name": _names(sg, "sgen"),
            "bus": pos[sg["bus"].to_numpy()].to_numpy(),
            "kind": np.asarray(kind, dtype=object).astype(str),
            "p_kw": p,
            "q_kvar": _col(sg, "q_mvar", 0.0) * scale * 1e3,
            "sn_kva": np.where(np.isnan(sn), p, sn),
            "profile": sg["profile"].astype(str).to_numpy() if "profile" in sg else "",
        }
    )
    return sgens, sg.index


def _simbench_profiles(
    net: Any, load_idx: pd.Index, sto_idx: pd.Index, sgen_idx: pd.Index, sgens: pd.DataFrame
) -> Profiles | None:
    import simbench as sb

    if "profiles" not in net or len(net.profiles.get("load", [])) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        av = sb.get_absolute_values(net, profiles_instead_of_study_cases=True)
    # SimBench time stamps are German wall-clock time (CET/CEST, with the DST gap and the
    # repeated autumn hour); localise and convert to a uniform 15-minute UTC axis
    local = pd.DatetimeIndex(pd.to_datetime(net.profiles["load"]["time"], format="%d.%m.%Y %H:%M"))
    time = local.tz_localize("Europe/Berlin", ambiguous="infer").tz_convert("UTC")
    steps = len(time)

    def pick(key: tuple[str, str], idx: pd.Index, base: np.ndarray) -> np.ndarray:
        df = av.get(key)
        if df is None or len(idx) == 0:
            return np.zeros((steps, len(idx)))
        if df.shape[0] != steps:  # no profile for this element type: constant base value
            return np.broadcast_to(base, (steps, len(idx))).copy()
        return df.loc[:, idx].to_numpy(dtype=float) * 1e3

    ld = net.load.loc[load_idx]
    st = net.storage.loc[sto_idx] if "storage" in net else net.storage
    load_p = np.hstack(
        [
            pick(("load", "p_mw"), load_idx, ld["p_mw"].to_numpy() * 1e3),
            pick(("storage", "p_mw"), sto_idx, st["p_mw"].to_numpy() * 1e3),
        ]
    )
    load_q = np.hstack(
        [
            pick(("load", "q_mvar"), load_idx, ld["q_mvar"].to_numpy() * 1e3),
            np.broadcast_to(st["q_mvar"].to_numpy() * 1e3, (steps, len(sto_idx))),
        ]
    )
    sgen_p = pick(("sgen", "p_mw"), sgen_idx, sgens["p_kw"].to_numpy())
    p_base = sgens["p_kw"].to_numpy()
    ratio = np.divide(
        sgens["q_kvar"].to_numpy(), p_base, out=np.zeros_like(p_base), where=p_base != 0
    )
    return Profiles(time, load_p, load_q, sgen_p, sgen_p * ratio)


# -- parquet cache ------------------------------------------------------------------------
def write_cache(feeder: Feeder, path: Path) -> None:
    """Write a feeder to its cache directory ``path`` atomically (a temporary directory
    renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".tmp-"))
    try:
        for table in _TABLES:
            df = getattr(feeder, table)
            df.to_parquet(tmp / f"{table}.parquet", index=True)
        if feeder.profiles is not None:
            prof = feeder.profiles
            pd.DataFrame({"time": prof.time}).to_parquet(tmp / "time.parquet")
            for arr_name in _PROFILE_ARRAYS:
                arr = getattr(prof, arr_name)
                df = pd.DataFrame(arr, columns=[str(i) for i in range(arr.shape[1])])
                df.to_parquet(tmp / f"{arr_name}.parquet", index=False)
        meta = {
            "name": feeder.name,
            "base_kva": feeder.base_kva,
            "f_hz": feeder.f_hz,
            "meta": feeder.meta,
            "profiles": feeder.profiles is not None,
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (path / "meta.json").exists():
            raise


def read_cache(path: Path) -> Feeder:
    """Read a feeder written by :func:`write_cache`."""
    meta = json.loads((path / "meta.json").read_text())
    tables = {t: pd.read_parquet(path / f"{t}.parquet") for t in _TABLES}
    profiles = None
    if meta["profiles"]:
        time = pd.DatetimeIndex(pd.read_parquet(path / "time.parquet")["time"])
        arrays = {}
        for a in _PROFILE_ARRAYS:
            arr = pd.read_parquet(path / f"{a}.parquet").to_numpy(dtype=np.float64)
            arrays[a] = arr if arr.shape[1] else np.zeros((len(time), 0))
        profiles = Profiles(time=time, **arrays)
    return Feeder(
        name=meta["name"],
        profiles=profiles,
        base_kva=float(meta["base_kva"]),
        f_hz=float(meta["f_hz"]),
        meta=dict(meta["meta"]),
        **tables,
    )

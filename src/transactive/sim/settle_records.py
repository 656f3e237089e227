"""Settle a directory of records again, from the signed readings up (``transactive settle``).

A records directory is what ``simulate --out`` (or the report's ``tables/``) writes and what
the market service exports: ``run.json`` (currency, baseline design, time zone, market grid,
evaluated start, the settlement section of the scenario), ``nodes`` (the tree),
``meters`` (the meter registry with public keys), ``readings.jsonl`` (the signed meter
messages), ``awards.parquet`` and, where present, ``grid.parquet`` (power-flow losses, for
the feeder check) and ``settlement.parquet`` (the simulator's own settlement, compared).

:func:`settle_records` then, per design: ingests every message against the registry and
the grid (a bad signature, an unknown meter or a duplicate stops it, naming the line),
runs VEE (implausible readings flagged, gaps estimated and flagged ``estimated``), settles
the evaluated period with the run's settlement rules, scores the registered baselines on
placebo days of the baseline design's home meters, and runs the bad-actor monitoring.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from transactive.core.records import METER
from transactive.errors import InvalidInputError
from transactive.nodes.tables import tree_from_table
from transactive.nodes.tree import Kind, Tree
from transactive.settlement import Levy, settle
from transactive.settlement.baseline_scores import score_baselines
from transactive.settlement.baselines import History, baseline_names, get_baseline
from transactive.settlement.meter_data import (
    MarketGrid,
    Message,
    MeterStore,
    Registry,
    from_json,
    ingest,
    meter_table,
    registry_from_table,
)
from transactive.settlement.monitor import Monitoring, losses_from_grid, monitor
from transactive.settlement.vee import estimate, validate
from transactive.sim.flexibility import settle_flex
from transactive.sim.results import READINGS_FILE, RUN_FILE, evaluated
from transactive.sim.scenario import Flexibility, Settlement

#: Default placebo event window for the baseline scores: 17:00–20:00 local, the evening
#: peak that distribution flexibility is called for.
EVENT_WINDOW_H = (17, 20)


class MarketInfo(BaseModel):
    """The market's interval grid."""

    model_config = ConfigDict(extra="forbid")
    start: AwareDatetime
    interval_min: int = Field(gt=0)
    n_intervals: int = Field(ge=0)


class RunInfo(BaseModel):
    """``run.json``: what settling a run's records needs (one schema, checked on load)."""

    model_config = ConfigDict(extra="forbid")
    scenario: str
    currency: str = Field(min_length=3, max_length=3)
    baseline_design: str
    timezone: str
    seed: int
    areas: list[str]
    evaluated_start: AwareDatetime
    market: MarketInfo
    settlement: Settlement
    flexibility: Flexibility | None = None  # the [flexibility] section, if the run had one


@dataclass(frozen=True)
class Records:
    """A loaded records directory (see the module docstring)."""

    path: Path
    run: RunInfo
    tree: Tree
    registry: Registry
    messages: dict[str, list[Message]]
    awards: pd.DataFrame
    grid: pd.DataFrame | None
    settlement: pd.DataFrame | None
    temperature: pd.Series | None  # °C per interval start (UTC), from weather.parquet
    trades: pd.DataFrame | None = None  # peer-to-peer trades (trades.parquet), if any
    commitments: pd.DataFrame | None = None  # flexibility commitments, if any


@dataclass(frozen=True)
class Settled:
    """What :func:`settle_records` found and computed."""

    records: Records
    meter: pd.DataFrame  # METER records read back from the verified stores (all designs)
    lines: pd.DataFrame  # SETTLEMENT lines of the evaluated period
    vee: pd.DataFrame  # per design: readings, estimated, missing, implausible
    scores: pd.DataFrame  # placebo scores of every registered baseline
    baseline: str  # the baseline chosen (--baseline)
    monitoring: Monitoring
    matches_simulation: bool | None  # lines equal the simulator's own (None: none given)


def _read_table(path: Path, stem: str) -> pd.DataFrame:
    for suffix in (".parquet", ".csv"):
        f = path / f"{stem}{suffix}"
        if f.is_file():
            try:
                return pd.read_parquet(f) if suffix == ".parquet" else pd.read_csv(f)
            except Exception as exc:
                raise InvalidInputError(f"{f}: cannot be read ({exc})") from None
    raise InvalidInputError(f"{path}: no {stem}.parquet or {stem}.csv (not a records directory?)")


def load_records(path: str | Path) -> Records:
    """Load and check a records directory; errors name the file, line or key."""
    root = Path(path)
    if not root.is_dir():
        raise InvalidInputError(f"{root}: not a directory of records")
    run_file = root / RUN_FILE
    if not run_file.is_file():
        raise InvalidInputError(f"{root}: no {RUN_FILE} (not a transactive records directory)")
    try:
        raw = json.loads(run_file.read_text(encoding="utf-8"))
        run = RunInfo.model_validate(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{run_file}: line {exc.lineno}: {exc.msg}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(x) for x in err["loc"])
        raise InvalidInputError(f"{run_file}: {key!r}: {err['msg']}") from None
    tree = tree_from_table(_read_table(root, "nodes"), str(root / "nodes"))
    registry = registry_from_table(_read_table(root, "meters"), str(root / "meters"))
    messages: dict[str, list[Message]] = {}
    readings = root / READINGS_FILE
    if not readings.is_file():
        raise InvalidInputError(f"{root}: no {READINGS_FILE} (the signed meter readings)")
    with readings.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                design = doc["design"]
                message = from_json(json.dumps(doc["message"]))
            except (json.JSONDecodeError, KeyError, TypeError, InvalidInputError) as exc:
                raise InvalidInputError(
                    f"{readings}: line {n}: not a signed reading ({exc})"
                ) from None
            messages.setdefault(str(design), []).append(message)
    grid = _read_table(root, "grid") if (root / "grid.parquet").is_file() else None
    own = _read_table(root, "settlement") if (root / "settlement.parquet").is_file() else None
    temperature = None
    if (root / "weather.parquet").is_file():
        w = _read_table(root, "weather")
        if {"time", "temp_air_c"} <= set(w.columns):
            temperature = pd.Series(
                w["temp_air_c"].to_numpy(dtype=float),
                index=pd.DatetimeIndex(pd.to_datetime(w["time"], utc=True)),
            )
    trades = _read_table(root, "trades") if (root / "trades.parquet").is_file() else None
    com = _read_table(root, "commitments") if (root / "commitments.parquet").is_file() else None
    return Records(
        root, run, tree, registry, messages, _read_table(root, "awards"), grid, own, temperature,
        trades if trades is not None and len(trades) else None, com,
    )  # fmt: skip


def settle_records(records: Records, baseline: str = "caiso-10-of-10") -> Settled:
    """Ingest, VEE, settle, score baselines and monitor ``records`` (module docstring);
    ``baseline``: the registered baseline chosen for measurement and verification."""
    get_baseline(baseline)  # an unknown name is refused before any work, listing the known
    run = records.run
    grid = MarketGrid(
        pd.Timestamp(run.market.start), run.market.interval_min, run.market.n_intervals
    )
    meters, vee_rows = [], []
    node_market = _node_markets(records.tree)
    for design, messages in records.messages.items():
        store = MeterStore.for_registry(records.registry, grid)
        try:
            ingest(store, messages, records.registry, grid)
        except InvalidInputError as exc:
            raise InvalidInputError(
                f"{records.path / READINGS_FILE}: design {design}: {exc}"
            ) from None
        implausible = validate(store, records.registry)
        est = estimate(store, records.registry, run.timezone)
        market = {
            str(m): node_market[str(n)]
            for m, n in zip(records.registry.meter_id, records.registry.node_id, strict=True)
        }
        meters.append(meter_table(store, records.registry, design, market, _stage(records, design)))
        vee_rows.append(
            {
                "design": design,
                "messages": len(messages),
                "readings": len(store),
                "estimated": len(est.estimated),
                "missing": len(est.missing),
                "implausible": len(implausible),
            }
        )
    meter = METER.concat(meters)
    start = pd.Timestamp(run.evaluated_start)
    sc = run.settlement
    lines = settle(
        evaluated(meter, start),
        evaluated(records.awards, start),
        records.tree,
        currency=run.currency,
        baseline=run.baseline_design,
        rate=sc.network_rate,
        levies=[Levy(lv.name, lv.per_kwh, lv.payee, lv.on) for lv in sc.levies],
        vat_percent=sc.vat_percent,
        vat_payee=sc.vat_payee,
        period=sc.period,
        trades=None if records.trades is None else evaluated(records.trades, start),
    )
    if records.commitments is not None and len(records.commitments) and run.flexibility:
        lines = settle_flex(
            lines, records.commitments, evaluated(meter, start), records.tree,
            flexibility=run.flexibility, timezone=run.timezone, currency=run.currency,
            evaluated_start=start, period=sc.period,
            payees={lv.payee for lv in sc.levies} | ({sc.vat_payee} if sc.vat_percent else set()),
        )  # fmt: skip
    return Settled(
        records=records,
        meter=meter,
        lines=lines,
        vee=pd.DataFrame(vee_rows),
        scores=baseline_scores(
            meter, records.tree, run.baseline_design, run.timezone, records.temperature
        ),
        baseline=baseline,
        monitoring=_monitoring(records, evaluated(meter, start)),
        matches_simulation=_same_lines(lines, records.settlement),
    )


def baseline_scores(
    meter: pd.DataFrame,
    tree: Tree,
    design: str,
    timezone: str,
    temperature: pd.Series | None = None,
    names: Sequence[str] = (),
) -> pd.DataFrame:
    """Placebo scores of the registered baselines (or ``names``) on the home meters of
    ``design`` (the business-as-usual design: no events), window :data:`EVENT_WINDOW_H`."""
    homes = set(tree.id[tree.kind == str(Kind.HOME)].astype(str))
    rows = meter[(meter["design"].astype(str) == design) & meter["node_id"].astype(str).isin(homes)]
    if rows.empty:
        raise InvalidInputError(f"no home meter readings of the baseline design {design!r}")
    history = History.from_meter(rows, timezone, temperature)
    per_h = round(1 / history.slot_h)
    window = (EVENT_WINDOW_H[0] * per_h, EVENT_WINDOW_H[1] * per_h)
    return score_baselines(history, list(names) or baseline_names(), window)


def _monitoring(records: Records, meter: pd.DataFrame) -> Monitoring:
    losses = None
    if records.grid is not None and {"design", "area", "time", "losses_kw"} <= set(
        records.grid.columns
    ):
        losses = losses_from_grid(records.grid, meter, records.tree, records.run.areas)
    capacity = pd.Series(records.registry.max_kw, index=records.registry.meter_id.astype(str))
    return monitor(
        meter,
        records.tree,
        capacity_kw=capacity[np.isfinite(capacity.to_numpy())],
        losses_kwh=losses,
        tz=records.run.timezone,
    )


def _node_markets(tree: Tree) -> dict[str, str]:
    """The market a node's meter settles in: its parent node (the root: wholesale)."""
    parent = np.where(tree.parent >= 0, tree.id[np.maximum(tree.parent, 0)], "wholesale")
    return dict(zip(tree.id.astype(str), parent.astype(str), strict=True))


def _stage(records: Records, design: str) -> str:
    """The stage the meters of ``design`` are read in (the real-time or tariff stage)."""
    stages = records.awards.loc[records.awards["design"].astype(str) == design, "stage"]
    names = [s for s in pd.unique(stages.astype(str)) if s != "day-ahead"]
    if len(names) != 1:
        raise InvalidInputError(
            f"{records.path}: design {design}: awards name stages {sorted(names)}, not one"
        )
    return names[0]


def _same_lines(lines: pd.DataFrame, own: pd.DataFrame | None) -> bool | None:
    """Whether ``lines`` equal the simulator's settlement (amount per design, participant,
    counterparty and charge, to the cent)."""
    if own is None:
        return None
    keys = ["design", "participant_id", "counterparty_id", "charge"]

    def totals(df: pd.DataFrame) -> pd.Series:
        frame = df[[*keys, "amount"]].astype({k: str for k in keys})
        return frame.groupby(keys)["amount"].sum().astype(np.int64)

    a, b = totals(lines), totals(own)
    return bool(a.index.equals(b.index) and (a == b).all()) if len(a) == len(b) else False


def summary(settled: Settled) -> list[dict[str, Any]]:
    """One row per design: lines, participants, money billed (minor units) and the checks."""
    out = []
    for design, ln in settled.lines.groupby("design", observed=True):
        paid = ln["amount"].to_numpy(dtype=np.int64)
        out.append(
            {
                "design": str(design),
                "lines": len(ln),
                "participants": int(ln["participant_id"].nunique()),
                "paid_minor": int(paid[paid > 0].sum()),
                "received_minor": int(-paid[paid < 0].sum()),
                "balanced": True,  # settle() raised BalanceError otherwise
            }
        )
    return out

"""Runs of one scenario over several random seeds, and over DER stages.

A *seed* draws the device population and the forecast errors (``Scenario.seed``); every design
of one seed runs on the same draw, so designs are compared paired by seed
(:mod:`transactive.sim.stats`). Seeds are derived from the scenario's own: seed ``i`` of ``n``
is ``scenario.seed + i`` (:func:`seeds_for`), so a run with more seeds extends one with fewer
and a scenario's first seed is the one ``simulate`` runs alone.

With ``workers > 1`` the seeds run in a pool of processes (standard library); each worker
returns only the small tables the comparison needs (the long KPI table and the value table),
except the first seed's, which comes back in full (plots, records). The results do not depend
on the number of workers: every seed's run is the same computation wherever it runs.
"""

from __future__ import annotations

import multiprocessing
import tomllib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transactive.errors import InvalidInputError
from transactive.sim import runner
from transactive.sim.results import Comparison, SimResults
from transactive.sim.scenario import STAGES, Scenario, load_scenario, parse_scenario
from transactive.sim.stats import SUMMARY_COLUMNS, summarise

#: ``progress(seed, design, done, total)``: ``done`` of ``total`` market intervals of
#: ``design`` run for ``seed`` (called in the calling process, also when workers run it).
BatchProgress = Callable[[int, str, int, int], None]

#: Columns of :func:`kpi_long` and :attr:`Comparison.kpis`.
KPI_COLUMNS = ("seed", "design", "kpi", "value")
#: Columns of :func:`sweep`: the DER stage, then the columns of :func:`stats.summarise`.
SWEEP_COLUMNS = ("stage", *SUMMARY_COLUMNS)
#: KPIs a sweep prints (``{cur}``: the currency code); its table holds every KPI.
MAIN_KPIS = (
    "peak_import_kw",
    "energy_import_kwh",
    "losses_kwh",
    "thermal_overloads",
    "voltage_violations",
    "unmet_kwh",
    "mean_bill_{cur}",
    "total_cost_{cur}",
)
_POLL_S = 0.1  # how often the caller's process looks for workers' progress while it waits


@dataclass(frozen=True)
class SeedRun:
    """What one seed's run sends back: its long KPI table, its value table (with a ``seed``
    column) and, for the first seed only, the full results."""

    seed: int
    kpis: pd.DataFrame
    value: pd.DataFrame
    results: SimResults | None


def seeds_for(scenario: Scenario, n: int) -> list[int]:
    """The ``n`` seeds of a comparison: ``scenario.seed``, ``scenario.seed + 1``, …"""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidInputError(f"seeds: need a whole number ≥ 1, got {n!r}")
    return [scenario.seed + i for i in range(n)]


def with_seed(scenario: Scenario, seed: int) -> Scenario:
    """``scenario`` with its ``seed`` replaced (the key's own rule: a whole number ≥ 0; no
    other key depends on it)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInputError(f"seed: need a whole number ≥ 0, got {seed!r}")
    return scenario.model_copy(update={"seed": seed})


def kpi_long(results: SimResults, seed: int) -> pd.DataFrame:
    """The KPIs of one run as a long table ``seed, design, kpi, value`` (KPI order, then
    design order, as in ``results.kpis``)."""
    k = results.kpis
    n_kpi, n_design = k.shape
    return pd.DataFrame(
        {
            "seed": np.full(n_kpi * n_design, seed, dtype=np.int64),
            "design": np.tile(k.columns.to_numpy(dtype=object), n_kpi),
            "kpi": np.repeat(k.index.to_numpy(dtype=object), n_design),
            "value": k.to_numpy(dtype=float).ravel(),
        }
    )


def baseline_of(scenario: Scenario, designs: Sequence[str] | None = None) -> str:
    """The design every other is compared with: the scenario's ``baseline`` when it is among
    the designs run, else the first design run."""
    chosen = tuple(designs) if designs else scenario.designs
    return scenario.baseline if scenario.baseline in chosen else chosen[0]


def compare(
    scenario: Scenario,
    seeds: Sequence[int],
    *,
    workers: int = 1,
    designs: Sequence[str] | None = None,
    progress: BatchProgress | None = None,
) -> Comparison:
    """Run every design of ``scenario`` (or ``designs``) once per seed; see the module
    docstring. ``workers``: processes (1 = in this process)."""
    seeds = list(seeds)
    if not seeds:
        raise InvalidInputError("seeds: need at least one seed")
    if len(set(seeds)) != len(seeds):
        raise InvalidInputError(f"seeds: each seed once, got {seeds}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidInputError(f"workers: need a whole number ≥ 1, got {workers!r}")
    chosen = tuple(designs) if designs else None
    tasks = [(with_seed(scenario, s), chosen, i == 0) for i, s in enumerate(seeds)]
    if workers == 1 or len(seeds) == 1:
        runs = [_run_seed(*t, progress) for t in tasks]
    else:
        runs = _in_pool(tasks, min(workers, len(seeds)), progress)
    first = runs[0].results
    assert first is not None  # the first task keeps its full results
    kpis = pd.concat([r.kpis for r in runs], ignore_index=True)
    baseline = baseline_of(scenario, chosen)
    return Comparison(
        results=first, kpis=kpis, summary=summarise(kpis, baseline), baseline=baseline
    )


def sweep(
    scenarios: Mapping[int, Scenario],
    n_seeds: int,
    *,
    workers: int = 1,
    designs: Sequence[str] | None = None,
    progress: Callable[[int], BatchProgress] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compare the designs once per DER stage: ``scenarios`` maps each stage to its scenario
    (see :func:`load_stages`). Every stage runs the same seeds (paired across stages too).

    Returns the summary table (:data:`SWEEP_COLUMNS`, every KPI) and the long KPI table with
    a ``stage`` column. ``progress(stage)`` gives the progress callback of that stage's runs.
    """
    summaries, kpis = [], []
    for stage, sc in scenarios.items():
        if stage not in STAGES:
            raise InvalidInputError(f"stage: {stage!r} is not a DER stage (choose from 1, 2, 3)")
        cmp = compare(
            sc,
            seeds_for(sc, n_seeds),
            workers=workers,
            designs=designs,
            progress=progress(stage) if progress is not None else None,
        )
        summaries.append(cmp.summary.assign(stage=stage))
        kpis.append(cmp.kpis.assign(stage=stage))
    summary = pd.concat(summaries, ignore_index=True)[list(SWEEP_COLUMNS)]
    long = pd.concat(kpis, ignore_index=True)[["stage", *KPI_COLUMNS]]
    return summary, long


def stage_raw(raw: Mapping[str, Any], stage: int) -> dict[str, Any]:
    """A scenario's raw table (the parsed TOML) with ``der.stage`` replaced; validate it with
    :func:`transactive.sim.scenario.parse_scenario`. Explicit ``der.penetration`` shares
    still override the stage's preset, as in the file."""
    der = raw.get("der", {})
    if not isinstance(der, Mapping):
        raise InvalidInputError(f"der: must be a table, got {der!r}")
    return {**raw, "der": {**der, "stage": stage}}


def load_stages(path: str | Path, stages: Sequence[int]) -> dict[int, Scenario]:
    """The scenario file once per DER stage (:func:`stage_raw`), each validated; a problem
    of the file itself is reported as :func:`~transactive.sim.scenario.load_scenario` does."""
    for stage in stages:
        if stage not in STAGES:
            raise InvalidInputError(f"stage: {stage!r} is not a DER stage (choose from 1, 2, 3)")
    p = Path(path)
    load_scenario(p)
    raw = tomllib.loads(p.read_text(encoding="utf-8"))
    return {s: parse_scenario(stage_raw(raw, s), base_dir=p.parent, source=str(p)) for s in stages}


def main_kpis(kpis: Sequence[str], currency: str) -> list[str]:
    """Those of :data:`MAIN_KPIS` among ``kpis`` (all of ``kpis`` if none is)."""
    wanted = [k.format(cur=currency.lower()) for k in MAIN_KPIS]
    main = [k for k in wanted if k in set(kpis)]
    return main or list(kpis)


# --- one seed, here or in a worker ------------------------------------------------------------


def _run_seed(
    scenario: Scenario,
    designs: tuple[str, ...] | None,
    keep: bool,
    progress: BatchProgress | None = None,
) -> SeedRun:
    """Run one seed; keep the full results only when ``keep``."""
    seed = scenario.seed
    report = None if progress is None else (lambda d, done, n: progress(seed, d, done, n))
    res = runner.run(scenario, designs, progress=report)
    value = res.value.assign(seed=seed) if len(res.value.columns) else res.value
    return SeedRun(seed, kpi_long(res, seed), value, res if keep else None)


_worker_queue: Any = None  # the progress queue of a worker process (set by _init_worker)


def _init_worker(q: Any) -> None:
    global _worker_queue
    _worker_queue = q


def _report_to_queue(seed: int, design: str, done: int, total: int) -> None:
    _worker_queue.put((seed, design, done, total))


def _run_in_worker(
    scenario: Scenario, designs: tuple[str, ...] | None, keep: bool, report: bool
) -> SeedRun:
    return _run_seed(scenario, designs, keep, _report_to_queue if report else None)


def _in_pool(
    tasks: list[tuple[Scenario, tuple[str, ...] | None, bool]],
    workers: int,
    progress: BatchProgress | None,
) -> list[SeedRun]:
    """Run the tasks in ``workers`` processes; the workers' progress comes back on a queue
    and is passed to ``progress`` here, in order of arrival."""
    ctx = multiprocessing.get_context()
    # A SimpleQueue writes at once (no feeder thread): when a task's result arrives, all of its
    # progress is already in the pipe. Workers block only while this process is not reading,
    # and it reads until the last task is done.
    q = ctx.SimpleQueue()
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(q,)
    ) as ex:
        futures = [ex.submit(_run_in_worker, *t, progress is not None) for t in tasks]
        pending: set[Future[SeedRun]] = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=_POLL_S, return_when=FIRST_COMPLETED)
                _drain(q, progress)  # also while runs end after a failure: they may be writing
                if any(not f.cancelled() and f.exception() is not None for f in done):
                    for f in pending:  # a failure: start no more runs
                        f.cancel()
                    pending = {f for f in pending if not f.cancelled()}
            _drain(q, progress)
        except BaseException:  # interrupted (Ctrl-C) or a failing progress callback
            for f in futures:
                f.cancel()
            _stop_workers(ex)
            raise
    for f in futures:  # the first failure in task order, if any
        if not f.cancelled() and (exc := f.exception()) is not None:
            raise exc
    return [f.result() for f in futures]


def _stop_workers(ex: ProcessPoolExecutor) -> None:
    """End the pool's processes now (the executor has no public way to): nothing more is
    wanted from them and none may be left writing to a queue nobody reads."""
    for p in list(getattr(ex, "_processes", {}).values()):
        p.terminate()


def _drain(q: Any, progress: BatchProgress | None) -> None:
    """Pass on every progress report waiting in ``q`` (this process is its only reader)."""
    while not q.empty():
        item = q.get()
        if progress is not None:
            progress(*item)

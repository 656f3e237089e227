"""The settlement report (``settlement.html``): balance per design, VEE, baseline scores,
bad-actor monitoring, the invoices and the journal — everything a participant, an auditor
or a regulator needs to check the money without trusting the operator.

:func:`write_settlement` writes it with its tables (settlement lines, scores, flags) and the
invoices into a directory; ``simulate --report`` and ``transactive settle --out`` both use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transactive.errors import BalanceError
from transactive.settlement.invoices import write_invoices
from transactive.settlement.totals import format_minor
from transactive.sim.report_html import CSS, Html, esc, note, section, table
from transactive.sim.results import SimResults
from transactive.sim.settle_records import Settled, load_records, settle_records, summary

#: The file the report is written to.
REPORT_FILE = "settlement.html"


#: Where :func:`write_run_settlement` puts the settlement report inside an output directory.
SETTLEMENT_DIR = "settlement"


def write_run_settlement(results: SimResults, directory: Path, tables: Path) -> None:
    """For a run written to ``directory`` with its records in ``tables``: settle the
    records again from the signed readings (:func:`settle_records`; it must equal the
    run's own settlement to the cent), write the run's journal beside them and the
    settlement report with the invoices into ``directory/settlement``."""
    from transactive.sim.journal_run import write_run_journal

    settled = settle_records(load_records(tables))
    if settled.matches_simulation is False:
        raise BalanceError(
            f"settling {tables} again from the signed readings differs from the run's own "
            "settlement"
        )
    journal = write_run_journal(results, directory)
    write_settlement(settled, directory / SETTLEMENT_DIR, journal)


def write_settlement(
    settled: Settled, directory: Path, journal: dict[str, Any] | None = None
) -> list[Path]:
    """The settlement report, its tables and the invoices into ``directory`` (made if
    missing); ``journal``: what the journal holds (path, size, heads, root, key id, verified),
    shown in the report. Returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    path = directory / "settlement_lines.parquet"
    settled.lines.to_parquet(path, index=False)
    written.append(path)
    for name, df in (
        ("baseline_scores", settled.scores),
        ("monitoring_flags", settled.monitoring.flags),
        ("monitoring_coverage", settled.monitoring.coverage),
        ("vee", settled.vee),
    ):
        path = directory / f"{name}.csv"
        df.to_csv(path, index=False)
        written.append(path)
    period = settled.records.run.settlement.period
    written += write_invoices(settled.lines, directory / "invoices", period)
    path = directory / REPORT_FILE
    path.write_text(render(settled, journal), encoding="utf-8")
    written.append(path)
    return written


def render(settled: Settled, journal: dict[str, Any] | None = None) -> str:
    """The settlement report as one self-contained HTML page."""
    run = settled.records.run
    cur = run.currency
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Settlement — {esc(run.scenario)}</title><style>{CSS}</style></head><body>",
        f"<h1>Settlement — {esc(run.scenario)}</h1>",
        _meta(settled),
        section("Balance per design", _balance(settled, cur), "balance"),
        section("Meter data: verification, estimation and editing", _vee(settled), "vee"),
        section("Baselines scored on placebo days", _scores(settled), "baselines"),
        section("Monitoring of bad actors", _monitoring(settled), "monitoring"),
        section(
            "Invoices",
            f'<p><a href="invoices/index.html">Invoices</a> per participant, design and '
            f"settlement period ({esc(run.settlement.period)}), CSV and HTML; every invoice's "
            "items add up to its settlement lines to the cent.</p>",
            "invoices",
        ),
        section("Journal", _journal(journal), "journal"),
        "</body></html>",
    ]
    return "\n".join(parts)


def _meta(settled: Settled) -> str:
    run = settled.records.run
    n = sum(len(m) for m in settled.records.messages.values())
    match = {
        None: "no simulator settlement given to compare",
        True: "equal to the simulator's own settlement, to the cent",
        False: "DIFFERENT from the simulator's own settlement",
    }[settled.matches_simulation]
    rows = [
        ("Evaluated from", pd.Timestamp(run.evaluated_start).isoformat()),
        ("Local clock", run.timezone),
        ("Currency", run.currency),
        ("Settlement rules", _rules(settled)),
        ("Signed meter messages", f"{n:,} verified (Ed25519 over RFC 8785 JSON)"),
        ("Settlement lines", f"{len(settled.lines):,}; {match}"),
    ]
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows)
    return f'<dl class="meta">{items}</dl>'


def _rules(settled: Settled) -> str:
    sc = settled.records.run.settlement
    levies = ", ".join(f"{lv.name} {lv.per_kwh} /kWh → {lv.payee}" for lv in sc.levies)
    return (
        f"network rate {sc.network_rate} (each DSO recovers what it keeps in "
        f"{settled.records.run.baseline_design}); levies: {levies or 'none'}; "
        f"VAT {sc.vat_percent} %; period {sc.period}"
    )


def _balance(settled: Settled, currency: str) -> str:
    lines = settled.lines
    if lines.empty:
        return note("No settlement lines.")
    kind = dict(
        zip(settled.records.tree.owner.astype(str), settled.records.tree.kind, strict=False)
    )
    payer = lines["participant_id"].astype(str).map(lambda p: kind.get(p, p))
    payee = lines["counterparty_id"].astype(str).map(lambda p: kind.get(p, p))
    amount = lines["amount"].to_numpy(dtype=np.int64)
    design = lines["design"].astype(str)
    paid = pd.DataFrame({"design": design, "role": payer, "net": amount})
    got = pd.DataFrame({"design": design, "role": payee, "net": -amount})
    net = pd.concat([paid, got]).groupby(["design", "role"])["net"].sum().unstack(fill_value=0)
    roles = list(net.columns)
    rows = []
    for d in net.index:
        values = net.loc[d].to_numpy(dtype=np.int64)
        rows.append([d, *(format_minor(v) for v in values), format_minor(int(values.sum()))])
    by_design = {r["design"]: r for r in summary(settled)}
    counts = [
        [d, f"{r['lines']:,}", f"{r['participants']:,}", format_minor(r["paid_minor"])]
        for d, r in by_design.items()
    ]
    return (
        note(
            f"Net paid ({currency}, + pays, − receives) by role. Each row sums to exactly "
            "0.00: every line has a payer and a payee, amounts are integer cents, and settle() "
            "checks every period and every DSO's revenue requirement (BalanceError otherwise)."
        )
        + table(["design", *roles, "sum"], rows, 1)
        + table(["design", "lines", "participants", f"paid {currency}"], counts, 1)
    )


def _vee(settled: Settled) -> str:
    v = settled.vee
    rows = [
        [str(r[c]) if c == "design" else f"{int(r[c]):,}" for c in v.columns]
        for _, r in v.iterrows()
    ]
    return note(
        "Per design: signed messages ingested (signature, meter, participant, interval grid "
        "and duplicates checked), readings stored, gaps estimated (interpolated ≤ 2 "
        "intervals, else like-day; flagged estimated, never mixed with measured), "
        "intervals still missing, and readings above the connection's capacity "
        "(implausible: flagged, not changed)."
    ) + table(list(v.columns), rows, 1)


def _scores(settled: Settled) -> str:
    s = settled.scores
    cols = [
        "baseline", "n_days", "n_meter_days", "mean_error_kw", "mean_error_percent",
        "rmse_kw", "cv_rmse_percent", "p10_error_kw", "p90_error_kw", "note",
    ]  # fmt: skip
    cols = [c for c in cols if c in s.columns]
    rows = []
    for _, r in s.iterrows():
        cells: list[str] = []
        for c in cols:
            v = r[c]
            if c == "baseline":
                cells.append(Html(f"<b>{esc(v)}</b>") if v == settled.baseline else str(v))
            elif isinstance(v, float | np.floating):
                cells.append("–" if not np.isfinite(v) else f"{v:.3f}")
            else:
                cells.append(str(v))
        rows.append(cells)
    return note(
        "Every non-event day of the business-as-usual design with enough history is a "
        "placebo event (17:00–20:00 local): error = baseline − actual over the window, per "
        "home meter. Bias = mean error; a good baseline has bias near 0 and a low RMSE. "
        f"Chosen for measurement and verification: {settled.baseline}. With a week of "
        "history the day-matching baselines that need 10 prior days cannot be scored."
    ) + table(cols, rows, 1)


def _monitoring(settled: Settled) -> str:
    cov, flags = settled.monitoring.coverage, settled.monitoring.flags
    cov_rows = [[str(x) for x in r] for r in cov.itertuples(index=False)]
    out = table(list(cov.columns), cov_rows, 99) + note(
        f"{len(flags)} flag(s). Baseline inflation and repeated non-delivery need flexibility "
        "events and commitments, which no design of this run produces."
    )
    if len(flags):
        shown = flags.head(50)
        rows = [[str(x) for x in r] for r in shown.itertuples(index=False)]
        out += table(list(shown.columns), rows, 99)
        if len(flags) > 50:
            out += note(f"First 50 of {len(flags)}; all in monitoring_flags.csv.")
    return out


def _journal(journal: dict[str, Any] | None) -> str:
    if not journal:
        return note("No journal was written with this settlement.")
    rows = [(k, str(v)) for k, v in journal.items()]
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows)
    return f'<dl class="meta">{items}</dl>' + note(
        "Check it offline: transactive journal verify ../journal.sqlite --key "
        "../operator.pub (every record, every signed tree head, every older head a prefix "
        "of the newest); a participant checks its own records with transactive journal "
        "prove … --participant ID and journal verify on the proof file."
    )

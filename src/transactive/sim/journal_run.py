"""The journal of a run: what the operator commits, day by day, with a signed tree head at
each day's market close (:mod:`transactive.settlement.journal`,
:mod:`transactive.settlement.journal_records`).

The records of the evaluated period — every node's awards, every meter's signed daily
message, every participant's settlement lines — are appended per local day, and a tree head
is signed when the day closes. The operator key of a simulated run is derived from the seed
(``transactive-operator/<seed>``: reproducible, and therefore guessable — a real operator
keeps its key secret); its public key is stored in the journal and written beside it as
``operator.pub`` (64 hex digits) for ``transactive journal verify --key``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from transactive.errors import BalanceError
from transactive.settlement.journal import key_id, open_journal, operator_key, public_bytes
from transactive.settlement.journal_records import journal_days
from transactive.sim.results import SimResults

#: The journal file and the operator's public key beside it.
JOURNAL_FILE = "journal.sqlite"
OPERATOR_KEY_FILE = "operator.pub"


def write_run_journal(results: SimResults, directory: Path) -> dict[str, object]:
    """Write ``journal.sqlite`` and ``operator.pub`` into ``directory`` (the journal must
    not exist yet), verify it, and return what it holds (for the settlement report)."""
    key = operator_key(f"transactive-operator/{results.seed}")
    path = directory / JOURNAL_FILE
    journal = open_journal(path, create=True, operator_public_key=key.public_key())
    start = results.kpi_start
    readings = [
        r
        for r in results.readings
        if start is None or pd.Timestamp(r[2].payload["readings"][0]["interval_start"]) >= start
    ]
    heads = 0
    try:
        for day in journal_days(
            results.evaluated(results.awards), readings, results.settlement, results.timezone
        ):
            journal.append(day.records)
            journal.sign_head(key, day.close.to_pydatetime())
            heads += 1
        report = journal.verify(key.public_key())
        size = journal.size
        root = journal.root(size).hex()
    finally:
        journal.close()
    if not report.ok:  # the operator's own check: never hand out a journal that fails
        raise BalanceError(f"journal {path}: does not verify: {report.first}")
    (directory / OPERATOR_KEY_FILE).write_text(public_bytes(key.public_key()).hex() + "\n")
    return {
        "file": JOURNAL_FILE,
        "records": size,
        "signed tree heads": heads,
        "root of the last head": root,
        "operator key id": key_id(key.public_key()),
        "operator public key": OPERATOR_KEY_FILE,
        "verified": "yes (every record, head and consistency)",
    }

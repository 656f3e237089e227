"""The Merkle journal at scale: append, proofs, full verification, file size.

    .venv/bin/python benchmarks/bench_journal.py [--records 1000000] [--batch 10000]

Appends ``--records`` realistic records (~300 bytes of canonical JSON each: meter readings,
awards and settlement lines of 500 homes) in batches of ``--batch`` with a signed head after
every batch (a market close), into a fresh SQLite file; then, on the journal reopened,
times 1,000 random inclusion proofs (index lookup by id + O(log n) stored nodes, checked by
merkle.verify_inclusion outside the timing) and 100 random consistency proofs, and a full
``verify`` (every leaf recomputed from the stored bytes and compared with the stored leaf
blocks, the columns, the stored subtree hashes, every head). Targets: ≥ 100,000 appends/s,
≤ 1 ms per proof, ≤ 10 s verify at 10^6. Generating the records is not timed. Wall and CPU
time are both printed, with the load average before the run: on a shared machine the CPU
time is the figure to compare with the targets. The stored rows per table are printed too
(one record row per record, a leaf block per 64 records, a subtree hash per 64 records).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from transactive.settlement import merkle
from transactive.settlement.journal import canonical_json, open_journal, operator_key

KINDS = ("meter", "awards", "settlement")
T0 = datetime(2026, 3, 2, tzinfo=UTC)


def make_records(start: int, n: int, rng: random.Random) -> list[dict[str, Any]]:
    """``n`` records numbered from ``start``: 500 homes, 15-minute intervals."""
    out = []
    for i in range(start, start + n):
        home = i % 500
        interval = i // 1500
        kind = KINDS[i // 500 % 3]
        out.append(
            {
                "id": f"{kind}:{i}",
                "kind": kind,
                "design": "total-dso",
                "market_id": "dso:area",
                "stage": "real-time",
                "interval_start": f"2026-03-{2 + interval // 96:02d}T"
                f"{interval % 96 // 4:02d}:{interval % 4 * 15:02d}:00Z",
                "duration_h": 0.25,
                "participant_id": f"home:area/{home}",
                "resource_id": f"meter:home:area/{home}",
                "node_id": f"home:area/{home}",
                "quantity_kwh": round(rng.uniform(-3, 5), 6),
                "price": round(rng.uniform(0.05, 0.4), 5),
                "currency": "EUR",
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=1, help="(ignored; run_all passes it)")
    args = parser.parse_args()
    n, batch = args.records, args.batch
    rng = random.Random(0)
    key = operator_key("benchmark operator")
    size = len(canonical_json(make_records(0, 1, rng)[0]))
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "journal.sqlite"
        jr = open_journal(path, create=True, operator_public_key=key)
        appending = appending_cpu = 0.0
        for lo in range(0, n, batch):
            recs = make_records(lo, min(batch, n - lo), rng)
            t, c = time.perf_counter(), time.process_time()
            jr.append(recs)
            jr.sign_head(key, T0 + timedelta(minutes=15 * (lo // batch)))
            appending += time.perf_counter() - t
            appending_cpu += time.process_time() - c
        jr.close()
        file_mb = path.stat().st_size / 1e6
        conn = sqlite3.connect(path)
        tables = ("journal_records", "journal_leaves", "journal_nodes", "journal_heads")
        counts = [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables]
        conn.close()

        t = time.perf_counter()
        jr = open_journal(path)
        opening = time.perf_counter() - t
        head = jr.head()
        ids = [f"{KINDS[i // 500 % 3]}:{i}" for i in rng.sample(range(n), min(1000, n))]
        t = time.perf_counter()
        proofs = [jr.inclusion_proof(rid, head) for rid in ids]
        proving = (time.perf_counter() - t) / len(ids)
        for rid, proof in zip(ids, proofs, strict=True):
            index, data = jr.entry(rid)
            leaf = merkle.leaf_hash(data)
            assert merkle.verify_inclusion(leaf, index, head.tree_size, proof, head.root_hash)
        pairs = [sorted(rng.sample(range(1, n + 1), 2)) for _ in range(100)]
        t = time.perf_counter()
        for old, new in pairs:
            jr.consistency_proof(old, new)
        consistency = (time.perf_counter() - t) / len(pairs)

        t, c = time.perf_counter(), time.process_time()
        report = jr.verify()
        verifying, verifying_cpu = time.perf_counter() - t, time.process_time() - c
        jr.close()
    assert report.ok, report.first

    print(f"journal of {n:,} records (~{size} bytes of canonical JSON each), batches of {batch:,}")
    print(f"{'load average before the run':<28}{load:>14.2f}")
    print(f"{'append':<28}{n / appending:>14,.0f} records/s   (target ≥ 100,000)")
    print(f"{'append, per CPU second':<28}{n / appending_cpu:>14,.0f} records/s")
    print(f"{'open (reopen file)':<28}{opening * 1e3:>14.2f} ms")
    print(f"{'inclusion proof (mean)':<28}{proving * 1e3:>14.3f} ms        (target ≤ 1 ms)")
    print(f"{'consistency proof (mean)':<28}{consistency * 1e3:>14.3f} ms")
    print(f"{'verify everything':<28}{verifying:>14.2f} s         (target ≤ 10 s)")
    print(f"{'verify, CPU time':<28}{verifying_cpu:>14.2f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'peak memory (process)':<28}{peak:>14.0f} MB")
    print(f"{'file size':<28}{file_mb:>14.1f} MB        ({file_mb * 1e6 / n:,.0f} bytes/record)")
    rows = ", ".join(
        f"{t.removeprefix('journal_')} {c:,}" for t, c in zip(tables, counts, strict=True)
    )
    print(f"{'stored rows':<28}{'':>14}   {rows}")


if __name__ == "__main__":
    main()

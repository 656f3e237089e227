"""Meter readings: checked, signature-verified, stored and journaled in one transaction.

A reading is one market interval of a resource: Wh imported and exported (integers ≥ 0).
Its signature, if given, is Ed25519 over :func:`signed_bytes` (the canonical JSON,
:func:`transactive.service.journal.canonical`, of ``resource_id``, ``interval_start``
as ``YYYY-mm-ddTHH:MM:SSZ``, ``duration_s``, ``import_wh``, ``export_wh``), hex or base64,
verified against the resource's public key: trust ``signed``; no signature: ``unsigned``;
a signature that does not verify (or a resource without key): 422.

A batch is all or nothing. Re-posting an identical reading changes nothing (it is
reported as ``unchanged``); another value for a stored interval is a 409 conflict.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidSignature
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from transactive.service import journal, tenancy
from transactive.service.models import MeterReading, Resource
from transactive.service.problems import ApiError, FieldError
from transactive.service.resources import decode_bytes, parse_public_key
from transactive.service.security import Principal

#: Largest Wh in one interval (a 1 TW meter for a day): beyond it the value is nonsense.
MAX_WH = 10**15
MAX_BATCH = 10_000


class ReadingIn(BaseModel):
    """One interval reading of a resource's meter."""

    resource_id: str = Field(min_length=1, max_length=64)
    interval_start: AwareDatetime
    duration_s: int = Field(strict=True, ge=1, le=86_400, description="Interval, s.")
    import_wh: int = Field(strict=True, ge=0, le=MAX_WH, description="Energy imported, Wh.")
    export_wh: int = Field(strict=True, ge=0, le=MAX_WH, description="Energy exported, Wh.")
    signature: str | None = Field(
        None, max_length=200, description="Ed25519 over signed_bytes (hex or base64)."
    )


class ReadingBatch(BaseModel):
    readings: list[ReadingIn] = Field(min_length=1, max_length=MAX_BATCH)


class ReadingOut(BaseModel):
    """A stored reading; ``trust`` is ``signed`` or ``unsigned``."""

    resource_id: str
    party_id: str
    interval_start: datetime
    duration_s: int
    import_wh: int
    export_wh: int
    trust: str
    signature: str | None
    received_at: datetime
    journal_index: int | None


class BatchOut(BaseModel):
    """The outcome of a batch: ``stored`` new readings, ``unchanged`` identical re-posts."""

    stored: int
    unchanged: int
    journal_first: int | None
    journal_last: int | None
    readings: list[ReadingOut]


def iso_z(t: datetime) -> str:
    """``t`` in UTC as ``YYYY-mm-ddTHH:MM:SSZ``."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def signed_bytes(
    resource_id: str, interval_start: datetime, duration_s: int, import_wh: int, export_wh: int
) -> bytes:
    """The bytes a meter signs for one reading (canonical JSON)."""
    return journal.canonical(
        {
            "resource_id": resource_id,
            "interval_start": iso_z(interval_start),
            "duration_s": duration_s,
            "import_wh": import_wh,
            "export_wh": export_wh,
        }
    )


def record_id(resource_id: str, interval_start: datetime) -> str:
    return f"meter:{resource_id}:{iso_z(interval_start)}"


def out(r: MeterReading) -> ReadingOut:
    return ReadingOut(
        resource_id=r.resource_id,
        party_id=r.party_id,
        interval_start=r.interval_start,
        duration_s=r.duration_s,
        import_wh=r.import_wh,
        export_wh=r.export_wh,
        trust=r.trust,
        signature=r.signature,
        received_at=r.received_at,
        journal_index=r.journal_index,
    )


def _fail(errors: list[FieldError], i: int, field: str, msg: str) -> None:
    errors.append(FieldError(loc=["body", "readings", i, field], msg=msg, type="value_error"))


def _check(
    s: Session, p: Principal, items: Sequence[ReadingIn], interval_s: int, now: datetime
) -> tuple[dict[str, Resource], list[str | None]]:
    """The readings' resources and trust per item; 422 listing every bad item."""
    errors: list[FieldError] = []
    ids = sorted({r.resource_id for r in items})
    res = {r.id: r for r in s.scalars(select(Resource).where(Resource.id.in_(ids)))}
    allowed = {i: tenancy.may_act_for(s, p, r.party_id) for i, r in res.items()}
    # interval checks, vectorised over the batch (epoch seconds)
    start = np.array([int(r.interval_start.timestamp() // 1) for r in items], dtype=np.int64)
    frac = np.array([r.interval_start.microsecond for r in items], dtype=np.int64)
    dur = np.array([r.duration_s for r in items], dtype=np.int64)
    misaligned = ((start % interval_s) != 0) | (frac != 0)
    wrong_len = dur != interval_s
    future = start + dur > int(now.timestamp())
    trust: list[str | None] = [None] * len(items)
    for i, r in enumerate(items):
        resource = res.get(r.resource_id)
        if resource is None or not allowed[r.resource_id]:
            _fail(errors, i, "resource_id", f"no resource {r.resource_id!r} of yours")
            continue
        if misaligned[i]:
            _fail(errors, i, "interval_start", f"not aligned to the {interval_s} s interval")
        if wrong_len[i]:
            _fail(errors, i, "duration_s", f"must be the market interval, {interval_s} s")
        elif future[i]:
            _fail(errors, i, "interval_start", "the interval has not ended yet")
        if r.signature is None:
            trust[i] = "unsigned"
            continue
        key = None if resource.public_key is None else parse_public_key(resource.public_key)
        sig = decode_bytes(r.signature, 64)
        if key is None:
            _fail(errors, i, "signature", "the resource has no public key to verify with")
            continue
        if sig is None:
            _fail(errors, i, "signature", "not an Ed25519 signature (64 bytes, hex or base64)")
            continue
        msg = signed_bytes(r.resource_id, r.interval_start, r.duration_s, r.import_wh, r.export_wh)
        try:
            key.verify(sig, msg)
        except InvalidSignature:
            _fail(errors, i, "signature", "the signature does not verify with the resource's key")
            continue
        trust[i] = "signed"
    seen: dict[tuple[str, datetime], int] = {}
    for i, r in enumerate(items):
        k = (r.resource_id, r.interval_start.astimezone(UTC))
        j = seen.setdefault(k, i)
        if j != i and _values(items[j]) != _values(r):
            _fail(errors, i, "interval_start", f"conflicts with reading {j} of this batch")
    if errors:
        n = len(errors)
        raise ApiError(422, f"{n} invalid field{'s' if n != 1 else ''}", errors=errors)
    return res, trust


def _values(r: ReadingIn) -> tuple[int, int, int]:
    return (r.duration_s, r.import_wh, r.export_wh)


def post_readings(
    s: Session, p: Principal, items: Sequence[ReadingIn], interval_s: int, now: datetime
) -> tuple[int, BatchOut]:
    """Store and journal a batch (commits); returns (201 if anything new else 200, result)."""
    try:
        return _post(s, p, items, interval_s, now)
    except IntegrityError:  # a concurrent identical post won the race: answer from its rows
        s.rollback()
        return _post(s, p, items, interval_s, now)


def _post(
    s: Session, p: Principal, items: Sequence[ReadingIn], interval_s: int, now: datetime
) -> tuple[int, BatchOut]:
    res, trust = _check(s, p, items, interval_s, now)
    journal.lock(s)  # serialises check-then-insert with other writers (PostgreSQL)
    keys = [(r.resource_id, r.interval_start.astimezone(UTC)) for r in items]
    existing: dict[tuple[str, datetime], MeterReading] = {}
    uniq = sorted(set(keys))
    for lo in range(0, len(uniq), 500):
        chunk = uniq[lo : lo + 500]
        q = select(MeterReading).where(
            tuple_(MeterReading.resource_id, MeterReading.interval_start).in_(chunk)
        )
        existing.update({(m.resource_id, m.interval_start): m for m in s.scalars(q)})
    conflicts: list[FieldError] = []
    new: dict[tuple[str, datetime], int] = {}
    for i, (k, r) in enumerate(zip(keys, items, strict=True)):
        m = existing.get(k)
        if m is None:
            new.setdefault(k, i)
        elif (m.duration_s, m.import_wh, m.export_wh) != _values(r):
            _fail(conflicts, i, "interval_start", "another value is stored for this interval")
    if conflicts:
        s.rollback()
        n = len(conflicts)
        raise ApiError(409, f"{n} reading{'s' if n != 1 else ''} conflict", errors=conflicts)
    first = journal.tree_size(s)
    rows: list[MeterReading] = []
    entries: list[tuple[str, str, str | None, bytes]] = []
    for j, (k, i) in enumerate(new.items()):
        r = items[i]
        party = res[r.resource_id].party_id
        m = MeterReading(
            resource_id=r.resource_id,
            interval_start=k[1],
            duration_s=r.duration_s,
            party_id=party,
            import_wh=r.import_wh,
            export_wh=r.export_wh,
            trust=trust[i] or "unsigned",
            signature=r.signature,
            received_at=now,
            journal_index=first + j,
        )
        rows.append(m)
        entries.append(
            (record_id(r.resource_id, k[1]), "meter", party, journal.canonical(_body(m)))
        )
    if rows:
        s.add_all(rows)
        s.flush()
        got = journal.append(s, entries)
        assert got[0] == first, "the journal lock is held: indices are the ones reserved"
    s.commit()
    stored = {(m.resource_id, m.interval_start): m for m in rows} | existing
    seen: set[tuple[str, datetime]] = set()
    outs = []
    for k in keys:
        if k not in seen:
            seen.add(k)
            outs.append(out(stored[k]))
    result = BatchOut(
        stored=len(rows),
        unchanged=len(seen) - len(rows),
        journal_first=first if rows else None,
        journal_last=first + len(rows) - 1 if rows else None,
        readings=outs,
    )
    return (201 if rows else 200), result


def _body(m: MeterReading) -> dict[str, Any]:
    """The journal record of a reading."""
    return {
        "kind": "meter",
        "resource_id": m.resource_id,
        "party_id": m.party_id,
        "interval_start": iso_z(m.interval_start),
        "duration_s": m.duration_s,
        "import_wh": m.import_wh,
        "export_wh": m.export_wh,
        "trust": m.trust,
        "signature": m.signature,
        "received_at": m.received_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }


def list_readings(
    s: Session,
    p: Principal,
    *,
    resource_id: str | None,
    start: datetime | None,
    end: datetime | None,
    offset: int,
    limit: int,
) -> list[ReadingOut]:
    """The readings ``p`` may read, by resource and interval ([start, end))."""
    q = select(MeterReading).where(tenancy.readable(p, MeterReading.party_id))
    if resource_id is not None:
        q = q.where(MeterReading.resource_id == resource_id)
    if start is not None:
        q = q.where(MeterReading.interval_start >= start)
    if end is not None:
        q = q.where(MeterReading.interval_start < end)
    q = q.order_by(MeterReading.resource_id, MeterReading.interval_start)
    return [out(m) for m in s.scalars(q.offset(offset).limit(limit))]

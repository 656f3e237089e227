"""Settlement runs, their lines and the invoices.

A run is started by the DSO of its area or an admin (idempotent per area and period
start). Runs are visible to auditors and admins, the DSO of their area and every party
with an invoice in them; lines and invoices are filtered by tenancy."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import ColumnElement, exists, select, true
from sqlalchemy.orm import Session

from transactive.service import tenancy
from transactive.service.deps import DB, Svc, require
from transactive.service.models import Invoice, SettlementLine, SettlementRun
from transactive.service.problems import ERRORS, ApiError
from transactive.service.security import Principal
from transactive.service.settling import settle_period

router = APIRouter(tags=["settlement"])
Runner = Annotated[Principal, Depends(require("settlement:run"))]
Reader = Annotated[Principal, Depends(require("settlement:read"))]
Offset = Annotated[int, Query(ge=0, le=10**12)]
Limit = Annotated[int, Query(ge=1, le=10_000)]
RunId = Annotated[str, Path(max_length=120)]
WRITE_ERRORS = {**ERRORS, 409: ERRORS[422] | {"description": "Conflict"}}


class RunIn(BaseModel):
    area: str = Field(min_length=1, max_length=64)
    period_start: AwareDatetime
    period_end: AwareDatetime


class RunOut(BaseModel):
    """A settlement run of an area and period [period_start, period_end)."""

    id: str
    area: str
    period_start: datetime
    period_end: datetime
    status: str
    currency: str
    created_at: datetime


class LineOut(BaseModel):
    """A line of money: + the party pays, − it is paid (currency)."""

    party_id: str
    session_id: str | None
    kind: str = Field(description="energy, imbalance, energy_counterparty, imbalance_counterparty")
    kwh: float
    price: float | None = Field(description="currency/kWh; null on counterparty lines.")
    amount: float


class InvoiceOut(BaseModel):
    """A party's invoice: ``total`` rounded to the cent; ``document`` in full."""

    id: str
    run_id: str
    party_id: str
    total: float
    currency: str
    document: dict[str, Any]


def _run_out(r: SettlementRun) -> RunOut:
    return RunOut(
        id=r.id,
        area=r.area,
        period_start=r.period_start,
        period_end=r.period_end,
        status=r.status,
        currency=r.currency,
        created_at=r.created_at,
    )


def _visible_runs(p: Principal) -> ColumnElement[bool]:
    if p.role in tenancy.READ_ALL:
        return true()
    mine = exists().where(Invoice.run_id == SettlementRun.id, tenancy.readable(p, Invoice.party_id))
    if p.role == "dso":
        return (SettlementRun.area == p.area) | mine
    return mine


def _run(db: Session, p: Principal, run_id: str) -> SettlementRun:
    r = db.scalars(
        select(SettlementRun).where(SettlementRun.id == run_id, _visible_runs(p))
    ).first()
    if r is None:
        raise ApiError(404, f"no settlement run {run_id!r}")
    return r


@router.post(
    "/v1/settlement-runs",
    status_code=201,
    response_model=RunOut,
    responses={**WRITE_ERRORS, 200: {"model": RunOut, "description": "The existing run"}},
    summary="Settle an area over a period (idempotent)",
)
def post_run(body: RunIn, response: Response, db: DB, svc: Svc, p: Runner) -> RunOut:
    if p.role == "dso" and p.area != body.area:
        raise ApiError(403, f"only the DSO of area {body.area!r} or an admin may settle it")
    run, created = settle_period(db, svc, body.area, body.period_start, body.period_end)
    response.status_code = 201 if created else 200
    return _run_out(run)


@router.get(
    "/v1/settlement-runs", response_model=list[RunOut], responses=ERRORS, summary="Settlement runs"
)
def list_runs(
    db: DB,
    p: Reader,
    area: Annotated[str | None, Query(max_length=64)] = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> list[RunOut]:
    q = select(SettlementRun).where(_visible_runs(p))
    if area is not None:
        q = q.where(SettlementRun.area == area)
    q = q.order_by(SettlementRun.period_start, SettlementRun.id).offset(offset).limit(limit)
    return [_run_out(r) for r in db.scalars(q)]


@router.get(
    "/v1/settlement-runs/{run_id}", response_model=RunOut, responses=ERRORS, summary="One run"
)
def get_run(run_id: RunId, db: DB, p: Reader) -> RunOut:
    return _run_out(_run(db, p, run_id))


@router.get(
    "/v1/settlement-runs/{run_id}/lines",
    response_model=list[LineOut],
    responses=ERRORS,
    summary="The run's lines the caller may read",
)
def get_lines(
    run_id: RunId,
    db: DB,
    p: Reader,
    party_id: Annotated[str | None, Query(max_length=64)] = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> list[LineOut]:
    _run(db, p, run_id)
    q = select(SettlementLine).where(
        SettlementLine.run_id == run_id, tenancy.readable(p, SettlementLine.party_id)
    )
    if party_id is not None:
        q = q.where(SettlementLine.party_id == party_id)
    q = q.order_by(SettlementLine.id).offset(offset).limit(limit)
    return [
        LineOut(
            party_id=x.party_id,
            session_id=x.session_id,
            kind=x.kind,
            kwh=x.kwh,
            price=x.price,
            amount=x.amount,
        )
        for x in db.scalars(q)
    ]


def _invoice_out(x: Invoice) -> InvoiceOut:
    return InvoiceOut(
        id=x.id,
        run_id=x.run_id,
        party_id=x.party_id,
        total=x.total,
        currency=x.currency,
        document=x.document,
    )


@router.get("/v1/invoices", response_model=list[InvoiceOut], responses=ERRORS, summary="Invoices")
def list_invoices(
    db: DB,
    p: Reader,
    run_id: Annotated[str | None, Query(max_length=120)] = None,
    party_id: Annotated[str | None, Query(max_length=64)] = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> list[InvoiceOut]:
    q = select(Invoice).where(tenancy.readable(p, Invoice.party_id))
    if run_id is not None:
        q = q.where(Invoice.run_id == run_id)
    if party_id is not None:
        q = q.where(Invoice.party_id == party_id)
    q = q.order_by(Invoice.run_id, Invoice.party_id).offset(offset).limit(limit)
    return [_invoice_out(x) for x in db.scalars(q)]


@router.get(
    "/v1/invoices/{invoice_id}", response_model=InvoiceOut, responses=ERRORS, summary="One invoice"
)
def get_invoice(invoice_id: Annotated[str, Path(max_length=160)], db: DB, p: Reader) -> InvoiceOut:
    x = db.get(Invoice, invoice_id)
    if x is None or not tenancy.may_read(db, p, x.party_id):
        raise ApiError(404, f"no invoice {invoice_id!r}")
    return _invoice_out(x)

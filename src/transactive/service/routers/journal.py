"""The journal: the signed tree head, a record with its inclusion proof, consistency
proofs between two tree sizes (RFC 9162 §2.1; verify offline with
:mod:`transactive.settlement.merkle`)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from transactive.service import journal, tenancy
from transactive.service.deps import DB, Services, Svc, require
from transactive.service.models import JournalLeaf, TreeHead
from transactive.service.problems import ERRORS, ApiError
from transactive.service.security import Principal

router = APIRouter(tags=["journal"])
Reader = Annotated[Principal, Depends(require("journal:read"))]


class HeadOut(BaseModel):
    """A signed tree head: Ed25519 over transactive.settlement.journal.head_message."""

    tree_size: int
    root_hash: str
    timestamp: str
    kid: str
    signature: str
    public_key: str


class RecordOut(BaseModel):
    """A journal record, its leaf hash and its audit path in the tree of ``tree_size``."""

    record_id: str
    index: int
    kind: str
    body: Any
    leaf_hash: str
    proof: list[str]
    tree_size: int


class ConsistencyOut(BaseModel):
    first: int
    second: int
    proof: list[str]


def current_head(s: Session, svc: Services) -> TreeHead:
    """The signed head of the whole tree, signed now (in a write session of its own) if
    the tree grew since the last one; ``s`` then starts a new snapshot that holds it."""
    head = journal.latest_head(s)
    if head is None or head.tree_size < journal.tree_size(s):
        with svc.db.sessions() as w:
            head = journal.sign_head(w, svc.journal_key, svc.now())
            w.commit()
        s.rollback()  # the next read sees the signed head's leaves
    return head


@router.get(
    "/v1/journal/head", response_model=HeadOut, responses=ERRORS, summary="Signed tree head"
)
def get_head(db: DB, svc: Svc, _: Reader) -> HeadOut:
    return HeadOut(**journal.head_json(current_head(db, svc), svc.journal_key))


@router.get(
    "/v1/journal/records/{record_id}",
    response_model=RecordOut,
    responses=ERRORS,
    summary="A record with its inclusion proof against the current signed head",
)
def get_record(record_id: str, db: DB, svc: Svc, p: Reader) -> RecordOut:
    leaf = db.scalars(select(JournalLeaf).where(JournalLeaf.record_id == record_id)).first()
    if leaf is None or (leaf.party_id is not None and not tenancy.may_read(db, p, leaf.party_id)):
        raise ApiError(404, f"journal record {record_id!r} not found")
    head = current_head(db, svc)
    proof = journal.inclusion_proof(db, leaf.idx, head.tree_size)
    return RecordOut(
        record_id=leaf.record_id,
        index=leaf.idx,
        kind=leaf.kind,
        body=json.loads(leaf.body),
        leaf_hash=bytes(leaf.leaf_hash).hex(),
        proof=[h.hex() for h in proof],
        tree_size=head.tree_size,
    )


@router.get(
    "/v1/journal/consistency",
    response_model=ConsistencyOut,
    responses=ERRORS,
    summary="Proof that the tree of `first` leaves is a prefix of the tree of `second`",
)
def get_consistency(
    db: DB,
    _: Reader,
    first: int = Query(ge=0, le=10**12),
    second: int = Query(ge=0, le=10**12),
) -> ConsistencyOut:
    proof = journal.consistency_proof(db, first, second)
    return ConsistencyOut(first=first, second=second, proof=[h.hex() for h in proof])

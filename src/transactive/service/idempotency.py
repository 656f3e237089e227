"""Idempotency keys: a client's retry of a POST gets the first answer, never a second write.

The ``Idempotency-Key`` header (1–200 characters) names a request per client. A success is
stored (status and body bytes) *in the same transaction* as the bids it wrote, so either
both are durable or neither is. A retry with the same key and the same request (method,
path and body, compared by SHA-256 of their canonical JSON) gets the stored response; the
same key with a different request is a 422. Failed requests store nothing: they wrote
nothing, so a retry is simply evaluated again.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from transactive.service.journal import canonical
from transactive.service.models import Idempotency
from transactive.service.problems import ApiError, FieldError

HEADER = "Idempotency-Key"
MAX_KEY = 200


def check_key(key: str | None) -> str | None:
    """The key, or None without one; 422 if it is empty or longer than 200 characters."""
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY:
        raise ApiError(
            422,
            f"{HEADER} must have 1 to {MAX_KEY} characters",
            errors=[
                FieldError(
                    loc=["header", HEADER], msg=f"1 to {MAX_KEY} characters", type="value_error"
                )
            ],
        )
    return key


def request_hash(method: str, path: str, body: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``[method, path, body]``."""
    return hashlib.sha256(canonical([method, path, body])).hexdigest()


def lookup(s: Session, client_id: str, key: str, req_hash: str) -> tuple[int, bytes] | None:
    """The stored (status, body) for ``key``; None if new; 422 if it named another request."""
    row = s.get(Idempotency, (client_id, key))
    if row is None:
        return None
    if row.request_hash != req_hash:
        raise ApiError(
            422,
            f"{HEADER} {key!r} was used for a different request; use a new key",
            errors=[
                FieldError(loc=["header", HEADER], msg="reused key", type="idempotency_conflict")
            ],
        )
    return row.status_code, bytes(row.body)


def store(
    s: Session,
    client_id: str,
    key: str,
    req_hash: str,
    status: int,
    body: bytes,
    now: datetime,
) -> None:
    """Record the response to ``key`` in the caller's transaction."""
    s.add(
        Idempotency(
            client_id=client_id,
            key=key,
            request_hash=req_hash,
            status_code=status,
            body=body,
            created_at=now,
        )
    )

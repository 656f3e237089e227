"""Errors as RFC 9457 problem documents (``application/problem+json``).

Every 4xx the service returns has ``title``, ``status``, ``detail`` and, for invalid input,
``errors``: one entry per culprit with its location (``["body", "bids", 3, "price"]``), a
message and a type, so a client can point at the offending field.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from transactive.errors import InvalidInputError

MEDIA = "application/problem+json"


class FieldError(BaseModel):
    """One invalid field of a request."""

    loc: list[str | int] = Field(
        description="Where: 'body', 'query', 'path' or 'header', then keys."
    )
    msg: str
    type: str


class Problem(BaseModel):
    """An error response (RFC 9457)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


class ApiError(Exception):
    """Raise in a service or router to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or _TITLES.get(status, "Error")
        self.errors = errors
        self.headers = headers


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
    503: "Service unavailable",
}


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        title=title or _TITLES.get(status, "Error"), status=status, detail=detail, errors=errors
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, media_type=MEDIA, headers=headers
    )


def field_errors(raw: list[Any]) -> list[FieldError]:
    """Pydantic / FastAPI error dicts as :class:`FieldError` (inputs are not echoed)."""
    return [
        FieldError(
            loc=[x for x in e.get("loc", ()) if isinstance(x, str | int)],
            msg=str(e.get("msg", "")),
            type=str(e.get("type", "")),
        )
        for e in raw
    ]


#: For ``responses=`` of every authenticated route: documented error statuses.
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": Problem, "description": _TITLES[s]} for s in (401, 403, 404, 422, 429)
}


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return problem_response(
            exc.status, exc.detail, title=exc.title, errors=exc.errors, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errs = field_errors(list(exc.errors()))
        n = len(errs)
        return problem_response(422, f"{n} invalid field{'s' if n != 1 else ''}", errors=errs)

    @app.exception_handler(InvalidInputError)
    async def _invalid(_: Request, exc: InvalidInputError) -> JSONResponse:
        return problem_response(422, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(
            exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None)
        )

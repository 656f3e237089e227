"""The service's OpenAPI document: FastAPI's, plus every error documented as problem+json.

:func:`document` post-processes FastAPI's schema so that every operation lists the
problem documents it can answer with (``application/problem+json``, schema ``Problem``,
one example each): 401/403 for authenticated routes, 404 for routes with path
parameters, 400/413/422 for routes with a body, 422 for routes with parameters and 429
(the rate limit) everywhere but ``/healthz``. It also adds the OAuth2 client-credentials
security scheme (``POST /v1/token``) next to the bearer scheme.

``python -m transactive.service.openapi > docs/openapi.json`` writes the committed copy;
``tests/service/test_openapi_doc.py`` fails when it differs from the code.
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from transactive.service.limits import EXEMPT
from transactive.service.problems import _TITLES, MEDIA

REGENERATE = "python -m transactive.service.openapi > docs/openapi.json"
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_EXAMPLES: dict[int, dict[str, Any]] = {
    400: {"detail": "There was an error parsing the body"},
    401: {"detail": "send 'Authorization: Bearer <token>' (POST /v1/token)"},
    403: {"detail": "this token lacks the scope 'admin' (role participant)"},
    404: {"detail": "session 'semiurb4:real-time:20260701T1200Z' not found"},
    409: {"detail": "the gate of this session has closed"},
    413: {"detail": "the request body exceeds 8000000 bytes"},
    422: {
        "detail": "1 invalid field",
        "errors": [
            {
                "loc": ["body", "bids", 3, "price"],
                "msg": "Input should be a valid number",
                "type": "float_parsing",
            }
        ],
    },
    429: {"detail": "rate limit of 200 requests/s exceeded; retry in 1 s"},
}


def _problem_content(status: int) -> dict[str, Any]:
    example = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        **_EXAMPLES.get(status, {"detail": _TITLES.get(status, "Error")}),
    }
    return {MEDIA: {"schema": dict(_PROBLEM_REF), "example": example}}


def _is_problem(content: dict[str, Any]) -> bool:
    return any(v.get("schema") == _PROBLEM_REF for v in content.values())


def _fix_operation(path: str, op: dict[str, Any]) -> None:
    """Document ``op``'s problem responses in place."""
    responses: dict[str, Any] = op.setdefault("responses", {})
    wanted: set[int] = set()
    if path not in EXEMPT:
        wanted.add(429)
    if op.get("security"):
        wanted |= {401, 403}
    params = op.get("parameters", [])
    if any(p.get("in") == "path" for p in params):
        wanted.add(404)
    if params:
        wanted.add(422)
    if "requestBody" in op:
        wanted |= {400, 413, 422}
    if not op.get("security") and not any(p.get("in") == "path" for p in params):
        # FastAPI's defaults for an unauthenticated route without path parameters
        for code in ("401", "403", "404"):
            r = responses.get(code)
            if r is not None and _is_problem(r.get("content", {})):
                del responses[code]
    for status in sorted(wanted):
        key = str(status)
        r = responses.get(key)
        if r is None:
            responses[key] = {
                "description": _TITLES.get(status, "Error"),
                "content": _problem_content(status),
            }
        elif not _is_problem(r.get("content", {})) and status == 400:
            r.setdefault("content", {}).update(_problem_content(status))
    for key, r in responses.items():
        json_schema = r.get("content", {}).get("application/json", {}).get("schema", {})
        is_validation = json_schema.get("$ref", "").endswith("/HTTPValidationError")
        if key.isdigit() and (json_schema == _PROBLEM_REF or is_validation):
            del r["content"]["application/json"]
            r["content"].update(_problem_content(int(key)))
            r["description"] = _TITLES.get(int(key), r.get("description", "Error"))
    op["responses"] = dict(sorted(responses.items()))


def document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of ``app`` with problem+json errors and both security schemes."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    doc = copy.deepcopy(doc)
    for path, ops in doc.get("paths", {}).items():
        for op in ops.values():
            _fix_operation(path, op)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    used = json.dumps(doc["paths"])
    for name in ("HTTPValidationError", "ValidationError"):
        if name in schemas and f'/{name}"' not in used:
            del schemas[name]
    if "Problem" in schemas:
        schemas["Problem"]["example"] = {
            "type": "about:blank",
            "title": "Invalid input",
            "status": 422,
            **_EXAMPLES[422],
        }
    schemes = components.setdefault("securitySchemes", {})
    schemes["OAuth2"] = {
        "type": "oauth2",
        "description": "OAuth2 client credentials: exchange a client id and secret for a "
        "bearer access token at POST /v1/token (sent as 'Authorization: Bearer <token>').",
        "flows": {
            "clientCredentials": {
                "tokenUrl": "/v1/token",
                "scopes": {
                    "market:read": "Read sessions, prices, awards and dispatch.",
                    "market:bid": "Bid in market sessions.",
                    "resources:write": "Register resources.",
                    "meter:write": "Post meter readings.",
                    "settlement:read": "Read settlement runs, lines and invoices.",
                    "settlement:run": "Start settlement runs (DSO, admin).",
                    "journal:read": "Read journal records and proofs.",
                    "admin": "Manage parties and clients; clear sessions.",
                },
            }
        },
    }
    return doc


def install(app: FastAPI) -> None:
    """Serve :func:`document` at ``/openapi.json`` (and so at ``/docs``), built once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def render(app: FastAPI) -> str:
    """The document as committed in ``docs/openapi.json`` (2-space indent, final newline)."""
    return json.dumps(app.openapi(), indent=2, ensure_ascii=False) + "\n"


def current() -> str:
    """The document of the code as it is (the app on a throw-away SQLite database)."""
    from transactive.service.app import create_app
    from transactive.service.config import ServiceConfig

    with tempfile.TemporaryDirectory() as d:
        config = ServiceConfig(db_url=f"sqlite:///{Path(d) / 'openapi.db'}", scheduler=False)
        app = create_app(config)
        try:
            return render(app)
        finally:
            app.state.services.db.dispose()


def main() -> None:
    sys.stdout.write(current())


if __name__ == "__main__":
    main()

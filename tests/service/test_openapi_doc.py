"""docs/openapi.json is the code's OpenAPI document; every error is documented as problem+json."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Api
from transactive.service.openapi import REGENERATE, current
from transactive.service.problems import MEDIA

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_committed_document_matches_the_code() -> None:
    assert DOC.exists(), f"docs/openapi.json is missing; run: {REGENERATE}"
    assert DOC.read_text() == current(), (
        f"docs/openapi.json is out of date with the code; regenerate it: {REGENERATE}"
    )


def test_every_operation_documents_its_problems() -> None:
    doc = json.loads(current())
    assert {"HTTPBearer", "OAuth2"} <= set(doc["components"]["securitySchemes"])
    assert (
        doc["components"]["securitySchemes"]["OAuth2"]["flows"]["clientCredentials"]["tokenUrl"]
        == "/v1/token"
    )
    n = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            n += 1
            where = f"{method.upper()} {path}"
            responses = op["responses"]
            assert any(k.startswith("2") for k in responses), where
            for code, r in responses.items():
                if int(code) >= 400 and not (path == "/v1/token" and code in ("400", "401")):
                    assert MEDIA in r["content"], f"{where} {code}: no problem+json"
                    assert "example" in r["content"][MEDIA], f"{where} {code}: no example"
                    assert r["content"][MEDIA]["schema"] == {"$ref": "#/components/schemas/Problem"}
                    assert "application/json" not in r["content"], f"{where} {code}"
            if path != "/healthz":
                assert "429" in responses, where
            if op.get("security"):
                assert {"401", "403"} <= set(responses), where
            if "requestBody" in op:
                assert {"413", "422"} <= set(responses), where
            if any(p["in"] == "path" for p in op.get("parameters", [])):
                assert "404" in responses, where
    assert n >= 10
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_served_at_openapi_json_and_docs(api: Api) -> None:
    r = api.client.get("/openapi.json")
    assert r.status_code == 200
    assert json.dumps(r.json(), indent=2, ensure_ascii=False) + "\n" == current()
    d = api.client.get("/docs")
    assert d.status_code == 200 and "swagger" in d.text.lower()

"""OAuth2 client credentials, signed tokens, scopes and the admin command."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt

from cli_run import cli
from conftest import Api
from transactive.service.security import Principal


def test_token_grants_the_roles_scopes_and_me_reads_them(api: Api) -> None:
    who = api.party("alice", "participant")
    me = api.get("/v1/me", who).json()
    assert me["party_id"] == "alice" and me["role"] == "participant"
    assert "market:bid" in me["scopes"] and "admin" not in me["scopes"]


def test_token_is_an_eddsa_jwt_with_expiry_signed_by_the_service(api: Api) -> None:
    api.party("alice", "participant")
    token = api.tokens["alice"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    claims = jwt.decode(
        token, api.services.signer.public_key, algorithms=["EdDSA"], issuer="transactive"
    )
    assert claims["pty"] == "alice" and claims["exp"] - claims["iat"] == 3600


def test_wrong_secret_unknown_client_and_bad_grant_are_refused(api: Api) -> None:
    api.party("alice", "participant")
    r = api.client.post(
        "/v1/token",
        data={"grant_type": "client_credentials", "client_id": "alice-x", "client_secret": "no"},
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = api.client.post("/v1/token", data={"grant_type": "password"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"


def test_http_basic_and_narrowed_scope(api: Api) -> None:
    from transactive.service.identity import create_client

    api.party("bob", "participant")
    with api.services.db.sessions() as s:
        c = create_client(s, "bob", datetime.now(UTC))
        s.commit()
    basic = base64.b64encode(f"{c.client_id}:{c.client_secret}".encode()).decode()
    r = api.client.post(
        "/v1/token",
        data={"grant_type": "client_credentials", "scope": "market:read"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 200 and r.json()["scope"] == "market:read"
    r = api.client.post(
        "/v1/token",
        data={"grant_type": "client_credentials", "scope": "admin"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


def test_missing_forged_and_expired_tokens_get_401(api: Api) -> None:
    assert api.client.get("/v1/me").status_code == 401
    r = api.client.get("/v1/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    signer = api.services.signer
    past = datetime.now(UTC) - timedelta(hours=2)
    old = signer.issue(Principal("c", "alice", "participant", None, frozenset(), past), past)
    r = api.client.get("/v1/me", headers={"Authorization": f"Bearer {old}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_admin_scope_is_required_to_create_parties(api: Api) -> None:
    alice = api.party("alice", "participant")
    admin = api.party("root", "admin")
    body = {"id": "carol", "name": "Carol", "role": "participant"}
    assert api.post("/v1/parties", alice, json=body).status_code == 403
    assert api.post("/v1/parties", admin, json=body).status_code == 201
    assert api.post("/v1/parties", admin, json=body).status_code == 409
    r = api.post("/v1/parties/carol/clients", admin)
    assert r.status_code == 201 and r.json()["client_secret"]


def test_secrets_are_stored_hashed(api: Api) -> None:
    from transactive.service.models import Client

    api.party("alice", "participant")
    with api.services.db.sessions() as s:
        (c,) = s.query(Client).all()
    assert c.secret_hash.startswith("$argon2id$")


def test_admin_create_client_command(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 's.db'}"
    cmd = [
        "admin",
        "create-client",
        "--role",
        "dso",
        "--party",
        "dso1",
        "--area",
        "a1",
        "--db",
        url,
    ]
    r = cli(*cmd)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["role"] == "dso" and out["client_id"].startswith("dso1-")
    r = cli("admin", "create-client", "--role", "pilot", "--party", "x", "--db", url)
    assert r.returncode == 2 and "role 'pilot'" in r.stderr and r.stdout == ""

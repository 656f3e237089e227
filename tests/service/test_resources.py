"""Resources: registration checks (kind, area, bus, key), tenancy of writes and reads."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import Api
from transactive.service.resources import KINDS, decode_bytes, parse_public_key


def _area(api: Api) -> tuple[str, list[str]]:
    name = sorted(api.services.market.areas)[0]
    return name, api.services.market.areas[name].feeder.bus_names


def test_key_formats() -> None:
    raw = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    for text in (
        raw.hex(),
        raw.hex().upper(),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ):
        key = parse_public_key(text)
        assert key is not None and key.public_bytes_raw() == raw
    assert parse_public_key(raw.hex()[:-2]) is None
    assert parse_public_key("zz" * 32) is None
    assert parse_public_key(base64.b64encode(raw + b"x").decode()) is None
    assert decode_bytes("00" * 64, 64) == bytes(64)
    assert "meter" in KINDS and "pv" in KINDS and "battery" in KINDS


def test_register_validates_fields_and_tenancy(api: Api) -> None:
    area, buses = _area(api)
    p1 = api.party("p1", "participant", area=area)
    p2 = api.party("p2", "participant", area=area)
    key = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    ok = {"id": "m1", "kind": "meter", "area": area, "bus": buses[1], "public_key": key.hex()}
    r = api.post("/v1/resources", p1, json=ok)
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["party_id"] == "p1" and doc["public_key"] == key.hex() and doc["name"] == "m1"
    assert api.post("/v1/resources", p1, json=ok).status_code == 409
    bad = api.post(
        "/v1/resources",
        p1,
        json={**ok, "id": "m2", "kind": "toaster", "bus": "no-such-bus", "public_key": "abc"},
    )
    assert bad.status_code == 422
    locs = {tuple(e["loc"]) for e in bad.json()["errors"]}
    assert locs == {("body", "kind"), ("body", "bus"), ("body", "public_key")}
    r = api.post("/v1/resources", p1, json={**ok, "id": "m3", "area": "elsewhere"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "area"]
    r = api.post("/v1/resources", p1, json={**ok, "id": "bad id!"})
    assert r.status_code == 422
    # another party's resource: forbidden; an aggregator may register for its portfolio
    assert (
        api.post("/v1/resources", p1, json={**ok, "id": "m4", "party_id": "p2"}).status_code == 403
    )
    agg = api.party("agg", "aggregator", area=area)
    api.party("h1", "participant", area=area, aggregator_id="agg")
    r = api.post("/v1/resources", agg, json={**ok, "id": "h1-pv", "kind": "pv", "party_id": "h1"})
    assert r.status_code == 201, r.text
    assert (
        api.post("/v1/resources", agg, json={**ok, "id": "x", "party_id": "p2"}).status_code == 403
    )
    dso = api.party("dso", "dso", area=area)
    assert api.post("/v1/resources", dso, json={**ok, "id": "d1"}).status_code == 403
    # reads: own, portfolio, area; others' is 404
    assert [x["id"] for x in api.get("/v1/resources", p1).json()] == ["m1"]
    assert api.get("/v1/resources", p2).json() == []
    assert api.get("/v1/resources/m1", p2).status_code == 404
    assert api.get("/v1/resources/m1", p1).json()["bus"] == buses[1]
    assert [x["id"] for x in api.get("/v1/resources", agg).json()] == ["h1-pv"]
    assert [x["id"] for x in api.get("/v1/resources", dso).json()] == ["h1-pv", "m1"]
    page = api.get("/v1/resources", dso, params={"offset": 1, "limit": 1}).json()
    assert [x["id"] for x in page] == ["m1"]
    assert api.get("/v1/resources", dso, params={"limit": 10_001}).status_code == 422
    tso = api.party("tso", "tso")
    assert api.get("/v1/resources", tso).json() == []

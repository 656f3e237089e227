"""Meter readings: checks, signed / unsigned / wrong signatures, replay, conflicts,
journal records and tenancy; on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import Api
from transactive.service import journal
from transactive.service.metering import signed_bytes

T0 = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
Z = "%Y-%m-%dT%H:%M:%SZ"


def _setup(api: Api) -> tuple[dict[str, str], Ed25519PrivateKey, str]:
    area = sorted(api.services.market.areas)[0]
    bus = api.services.market.areas[area].feeder.bus_names[1]
    who = api.party("p1", "participant", area=area)
    key = Ed25519PrivateKey.generate()
    pub = base64.b64encode(key.public_key().public_bytes_raw()).decode()
    for rid, pk in (("m1", pub), ("m0", None)):
        body = {"id": rid, "kind": "meter", "area": area, "bus": bus, "public_key": pk}
        assert api.post("/v1/resources", who, json=body).status_code == 201
    return who, key, area


def reading(rid: str, t: datetime, imp: int, exp: int, key: Any = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resource_id": rid,
        "interval_start": t.strftime(Z),
        "duration_s": 900,
        "import_wh": imp,
        "export_wh": exp,
    }
    if key is not None:
        doc["signature"] = key.sign(signed_bytes(rid, t, 900, imp, exp)).hex()
    return doc


def test_signed_unsigned_and_wrong_signatures(api: Api) -> None:
    who, key, _ = _setup(api)
    good = reading("m1", T0, 1200, 0, key)
    r = api.post("/v1/meter-readings", who, json={"readings": [good, reading("m0", T0, 5, 7)]})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["stored"] == 2 and doc["unchanged"] == 0
    assert [x["trust"] for x in doc["readings"]] == ["signed", "unsigned"]
    assert doc["journal_last"] == doc["journal_first"] + 1
    # base64url signatures verify too
    t1 = T0 + timedelta(minutes=15)
    sig = key.sign(signed_bytes("m1", t1, 900, 3, 4))
    b64 = base64.urlsafe_b64encode(sig).decode().rstrip("=")
    r = api.post(
        "/v1/meter-readings",
        who,
        json={"readings": [{**reading("m1", t1, 3, 4), "signature": b64}]},
    )
    assert r.status_code == 201 and r.json()["readings"][0]["trust"] == "signed"
    # a signature over other values, another key's, garbage, or for a key-less meter: 422
    t2 = T0 + timedelta(minutes=30)
    other = Ed25519PrivateKey.generate()
    bad = [
        {**reading("m1", t2, 10, 0), "signature": good["signature"]},
        reading("m1", t2 + timedelta(minutes=15), 1, 0, other),
        {**reading("m1", t2 + timedelta(minutes=30), 1, 0), "signature": "nothex"},
        reading("m0", t2, 1, 0, key),
    ]
    r = api.post("/v1/meter-readings", who, json={"readings": bad})
    assert r.status_code == 422
    errs = r.json()["errors"]
    assert [e["loc"] for e in errs] == [["body", "readings", i, "signature"] for i in range(4)]
    listed = api.get("/v1/meter-readings", who, params={"resource_id": "m1"}).json()
    assert len(listed) == 2  # nothing of the failed batch was stored
    # the journal holds the signed reading as posted
    rec = api.get(f"/v1/journal/records/meter:m1:{T0.strftime(Z)}", who).json()
    assert rec["body"]["import_wh"] == 1200 and rec["body"]["trust"] == "signed"
    assert rec["body"]["signature"] == good["signature"]


def test_checks_name_each_bad_field(api: Api) -> None:
    who, _key, area = _setup(api)
    now = api.services.now()
    api.party("p2", "participant", area=area)
    later = now.replace(second=0, microsecond=0) - timedelta(minutes=now.minute % 15)
    items = [
        reading("nope", T0, 1, 0),
        {**reading("m0", T0, 1, 0), "interval_start": "2026-07-01T12:05:00Z"},
        {**reading("m0", T0, 1, 0), "duration_s": 3600},
        reading("m0", later, 1, 0),  # the current interval has not ended
        {**reading("m0", T0, 1, 0), "import_wh": 1.5},
        {**reading("m0", T0, 1, 0), "export_wh": -1},
        {**reading("m0", T0, 1, 0), "interval_start": "2026-07-01T12:00:00"},  # naive
    ]
    r = api.post("/v1/meter-readings", who, json={"readings": items})
    assert r.status_code == 422
    locs = [tuple(e["loc"][2:]) for e in r.json()["errors"]]
    assert (4, "import_wh") in locs and (5, "export_wh") in locs and (6, "interval_start") in locs
    r = api.post("/v1/meter-readings", who, json={"readings": items[:4]})
    locs = [tuple(e["loc"][2:]) for e in r.json()["errors"]]
    assert locs == [
        (0, "resource_id"),
        (1, "interval_start"),
        (2, "duration_s"),
        (3, "interval_start"),
    ]
    # a resource of another party is not the caller's to post for
    p2 = api.post(
        "/v1/meter-readings", api_headers(api, "p2"), json={"readings": [reading("m0", T0, 1, 0)]}
    )
    assert p2.status_code == 422 and p2.json()["errors"][0]["loc"][-1] == "resource_id"
    dso = api.party("dso", "dso", area=area)
    assert (
        api.post(
            "/v1/meter-readings", dso, json={"readings": [reading("m0", T0, 1, 0)]}
        ).status_code
        == 403
    )
    assert api.post("/v1/meter-readings", who, json={"readings": []}).status_code == 422
    big = {**reading("m0", T0, 1, 0), "import_wh": 10**30}
    assert api.post("/v1/meter-readings", who, json={"readings": [big]}).status_code == 422


def api_headers(api: Api, party: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.tokens[party]}"}


def test_replay_is_idempotent_and_another_value_conflicts(api: Api) -> None:
    who, key, _area = _setup(api)
    batch = {"readings": [reading("m1", T0, 100, 0, key), reading("m0", T0, 0, 40)]}
    first = api.post("/v1/meter-readings", who, json=batch)
    assert first.status_code == 201
    size = journal_size(api)
    again = api.post("/v1/meter-readings", who, json=batch)
    assert again.status_code == 200, again.text
    assert again.json()["stored"] == 0 and again.json()["unchanged"] == 2
    assert again.json()["readings"] == first.json()["readings"]
    assert journal_size(api) == size
    # a batch with one new and one identical reading stores only the new one
    t1 = T0 + timedelta(minutes=15)
    mixed = {
        "readings": [reading("m0", T0, 0, 40), reading("m0", t1, 9, 0), reading("m0", t1, 9, 0)]
    }
    r = api.post("/v1/meter-readings", who, json=mixed)
    assert r.status_code == 201 and r.json()["stored"] == 1 and r.json()["unchanged"] == 1
    # another value for a stored interval: 409, nothing stored
    clash = {
        "readings": [reading("m0", T0 + timedelta(minutes=30), 1, 0), reading("m0", T0, 0, 41)]
    }
    r = api.post("/v1/meter-readings", who, json=clash)
    assert r.status_code == 409
    assert r.json()["errors"][0]["loc"] == ["body", "readings", 1, "interval_start"]
    assert len(api.get("/v1/meter-readings", who, params={"resource_id": "m0"}).json()) == 2
    # two values for one interval within a batch: 422
    dup = {
        "readings": [
            reading("m0", T0 + timedelta(hours=1), 1, 0),
            reading("m0", T0 + timedelta(hours=1), 2, 0),
        ]
    }
    assert api.post("/v1/meter-readings", who, json=dup).status_code == 422


def journal_size(api: Api) -> int:
    with api.services.db.sessions() as s:
        return journal.tree_size(s)


def test_reads_are_filtered_by_tenancy_and_time(api: Api) -> None:
    who, _key, area = _setup(api)
    items = [reading("m0", T0 + timedelta(minutes=15 * k), k, 0) for k in range(6)]
    assert api.post("/v1/meter-readings", who, json={"readings": items}).status_code == 201
    other = api.party("p2", "participant", area=area)
    dso = api.party("dso", "dso", area=area)
    far = api.party("dso2", "dso", area="another-area")
    auditor = api.party("aud", "auditor")
    assert api.get("/v1/meter-readings", other).json() == []
    assert api.get("/v1/meter-readings", far).json() == []
    assert len(api.get("/v1/meter-readings", dso).json()) == 6
    assert len(api.get("/v1/meter-readings", auditor).json()) == 6
    window = {
        "start": (T0 + timedelta(minutes=15)).strftime(Z),
        "end": (T0 + timedelta(minutes=45)).strftime(Z),
    }
    got = api.get("/v1/meter-readings", who, params=window).json()
    assert [x["import_wh"] for x in got] == [1, 2]
    page = api.get("/v1/meter-readings", who, params={"offset": 4, "limit": 5}).json()
    assert [x["import_wh"] for x in page] == [4, 5]
    assert (
        api.get("/v1/meter-readings", who, params={"start": "2026-07-01T12:00:00"}).status_code
        == 422
    )
    rec = api.get(f"/v1/journal/records/meter:m0:{T0.strftime(Z)}", other)
    assert rec.status_code in (403, 404)
    assert journal.canonical({"b": 1, "a": [1]}) == b'{"a":[1],"b":1}'

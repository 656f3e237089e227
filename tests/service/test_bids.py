"""Bid intake over HTTP on SQLite and PostgreSQL: single and batch bids, every validation
error, gate closure, tenancy, journal proofs of bids and concurrent group commits."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from conftest import Api, make_api
from transactive.errors import InvalidInputError
from transactive.service import journal
from transactive.service.bid_schemas import BidIn
from transactive.service.config import ServiceConfig
from transactive.service.intake import IntakeWriter, Pending, bid_body
from transactive.service.models import Bid, Idempotency, JournalLeaf, MarketSession, Resource
from transactive.service.problems import ApiError
from transactive.settlement import merkle
from transactive.settlement.journal import SignedTreeHead, load_public_key

T0 = datetime(2026, 7, 1, 11, 0, tzinfo=UTC)  # market time when the app starts
SID = "area:real-time:20260701T1200Z"
BUS = "LV4.101 Bus 1"


def add_session(api: Api, sid: str, gate: datetime, status: str = "open") -> None:
    """A market session row, as the scheduler would open it."""
    start = datetime.strptime(sid.rsplit(":", 1)[1], "%Y%m%dT%H%MZ").replace(tzinfo=UTC)
    with api.services.db.sessions() as s:
        s.add(
            MarketSession(
                id=sid,
                area="area",
                stage="real-time",
                interval_start=start,
                duration_s=900,
                gate_closure=gate,
                status=status,
                clearing="uniform",
                floor=-0.5,
                cap=3.0,
                n_bids=0,
                created_at=T0,
            )
        )
        s.commit()


@pytest.fixture
def bapi(config: ServiceConfig) -> Iterator[Api]:
    """The app with its clock at T0 and one open session, SID (gate at 11:55)."""
    for api in make_api(config.at(T0)):
        add_session(api, SID, T0 + timedelta(minutes=55))
        yield api


def block(bid_id: str, **kw: Any) -> dict[str, Any]:
    return {"bid_id": bid_id, "side": "buy", "price": 0.2, "quantity_kw": 3.5, **kw}


def test_single_bid_is_accepted_read_back_and_journalled(bapi: Api) -> None:
    h1 = bapi.party("h1", "participant", area="area")
    r = bapi.post(f"/v1/sessions/{SID}/bids", h1, json=block("ev", bus=BUS))
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["id"] == f"{SID}:h1:ev" and out["party_id"] == "h1" and out["bus"] == BUS
    assert (out["side"], out["price"], out["quantity_kw"], out["curve"]) == ("buy", 0.2, 3.5, None)
    assert out["created_at"].startswith("2026-07-01T11:0") and out["journal_index"] == 0
    taker = bapi.post(f"/v1/sessions/{SID}/bids", h1, json=block("base", price=None)).json()
    curve = {"points": [[0.0, 4.0], [0.1, 1.0], [0.3, -2.0]]}
    c = bapi.post(f"/v1/sessions/{SID}/bids", h1, json={"bid_id": "bat", "curve": curve})
    assert c.status_code == 201, c.text
    assert c.json()["curve"] == curve and c.json()["side"] is None
    assert taker["price"] is None and taker["seq"] > out["seq"]
    listed = bapi.get(f"/v1/sessions/{SID}/bids", h1).json()
    assert [b["bid_id"] for b in listed] == ["ev", "base", "bat"]
    assert bapi.get(f"/v1/sessions/{SID}/bids", h1, params={"offset": 1, "limit": 1}).json()[0][
        "bid_id"
    ] == ("base")
    assert bapi.get(f"/v1/bids/{SID}:h1:ev", h1).json() == out
    with bapi.services.db.sessions() as s:
        row = s.scalars(select(Bid).where(Bid.bid_id == "base")).one()
        assert row.price_taking and row.journal_index == 1
        assert journal.tree_size(s) == 3
    again = bapi.post(f"/v1/sessions/{SID}/bids", h1, json=block("ev"))
    assert again.status_code == 409


def test_resource_gives_the_bus_and_must_be_the_partys(bapi: Api) -> None:
    h1 = bapi.party("h1", "participant", area="area")
    bapi.party("h2", "participant", area="area")
    with bapi.services.db.sessions() as s:
        for rid, owner in (("pv1", "h1"), ("pv2", "h2")):
            s.add(
                Resource(
                    id=rid,
                    party_id=owner,
                    kind="pv",
                    name=rid,
                    area="area",
                    bus="LV4.101 Bus 3",
                    created_at=T0,
                )
            )
        s.commit()
    r = bapi.post(f"/v1/sessions/{SID}/bids", h1, json=block("a", side="sell", resource_id="pv1"))
    assert r.status_code == 201 and r.json()["bus"] == "LV4.101 Bus 3"
    r = bapi.post(f"/v1/sessions/{SID}/bids", h1, json=block("b", resource_id="pv2"))
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "resource_id"]
    r = bapi.post(f"/v1/sessions/{SID}/bids", h1, json=block("c", resource_id="pv1", bus=BUS))
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "bus"]


def test_batch_lists_every_bad_item_by_index_and_field_and_writes_nothing(bapi: Api) -> None:
    h1 = bapi.party("h1", "participant", area="area")
    pts = [[0.0, 1.0], [0.2, 0.0]]
    bad: list[tuple[dict[str, Any], str]] = [
        (block("ok0"), ""),
        ({"bid_id": "both", "side": "buy", "quantity_kw": 1, "curve": {"points": pts}}, "curve"),
        ({"bid_id": "none"}, "side"),
        ({"bid_id": "noside", "quantity_kw": 1.0}, "side"),
        ({"bid_id": "noqty", "side": "sell"}, "quantity_kw"),
        ({"bid_id": "cprice", "price": 0.1, "curve": {"points": pts}}, "price"),
        (block("neg", quantity_kw=-1.0), "quantity_kw"),
        (block("cap", price=3.01), "price"),
        (block("floor", price=-0.51), "price"),
        ({"bid_id": "cpt", "curve": {"points": [[-1.0, 1.0], [0.1, 0.0]]}}, "curve"),
        ({"bid_id": "cdown", "curve": {"points": [[0.2, 1.0], [0.1, 0.0]]}}, "curve"),
        ({"bid_id": "cup", "curve": {"points": [[0.1, 0.0], [0.2, 1.0]]}}, "curve"),
        (block("bus", bus="no such bus"), "bus"),
        (block("ok0"), "bid_id"),  # a repeat of item 0
        (block("res", resource_id="ghost"), "resource_id"),
        (block("x" * 60), "bid_id"),  # the public id would be too long for the column
    ]
    body = {"bids": [b for b, _ in bad]}
    r = bapi.post(f"/v1/sessions/{SID}/bids/batch", h1, json=body)
    assert r.status_code == 422, r.text
    doc = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    got = {(e["loc"][2], e["loc"][3]) for e in doc["errors"]}
    want = {(i, fld) for i, (_, fld) in enumerate(bad) if fld}
    assert got == want
    assert all(e["loc"][:2] == ["body", "bids"] and e["msg"] for e in doc["errors"])
    with bapi.services.db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Bid)) == 0
        assert journal.tree_size(s) == 0
    # type errors come from the schema, with the same locations
    typed = [block("a", side="hold"), block("b", quantity_kw="lots"), {"bid_id": "bad id"}]
    r = bapi.post(f"/v1/sessions/{SID}/bids/batch", h1, json={"bids": typed})
    assert r.status_code == 422
    locs = {tuple(e["loc"][:4]) for e in r.json()["errors"]}
    assert {("body", "bids", 0, "side"), ("body", "bids", 1, "quantity_kw")} <= locs
    assert ("body", "bids", 2, "bid_id") in locs
    nan = '{"bids": [{"bid_id": "n", "side": "buy", "price": NaN, "quantity_kw": 1}]}'
    r = bapi.client.post(
        f"/v1/sessions/{SID}/bids/batch",
        content=nan,
        headers={**h1, "content-type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"][:4] == ["body", "bids", 0, "price"]
    assert bapi.post(f"/v1/sessions/{SID}/bids/batch", h1, json={"bids": []}).status_code == 422


def test_batch_is_accepted_whole_with_its_journal_range(bapi: Api) -> None:
    h1 = bapi.party("h1", "participant", area="area")
    bapi.post(f"/v1/sessions/{SID}/bids", h1, json=block("first"))
    bids = [block(f"b{i}", price=0.001 * i, side="sell" if i % 2 else "buy") for i in range(1000)]
    r = bapi.post(f"/v1/sessions/{SID}/bids/batch", h1, json={"bids": bids})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["accepted"] == 1000 and doc["ids"][0] == f"{SID}:h1:b0"
    assert (doc["journal_first"], doc["journal_last"]) == (1, 1000)
    dup = bapi.post(f"/v1/sessions/{SID}/bids/batch", h1, json={"bids": [block("new"), bids[5]]})
    assert dup.status_code == 409 and dup.json()["errors"][0]["loc"] == [
        "body",
        "bids",
        1,
        "bid_id",
    ]
    with bapi.services.db.sessions() as s:
        seqs = list(s.scalars(select(Bid.seq).order_by(Bid.journal_index)))
        assert len(seqs) == 1001 and seqs == sorted(seqs)
        assert journal.tree_size(s) == 1001


def test_gate_closure_unknown_session_and_closed_session(config: ServiceConfig) -> None:
    for api in make_api(config.at(T0)):
        h1 = api.party("h1", "participant", area="area")
        late = "area:real-time:20260701T1100Z"
        add_session(api, late, T0 - timedelta(seconds=1))  # gate passed a second ago
        closed = "area:real-time:20260701T1300Z"
        add_session(api, closed, T0 + timedelta(hours=1), status="closed")
        for sid in (late, closed):
            r = api.post(f"/v1/sessions/{sid}/bids", h1, json=block("a"))
            assert r.status_code == 409, r.text
            assert (
                api.post(
                    f"/v1/sessions/{sid}/bids/batch", h1, json={"bids": [block("a")]}
                ).status_code
                == 409
            )
        r = api.post("/v1/sessions/area:real-time:20990101T0000Z/bids", h1, json=block("a"))
        assert r.status_code == 404
        assert api.get("/v1/sessions/nope/bids", h1).status_code == 404
        assert api.get(f"/v1/bids/{late}:h1:a", h1).status_code == 404


def test_tenancy_on_bids(bapi: Api) -> None:
    h1 = bapi.party("h1", "participant", area="area")
    agg = bapi.party("agg", "aggregator", area="area")
    bapi.party("m1", "participant", area="area", aggregator_id="agg")
    tso = bapi.party("tso", "tso")
    dso = bapi.party("dso", "dso", area="area")
    r = bapi.post(f"/v1/sessions/{SID}/bids", h1, json=block("x", party_id="m1"))
    assert r.status_code == 403
    r = bapi.post(f"/v1/sessions/{SID}/bids/batch", h1, json={"bids": [block("x", party_id="m1")]})
    assert r.status_code == 403
    assert bapi.post(f"/v1/sessions/{SID}/bids", tso, json=block("x")).status_code == 403
    assert bapi.post(f"/v1/sessions/{SID}/bids", dso, json=block("x")).status_code == 403
    r = bapi.post(f"/v1/sessions/{SID}/bids", agg, json=block("x", party_id="m1"))
    assert r.status_code == 201 and r.json()["party_id"] == "m1"
    assert bapi.post(f"/v1/sessions/{SID}/bids", h1, json=block("mine")).status_code == 201
    assert [b["party_id"] for b in bapi.get(f"/v1/sessions/{SID}/bids", agg).json()] == ["m1"]
    assert [b["party_id"] for b in bapi.get(f"/v1/sessions/{SID}/bids", h1).json()] == ["h1"]
    assert bapi.get(f"/v1/sessions/{SID}/bids", tso).json() == []
    assert len(bapi.get(f"/v1/sessions/{SID}/bids", dso).json()) == 2
    assert bapi.get(f"/v1/bids/{SID}:m1:x", h1).status_code == 404
    assert bapi.get(f"/v1/bids/{SID}:m1:x", agg).status_code == 200
    assert bapi.get(f"/v1/journal/records/bid:{SID}:m1:x", h1).status_code == 404
    assert bapi.get("/v1/journal/head", tso).status_code == 403


def test_inclusion_proof_of_a_bid_verifies_against_the_signed_head(bapi: Api) -> None:
    h1 = bapi.party("h1", "participant", area="area")
    auditor = bapi.party("aud", "auditor")
    bapi.post(
        f"/v1/sessions/{SID}/bids/batch", h1, json={"bids": [block(f"b{i}") for i in range(6)]}
    )
    old = bapi.get("/v1/journal/head", auditor).json()
    bapi.post(f"/v1/sessions/{SID}/bids", h1, json=block("late"))
    rec = bapi.get(f"/v1/journal/records/bid:{SID}:h1:b3", h1).json()
    head = bapi.get("/v1/journal/head", h1).json()
    assert (old["tree_size"], head["tree_size"], rec["tree_size"], rec["index"]) == (6, 7, 7, 3)
    sth = SignedTreeHead(
        head["tree_size"],
        bytes.fromhex(head["root_hash"]),
        head["timestamp"],
        head["kid"],
        bytes.fromhex(head["signature"]),
    )
    assert sth.signature_ok(load_public_key(head["public_key"]))
    leaf = merkle.leaf_hash(journal.canonical(rec["body"]))
    assert leaf.hex() == rec["leaf_hash"] and rec["body"]["bid_id"] == "b3"
    proof = [bytes.fromhex(x) for x in rec["proof"]]
    assert merkle.verify_inclusion(leaf, 3, 7, proof, sth.root_hash)
    assert not merkle.verify_inclusion(leaf, 4, 7, proof, sth.root_hash)
    cons = bapi.get("/v1/journal/consistency", auditor, params={"first": 6, "second": 7}).json()
    assert merkle.verify_consistency(
        6,
        7,
        bytes.fromhex(old["root_hash"]),
        sth.root_hash,
        [bytes.fromhex(x) for x in cons["proof"]],
    )
    r = bapi.get("/v1/journal/consistency", auditor, params={"first": 7, "second": 8})
    assert r.status_code == 422
    assert bapi.get("/v1/journal/records/bid:nothing", auditor).status_code == 404


def test_fifty_concurrent_single_bids_are_group_committed(bapi: Api) -> None:
    who = [bapi.party(f"p{i}", "participant", area="area") for i in range(5)]

    def post(i: int) -> Any:
        return bapi.post(f"/v1/sessions/{SID}/bids", who[i % 5], json=block(f"c{i}"))

    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(post, range(50)))
    assert [r.status_code for r in replies] == [201] * 50
    seqs = [r.json()["seq"] for r in replies]
    idx = sorted(r.json()["journal_index"] for r in replies)
    assert len(set(seqs)) == 50 and idx == list(range(50))
    writer = bapi.services.extras["intake"]
    assert isinstance(writer, IntakeWriter) and writer.written == 50 and writer.groups <= 50
    with bapi.services.db.sessions() as s:
        assert journal.tree_size(s) == 50
        assert s.scalar(select(func.count()).select_from(Bid)) == 50
        assert s.scalar(select(func.count()).select_from(JournalLeaf)) == 50


def test_one_bad_bid_does_not_fail_its_group(bapi: Api) -> None:
    h1 = bapi.party("h1", "participant", area="area")
    assert bapi.post(f"/v1/sessions/{SID}/bids", h1, json=block("taken")).status_code == 201
    p = bapi.services.signer.verify(bapi.tokens["h1"])
    group = [
        Pending(p, SID, BidIn.model_validate(block("a")), None, "h"),
        Pending(p, SID, BidIn.model_validate(block("taken")), None, "h"),  # in the DB
        Pending(p, SID, BidIn.model_validate(block("a")), None, "h"),  # twice in the group
        Pending(p, "area:real-time:20990101T0000Z", BidIn.model_validate(block("z")), None, "h"),
        Pending(p, SID, BidIn.model_validate(block("b", party_id="other")), None, "h"),
        Pending(p, SID, BidIn.model_validate(block("c")), None, "h"),
    ]
    replies = IntakeWriter(bapi.services).write_group(group)
    status = [r.status if isinstance(r, ApiError) else r[0] for r in replies]
    assert status == [201, 409, 409, 404, 403, 201]
    listed = bapi.get(f"/v1/sessions/{SID}/bids", h1).json()
    assert [b["bid_id"] for b in listed] == ["taken", "a", "c"]


def test_mixed_group_gives_each_request_its_own_answer(bapi: Api) -> None:
    """One group of good and bad bids from several callers and sessions, checked together:
    every bad one gets exactly the error it would get alone, the good ones are written in
    order with their journal leaves and idempotency records."""
    h1 = bapi.party("h1", "participant", area="area")
    h2 = bapi.party("h2", "participant", area="area")
    ha = bapi.party("agg", "aggregator", area="area")
    bapi.party("m1", "participant", area="area", aggregator_id="agg")
    sid2 = "area:real-time:20260701T1215Z"
    add_session(bapi, sid2, T0 + timedelta(minutes=70))
    add_session(bapi, "area:real-time:20260701T1230Z", T0 - timedelta(minutes=1))  # gate past
    assert bapi.post(f"/v1/sessions/{SID}/bids", h1, json=block("taken")).status_code == 201
    stored = bapi.client.post(
        f"/v1/sessions/{SID}/bids", headers={**h1, "Idempotency-Key": "old"}, json=block("o")
    )
    assert stored.status_code == 201
    p1 = bapi.services.signer.verify(bapi.tokens["h1"])
    p2 = bapi.services.signer.verify(bapi.tokens["h2"])
    pa = bapi.services.signer.verify(bapi.tokens["agg"])

    def pend(p: Any, bid: dict[str, Any], sid: str = SID, key: str | None = None) -> Pending:
        b = BidIn.model_validate(bid)
        return Pending(p, sid, b, key, hashlib.sha256(repr(bid).encode()).hexdigest())

    group = [
        pend(p1, block("g1"), key="k1"),  # 0 good, key stored
        pend(p1, block("cap", price=3.5)),  # 1 422 price
        pend(p2, block("g2", bus=BUS)),  # 2 good, another caller
        pend(p1, block("taken")),  # 3 409 in the database
        pend(p1, block("g1")),  # 4 409 repeat within the group
        pend(p2, block("g1")),  # 5 good: another party's bid_id space
        pend(
            p1,
            {
                "bid_id": "both",
                "side": "buy",
                "quantity_kw": 1.0,
                "curve": {"points": [[0.0, 1.0]]},
                "bus": "nowhere",
            },
        ),  # 6 422 x2
        pend(p1, block("z"), sid="area:real-time:20990101T0000Z"),  # 7 404
        pend(p1, block("late"), sid="area:real-time:20260701T1230Z"),  # 8 409 gate
        pend(p2, block("x", party_id="h1")),  # 9 403 foreign party
        pend(pa, block("m", party_id="m1")),  # 10 good: an aggregator for its member
        pend(pa, block("m", party_id="h2")),  # 11 403 not its member
        pend(p1, block("s2"), sid=sid2),  # 12 good, second session
        pend(p1, block("g1"), key="k1"),  # 13 repeat of 0's key: the same answer
        pend(p1, block("o"), key="old"),  # 14 a stored key, different request: 422
        pend(p1, block("r", resource_id="ghost")),  # 15 422 resource
        pend(p1, block("g3", quantity_kw=0.0)),  # 16 good
    ]
    replies = IntakeWriter(bapi.services).write_group(group)
    status = [r.status if isinstance(r, ApiError) else r[0] for r in replies]
    assert status == [201, 422, 201, 409, 409, 201, 422, 404, 409, 403, 201, 403, 201, 201,
                      422, 422, 201]  # fmt: skip

    def locs(i: int) -> list[list[str | int]]:
        r = replies[i]
        assert isinstance(r, ApiError) and r.errors is not None
        return [e.loc for e in r.errors]

    assert locs(1) == [["body", "price"]]
    assert locs(6) == [["body", "bus"], ["body", "curve"]]
    assert locs(3) == [["body", "bid_id"]] and locs(15) == [["body", "resource_id"]]
    assert locs(14) == [["header", "Idempotency-Key"]]
    assert replies[13] == replies[0]
    for i, who in {0: h1, 2: h2, 5: h2, 10: ha, 12: h1, 16: h1}.items():
        r = replies[i]
        assert not isinstance(r, ApiError)
        doc = json.loads(r[1])  # the 201 body is the bid as read back
        got = bapi.get(f"/v1/bids/{doc['id']}", who)
        assert got.status_code == 200 and got.json() == doc
    with bapi.services.db.sessions() as s:
        rows = s.execute(select(Bid.seq, Bid.id, Bid.journal_index).order_by(Bid.seq)).all()
        leaves = dict(s.execute(select(JournalLeaf.record_id, JournalLeaf.body)).all())
        keys = set(s.scalars(select(Idempotency.key)))
    ids = [r.id for r in rows]
    assert ids[2:] == [f"{SID}:h1:g1", f"{SID}:h2:g2", f"{SID}:h2:g1", f"{SID}:m1:m",
                       f"{SID}:h1:g3", f"{sid2}:h1:s2"]  # fmt: skip
    assert [r.journal_index for r in rows] == list(range(len(rows)))
    assert keys == {"old", "k1"}
    for r in rows:  # the journal body is the canonical JSON of the stored bid
        doc = json.loads(leaves[f"bid:{r.id}"])
        assert journal.canonical(doc) == leaves[f"bid:{r.id}"] and doc["seq"] == r.seq


@pytest.mark.parametrize("n", [1, 7])
def test_bid_body_is_the_canonical_json(n: int) -> None:
    """The template-built journal body equals journal.canonical of the same document."""
    now = datetime(2026, 7, 1, 11, 0, 0, 123456, tzinfo=UTC)
    stamp = now.isoformat().replace("+00:00", "Z")
    for k in range(n):
        row: dict[str, Any] = {
            "id": f"s:p{k}:b\"ü{k}", "session_id": "s", "party_id": f"p{k}",
            "bid_id": f'b"ü{k}', "seq": 10**k, "side": "buy" if k % 2 else None,
            "price": None if k % 3 == 0 else 0.1 * k - 1e-17, "quantity_kw": 1e22 * k or None,
            "curve": {"points": [[0.1, 2.0], [0.25, -1e-7]]} if k % 2 == 0 else None,
            "bus": "LV4.101 Bus 1\u2028" if k else None, "resource_id": "r/1" if k else None,
            "created_at": now, "journal_index": k,
        }  # fmt: skip
        doc = {key: v for key, v in row.items() if key != "journal_index"}
        doc.update(created_at=stamp, kind="bid")
        assert bid_body(row, stamp) == journal.canonical(doc)
    with pytest.raises(InvalidInputError):
        bid_body({**row, "price": float("nan")}, stamp)


def test_fast_path_answers_as_the_app_and_hands_over_everything_else(bapi: Api) -> None:
    """The single-bid fast path takes only requests the app would accept; the same bid
    through FastAPI (another content type) gets the same answer; every bad request is the
    app's own answer."""
    h1 = bapi.party("h1", "participant", area="area")
    url = f"/v1/sessions/{SID}/bids"
    key = {"Idempotency-Key": "fp-1"}
    a = bapi.client.post(url, headers={**h1, **key}, json=block("a"))  # token now cached
    assert a.status_code == 201
    fast = bapi.services.extras["single_bid_fast_path"]
    n = fast.taken
    again = bapi.client.post(url, headers={**h1, **key}, json=block("a"))
    assert fast.taken == n + 1 and again.status_code == 201 and again.content == a.content
    assert dict(again.headers) == dict(a.headers)  # the same answer, headers and all
    assert again.headers["content-type"] == "application/json"
    b = bapi.client.post(url, headers=h1, json=block("b"))
    assert fast.taken == n + 2 and b.status_code == 201
    assert bapi.get(f"/v1/bids/{b.json()['id']}", h1).json() == b.json()
    via_app = bapi.client.post(
        url,
        headers={**h1, "content-type": "application/json; charset=utf-8"},
        content=json.dumps(block("c")).encode(),
    )
    assert fast.taken == n + 2 and via_app.status_code == 201
    assert set(via_app.json()) == set(b.json())
    taken = bapi.client.post(url, headers=h1, json=block("b"))  # the writer's 409, rendered
    assert fast.taken == n + 3 and taken.status_code == 409
    assert taken.headers["content-type"] == "application/problem+json"
    assert taken.json()["errors"] == [{"loc": ["body", "bid_id"], "msg": "already bid",
                                       "type": "duplicate"}]  # fmt: skip
    bad = [
        (h1, block("d", price="x"), 422),  # schema error
        (h1, {"bid_id": "e", "side": "buy"}, 422),  # rule error (the writer's, fast path)
        ({"Authorization": "Bearer nope"}, block("f"), 401),
        ({}, block("g"), 401),
        ({**h1, "Idempotency-Key": ""}, block("h"), 422),
        ({**h1, "Idempotency-Key": "fp-1"}, block("a", price=0.3), 422),  # key reused
    ]
    for headers, body, status in bad:
        r = bapi.client.post(url, headers=headers, json=body)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    broken = bapi.client.post(
        url, headers={**h1, "content-type": "application/json"}, content=b'{"bid_id": '
    )
    assert broken.status_code == 422 and broken.json()["errors"][0]["type"] == "json_invalid"
    assert fast.taken == n + 5
    listed = bapi.get(f"/v1/sessions/{SID}/bids", h1).json()
    assert [x["bid_id"] for x in listed] == ["a", "b", "c"]


def test_writer_stop_answers_queued_requests(bapi: Api) -> None:
    async def run() -> ApiError | tuple[int, bytes]:
        writer = IntakeWriter(bapi.services)  # never started: the request stays queued
        p = bapi.services.signer.verify(bapi.tokens["h1"])
        task = asyncio.ensure_future(writer.submit(p, SID, BidIn(bid_id="q", curve=None), None, ""))
        await asyncio.sleep(0)
        await writer.stop()
        return await task

    bapi.party("h1", "participant", area="area")
    reply = asyncio.run(run())
    assert isinstance(reply, ApiError) and reply.status == 503

"""Bids read ahead of gate closure (transactive.service.book): the book a clearing takes is
the stored book, whatever was read ahead, and the clearing's result is the same."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete, select
from test_clearing import config, insert_bids, open_sessions, parties, random_blocks  # noqa: F401

from conftest import Api
from transactive.service import book, clearing, scheduler
from transactive.service.models import Bid, MarketSession

CURVE = {"points": [[0.10, 5.0], [0.30, 1.0], [0.30, -2.0], [0.40, -4.0]]}


def same(a: book.BidArrays, b: book.BidArrays) -> None:
    assert a.n == b.n and a.bid_id == b.bid_id and a.bus == b.bus
    for f in ("seq", "party", "price_taking", "is_block", "block_kw", "block_price"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    for f in ("price", "quantity", "offsets"):
        np.testing.assert_array_equal(getattr(a.curves, f), getattr(b.curves, f), err_msg=f)


def batch(api: Api, sid: str, who: list[str], seed: int, n: int) -> None:
    rows: list[dict[str, Any]] = random_blocks(np.random.default_rng(seed), who, n)
    rows.append({"party_id": who[seed % len(who)], "curve": CURVE})
    for k, r in enumerate(rows):  # unique bid ids across batches
        r["bid_id"] = f"s{seed}-{k}"
        r["id"] = f"{sid}:{r['party_id']}:{r['bid_id']}"
    insert_bids(api, sid, rows)


def session(api: Api, sid: str) -> MarketSession:
    with api.services.db.sessions() as s:
        m = s.get(MarketSession, sid)
        assert m is not None
        return m


@pytest.mark.parametrize("stage", ["day-ahead", "real-time"])
def test_read_ahead_in_parts_then_take_is_the_stored_book(api: Api, stage: str) -> None:
    svc = api.services
    m = open_sessions(api, stage)[0]
    who = parties(api, 4)
    cache = book.BookCache()
    batch(api, m.id, who, 1, 30)
    with svc.db.sessions() as s:
        assert cache.prefetch(s, m) == 31
    batch(api, m.id, who, 2, 30)
    with svc.db.sessions() as s:
        assert cache.prefetch(s, m) == 62
    batch(api, m.id, who, 3, 10)  # the tail: read at take
    with svc.db.sessions() as s:
        got = cache.take(s, m)
        want = book.read_bids(s, m, with_bus=m.clearing != "auction")
    assert got.n == 73 and len(cache) == 0
    same(got, want)


def test_a_book_changed_behind_the_cache_is_read_again(api: Api) -> None:
    svc = api.services
    m = open_sessions(api, "real-time")[0]
    who = parties(api, 3)
    batch(api, m.id, who, 1, 20)
    with svc.db.sessions() as s:
        svc.books.prefetch(s, m)
        first = s.scalars(select(Bid.seq).where(Bid.session_id == m.id).order_by(Bid.seq)).first()
        s.execute(delete(Bid).where(Bid.seq == first))  # never done by the service
        s.commit()
    with svc.db.sessions() as s:
        got = svc.books.take(s, m)
        want = book.read_bids(s, m)
    assert got.n == want.n == 20
    same(got, want)


def test_clearing_a_read_ahead_session_gives_the_result_of_a_fresh_read(api: Api) -> None:
    svc = api.services
    m = open_sessions(api, "real-time")[0]
    who = parties(api, 3)
    batch(api, m.id, who, 4, 40)
    with svc.db.sessions() as s:
        svc.books.prefetch(s, m)
    batch(api, m.id, who, 5, 5)
    with svc.db.sessions() as s:
        out = clearing.clear_session(s, svc, m.id)
    assert out.n_bids == 47 and len(svc.books) == 0
    m = session(api, m.id)
    with svc.db.sessions() as s:
        bids = book.read_bids(s, m)
    assert clearing.result_hash(svc, m, bids) == out.result_hash


def test_the_scheduler_reads_ahead_only_sessions_about_to_close(api: Api) -> None:
    svc = api.services
    opened = open_sessions(api, "real-time")  # gates up to NOW, all open (nothing closed yet)
    with svc.db.sessions() as s:
        later = s.scalars(
            select(MarketSession)
            .where(MarketSession.stage == "real-time", MarketSession.status == "open")
            .order_by(MarketSession.gate_closure.desc())
        ).first()
    assert later is not None and later.gate_closure > svc.now()
    who = parties(api, 2)
    for m in (opened[-1], later):
        batch(api, m.id, who, 6, 5)
    held = scheduler.prefetch(svc)
    due = [m for m in opened if m.gate_closure.timestamp() <= svc.now().timestamp() + 30]
    assert held == 6 * len([m for m in due if m.id == opened[-1].id])
    assert len(svc.books) == len(due)
